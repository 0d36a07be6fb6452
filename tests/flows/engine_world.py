"""A small world for engine tests: a store, a fake clock, the outbox, flows from YAML.

The outbox is the real one (messages and deliveries are stored exactly as in
production); its workers are not started, so deliveries stay queued unless a
test moves them the way a platform would, through the real Router.signal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml
from sqlmodel import col

from flows.caps import Caps
from flows.engine import FlowEngine
from flows.policies import Policies
from flows.quiet_hours import QuietHours
from flows.spec import Flow, FlowSpec, compile_flow
from flows.templates import Templates
from gateway.broker.memory import MemoryBroker
from gateway.channels import Failure, Outbound, Sent, Signal
from gateway.clock import FakeClock
from gateway.outbox import Outbox
from gateway.router import Router
from storage.customers import ConsentIn, Customers
from storage.db import Database
from storage.events import Events
from storage.models import (
    Conversation,
    Conversion,
    Customer,
    Delivery,
    FlowRun,
    FlowStep,
    Identity,
    Message,
)

ACCOUNTS = {"telegram": "bot1", "vk": "77", "sms": "SHOP", "email": "shop@shop.example"}

CART_TEMPLATE = """\
text: "Корзина {{ event.data.cart_id }} ждёт вас"
telegram:
  html: "<b>Корзина</b> {{ event.data.cart_id }} ждёт вас"
  buttons: [[{text: "Открыть корзину", url: "https://shop.example/cart/{{ event.data.cart_id }}"}]]
email:
  subject: "Вы забыли корзину"
  html: "<p>Корзина {{ event.data.cart_id }} ждёт вас</p>"
  text: "Корзина {{ event.data.cart_id }} ждёт вас"
sms:
  text: "Корзина {{ event.data.cart_id }} ждёт вас"
"""

OFFER_TEMPLATE = """\
text: "Скидка 10% для {{ customer.name }}"
"""

CART_FLOW = """\
name: abandoned_cart
purpose: marketing
priority: 80
trigger: {event: cart_abandoned}
key: "{{ event.data.cart_id }}"
cancel_on: [order_placed]
goal: {event: purchase, within: 3d}
steps:
  - wait: 1h
  - send:
      name: nudge
      template: cart
      channels: [email, telegram, sms]
      next_channel_after: 4h
"""


@dataclass
class StubAdapter:
    """A channel's outbound side that is never reached: the outbox is not started."""

    channel: str
    account: str
    sent: list[Outbound] = field(default_factory=list)

    async def send(self, message: Outbound) -> Sent | Failure:
        self.sent.append(message)
        return Sent(f"x{message.delivery_id}")

    async def aclose(self) -> None:
        pass


class FlowFolder:
    """Flows and templates written to a folder and compiled, like the loader does."""

    def __init__(self, root: Path, templates: dict[str, str], flows: dict[str, str]) -> None:
        self.root = root
        (root / "templates").mkdir(parents=True, exist_ok=True)
        for name, text in templates.items():
            (root / "templates" / f"{name}.yaml").write_text(text, encoding="utf-8")
        self.templates = Templates(root / "templates")
        self.flows: dict[str, Flow] = {}
        for text in flows.values():
            self.put(text)

    def put(self, text: str) -> Flow:
        """Add or replace a flow (a new version when the text changed)."""
        spec = FlowSpec.model_validate(yaml.safe_load(text))
        version = hashlib.sha256(text.encode()).hexdigest()[:16]
        flow = compile_flow(spec, version=version, source=text, path=f"{spec.name}.yaml")
        self.flows[flow.name] = flow
        return flow

    def get(self, name: str) -> Flow | None:
        return self.flows.get(name)

    def by_event(self, type: str) -> list[Flow]:
        return [f for f in self.flows.values() if f.trigger.event == type]


@dataclass
class World:
    db: Database
    clock: FakeClock
    outbox: Outbox
    router: Router
    folder: FlowFolder
    engine: FlowEngine

    async def customer(
        self,
        name: str = "Анна",
        *,
        email: str | None = None,
        phone: str | None = None,
        telegram: str | None = None,
        timezone: str | None = None,
        consent: tuple[str, ...] = ("*",),
    ) -> int:
        async with self.db.session() as session:
            customer = Customer(name=name, email=email, phone=phone, timezone=timezone)
            session.add(customer)
            await session.flush()
            assert customer.id is not None
            if telegram is not None:
                session.add(
                    Identity(
                        customer_id=customer.id,
                        channel="telegram",
                        account=ACCOUNTS["telegram"],
                        address=telegram,
                    )
                )
            for channel in consent:
                await Customers(session).set_consent(
                    customer.id, ConsentIn(channel, "marketing", True, source="test")
                )
            return customer.id

    async def event(self, customer_id: int, type: str, data: dict[str, Any] | None = None) -> int:
        async with self.db.session() as session:
            event, _ = await Events(session).record(
                customer_id=customer_id, type=type, data=data or {}, occurred_at=self.clock.now()
            )
            assert event.id is not None
        await self.engine.on_event(event.id)
        return event.id

    async def advance(self, seconds: float) -> None:
        """Move the clock, then let the engine do what became due (twice: a step may chain)."""
        await self.clock.advance(seconds)
        await self.engine.tick()
        await self.engine.tick()

    async def set_consent(self, customer_id: int, channel: str, granted: bool) -> None:
        async with self.db.session() as session:
            await Customers(session).set_consent(
                customer_id, ConsentIn(channel, "marketing", granted, source="test")
            )

    async def set_mode(self, customer_id: int, mode: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                sa.update(Conversation)
                .where(col(Conversation.customer_id) == customer_id)
                .values(mode=mode)
            )

    async def signal(self, delivery: Delivery, kind: str, *, machine: bool = False) -> None:
        await self.router.signal(
            Signal(
                kind=kind,  # type: ignore[arg-type]
                channel=delivery.channel,
                delivery_id=delivery.id,
                machine=machine,
                at=self.clock.now(),
            )
        )

    async def deliveries(self, customer_id: int | None = None) -> list[Delivery]:
        query = sa.select(Delivery).order_by(col(Delivery.id))
        if customer_id is not None:
            query = query.where(col(Delivery.customer_id) == customer_id)
        async with self.db.session() as session:
            return list(await session.scalars(query))

    async def messages(self, customer_id: int) -> list[Message]:
        async with self.db.session() as session:
            return list(
                await session.scalars(
                    sa.select(Message)
                    .where(col(Message.customer_id) == customer_id)
                    .order_by(col(Message.id))
                )
            )

    async def runs(self, customer_id: int | None = None) -> list[FlowRun]:
        query = sa.select(FlowRun).order_by(col(FlowRun.id))
        if customer_id is not None:
            query = query.where(col(FlowRun.customer_id) == customer_id)
        async with self.db.session() as session:
            return list(await session.scalars(query))

    async def steps(self, customer_id: int) -> list[FlowStep]:
        async with self.db.session() as session:
            return list(
                await session.scalars(
                    sa.select(FlowStep)
                    .join(FlowRun, col(FlowRun.id) == col(FlowStep.run_id))
                    .where(col(FlowRun.customer_id) == customer_id)
                    .order_by(col(FlowStep.id))
                )
            )

    async def conversions(self) -> list[Conversion]:
        async with self.db.session() as session:
            return list(await session.scalars(sa.select(Conversion).order_by(col(Conversion.id))))


# Monday 12:00 UTC = 15:00 in Moscow: outside the default quiet hours.
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def make_engine(
    db: Database,
    folder: FlowFolder,
    clock: FakeClock,
    outbox: Outbox,
    *,
    caps: Caps | None = None,
    quiet: str = "21:00-09:00",
) -> FlowEngine:
    policies = Policies(
        quiet_hours=QuietHours.parse(quiet),
        caps=caps or Caps(per_day=None, per_week=None),
        default_zone=ZoneInfo("Europe/Moscow"),
    )
    return FlowEngine(db, outbox, folder, clock=clock, policies=policies, poll_s=1.0)


async def make_world(
    db: Database,
    root: Path,
    *,
    templates: dict[str, str] | None = None,
    flows: dict[str, str] | None = None,
    caps: Caps | None = None,
    quiet: str = "21:00-09:00",
    start: datetime = START,
) -> World:
    clock = FakeClock(start)
    outbox = Outbox(db, MemoryBroker(), [StubAdapter(ch, acc) for ch, acc in ACCOUNTS.items()])
    router = Router(db, clock=clock, outbox=outbox)
    folder = FlowFolder(
        root,
        templates if templates is not None else {"cart": CART_TEMPLATE, "offer": OFFER_TEMPLATE},
        flows if flows is not None else {"abandoned_cart": CART_FLOW},
    )
    engine = make_engine(db, folder, clock, outbox, caps=caps, quiet=quiet)
    return World(db, clock, outbox, router, folder, engine)


HOUR = 3600.0


async def cart_left_an_hour_ago(db: Database, root: Path, **channels: str) -> tuple[World, int]:
    """The shipped abandoned-cart flow; Анна (on `channels`) left cart c-1 an hour ago.

    The world (its clock an hour on, the engine run) and her id.
    """
    world = await make_world(db, root)
    ann = await world.customer(**channels)
    await world.event(ann, "cart_abandoned", {"cart_id": "c-1"})
    await world.advance(HOUR)
    return world, ann

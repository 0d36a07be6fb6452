"""A `send` step: walk the channels in order until the customer engages.

`until_engaged` sends on the first channel that can take the message, waits
`next_channel_after`, and moves to the next channel unless the customer engaged
(per `stop_on`) with ANY message this step already sent — a late click on the
email stops the SMS. A failed, bounced or blocked delivery moves on at once.
`first_available` sends once, on the first channel that can take it.

A channel is skipped when the customer has no reachable identity on it or the
policies refuse it; quiet hours, a manager's conversation and postponing caps
put the whole step to sleep instead. Every decision becomes a FlowStep row.

The step's progress lives in `run.pending`: {"pc", "step", "channel_index",
"message_ids", "delivery_ids", "since", "channel", "first_due"}; the message and
that progress are written in the caller's one transaction (outbox `stage()`), so
a crash either loses both or keeps both, and nothing is sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from flows.facts import CustomerFacts
from flows.policies import Policies, refusal_from
from flows.runs import FlowRuns
from flows.spec import Flow, Send
from flows.templates import Rendered, TemplateProblem
from gateway.outbox import Enqueued, Outbox, Target
from gateway.tracking.tokens import click_url
from storage.conversations import Conversations
from storage.customers import Customers
from storage.models import Author, Customer, Delivery, DeliveryStatus, FlowRun, Identity

__all__ = ["Cascade", "ClickTracking", "Renderer", "StepResult", "engagement"]

DEFAULT_NEXT_CHANNEL_AFTER = timedelta(hours=4)
# A step postponed (a manager's conversation, caps) for longer than this expires.
MAX_POSTPONE = timedelta(days=7)


class Renderer(Protocol):
    """flows/templates.py `Templates`: one template rendered for one channel."""

    def render(self, name: str, channel: str, context: Mapping[str, Any]) -> Rendered: ...


@dataclass(frozen=True, slots=True)
class ClickTracking:
    """Turns URL buttons into signed, tracked links, so a tap counts as a click."""

    public_url: str
    secret: str

    def wrap(self, delivery_id: int, buttons: list[list[dict[str, Any]]]) -> list[list[Any]]:
        return [
            [
                {**b, "url": click_url(self.public_url, delivery_id, b["url"], self.secret)}
                if b.get("url")
                else b
                for b in row
            ]
            for row in buttons
        ]


@dataclass
class StepResult:
    """What the step asks of its run: move on, or sleep until a time; and what to release."""

    advance: bool
    wake_at: datetime | None = None
    staged: list[Enqueued] = field(default_factory=list)
    failed: str | None = None


def engagement(delivery: Delivery) -> set[str]:
    """The normalised kinds this delivery reached: delivered, opened/read, clicked, ...

    Machine opens and clicks are kept apart in the payload by the router and never
    show up here.
    """
    kinds: set[str] = set()
    if delivery.delivered_at is not None:
        kinds.add("delivered")
    if delivery.read_at is not None:
        kinds.add("opened" if delivery.channel == "email" else "read")
    if delivery.clicked_at is not None:
        kinds.add("clicked")
    if delivery.replied_at is not None:
        kinds.add("replied")
    if delivery.status == DeliveryStatus.failed:
        error = (delivery.error or "").lower()
        kinds.add("failed")
        if "bounce" in error:
            kinds.add("bounced")
        if "block" in error:
            kinds.add("blocked")
    return kinds


class Cascade:
    """Runs `send` instructions; built once by the engine."""

    def __init__(
        self,
        outbox: Outbox,
        templates: Renderer,
        policies: Policies,
        *,
        tracking: ClickTracking | None = None,
        check_every: timedelta = timedelta(minutes=5),
        outranking: Callable[[Flow], Sequence[str]] = lambda flow: (),
    ) -> None:
        self.outbox = outbox
        self.templates = templates
        self.policies = policies
        self.tracking = tracking
        self.check_every = check_every
        # The flows of a higher priority than a given one (the caps keep them a slot).
        self.outranking = outranking

    async def step(
        self,
        session: AsyncSession,
        run: FlowRun,
        flow: Flow,
        send: Send,
        customer: Customer,
        now: datetime,
        facts: CustomerFacts | None = None,
    ) -> StepResult:
        """Advance this run's `send` by as much as can happen at `now`.

        `facts` (flows/facts.py), when given, stand in for the customer's per-run reads.
        """
        runs = FlowRuns(session)
        state = dict(run.pending) if run.pending.get("pc") == run.pc else _fresh(run.pc, send, now)
        result = await self._walk(session, runs, run, flow, send, customer, now, state, facts)
        run.pending = {} if result.advance else state
        return result

    async def _walk(
        self,
        session: AsyncSession,
        runs: FlowRuns,
        run: FlowRun,
        flow: Flow,
        send: Send,
        customer: Customer,
        now: datetime,
        state: dict[str, Any],
        facts: CustomerFacts | None,
    ) -> StepResult:
        channels = send.channels
        if state["delivery_ids"]:
            waiting = await self._after_send(session, runs, run, send, now, state)
            if waiting is not None:
                return waiting
        staged: list[Enqueued] = []
        while state["channel_index"] < len(channels):
            channel = channels[state["channel_index"]]
            target, why = await self._target(session, customer, channel, facts)
            if target is None:
                await runs.record(run, send.name, "skipped", now=now, reason=why, channel=channel)
                state["channel_index"] += 1
                continue
            verdict = await self.policies.check(
                session,
                customer=customer,
                channel=channel,
                purpose=flow.purpose,
                now=now,
                facts=facts,
                outranked_by=self.outranking(flow),
            )
            if verdict.outcome == "skipped":
                await runs.record(
                    run, send.name, "skipped", now=now, reason=verdict.reason, channel=channel
                )
                state["channel_index"] += 1
                continue
            if verdict.outcome in {"postponed", "capped"}:
                assert verdict.until is not None
                first_due = datetime.fromisoformat(state["first_due"])
                if verdict.until - first_due > MAX_POSTPONE:
                    await runs.record(
                        run,
                        send.name,
                        "expired",
                        now=now,
                        reason=f"{verdict.reason}; postponed for over {MAX_POSTPONE.days} days",
                        channel=channel,
                    )
                    return StepResult(advance=True)
                if verdict.outcome == "capped" and flow.caps_outcome != "postpone":
                    await runs.record(
                        run,
                        send.name,
                        "capped",
                        now=now,
                        reason=f"{verdict.reason}; {flow.caps_outcome.replace('_', ' ')}",
                        channel=channel,
                    )
                    if flow.caps_outcome == "skip":
                        return StepResult(advance=True)
                    state["channel_index"] += 1
                    continue
                if state.get("last_note") != verdict.reason:
                    # A postponement is told once, not at every re-check of the same cause.
                    note = f"{verdict.reason}; until {verdict.until.isoformat()}"
                    await runs.record(
                        run, send.name, verdict.outcome, now=now, reason=note, channel=channel
                    )
                    state["last_note"] = verdict.reason
                return StepResult(advance=False, wake_at=verdict.until)
            tags = None if facts is None else facts.tags
            enqueued = await self._stage(
                session, runs, run, flow, send, customer, target, now, tags=tags
            )
            if enqueued is None:
                state["channel_index"] += 1
                continue
            staged.append(enqueued)
            state["message_ids"] = [*state["message_ids"], enqueued.message_id]
            state["delivery_ids"] = [*state["delivery_ids"], *enqueued.delivery_ids]
            state["since"] = now.isoformat()
            state["channel"] = channel
            state.pop("last_note", None)
            last = state["channel_index"] == len(channels) - 1
            if send.mode == "first_available" or last:
                return StepResult(advance=True, staged=staged)
            wait = send.next_channel_after or DEFAULT_NEXT_CHANNEL_AFTER
            return StepResult(
                advance=False, wake_at=min(now + wait, now + self.check_every), staged=staged
            )
        if not state["delivery_ids"]:
            await runs.record(
                run, send.name, "skipped", now=now, reason="no channel could take the message"
            )
        return StepResult(advance=True, staged=staged)

    async def _after_send(
        self,
        session: AsyncSession,
        runs: FlowRuns,
        run: FlowRun,
        send: Send,
        now: datetime,
        state: dict[str, Any],
    ) -> StepResult | None:
        """With something sent: stop on engagement, wait, or move to the next channel."""
        deliveries = list(
            await session.scalars(
                sa.select(Delivery)
                .where(col(Delivery.id).in_(state["delivery_ids"]))
                .order_by(col(Delivery.id))
                .execution_options(populate_existing=True)
            )
        )
        for delivery in deliveries:
            kinds = engagement(delivery) & send.stop_on.get(delivery.channel, frozenset())
            if kinds:
                await runs.record(
                    run,
                    send.name,
                    "engaged",
                    now=now,
                    reason=f"{', '.join(sorted(kinds))} on {delivery.channel}",
                    channel=delivery.channel,
                    delivery_id=delivery.id,
                    message_id=delivery.message_id,
                )
                return StepResult(advance=True)
        channel = state["channel"]
        current = [d for d in deliveries if d.channel == channel]
        failed = next((d for d in current if d.status == DeliveryStatus.failed), None)
        if failed is None:
            wait = send.next_channel_after or DEFAULT_NEXT_CHANNEL_AFTER
            deadline = datetime.fromisoformat(state["since"]) + wait
            if now < deadline:
                return StepResult(advance=False, wake_at=min(deadline, now + self.check_every))
            stop_on = ", ".join(sorted(send.stop_on.get(channel, frozenset())))
            await runs.record(
                run,
                send.name,
                "expired",
                now=now,
                reason=f"no {stop_on} on {channel} within {_span(wait)}",
                channel=channel,
                delivery_id=current[0].id if current else None,
            )
        else:
            await runs.record(
                run,
                send.name,
                "failed",
                now=now,
                reason=f"{channel}: {failed.error or 'delivery failed'}",
                channel=channel,
                delivery_id=failed.id,
                message_id=failed.message_id,
            )
        state["channel_index"] += 1
        return None

    def may_send(self, customer: Customer, send: Send, purpose: str, facts: CustomerFacts) -> bool:
        """Whether one of the step's channels has an address and the consent to take it.

        From the facts alone, no query: the engine asks it to know whose conversation
        to make in bulk before the chunk's sends (a later policy may still postpone).
        """
        return any(
            isinstance(self._address(customer, channel, facts.identities.get(channel, [])), tuple)
            and refusal_from(facts.consents, channel, purpose) is None
            for channel in send.channels
        )

    async def _target(
        self,
        session: AsyncSession,
        customer: Customer,
        channel: str,
        facts: CustomerFacts | None = None,
    ) -> tuple[Target | None, str]:
        """Where a message on `channel` goes, or why it cannot go there."""
        assert customer.id is not None
        if facts is not None:
            identities = facts.identities.get(channel, [])
        else:
            identities = list(
                await session.scalars(
                    sa.select(Identity)
                    .where(
                        col(Identity.customer_id) == customer.id, col(Identity.channel) == channel
                    )
                    .order_by(
                        col(Identity.last_seen_at).desc().nulls_last(), col(Identity.id).desc()
                    )
                )
            )
        address = self._address(customer, channel, identities)
        if isinstance(address, str):
            return None, address
        account, where, identity_id = address
        return Target(
            conversation_id=await _conversation_id(session, customer.id, facts),
            customer_id=customer.id,
            channel=channel,
            account=account,
            address=where,
            identity_id=identity_id,
        ), ""

    def _address(
        self, customer: Customer, channel: str, identities: Sequence[Identity]
    ) -> tuple[str, str, int | None] | str:
        """(account, address, identity id) to send on `channel`, or why there is none.

        `identities` are the customer's on `channel`, most recently seen first.
        """
        accounts = [account for (ch, account) in self.outbox.adapters if ch == channel]
        if not accounts:
            return f"{channel} is not configured"
        usable = [i for i in identities if i.reachable and i.account in accounts]
        if usable:
            return usable[0].account, usable[0].address, usable[0].id
        profile = {"email": customer.email, "sms": customer.phone}.get(channel)
        dead = [i for i in identities if not i.reachable]
        if profile and not any(i.address == profile for i in dead):
            return accounts[0], profile, None
        if dead:
            return f"{channel} unreachable: {dead[0].unreachable_reason or 'failed'}"
        return f"no {channel} address"

    async def _stage(
        self,
        session: AsyncSession,
        runs: FlowRuns,
        run: FlowRun,
        flow: Flow,
        send: Send,
        customer: Customer,
        target: Target,
        now: datetime,
        *,
        tags: list[str] | None = None,
    ) -> Enqueued | None:
        """Render and stage the message on `target`; None (recorded) if it cannot render."""
        template = send.template_for(run.variant)
        context = await render_context(session, run, customer, send.name, tags=tags)
        try:
            rendered = self.templates.render(template, target.channel, context)
        except TemplateProblem as exc:
            await runs.record(
                run, send.name, "failed", now=now, reason=str(exc), channel=target.channel
            )
            return None
        assert run.id is not None
        enqueued = await self.outbox.stage(
            session,
            target,
            text=rendered.text,
            html=rendered.html,
            subject=rendered.subject,
            buttons=rendered.buttons,
            author=Author.flow,
            author_ref=f"run:{run.id}",
            purpose=flow.purpose,
            meta={"flow": flow.name, "run_id": run.id, "step": send.name, "variant": run.variant},
        )
        if self.tracking is not None:
            await _track(session, self.tracking, enqueued.delivery_ids)
        await runs.record(
            run,
            send.name,
            "sent",
            now=now,
            channel=target.channel,
            delivery_id=enqueued.delivery_ids[0],
            message_id=enqueued.message_id,
        )
        return enqueued


async def render_context(
    session: AsyncSession,
    run: FlowRun,
    customer: Customer,
    step: str,
    *,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """What a template sees: customer, the trigger event, flow, variant, links.

    `tags`, when the caller read them already, save the query.
    """
    assert customer.id is not None
    if tags is None:
        tags = await Customers(session).tags(customer.id)
    return {
        "customer": {
            "id": customer.id,
            "name": customer.name,
            "phone": customer.phone,
            "email": customer.email,
            "attributes": dict(customer.attributes),
            "tags": tags,
            "timezone": customer.timezone,
            "locale": customer.locale,
        },
        "event": run.context.get("event", {}),
        "flow": {"name": run.flow_name, "step": step},
        "variant": run.variant,
        "links": dict(run.context.get("links", {})),
    }


async def _track(session: AsyncSession, tracking: ClickTracking, ids: Sequence[int]) -> None:
    for delivery_id in ids:
        delivery = await session.get(Delivery, delivery_id)
        if delivery is None or not delivery.payload.get("buttons"):
            continue
        delivery.payload = {
            **delivery.payload,
            "buttons": tracking.wrap(delivery_id, delivery.payload["buttons"]),
        }
    await session.flush()


async def _conversation_id(
    session: AsyncSession, customer_id: int, facts: CustomerFacts | None
) -> int:
    """The customer's live conversation, made if there is none yet."""
    if facts is not None and facts.conversation is not None:
        return facts.conversation[0]
    conversation = await Conversations(session).open_for(customer_id)
    assert conversation.id is not None
    return conversation.id


def _fresh(pc: int, send: Send, now: datetime) -> dict[str, Any]:
    return {
        "pc": pc,
        "step": send.name,
        "channel_index": 0,
        "message_ids": [],
        "delivery_ids": [],
        "since": None,
        "channel": None,
        "first_due": now.isoformat(),
    }


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"

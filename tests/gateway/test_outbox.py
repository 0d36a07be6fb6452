"""The outbox: stored before sent, never lost, never doubled, in order per chat."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import col

from gateway.broker import MemoryBroker, RedisBroker
from gateway.channels import Failure, Outbound, Sent
from gateway.lanes import RateLimits, RetryPolicy
from gateway.outbox import Outbox, Target
from gateway.splitting import split_text
from storage.db import Database
from storage.models import Conversation, Customer, Delivery, Identity, Message, utcnow
from tests.broker.test_contract import drop_prefix, redis_client

FAST_LIMITS = RateLimits(
    telegram_rate_per_s=1000,
    telegram_chat_rate_per_s=1000,
    telegram_chat_burst=1000,
    telegram_group_burst=1000,
    pause_margin_s=0.01,
)
FAST_RETRY = RetryPolicy(base_s=0.01, cap_s=0.05)

Answer = Sent | Failure | Exception | float  # a float: hang that long, then succeed


@dataclass
class Call:
    at: float
    message: Outbound
    status_seen: str | None
    answer: Sent | Failure | None = None
    answered_at: float = 0.0


@dataclass
class FakeAdapter:
    """A channel at the transport seam: records each send, answers from a script."""

    db: Database
    channel: str = "telegram"
    account: str = "bot1"
    script: deque[Answer] = field(default_factory=deque)
    calls: list[Call] = field(default_factory=list)

    async def send(self, message: Outbound) -> Sent | Failure:
        at = time.monotonic()
        async with self.db.session() as session:
            row = await session.get(Delivery, message.delivery_id)
        call = Call(at, message, row.status if row else None)
        self.calls.append(call)
        answer = self.script.popleft() if self.script else None
        if isinstance(answer, Exception):
            call.answered_at = time.monotonic()
            raise answer
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = None
        call.answer = answer or Sent(f"{message.address}:{len(self.calls)}")
        call.answered_at = time.monotonic()
        return call.answer

    async def aclose(self) -> None:
        pass

    def sent_ids(self) -> list[int]:
        return [c.message.delivery_id for c in self.calls if isinstance(c.answer, Sent)]


async def make_target(db: Database, address: str = "1001") -> Target:
    async with db.session() as s:
        customer = Customer(name="Ann")
        s.add(customer)
        await s.flush()
        assert customer.id is not None
        identity = Identity(
            customer_id=customer.id, channel="telegram", account="bot1", address=address
        )
        conversation = Conversation(customer_id=customer.id)
        s.add_all([identity, conversation])
        await s.flush()
        assert identity.id is not None
        assert conversation.id is not None
        return Target(conversation.id, customer.id, "telegram", "bot1", address, identity.id)


class RecordingBroker(MemoryBroker):
    """A memory broker that notes when each pause began."""

    def __init__(self) -> None:
        super().__init__()
        self.paused_at: list[float] = []

    async def pause(self, key: str, seconds: float) -> None:
        await super().pause(key, seconds)
        self.paused_at.append(time.monotonic())


def make_outbox(db: Database, adapter: FakeAdapter, **options: object) -> Outbox:
    settings: dict[str, object] = {
        "limits": FAST_LIMITS,
        "retry": FAST_RETRY,
        "block_s": 0.05,
        "grace_s": 1.0,
    }
    settings.update(options)
    broker = settings.pop("broker", None) or MemoryBroker()
    return Outbox(db, broker, [adapter], **settings)  # type: ignore[arg-type]


@pytest.fixture
async def running() -> AsyncIterator[list[Outbox]]:
    """Outboxes a test started; closed even when the test fails."""
    started: list[Outbox] = []
    yield started
    for outbox in started:
        await outbox.aclose()
        await outbox.broker.aclose()


async def start(outbox: Outbox, running: list[Outbox]) -> Outbox:
    await outbox.start()
    running.append(outbox)
    return outbox


async def test_a_message_is_stored_before_it_is_sent(
    database: Database, running: list[Outbox]
) -> None:
    adapter = FakeAdapter(database)
    outbox = await start(make_outbox(database, adapter), running)
    target = await make_target(database)

    queued = await outbox.enqueue(target, text="Hello", purpose="transactional", thread_id=7)
    row = await outbox.wait_settled(queued.delivery_ids[0], timeout_s=3)

    (call,) = adapter.calls
    assert call.message.delivery_id == queued.delivery_ids[0]
    assert call.status_seen == "sending"
    assert call.message.thread_id == 7
    assert call.message.text == "Hello"
    assert row.status == "sent"
    assert row.attempts == 1
    assert row.external_id == "1001:1"
    assert row.sent_at is not None
    assert row.purpose == "transactional"
    async with database.session() as s:
        message = await s.get(Message, queued.message_id)
    assert message is not None
    assert (message.direction, message.author, message.text) == ("out", "bot", "Hello")


async def test_a_429_storm_pauses_the_lane_and_loses_or_doubles_nothing(
    sqlite_database: Database, running: list[Outbox]
) -> None:
    db = sqlite_database
    adapter = FakeAdapter(db)
    retry_after = 0.05
    adapter.script.extend(
        Failure("Too Many Requests: retry after 1", True, retry_after=retry_after, lane_wide=True)
        for _ in range(5)
    )
    broker = RecordingBroker()
    outbox = await start(make_outbox(db, adapter, broker=broker), running)
    targets = [await make_target(db, address) for address in ("11", "12", "13")]

    ids = [(await outbox.enqueue(t, text=f"to {t.address}")).delivery_ids[0] for t in targets]
    rows = [await outbox.wait_settled(i, timeout_s=5) for i in ids]

    assert [r.status for r in rows] == ["sent"] * 3
    assert Counter(adapter.sent_ids()) == Counter(ids)  # each exactly once
    assert len(adapter.calls) == 3 + 5
    assert sum(r.attempts for r in rows) == 3 + 5
    # Sends already in flight when the 429 came back may finish; none may start
    # while the lane is paused.
    assert len(broker.paused_at) == 5
    for paused in broker.paused_at:
        for later in (c for c in adapter.calls if c.at > paused):
            assert later.at - paused >= retry_after


async def test_a_chat_pause_holds_only_that_chat(
    sqlite_database: Database, running: list[Outbox]
) -> None:
    db = sqlite_database
    adapter = FakeAdapter(db)
    adapter.script.append(Failure("Too Many Requests", True, retry_after=0.3, lane_wide=False))
    outbox = await start(make_outbox(db, adapter), running)
    slow, other = await make_target(db, "21"), await make_target(db, "22")

    held = (await outbox.enqueue(slow, text="first")).delivery_ids[0]
    await asyncio.sleep(0.05)
    free = (await outbox.enqueue(other, text="second")).delivery_ids[0]
    await outbox.wait_settled(free, timeout_s=3)
    assert adapter.sent_ids() == [free]
    await outbox.wait_settled(held, timeout_s=3)
    assert adapter.sent_ids() == [free, held]


async def test_order_in_a_chat_survives_retries(database: Database, running: list[Outbox]) -> None:
    adapter = FakeAdapter(database)
    adapter.script.extend([Failure("Internal Server Error", True), Failure("Bad Gateway", True)])
    outbox = await start(make_outbox(database, adapter, workers=4), running)
    target = await make_target(database)

    ids = [(await outbox.enqueue(target, text=f"m{n}")).delivery_ids[0] for n in range(4)]
    rows = [await outbox.wait_settled(i, timeout_s=5) for i in ids]

    assert adapter.sent_ids() == ids
    assert [c.message.delivery_id for c in adapter.calls[:3]] == [ids[0]] * 3
    assert [r.attempts for r in rows] == [3, 1, 1, 1]
    assert rows[1].sent_at is not None
    assert rows[0].sent_at is not None
    assert rows[1].sent_at >= rows[0].sent_at


async def test_a_final_failure_marks_the_identity_unreachable(
    database: Database, running: list[Outbox]
) -> None:
    adapter = FakeAdapter(database)
    reason = "Forbidden: bot was blocked by the user"
    adapter.script.append(Failure(reason, retryable=False, unreachable=True))
    outbox = await start(make_outbox(database, adapter), running)
    target = await make_target(database)

    first = (await outbox.enqueue(target, text="one")).delivery_ids[0]
    row = await outbox.wait_settled(first, timeout_s=3)

    assert (row.status, row.final, row.error, row.attempts) == ("failed", True, reason, 1)
    assert row.failed_at is not None
    async with database.session() as s:
        identity = await s.get(Identity, target.identity_id)
    assert identity is not None
    assert (identity.reachable, identity.unreachable_reason) == (False, reason)
    second = (await outbox.enqueue(target, text="two")).delivery_ids[0]
    assert (await outbox.wait_settled(second, timeout_s=3)).status == "sent"


async def test_retries_end_in_a_recorded_final_failure(
    sqlite_database: Database, running: list[Outbox]
) -> None:
    db = sqlite_database
    adapter = FakeAdapter(db)
    adapter.script.extend(Failure("Service Unavailable", True) for _ in range(10))
    retry = RetryPolicy(max_attempts=3, base_s=0.01, cap_s=0.02)
    outbox = await start(make_outbox(db, adapter, retry=retry), running)

    queued = await outbox.enqueue(await make_target(db), text="x")
    row = await outbox.wait_settled(queued.delivery_ids[0], timeout_s=3)

    assert (row.status, row.final, row.attempts) == ("failed", True, 3)
    assert row.error == "Service Unavailable (gave up after 3 attempts)"
    assert len(adapter.calls) == 3


async def test_an_adapter_that_raises_or_hangs_is_retried(
    sqlite_database: Database, running: list[Outbox]
) -> None:
    db = sqlite_database
    adapter = FakeAdapter(db)
    adapter.script.extend([RuntimeError("connection reset"), 1.0])
    outbox = await start(make_outbox(db, adapter, send_timeout_s=0.1), running)

    queued = await outbox.enqueue(await make_target(db), text="x")
    row = await outbox.wait_settled(queued.delivery_ids[0], timeout_s=3)

    assert (row.status, row.attempts) == ("sent", 3)
    assert len(adapter.calls) == 3


async def test_a_long_text_goes_out_in_ordered_parts_at_sentences(
    database: Database, running: list[Outbox]
) -> None:
    adapter = FakeAdapter(database)
    outbox = await start(make_outbox(database, adapter), running)
    sentences = [f"Sentence number {n} says a little more than nothing." for n in range(200)]
    text = " ".join(sentences)
    assert len(text) > 2 * 4096

    queued = await outbox.enqueue(await make_target(database), text=text)
    for delivery_id in queued.delivery_ids:
        await outbox.wait_settled(delivery_id, timeout_s=5)

    assert len(queued.delivery_ids) == 3
    assert adapter.sent_ids() == list(queued.delivery_ids)
    parts = [c.message.text for c in adapter.calls]
    assert all(len(p) <= 4096 and p.endswith(".") for p in parts)
    assert " ".join(parts) == text
    async with database.session() as s:
        message_ids = set(
            await s.scalars(
                sa.select(col(Delivery.message_id)).where(col(Delivery.id).in_(queued.delivery_ids))
            )
        )
    assert message_ids == {queued.message_id}


def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    assert split_text("short", 10) == ["short"]
    assert split_text("One two.\n\nThree four.", 15) == ["One two.", "Three four."]
    assert split_text("One two. Three four.", 15) == ["One two.", "Three four."]
    assert split_text("alpha beta gamma delta", 11) == ["alpha beta", "gamma delta"]
    assert split_text("abcdefghij klm", 4) == ["abcd", "efgh", "ij", "klm"]


async def test_deliveries_queued_before_a_restart_are_sent_after_it(
    database: Database, running: list[Outbox]
) -> None:
    adapter = FakeAdapter(database)
    target = await make_target(database)
    before = make_outbox(database, adapter)  # never started: the process "died"
    waiting = await before.enqueue(target, text="queued")
    stuck = await before.enqueue(await make_target(database, "2002"), text="mid-send")
    async with database.session() as s:
        await s.execute(
            sa.update(Delivery)
            .where(col(Delivery.id) == stuck.delivery_ids[0])
            .values(status="sending", attempts=1, updated_at=utcnow() - timedelta(minutes=5))
        )
    await before.broker.aclose()

    after = await start(make_outbox(database, adapter), running)
    rows = [
        await after.wait_settled(i, timeout_s=3)
        for i in (waiting.delivery_ids[0], stuck.delivery_ids[0])
    ]

    assert [r.status for r in rows] == ["sent", "sent"]
    assert [r.attempts for r in rows] == [1, 2]
    assert sorted(adapter.sent_ids()) == sorted([waiting.delivery_ids[0], stuck.delivery_ids[0]])


async def test_per_chat_rate_spaces_sends(sqlite_database: Database, running: list[Outbox]) -> None:
    db = sqlite_database
    adapter = FakeAdapter(db)
    limits = RateLimits(telegram_chat_rate_per_s=20, telegram_chat_burst=1)
    outbox = await start(make_outbox(db, adapter, limits=limits), running)
    target = await make_target(db)

    ids = [(await outbox.enqueue(target, text=str(n))).delivery_ids[0] for n in range(3)]
    for delivery_id in ids:
        await outbox.wait_settled(delivery_id, timeout_s=3)

    times = [c.at for c in adapter.calls]
    assert times[2] - times[0] >= 2 / 20 * 0.9


async def test_wait_settled_times_out_and_aclose_stops_cleanly(
    sqlite_database: Database,
) -> None:
    db = sqlite_database
    adapter = FakeAdapter(db)
    adapter.script.append(5.0)
    outbox = make_outbox(db, adapter, grace_s=0.1)
    await outbox.start()
    queued = await outbox.enqueue(await make_target(db), text="slow")
    with pytest.raises(TimeoutError):
        await outbox.wait_settled(queued.delivery_ids[0], timeout_s=0.2)
    await asyncio.wait_for(outbox.aclose(), timeout=2)
    async with db.session() as s:
        row = await s.get(Delivery, queued.delivery_ids[0])
    assert row is not None
    assert row.status == "sending"  # recover() sends it again after sending_timeout_s
    await outbox.broker.aclose()


async def test_the_outbox_runs_on_redis(sqlite_database: Database, running: list[Outbox]) -> None:
    db = sqlite_database
    prefix = f"test:{uuid.uuid4().hex}:"
    broker = RedisBroker(await redis_client(), prefix=prefix)
    adapter = FakeAdapter(db)
    adapter.script.append(Failure("Too Many Requests", True, retry_after=0.05, lane_wide=True))
    try:
        outbox = await start(make_outbox(db, adapter, broker=broker), running)
        target = await make_target(db)
        ids = [(await outbox.enqueue(target, text=f"m{n}")).delivery_ids[0] for n in range(3)]
        rows = [await outbox.wait_settled(i, timeout_s=5) for i in ids]
        assert [r.status for r in rows] == ["sent"] * 3
        assert adapter.sent_ids() == ids
    finally:
        await drop_prefix(broker.redis, prefix)

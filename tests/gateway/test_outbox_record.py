"""The outbox's record step: a settled head hands its chat over to the next delivery."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

from gateway.broker import MemoryBroker
from gateway.channels import Failure
from gateway.outbox import QUEUE
from storage.db import Database
from storage.models import Delivery
from tests.gateway.test_outbox import FakeAdapter, make_outbox, make_target


async def queued(broker: MemoryBroker, wait_s: float = 0.0) -> list[int]:
    """The delivery ids on the outbox queue, taken off it."""
    jobs = await broker.consume(QUEUE, "test", count=100, block_s=wait_s)
    for job in jobs:
        await broker.ack(QUEUE, job.id)
    return [int(job.payload) for job in jobs]


async def test_a_settled_head_queues_the_next_delivery_of_its_chat_and_no_other(
    database: Database,
) -> None:
    adapter = FakeAdapter(database)
    outbox = make_outbox(database, adapter)  # not started: the test takes the jobs
    broker = outbox.broker
    assert isinstance(broker, MemoryBroker)
    ann, bob = await make_target(database, "31"), await make_target(database, "32")
    a1, b1, a2, a3 = [
        (await outbox.enqueue(target, text=text)).delivery_ids[0]
        for target, text in ((ann, "one"), (bob, "other"), (ann, "two"), (ann, "three"))
    ]
    assert await queued(broker) == [a1, b1, a2, a3]

    await outbox.dispatch(a2)  # behind a1: neither sent nor queued again
    assert (adapter.sent_ids(), await queued(broker)) == ([], [])

    await outbox.dispatch(a1)
    assert (adapter.sent_ids(), await queued(broker)) == ([a1], [a2])

    adapter.script.append(Failure("Bad Request: message is too long", retryable=False))
    await outbox.dispatch(a2)  # a final failure settles the head as well
    assert (await outbox.wait_settled(a2, timeout_s=1)).status == "failed"
    assert await queued(broker) == [a3]

    adapter.script.append(Failure("Bad Gateway", retryable=True))
    await outbox.dispatch(a3)  # a retry keeps the chat: only a3 itself comes back
    assert await queued(broker, wait_s=0.5) == [a3]

    await outbox.dispatch(a3)
    assert (adapter.sent_ids(), await queued(broker)) == ([a1, a3], [])
    await broker.aclose()


async def test_interleaved_chats_each_get_their_messages_once_and_in_order(
    database: Database,
) -> None:
    adapter = FakeAdapter(database)
    outbox = make_outbox(database, adapter, workers=8)
    targets = [await make_target(database, str(41 + n)) for n in range(3)]
    ids: dict[str, list[int]] = defaultdict(list)
    for n in range(4):
        for target in targets:
            ids[target.address].append((await outbox.enqueue(target, text=f"m{n}")).delivery_ids[0])
    everything = [i for chat in ids.values() for i in chat]
    await outbox.start()
    try:
        await asyncio.gather(*(outbox.wait_settled(i, timeout_s=5) for i in everything))
    finally:
        await outbox.aclose()
        await outbox.broker.aclose()

    assert Counter(adapter.sent_ids()) == Counter(everything)
    sent: dict[str, list[int]] = defaultdict(list)
    for call in adapter.calls:
        sent[call.message.address].append(call.message.delivery_id)
    assert sent == ids


async def test_an_unreachable_address_is_told_with_the_delivery_that_failed(
    database: Database,
) -> None:
    adapter = FakeAdapter(database)
    adapter.script.append(
        Failure("Forbidden: bot was blocked by the user", False, unreachable=True)
    )
    outbox = make_outbox(database, adapter)
    told: list[tuple[Delivery, str]] = []

    async def hook(delivery: Delivery, reason: str) -> None:
        told.append((delivery, reason))

    outbox.on_unreachable(hook)
    target = await make_target(database, "51")
    queued = await outbox.enqueue(target, text="hello", purpose="transactional")

    await outbox.dispatch(queued.delivery_ids[0])

    ((delivery, reason),) = told
    assert (delivery.id, delivery.message_id, delivery.identity_id, delivery.purpose) == (
        queued.delivery_ids[0],
        queued.message_id,
        target.identity_id,
        "transactional",
    )
    assert reason == "Forbidden: bot was blocked by the user"
    await outbox.broker.aclose()


async def test_a_delivery_behind_one_in_flight_is_looked_at_again_shortly(
    database: Database,
) -> None:
    # The head's record looks for its successor in a transaction that may have begun
    # before the next reply was committed; a second look must not wait for recover().
    adapter = FakeAdapter(database)
    outbox = make_outbox(database, adapter)
    broker = outbox.broker
    assert isinstance(broker, MemoryBroker)
    ann = await make_target(database, "41")
    first, second = [
        (await outbox.enqueue(ann, text=text)).delivery_ids[0] for text in ("one", "two")
    ]
    assert await queued(broker) == [first, second]
    adapter.script.append(3.0)  # the first send takes a while
    sending = asyncio.create_task(outbox.dispatch(first))
    await asyncio.sleep(0.2)

    await outbox.dispatch(second)  # behind the first, in flight: back in a second
    assert (await queued(broker, wait_s=2.0), adapter.sent_ids()) == ([second], [])
    await sending
    await outbox.dispatch(second)
    assert adapter.sent_ids() == [first, second]
    await broker.aclose()

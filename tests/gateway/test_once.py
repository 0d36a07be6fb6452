"""Each update handled once: resends, concurrent duplicates, and a crash mid-handling."""

from __future__ import annotations

import asyncio

import pytest

from gateway.channels import Inbound, UpdateKey
from gateway.once import Once
from tests.fakes import RecordingSink


async def test_a_resend_after_success_is_skipped() -> None:
    once = Once(RecordingSink(), "telegram:1")
    calls: list[str] = []

    async def handle() -> None:
        calls.append("x")

    assert await once.run("7", handle) is True
    assert await once.run("7", handle) is False
    assert calls == ["x"]


async def test_a_concurrent_duplicate_waits_for_the_first_and_is_not_handled_again() -> None:
    once = Once(RecordingSink(), "vk:1")
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def handle() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()

    first = asyncio.create_task(once.run("e1", handle))
    await started.wait()
    second = asyncio.create_task(once.run("e1", handle))
    await asyncio.sleep(0)
    assert not second.done()  # the resend shares the first one's fate
    release.set()
    assert await first is True
    assert await second is False
    assert calls == 1


async def test_an_update_whose_handling_failed_is_handled_when_it_comes_back() -> None:
    sink = RecordingSink()
    once = Once(sink, "sms.twilio")

    async def crash() -> None:
        raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        await once.run("SM1", crash)
    assert sink.seen_keys == set()  # nothing recorded: the resend must get through

    handled: list[str] = []

    async def handle() -> None:
        handled.append("SM1")

    assert await Once(sink, "sms.twilio").run("SM1", handle) is True  # e.g. after a restart
    assert handled == ["SM1"]


async def test_a_resend_during_the_seen_check_waits_for_the_first() -> None:
    sink = RecordingSink()
    once = Once(sink, "telegram:1")
    checking, answer = asyncio.Event(), asyncio.Event()
    seen = sink.seen

    async def slow_seen(source: str, key: str) -> bool:
        checking.set()
        await answer.wait()
        return await seen(source, key)

    sink.seen = slow_seen  # type: ignore[method-assign]
    calls: list[str] = []

    async def handle() -> None:
        calls.append("x")

    first = asyncio.create_task(once.run("7", handle))
    await checking.wait()
    second = asyncio.create_task(once.run("7", handle))
    await asyncio.sleep(0)
    answer.set()
    assert (await first, await second) == (True, False)
    assert calls == ["x"]


async def test_a_recording_handler_is_given_the_key_and_once_records_nothing_itself() -> None:
    sink = RecordingSink()
    given: list[UpdateKey] = []

    async def handle(update: UpdateKey) -> None:
        given.append(update)

    assert await Once(sink, "telegram:1").run_recording("7", handle) is True
    assert given == [UpdateKey("telegram:1", "7")]
    assert sink.seen_keys == set()  # the sink records it with the message, or nobody does


async def test_a_recorded_message_resent_later_is_dropped_by_the_sink() -> None:
    sink = RecordingSink()
    once = Once(sink, "vk:1")

    async def hand_over(update: UpdateKey) -> None:
        await sink.inbound(Inbound("vk", "1", "9", text="Привет", update=update))

    assert await once.run_recording("e1", hand_over) is True
    await once.run_recording("e1", hand_over)
    await Once(sink, "vk:1").run_recording("e1", hand_over)  # e.g. after a restart
    assert [m.text for m in sink.inbounds] == ["Привет"]
    assert sink.seen_keys == {("vk:1", "e1")}


async def test_a_resend_while_a_recording_handler_runs_shares_its_failure() -> None:
    once = Once(RecordingSink(), "sms.twilio")
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def crash(update: UpdateKey) -> None:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        raise RuntimeError("the store is down")

    first = asyncio.create_task(once.run_recording("SM1", crash))
    await started.wait()
    second = asyncio.create_task(once.run_recording("SM1", crash))
    await asyncio.sleep(0)
    release.set()
    for task in (first, second):
        with pytest.raises(RuntimeError, match="the store is down"):
            await task
    assert calls == 1

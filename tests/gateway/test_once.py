"""Each update handled once: resends, concurrent duplicates, and a crash mid-handling."""

from __future__ import annotations

import asyncio

import pytest

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

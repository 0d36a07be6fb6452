"""Store throughput on SQLite and PostgreSQL: appends one by one, in batches, history reads.

Run: .venv/bin/python tests/bench/store.py   (about half a minute)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from storage.conversations import Conversations
from storage.db import Database
from storage.identities import Identities
from storage.messages import Messages, NewMessage
from storage.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "CHATGATE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SINGLE = int(os.environ.get("BENCH_SINGLE", 1000))  # messages appended one per transaction
BATCHES = 50  # batches of BATCH_SIZE through append_many
BATCH_SIZE = 100
PAGES = 300  # history pages of PAGE_SIZE read
PAGE_SIZE = 50


async def measure(count: int, step: Callable[[int], Awaitable[None]]) -> float:
    """Operations per second of `count` calls of `step`."""
    start = time.perf_counter()
    for n in range(count):
        await step(n)
    return count / (time.perf_counter() - start)


async def run(db: Database) -> dict[str, float]:
    await upgrade(db.engine)
    async with db.session() as s:
        _, customer, _ = await Identities(s).resolve(
            channel="telegram", account="bench", address="1", display_name="Bench"
        )
        conversation = await Conversations(s).open_for(customer.id)
    assert customer.id is not None
    assert conversation.id is not None
    customer_id, conversation_id = customer.id, conversation.id

    def message(n: int) -> NewMessage:
        return NewMessage(
            conversation_id=conversation_id,
            customer_id=customer_id,
            channel="telegram" if n % 2 else "sms",
            account="bench",
            direction="in" if n % 3 else "out",
            author="customer",
            text=f"message number {n}",
            external_id=f"1:{n}",
        )

    async def single(n: int) -> None:
        async with db.session() as s:
            await Messages(s).append(message(n))

    async def batch(n: int) -> None:
        first = SINGLE + n * BATCH_SIZE
        async with db.session() as s:
            await Messages(s).append_many([message(first + k) for k in range(BATCH_SIZE)])

    total = SINGLE + BATCHES * BATCH_SIZE
    cursors: list[str | None] = [None]

    async def page(_: int) -> None:
        async with db.session() as s:
            result = await Messages(s).history(customer_id, limit=PAGE_SIZE, cursor=cursors[-1])
        cursors.append(result.next_cursor)  # wraps to the first page at the end

    results = {
        "append, 1 per transaction (msg/s)": await measure(SINGLE, single),
        f"append_many, {BATCH_SIZE} per batch (msg/s)": await measure(BATCHES, batch) * BATCH_SIZE,
        f"history pages of {PAGE_SIZE} (pages/s)": await measure(PAGES, page),
    }
    async with db.session() as s:
        stored = await s.scalar(sa.text("SELECT count(*) FROM message"))
    assert stored == total, f"expected {total} messages, found {stored}"
    return results


async def sqlite() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            return await run(db)
        finally:
            await db.aclose()


async def postgres() -> dict[str, float] | None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = Database(POSTGRES_URL, pool_size=1, max_overflow=0)
    try:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except (OSError, sa.exc.DBAPIError) as exc:
        print(f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc}); skipping it")
        return None
    finally:
        await admin.aclose()
    db = Database(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        return await run(db)
    finally:
        await db.aclose()
        admin = Database(POSTGRES_URL, pool_size=1, max_overflow=0)
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.aclose()


async def main() -> None:
    started = time.perf_counter()
    columns = {"SQLite": await sqlite(), "PostgreSQL": await postgres()}
    names = next(iter(columns.values()))
    assert names is not None
    width = max(len(name) for name in names)
    print(f"\n{'measure':<{width}}  {'SQLite':>10}  {'PostgreSQL':>10}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 10}")
    for name in names:
        cells = [
            f"{result[name]:>10,.0f}" if result else f"{'n/a':>10}" for result in columns.values()
        ]
        print(f"{name:<{width}}  {'  '.join(cells)}")
    print(
        f"\n{SINGLE + BATCHES * BATCH_SIZE} messages per backend;"
        f" took {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())

"""Bridge throughput: mail parsed and stored, SMS webhooks answered, on SQLite (and PostgreSQL).

Email: the real-world corpus (`tests/bridge/email/corpus`), cycled, each copy with
its own Message-ID, through `EmailEvents.handle` into the router's store, one
message at a time as the receiver hands them over; parsing alone is timed too.
Bounces in the corpus were not sent to a VERP address we signed, so they are
parsed and remembered but store no message; the footer says how many did.

SMS: signed Twilio POSTs and Kannel get-url GETs, each with its own id, from a
pool of senders, to `setup_sms_routes` served by a separate process (so the
client does not share the server's loop or core), `--concurrency` at a time.

Run: .venv/bin/python tests/bench/bridge.py [--emails 1000] [--sms 1000] [--concurrency 16]
     [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]   (about a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import sqlalchemy as sa
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.bridge.email import EmailEvents, MailThreads
from gateway.bridge.email.parsing import parse_message
from gateway.bridge.sms import setup_sms_routes
from gateway.bridge.sms.twilio import signature
from gateway.router import Router
from storage.db import Database
from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "bridge" / "email" / "corpus"
MAILBOX = "support@shop.example"
PUBLIC = "https://chat.example.com"  # what Twilio signs; the server is told it is behind it
ACCOUNT = "+15005550006"
TOKEN = "tok"
SENDERS = 200  # distinct phone numbers the webhooks come from
WARMUP = 32  # untimed webhooks per provider before the timed ones
READY = "READY"
MESSAGE_ID = re.compile(rb"^message-id:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Backend:
    """A migrated scratch database: its URL and, on PostgreSQL, the schema to use."""

    url: str
    schema: str | None = None

    def open(self, **engine_options: Any) -> Database:
        if self.schema:
            engine_options["connect_args"] = {"server_settings": {"search_path": self.schema}}
        return Database(self.url, **engine_options)


@contextlib.asynccontextmanager
async def sqlite() -> AsyncIterator[Backend]:
    with tempfile.TemporaryDirectory() as tmp:
        backend = Backend(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        await migrate(backend)
        yield backend


@contextlib.asynccontextmanager
async def postgres(url: str) -> AsyncIterator[Backend]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = Database(url, pool_size=1, max_overflow=0)
    try:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        backend = Backend(url, schema)
        await migrate(backend)
        yield backend
    finally:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.aclose()


async def migrate(backend: Backend) -> None:
    db = backend.open()
    try:
        await upgrade(db.engine)
    finally:
        await db.aclose()


async def count_messages(backend: Backend, channel: str) -> int:
    db = backend.open()
    try:
        async with db.session() as s:
            found = await s.scalar(
                sa.text("SELECT count(*) FROM message WHERE channel = :c"), {"c": channel}
            )
    finally:
        await db.aclose()
    return int(found or 0)


# Email ---------------------------------------------------------------------------------


def with_message_id(raw: bytes, n: int) -> bytes:
    """`raw` with its Message-ID replaced by one unique to copy `n`, line endings kept."""
    newline = b"\r\n" if b"\r\n" in raw else b"\n"
    head, sep, body = raw.partition(newline * 2)
    head = MESSAGE_ID.sub(b"", head + newline)[: -len(newline)]
    return (
        b"Message-ID: <bench." + str(n).encode() + b"@bench.example>" + newline + head + sep + body
    )


def mail_copies(count: int) -> list[bytes]:
    corpus = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    assert corpus, f"no .eml files in {CORPUS}"
    return [with_message_id(raw, n) for n, raw in zip(range(count), itertools.cycle(corpus))]


def parse_rate(mails: list[bytes]) -> tuple[float, int]:
    """Mail parsed per second, and how many of it were bounce reports."""
    bounces = 0
    start = time.perf_counter()
    for raw in mails:
        bounces += parse_message(raw).bounce
    return len(mails) / (time.perf_counter() - start), bounces


async def email_rate(backend: Backend, mails: list[bytes]) -> tuple[float, int]:
    """Mail handled per second, one at a time, and how many became stored messages."""
    db = backend.open()
    try:
        events = EmailEvents(
            sink=Router(db),
            account=MAILBOX,
            domain="shop.example",
            verp_secret="x",
            own_addresses=[MAILBOX],
            threads=MailThreads(db, MAILBOX),  # as the app wires it: In-Reply-To lookups
        )
        start = time.perf_counter()
        for raw in mails:
            if not await events.handle(raw):
                raise AssertionError("a bench copy was taken for a duplicate")
        rate = len(mails) / (time.perf_counter() - start)
    finally:
        await db.aclose()
    return rate, await count_messages(backend, "email")


# SMS -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] | None = None


def sender(n: int) -> str:
    return f"+1415555{n % SENDERS:04d}"


def twilio_request(n: int, run: str) -> Request:
    path = "/webhooks/sms/twilio"
    sid = f"SM{run}{n:020d}"
    form = {
        "ToCountry": "US",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": f"Hi, where is my order #{100000 + n}?",
        "To": ACCOUNT,
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC0123456789abcdef0123456789abcdef",
        "From": sender(n),
        "ApiVersion": "2010-04-01",
    }
    return Request(
        "POST",
        path,
        urlencode(form).encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(PUBLIC + path, form.items(), TOKEN),
        },
    )


def kannel_request(n: int, run: str) -> Request:
    query = {
        "from": sender(n),
        "to": ACCOUNT,
        "text": f"Привет, где мой заказ #{100000 + n}?",
        "ts": str(1_700_000_000 + n),
        "coding": "2",
        "charset": "UTF-8",
        "smsc": "bench",
        "id": f"{run}-{n:012d}",
    }
    return Request("GET", f"/webhooks/sms/kannel?{urlencode(query)}")


SMS_PROVIDERS: dict[str, Callable[[int, str], Request]] = {
    "twilio": twilio_request,
    "kannel": kannel_request,
}


async def serve(provider: str, backend: Backend) -> None:
    """The server process: the provider's webhook on a free port until SIGTERM."""
    logging.disable(logging.WARNING)
    db = backend.open()
    app = web.Application()
    setup_sms_routes(
        app,
        provider=provider,
        sink=Router(db),
        public_url=PUBLIC,
        account=ACCOUNT,
        auth_token=TOKEN,
        region="US",
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    port = runner.addresses[0][1]
    print(READY, port, flush=True)
    try:
        await done.wait()
    finally:
        await runner.cleanup()
        await db.aclose()


@contextlib.asynccontextmanager
async def server(provider: str, backend: Backend) -> AsyncIterator[str]:
    command = [sys.executable, __file__, "--serve", provider, "--db", backend.url]
    if backend.schema:
        command += ["--schema", backend.schema]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
        if line[:1] != [READY]:
            raise RuntimeError(f"the {provider} server did not start")
        yield f"http://127.0.0.1:{line[1]}"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def post_all(
    base: str, requests: list[Request], concurrency: int
) -> tuple[float, list[float]]:
    """Requests per second with `concurrency` in flight, and each request's latency."""
    latencies: list[float] = []
    pending = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def worker() -> None:
            for request in pending:
                sent = time.perf_counter()
                async with session.request(
                    request.method, request.path, data=request.body, headers=request.headers
                ) as response:
                    answer = await response.read()
                    if response.status != 200:
                        raise AssertionError(f"{request.path}: {response.status} {answer!r}")
                latencies.append(time.perf_counter() - sent)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return len(requests) / elapsed, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def sms_rates(backend: Backend, count: int, concurrency: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for provider, build in SMS_PROVIDERS.items():
        before = await count_messages(backend, "sms")
        run = uuid.uuid4().hex[:8]
        warmup = [build(n, run + "w") for n in range(WARMUP)]
        timed = [build(n, run) for n in range(count)]
        async with server(provider, backend) as base:
            await post_all(base, warmup, concurrency)
            rate, latencies = await post_all(base, timed, concurrency)
        stored = await count_messages(backend, "sms") - before
        assert stored == WARMUP + count, f"{provider}: {stored} stored of {WARMUP + count}"
        name = f"{provider} {timed[0].method}"
        results[f"SMS {name}, {concurrency} in flight (webhooks/s)"] = rate
        results[f"SMS {name} p50 latency (ms)"] = percentile(latencies, 0.50) * 1000
        results[f"SMS {name} p99 latency (ms)"] = percentile(latencies, 0.99) * 1000
    return results


# Driver --------------------------------------------------------------------------------


async def run(
    backend_cm: contextlib.AbstractAsyncContextManager[Backend],
    mails: list[bytes],
    args: argparse.Namespace,
) -> tuple[dict[str, float], int]:
    async with backend_cm as backend:
        email, stored = await email_rate(backend, mails)
        results = {"email parse + store, 1 at a time (msg/s)": email}
        results |= await sms_rates(backend, args.sms, args.concurrency)
    return results, stored


def cell(value: float | None, name: str) -> str:
    if value is None:
        return f"{'n/a':>10}"
    return f"{value:>10,.1f}" if name.endswith("(ms)") else f"{value:>10,.0f}"


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    logging.disable(logging.WARNING)  # the corpus's unsigned bounces each log a warning
    mails = mail_copies(args.emails)
    parsed, bounces = parse_rate(mails)
    runs: dict[str, Callable[[], Awaitable[tuple[dict[str, float], int]]]] = {
        "SQLite": lambda: run(sqlite(), mails, args)
    }
    if args.postgres:
        runs["PostgreSQL"] = lambda: run(postgres(args.postgres), mails, args)
    columns: dict[str, dict[str, float]] = {}
    stored: dict[str, int] = {}
    for name, start in runs.items():
        columns[name], stored[name] = await start()
    names = list(next(iter(columns.values())))
    width = max(len(name) for name in names)
    print(f"\n{'measure':<{width}}  " + "  ".join(f"{c:>10}" for c in columns))
    print(f"{'-' * width}  " + "  ".join("-" * 10 for _ in columns))
    print(f"{'email parse only (msg/s)':<{width}}  " + "  ".join(cell(parsed, "") for _ in columns))
    for name in names:
        print(f"{name:<{width}}  " + "  ".join(cell(c.get(name), name) for c in columns.values()))
    files = len(list(CORPUS.glob("*.eml")))
    kept = ", ".join(f"{n} on {c}" for c, n in stored.items())
    print(
        f"\n{args.emails} mails cycled from {files} corpus files, stored as messages: {kept}"
        f"\n({bounces} of the mails are bounce reports: none came to a VERP address we signed,"
        " so they store nothing);"
        f"\n{args.sms} timed SMS webhooks per provider after {WARMUP} untimed, from {SENDERS}"
        f" numbers, all stored; took {time.perf_counter() - started:.1f} s"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=1000, help="mails handled per backend")
    parser.add_argument("--sms", type=int, default=1000, help="timed webhooks per provider")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", metavar="URL", help="also run on a scratch schema here")
    parser.add_argument("--serve", choices=SMS_PROVIDERS, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        asyncio.run(serve(arguments.serve, Backend(arguments.db, arguments.schema)))
    else:
        asyncio.run(main(arguments))

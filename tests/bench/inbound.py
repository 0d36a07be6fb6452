"""Inbound throughput: Telegram updates posted to a webhook until the bot's reply reaches Telegram.

Compares chatgate (every message stored, answered by the dialog through the outbox)
with a bare aiogram echo bot (Dispatcher + SimpleRequestHandler, no storage) against
the same Telegram emulator, with the same updates, users and concurrency. Every piece
runs in its own process: the emulator, the bot under test, and this driver.

A reply's time is when the emulator has stored the bot's sendMessage, taken in the
emulator's process from the system-wide monotonic clock, so it compares with the
driver's post times. The k-th bot message in a chat answers the k-th update posted
to that chat.

Each process's CPU time (user + system, all its threads) over the measured phase is
printed per update: with two cores shared by three processes and a database, it
says which one is the bottleneck, and how far a system is from the echo bot's cost.
"machine" is every core's busy time (/proc/stat) per update, the database server's
included. For chatgate it also prints the SQL statements and commits per update,
counted in its processes by SQLAlchemy events.

With --redis and --processes N (N > 1) chatgate is also measured scaled out the way
DESIGN.md describes: N processes on the same PostgreSQL database and Redis, the
driver spreading the posts over them as a load balancer would.

Run: .venv/bin/python tests/bench/inbound.py [--updates 2000] [--concurrency 32]
     [--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test]
     [--redis redis://127.0.0.1:6379/14 --processes 2] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
DIALOG = HERE / "inbound_dialog.yaml"
SECRET = "s3cret"
WEBHOOK_PATH = "/webhooks/telegram"
TOKENS = {"chatgate": "123:TOKEN", "echo": "456:ECHO"}
FIRST_USER = 500_000_001
READY = "READY"


def monotonic() -> float:
    # CLOCK_MONOTONIC is system-wide on Linux: comparable between our processes.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_until_signalled(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Start, say READY on stdout, wait for SIGTERM/SIGINT, stop."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await start()
        print(READY, flush=True)
        await done.wait()
    finally:
        await stop()


# --- the emulator process -------------------------------------------------------------


async def serve_emulator(port: int, users: int) -> None:
    """The Telegram emulator, its users' private chats already open, timing sendMessage."""
    from gateway.sandbox.telegram import TelegramEmulator, TelegramLimits

    emu = TelegramEmulator(limits=TelegramLimits.disabled())
    bots = [emu.add_bot(token, username=f"{name}_bot") for name, token in TOKENS.items()]
    for uid in range(FIRST_USER, FIRST_USER + users):
        user = emu.add_user(uid, first_name=f"User{uid}")
        for bot in bots:
            # Opens the chat as a /start would, without queuing an update to deliver.
            emu.world.private_chat(bot, user)
    arrivals: dict[str, dict[int, list[tuple[float, str]]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)

    @web.middleware
    async def timing(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        method = request.match_info.get("method", "")
        if method.lower() == "sendmessage" and response.status == 200:
            at = monotonic()
            assert isinstance(response, web.Response)
            assert isinstance(response.body, bytes)
            message = json.loads(response.body)["result"]
            bot_id = request.match_info["token"].partition(":")[0]
            arrivals[bot_id][message["chat"]["id"]].append((at, message.get("text", "")))
            counts[bot_id] += 1
        return response

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"count": counts[request.match_info["bot_id"]]})

    async def dump(request: web.Request) -> web.Response:
        return web.json_response(arrivals[request.match_info["bot_id"]])

    app = web.Application(middlewares=[timing])
    app.router.add_get("/bench/{bot_id}/count", count)
    app.router.add_get("/bench/{bot_id}/arrivals", dump)
    app.add_subapp("/tg", emu.app)  # the Bot API under /tg/bot<token>/<method>
    runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    await run_until_signalled(start, runner.cleanup)


# --- the bot processes ------------------------------------------------------------------


def count_sql(engine: Any, path: str) -> None:
    """Count statements and commits; on SIGUSR1 append the totals to `path` as a JSON line."""
    from sqlalchemy import event

    counts = {"statements": 0, "commits": 0}

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(*_: Any) -> None:
        counts["statements"] += 1  # an executemany is one statement, one round trip

    @event.listens_for(engine.sync_engine, "commit")
    def _commit(*_: Any) -> None:
        counts["commits"] += 1

    def snapshot() -> None:
        with open(path, "a") as out:
            out.write(json.dumps(counts) + "\n")

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, snapshot)


async def serve_chatgate(
    port: int, emulator: str, database_url: str, redis_url: str | None, counts_to: str | None
) -> None:
    """chatgate in webhook mode, its rate limits out of the way, the one-answer dialog."""
    from gateway.app import App
    from gateway.config import load_settings
    from storage.migrate import upgrade

    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        http_port=port,
        sandbox=False,
        api_key="x",
        telegram_token=TOKENS["chatgate"],
        telegram_api_url=emulator,
        telegram_mode="webhook",
        telegram_webhook_secret=SECRET,
        public_url=f"http://127.0.0.1:{port}",
        telegram_rate_per_s=100_000,
        telegram_chat_rate_per_s=100_000,
        telegram_group_rate_per_min=100_000,
        dialog_script=str(DIALOG),
    )
    app = App(settings)
    if counts_to:
        count_sql(app.db.engine, counts_to)

    async def start() -> None:
        if not settings.is_sqlite:
            # A fresh bench database; SQLite migrates at start. Several processes
            # upgrade one after the other (the driver starts them in turn).
            await upgrade(app.db.engine)
        await app.start()

    await run_until_signalled(start, app.aclose)


async def serve_echo(port: int, emulator: str) -> None:
    """The baseline: aiogram's standard webhook bot answering each text with itself."""
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application

    session = AiohttpSession(api=TelegramAPIServer.from_base(emulator))
    bot = Bot(TOKENS["echo"], session=session)
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=SECRET).register(
        app, path=WEBHOOK_PATH
    )
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await bot.set_webhook(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", secret_token=SECRET)

    await run_until_signalled(start, runner.cleanup)


def serve(args: argparse.Namespace) -> None:
    profiler = cProfile.Profile() if args.profile_to else None
    if args.serve == "emulator":
        main = serve_emulator(args.port, args.users)
    elif args.serve == "chatgate":
        main = serve_chatgate(
            args.port, args.emulator, args.database_url, args.redis, args.counts_to
        )
    else:
        main = serve_echo(args.port, args.emulator)
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(main)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_to)


# --- the driver ----------------------------------------------------------------------------


class Child:
    """A `--serve` subprocess; stopped with SIGTERM, killed if it does not stop."""

    def __init__(self, name: str, argv: list[str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *argv],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=ROOT,
        )

    async def ready(self, within: float = 60.0) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), within)
        if line.strip() != READY:
            raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time the processes have used so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy time of all cores so far: everything but idle and iowait (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Figures:
    system: str
    updates: int
    seconds: float
    latencies: list[float]
    problems: list[str] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per update, by process
    sql: dict[str, float] = field(default_factory=dict)  # statements, commits per update

    @property
    def rate(self) -> float:
        return self.updates / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def update(update_id: int, user_id: int, message_id: int) -> dict[str, Any]:
    person = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": f"User{user_id}"},
            "from": person,
            "text": f"hello number {update_id}",
        },
    }


class Driver:
    """Posts updates with a fixed number in flight, remembering when each chat was posted to."""

    def __init__(
        self, http: aiohttp.ClientSession, urls: list[str], users: int, concurrency: int
    ) -> None:
        self.http = http
        self.urls = urls  # one per process: posts go round the list, as a load balancer's
        self.posts = 0
        self.users = users
        self.concurrency = concurrency
        self.update_ids = iter(range(1, 10**9))
        self.message_ids: dict[int, int] = defaultdict(int)
        self.posted: dict[int, list[float]] = defaultdict(list)  # chat → post times, in order
        self.sent: dict[int, list[str]] = defaultdict(list)  # chat → texts, in order
        self.failures: list[str] = []

    def batch(self, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
        for n in range(count):
            user = FIRST_USER + n % self.users
            self.message_ids[user] += 1
            yield user, update(next(self.update_ids), user, self.message_ids[user])

    async def post(self, count: int) -> tuple[float, list[tuple[int, int]]]:
        """Post `count` updates; the first post time and (chat, index) of each one."""
        queue = iter(self.batch(count))
        posted: list[tuple[int, int]] = []
        first: list[float] = []

        async def worker() -> None:
            for chat, body in queue:
                data = json.dumps(body).encode()
                at = monotonic()
                if not first:
                    first.append(at)
                self.posted[chat].append(at)
                self.sent[chat].append(body["message"]["text"])
                posted.append((chat, len(self.posted[chat]) - 1))
                url = self.urls[self.posts % len(self.urls)]
                self.posts += 1
                async with self.http.post(
                    url,
                    data=data,
                    headers={
                        "X-Telegram-Bot-Api-Secret-Token": SECRET,
                        "Content-Type": "application/json",
                    },
                ) as response:
                    await response.read()
                    if response.status != 200:
                        self.failures.append(f"update {body['update_id']}: HTTP {response.status}")

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return first[0], posted


async def wait_for_replies(
    http: aiohttp.ClientSession, emulator: str, bot_id: str, expected: int, within: float
) -> int:
    deadline = monotonic() + within
    while True:
        async with http.get(f"{emulator}/bench/{bot_id}/count") as response:
            count = int((await response.json())["count"])
        if count >= expected or monotonic() > deadline:
            return count
        await asyncio.sleep(0.02)


async def measure(
    system: str,
    label: str,
    args: argparse.Namespace,
    logs: Path,
    database_url: str | None = None,
    *,
    processes: int = 1,
    redis_url: str | None = None,
) -> Figures:
    emulator_port = free_port()
    emulator_root = f"http://127.0.0.1:{emulator_port}"
    emulator_api = emulator_root + "/tg"
    children: list[Child] = []
    bots: list[Child] = []
    bot_ports: list[int] = []
    counts = logs / f"{label}.counts" if system == "chatgate" else None
    try:
        emulator = Child(
            f"{label}-emulator",
            ["--serve", "emulator", "--port", str(emulator_port), "--users", str(args.users)],
            logs,
        )
        children.append(emulator)
        await emulator.ready()
        for n in range(processes):
            port = free_port()
            name = label if processes == 1 else f"{label}-{n + 1}"
            argv = ["--serve", system, "--port", str(port), "--emulator", emulator_api]
            if database_url:
                argv += ["--database-url", database_url]
            if redis_url:
                argv += ["--redis", redis_url]
            if counts is not None:
                argv += ["--counts-to", f"{counts}.{n}"]
            if args.profile:
                argv += ["--profile-to", str(Path(args.profile) / f"{name}.prof")]
            bot = Child(name, argv, logs)
            children.append(bot)
            await bot.ready()  # in turn: the first one migrates the database
            bots.append(bot)
            bot_ports.append(port)
        bot_id = TOKENS[system].partition(":")[0]
        connector = aiohttp.TCPConnector(limit=args.concurrency + 4)
        async with aiohttp.ClientSession(connector=connector) as http:
            urls = [f"http://127.0.0.1:{port}{WEBHOOK_PATH}" for port in bot_ports]
            driver = Driver(http, urls, args.users, args.concurrency)
            await driver.post(args.warmup)
            got = await wait_for_replies(http, emulator_root, bot_id, args.warmup, 60)
            if got < args.warmup:
                raise RuntimeError(f"{label}: warm-up got {got}/{args.warmup} replies")
            pids = {"emulator": [emulator.proc.pid], "driver": [os.getpid()]}
            pids["bot"] = [bot.proc.pid for bot in bots]
            sql_before = await sql_counts(bots, counts)
            cpu_before = {name: cpu_seconds(*ids) for name, ids in pids.items()}
            busy_before = machine_busy_seconds()
            start, measured = await driver.post(args.updates)
            expected = args.warmup + args.updates
            got = await wait_for_replies(http, emulator_root, bot_id, expected, args.timeout)
            cpu_ms = {
                name: (cpu_seconds(*ids) - cpu_before[name]) * 1000 / args.updates
                for name, ids in pids.items()
            }
            cpu_ms["machine"] = (machine_busy_seconds() - busy_before) * 1000 / args.updates
            sql_after = await sql_counts(bots, counts)
            await asyncio.sleep(0.3)  # anything extra (a second message) shows up too
            async with http.get(f"{emulator_root}/bench/{bot_id}/arrivals") as response:
                arrivals = {int(k): v for k, v in (await response.json()).items()}
        figures = _figures(label, driver, start, measured, arrivals, expected, got, system)
        figures.cpu_ms = cpu_ms
        figures.sql = {k: (sql_after[k] - sql_before[k]) / args.updates for k in sql_after}
        return figures
    except BaseException:
        for child in children:
            print(f"--- {child.name} log ---\n{child.tail()}", file=sys.stderr)
        raise
    finally:
        for child in reversed(children):
            child.stop()


async def sql_counts(bots: list[Child], counts: Path | None) -> dict[str, int]:
    """Statements and commits so far, summed over the bot processes (SIGUSR1 → count_sql)."""
    if counts is None:
        return {}
    total: dict[str, int] = defaultdict(int)
    for n, bot in enumerate(bots):
        path = Path(f"{counts}.{n}")
        seen = len(_lines(path))
        bot.proc.send_signal(signal.SIGUSR1)
        for _ in range(500):
            lines = _lines(path)  # a few lines: not worth a thread
            if len(lines) > seen:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"{bot.name} did not report its SQL counts")
        for key, value in json.loads(lines[-1]).items():
            total[key] += value
    return dict(total)


def _figures(
    label: str,
    driver: Driver,
    start: float,
    measured: list[tuple[int, int]],
    arrivals: dict[int, list[list[Any]]],
    expected: int,
    got: int,
    system: str,
) -> Figures:
    problems = [*driver.failures[:5]]
    if len(driver.failures) > 5:
        problems.append(f"... {len(driver.failures)} failed posts in all")
    total = sum(len(v) for v in arrivals.values())
    if total != expected:
        problems.append(f"{total} bot messages for {expected} updates (counted {got} in time)")
    latencies, last = [], start
    wrong = 0
    for chat, index in measured:
        replies = arrivals.get(chat, [])
        if index >= len(replies):
            continue
        at, text = replies[index]
        want = driver.sent[chat][index] if system == "echo" else "ok"
        wrong += text != want
        latencies.append(at - driver.posted[chat][index])
        last = max(last, at)
    if wrong:
        problems.append(f"{wrong} replies with unexpected text (order within a chat?)")
    if len(latencies) < len(measured):
        problems.append(f"{len(measured) - len(latencies)} updates never answered")
    return Figures(label, len(latencies), last - start, latencies, problems)


@contextlib.asynccontextmanager
async def scratch_postgres(url: str) -> Any:
    """A fresh database beside the one `url` names, dropped afterwards."""
    import asyncpg
    from sqlalchemy.engine import make_url

    base = make_url(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    name = f"chatgate_bench_{uuid.uuid4().hex[:8]}"
    plain = base.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_redis(url: str) -> Any:
    """The Redis database `url` names, which must be empty; emptied again afterwards."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        if await redis.dbsize():
            raise SystemExit(f"--redis {url}: the database is not empty; name an empty one")
        try:
            yield url
        finally:
            await redis.flushdb()
    finally:
        await redis.aclose()


async def drive(args: argparse.Namespace) -> int:
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="chatgate-bench-") as tmp:
        logs = Path(tmp)
        sqlite = f"sqlite+aiosqlite:///{tmp}/bench.db"
        results.append(await measure("chatgate", "chatgate-sqlite", args, logs, sqlite))
        if args.postgres:
            async with scratch_postgres(args.postgres) as url:
                results.append(await measure("chatgate", "chatgate-postgres", args, logs, url))
        if args.processes > 1:
            label = f"chatgate-pg-redis×{args.processes}"
            async with scratch_postgres(args.postgres) as url, scratch_redis(args.redis) as redis:
                results.append(
                    await measure(
                        "chatgate",
                        label,
                        args,
                        logs,
                        url,
                        processes=args.processes,
                        redis_url=redis,
                    )
                )
        results.append(await measure("echo", "aiogram-echo", args, logs))
    report(results, args)
    return 1 if any(r.problems for r in results) else 0


def report(results: list[Figures], args: argparse.Namespace) -> None:
    print(
        f"\n{args.updates} updates after {args.warmup} warm-up, {args.concurrency} in flight, "
        f"{args.users} users, {os.cpu_count()} CPUs; latency = post → reply stored by the emulator"
    )
    header = (
        f"{'system':<24}{'updates':>8}{'seconds':>9}{'updates/s':>10}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'CPU ms/update: bot':>20}{'emulator':>9}{'driver':>7}{'machine':>8}"
        f"{'SQL/update':>11}{'commits':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        sql = f"{r.sql['statements']:>11.2f}{r.sql['commits']:>8.2f}" if r.sql else ""
        print(
            f"{r.system:<24}{r.updates:>8}{r.seconds:>9.2f}{r.rate:>10.0f}"
            f"{r.percentile(0.50):>8.1f}{r.percentile(0.99):>8.1f}"
            f"{r.cpu_ms['bot']:>20.2f}{r.cpu_ms['emulator']:>9.2f}{r.cpu_ms['driver']:>7.2f}"
            f"{r.cpu_ms['machine']:>8.2f}{sql}"
        )
    echo = results[-1]
    for r in results[:-1]:
        print(f"ratio {r.system}/echo = {r.rate / echo.rate:.2f} (target ≥ 1.00)")
    for r in results:
        for problem in r.problems:
            print(f"PROBLEM {r.system}: {problem}")
    if args.profile:
        for r in results:
            # A scaled-out run has one profile per process: name-1, name-2, …
            for path in sorted(Path(args.profile).glob(f"{r.system}*.prof")):
                print(f"\n--- {path.stem}: top {args.profile_top} by cumulative time ({path}) ---")
                stats = pstats.Stats(str(path))
                stats.sort_stats("cumulative").print_stats(args.profile_top)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for replies")
    parser.add_argument("--postgres", help="also run chatgate on PostgreSQL (a scratch database)")
    parser.add_argument(
        "--redis", help="with --processes: Redis for the scaled-out run (an empty database)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="also run N chatgate processes (needs --redis)"
    )
    parser.add_argument("--profile", help="cProfile each bot process into this directory")
    parser.add_argument("--profile-top", type=int, default=25)
    # internal: run one piece in this process
    parser.add_argument("--serve", choices=["emulator", "chatgate", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    parser.add_argument("--counts-to", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse(sys.argv[1:])
    if args.serve:
        serve(args)
        return 0
    if args.processes > 1 and not (args.postgres and args.redis):
        raise SystemExit("--processes needs --postgres and --redis: processes share them")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return asyncio.run(drive(args))


if __name__ == "__main__":
    sys.exit(main())

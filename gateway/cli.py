"""The `chatgate` command: run, migrate, and the operator's other verbs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib.metadata import PackageNotFoundError, version

from gateway.config import Settings, SettingsError, load_settings
from gateway.logs import setup_logging

__all__ = ["main"]


def _version() -> str:
    try:
        return version("chatgate")
    except PackageNotFoundError:
        return "0+unknown"


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"chatgate: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(json_lines=settings.log_json, level=settings.log_level)
    return settings


def _run(_args: argparse.Namespace) -> int:
    from bots.dialog import ScriptError
    from flows.loader import FlowErrors
    from gateway.app import NotMigrated, serve

    settings = _settings()
    try:
        asyncio.run(serve(settings))
    except (NotMigrated, ScriptError) as exc:
        print(f"chatgate: {exc}", file=sys.stderr)
        return 2
    except FlowErrors as exc:
        print(f"chatgate: invalid flows in {settings.flows_dir}:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"chatgate: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.migrate import upgrade

    settings = _settings()

    async def go() -> None:
        db = Database(settings.database_url)
        try:
            await upgrade(db.engine)
        finally:
            await db.aclose()

    asyncio.run(go())
    print(f"chatgate: {settings.database_url.split('@')[-1]} is up to date")
    return 0


def _flows_check(args: argparse.Namespace) -> int:
    """Validate a flows folder: each problem as `file:line: where: what`, exit 1 if any."""
    from flows.loader import check_flows, load_flows

    directory = args.directory or _settings().flows_dir
    problems = check_flows(directory)
    if problems:
        for problem in problems:
            print(problem)
        count = len(problems)
        print(f"{count} problem{'s' if count != 1 else ''} in {directory}", file=sys.stderr)
        return 1
    flows = load_flows(directory).flows
    for flow in flows.values():
        trigger = flow.trigger
        start = (
            f"event {trigger.event}"
            if trigger.event
            else f"schedule {trigger.schedule!r}"
            if trigger.schedule
            else "segment entry"
        )
        print(
            f"{flow.name}: {flow.purpose}, {start}, {len(flow.sends())} send(s), "
            f"version {flow.version}"
        )
    print(f"{len(flows)} flow{'s' if len(flows) != 1 else ''} valid in {directory}")
    return 0


def _flows_stats(args: argparse.Namespace) -> int:
    """Print a flow's funnel per step, channel and variant, and its A/B results."""
    from flows.stats import Stats, render_stats
    from storage.db import Database

    settings = _settings()

    async def go() -> str | None:
        db = Database(settings.database_url)
        try:
            stats = await Stats(db).flow(args.name)
        finally:
            await db.aclose()
        return render_stats(stats) if stats.runs else None

    table = asyncio.run(go())
    if table is None:
        print(f"chatgate: no runs of flow {args.name!r}", file=sys.stderr)
        return 1
    print(table)
    return 0


def _broadcast_status(args: argparse.Namespace) -> int:
    """Print a broadcast's progress bar, read from the configured database."""
    from flows.broadcasts import read_progress, render_progress
    from storage.db import Database

    settings = _settings()

    async def go() -> str | None:
        db = Database(settings.database_url)
        try:
            progress = await read_progress(db, args.id)
        finally:
            await db.aclose()
        return None if progress is None else render_progress(progress)

    text = asyncio.run(go())
    if text is None:
        print(f"chatgate: no broadcast {args.id}", file=sys.stderr)
        return 1
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatgate", description="Chatbot-first messenger gateway."
    )
    parser.add_argument("--version", action="version", version=f"chatgate {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("run", help="serve HTTP, bots and workers until stopped").set_defaults(
        handler=_run
    )
    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(
        handler=_migrate
    )
    flows = commands.add_parser("flows", help="automated flows: check the files")
    flow_commands = flows.add_subparsers(dest="flows_command", required=True, metavar="COMMAND")
    check = flow_commands.add_parser("check", help="validate flow files and their templates")
    check.add_argument(
        "directory", nargs="?", help="the flows folder (default: CHATGATE_FLOWS_DIR)"
    )
    check.set_defaults(handler=_flows_check)
    stats = flow_commands.add_parser("stats", help="a flow's funnel and A/B results")
    stats.add_argument("name", help="the flow's name")
    stats.set_defaults(handler=_flows_stats)
    broadcast = commands.add_parser("broadcast", help="broadcasts: progress")
    broadcast_commands = broadcast.add_subparsers(
        dest="broadcast_command", required=True, metavar="COMMAND"
    )
    status = broadcast_commands.add_parser("status", help="a broadcast's progress bar")
    status.add_argument("id", type=int, help="the broadcast's id")
    status.set_defaults(handler=_broadcast_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

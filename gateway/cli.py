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
    from gateway.app import NotMigrated, serve

    settings = _settings()
    try:
        asyncio.run(serve(settings))
    except (NotMigrated, ScriptError) as exc:
        print(f"chatgate: {exc}", file=sys.stderr)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

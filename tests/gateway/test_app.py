"""The runtime as an operator meets it: the command, the health check, a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.app import App, NotMigrated
from gateway.config import load_settings
from gateway.health import Health
from tests.conftest import POSTGRES_URL, free_port, service_missing

CHATGATE = [sys.executable, "-m", "gateway.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env["CHATGATE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'run.db'}"
    env["CHATGATE_SANDBOX"] = "0"
    env.update(extra)
    return env


def test_version() -> None:
    out = subprocess.run([*CHATGATE, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("chatgate ")


def test_malformed_setting_stops_start_naming_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CHATGATE, "run"],
        capture_output=True,
        text=True,
        env=_env(tmp_path, CHATGATE_HTTP_PORT="eighty"),
        cwd=tmp_path,
        timeout=30,
    )
    assert out.returncode == 2
    assert "CHATGATE_HTTP_PORT" in out.stderr


async def test_run_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path, CHATGATE_HTTP_PORT=str(port), CHATGATE_LOG_JSON="1")
    process = await asyncio.create_subprocess_exec(
        *CHATGATE,
        "run",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "is up at" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            assert line, "chatgate exited before it was up"
            banner += line.decode()
        assert "API key is:" in banner  # none configured: one generated and shown
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["database"] == "up"
            async with http.get(f"http://127.0.0.1:{port}/api/customers") as response:
                assert response.status == 401
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0
        assert process.stderr is not None
        logs = (await process.stderr.read()).decode().splitlines()
        events = [json.loads(line)["event"] for line in logs if line.startswith("{")]
        assert "chatgate.started" in events
        assert events[-1] == "chatgate.stopped"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert (tmp_path / "run.db").exists()  # SQLite migrated by `run` itself


async def test_health_reports_a_dead_dependency_with_503() -> None:
    async def down() -> bool:
        raise ConnectionRefusedError

    async def up() -> bool:
        return True

    health = Health()
    health.add("database", up)
    health.add("broker", down)
    assert await health.check() == {"database": True, "broker": False}


async def test_healthz_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    closed = free_port()
    settings = load_settings(
        database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{closed}/none",
        http_port=0,
        sandbox=False,
    )
    app = App(settings)
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(app.web)) as client:
        response = await client.get("/healthz")
        assert response.status == 503
        assert (await response.json())["database"] == "down"
    await app.db.aclose()


async def test_run_refuses_an_unmigrated_postgres() -> None:
    # A fresh schema on the server with nothing in it: `run` must ask for `migrate`.
    import uuid

    import sqlalchemy as sa

    from storage.db import Database

    admin = Database(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except (OSError, sa.exc.DBAPIError) as exc:
        await admin.aclose()
        service_missing("PostgreSQL", exc)
    try:
        settings = load_settings(database_url=POSTGRES_URL, http_port=0, sandbox=False)
        app = App(settings)
        await app.db.aclose()
        app.db = Database(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
        with pytest.raises(NotMigrated, match="chatgate migrate"):
            await app.prepare_database()
        await app.db.aclose()
    finally:
        async with admin.engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.aclose()


def test_migrate_command_brings_a_database_up_to_date(tmp_path: Path) -> None:
    out = subprocess.run(
        [*CHATGATE, "migrate"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout
    assert (tmp_path / "run.db").exists()

"""The real `chatgate flows check` and `chatgate run`, in a subprocess, on good and bad folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.config import SHIPPED_FLOWS


def _chatgate(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "chatgate"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    return subprocess.run(
        [*command, *args],
        cwd=cwd,  # no .env of the checkout is read
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def _bad_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    shutil.copytree(SHIPPED_FLOWS, folder)
    cart = folder / "abandoned_cart.yaml"
    cart.write_text(
        cart.read_text(encoding="utf-8").replace("next_channel_after: 4h", "next_chanel_after: 4h")
    )
    promo = folder / "templates" / "promo_sale.yaml"
    promo.write_text(
        promo.read_text(encoding="utf-8").replace("{{ customer.name", "{{ customer.nam", 1)
    )
    return folder


def test_check_passes_a_good_folder_with_a_summary(tmp_path: Path) -> None:
    result = _chatgate(tmp_path, "flows", "check", str(SHIPPED_FLOWS))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"4 flows valid in {SHIPPED_FLOWS}"
    assert lines[0].startswith(
        "abandoned_cart: marketing, event cart_abandoned, 1 send(s), version "
    )
    assert any(line.startswith("winback: marketing, schedule '0 10 * * 1'") for line in lines)


def test_check_prints_each_problem_with_file_and_line_and_fails(tmp_path: Path) -> None:
    folder = _bad_folder(tmp_path)
    result = _chatgate(tmp_path, "flows", "check", str(folder))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "abandoned_cart.yaml:27: steps[1].send.next_chanel_after: unknown key"
        " 'next_chanel_after' (did you mean 'next_channel_after'?)",
        "templates/promo_sale.yaml:14: email.html: undefined: 'dict object' has no attribute"
        " 'nam' (used by promo_broadcast.yaml steps[1])",
    ]
    assert result.stderr.strip() == f"2 problems in {folder}"


def test_check_without_a_folder_uses_the_setting(tmp_path: Path) -> None:
    folder = _bad_folder(tmp_path)
    assert _chatgate(tmp_path, "flows", "check", CHATGATE_FLOWS_DIR=str(folder)).returncode == 1
    shipped = _chatgate(tmp_path, "flows", "check")  # default: the shipped examples
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert shipped.stdout.splitlines()[-1] == f"4 flows valid in {SHIPPED_FLOWS}"


def test_run_refuses_to_start_with_an_invalid_flow(tmp_path: Path) -> None:
    folder = _bad_folder(tmp_path)
    result = _chatgate(
        tmp_path,
        "run",
        CHATGATE_FLOWS_DIR=str(folder),
        CHATGATE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}",
        CHATGATE_HTTP_PORT="0",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"chatgate: invalid flows in {folder}:" in result.stderr
    assert "abandoned_cart.yaml:27: steps[1].send.next_chanel_after: unknown key" in result.stderr
    assert "templates/promo_sale.yaml:14: email.html: undefined" in result.stderr
    assert "chatgate is up" not in result.stdout

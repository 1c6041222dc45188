"""``cli.py config check`` as a user runs it: a real process, real files, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        check=False,
        text=True,
        cwd=ROOT,
        timeout=60,
        env=env,
    )


def test_config_check_when_shipped_configs_then_exit_zero_and_every_file_ok() -> None:
    result = run_cli("config", "check", "--json")
    assert result.returncode == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["ok"] is True
    assert {Path(row["file"]).name for row in envelope["result"]} >= {"trader.yaml"}


def test_config_check_when_a_file_is_broken_then_exit_nonzero_and_the_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "trader.yaml").write_text("ib:\n  port: seven\n")
    result = run_cli("config", "check", "--dir", str(tmp_path))
    assert result.returncode == 1
    path = tmp_path / "trader.yaml"
    assert f"error: {path}: ib.port: expected an integer, got 'seven'\n" in result.stderr
    assert "invalid" in result.stdout

    as_json = json.loads(run_cli("config", "check", "--dir", str(tmp_path), "--json").stdout)
    assert as_json["ok"] is False and as_json["error"]["code"] == "invalid_config"
    assert "ib.port" in as_json["result"][0]["error"]

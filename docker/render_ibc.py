#!/usr/bin/env python3
"""Render IBC's config.ini from the environment (standard library only).

    python docker/render_ibc.py --out ~/ibc/config.ini [--template FILE] [--print-env]

docker/entrypoint.sh runs this at every start of the container in ``BOURSE_BROKER=ib`` mode. The
settings, each from one variable:

======================================  ==========================  ===========================
variable                                IBC setting                 default
======================================  ==========================  ===========================
BOURSE_IBC_USER (required)              IbLoginId
BOURSE_IBC_PASSWORD_FILE (required)     IbPassword (the file's      (a Docker secret:
                                        first line)                 /run/secrets/ib_password)
BOURSE_RISK_TRADING_MODE                TradingMode                 paper
BOURSE_IBC_AUTO_RESTART_TIME            AutoRestartTime             11:45 PM
BOURSE_IBC_TWOFA_TIMEOUT_ACTION         ReloginAfter.../ExitAfter   restart
                                        SecondFactor...Timeout
BOURSE_IBC_EXISTING_SESSION             ExistingSessionDetected...  primary
BOURSE_IBC_COMMAND_SERVER_PORT          CommandServerPort           7462 (0: off)
BOURSE_IB_PORT                          OverrideTwsApiPort          4002
======================================  ==========================  ===========================

A missing required variable or an invalid value is one ``error:`` line naming the variable, exit
status 2, and nothing is written. The file is written atomically with mode 0600 (it holds the
password). ``--print-env`` prints what IBC's start script needs from the same settings as
``NAME=value`` lines (TRADING_MODE, TWOFA_TIMEOUT_ACTION), for the entrypoint to export.

config.ini is read by Java's ``Properties.load``: values are escaped accordingly (backslashes,
leading spaces, control and non-Latin-1 characters), so any password survives unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template

TEMPLATE = Path(__file__).resolve().parent / "ibc" / "config.ini.tmpl"

API_PORT = 4002
"""TWS/Gateway's API port inside the container: configs/pycron_docker.yaml probes it."""

RESTART_TIME = re.compile(r"(0[1-9]|1[0-2]):[0-5][0-9] (AM|PM)")
TWOFA_ACTIONS = ("restart", "exit")
SESSION_ACTIONS = ("primary", "primaryoverride", "secondary", "manual")
TRADING_MODES = ("paper", "live")


class RenderError(Exception):
    """A missing or invalid variable: the message names it."""


@dataclass(frozen=True, slots=True)
class IbcSettings:
    user: str
    password: str
    trading_mode: str
    auto_restart_time: str
    twofa_timeout_action: str
    existing_session_action: str
    command_server_port: int
    api_port: int

    def start_script_env(self) -> dict[str, str]:
        """What IBC's start script (ibcstart.sh) takes from the same settings."""
        return {"TRADING_MODE": self.trading_mode, "TWOFA_TIMEOUT_ACTION": self.twofa_timeout_action}


def settings_from(environ: Mapping[str, str]) -> IbcSettings:
    missing = [name for name in ("BOURSE_IBC_USER", "BOURSE_IBC_PASSWORD_FILE") if not environ.get(name)]
    if missing:
        raise RenderError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: IBC needs the IB "
            "login name (BOURSE_IBC_USER) and a file holding the password (BOURSE_IBC_PASSWORD_FILE, "
            "a Docker secret such as /run/secrets/ib_password); see docs/deploy.md"
        )
    user = environ["BOURSE_IBC_USER"].strip()
    if not user or any(ch.isspace() for ch in user):
        raise RenderError(f"BOURSE_IBC_USER={environ['BOURSE_IBC_USER']!r}: expected an IB login name")
    return IbcSettings(
        user=user,
        password=read_password(environ["BOURSE_IBC_PASSWORD_FILE"]),
        trading_mode=choice(environ, "BOURSE_RISK_TRADING_MODE", "paper", TRADING_MODES),
        auto_restart_time=restart_time(environ),
        twofa_timeout_action=choice(environ, "BOURSE_IBC_TWOFA_TIMEOUT_ACTION", "restart", TWOFA_ACTIONS),
        existing_session_action=choice(environ, "BOURSE_IBC_EXISTING_SESSION", "primary", SESSION_ACTIONS),
        command_server_port=port(environ, "BOURSE_IBC_COMMAND_SERVER_PORT", 7462, allow_zero=True),
        api_port=api_port(environ),
    )


def read_password(path_text: str) -> str:
    path = Path(path_text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RenderError(
            f"BOURSE_IBC_PASSWORD_FILE={path_text}: cannot read it ({exc.strerror or exc})"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(f"BOURSE_IBC_PASSWORD_FILE={path_text}: not UTF-8 text") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise RenderError(f"BOURSE_IBC_PASSWORD_FILE={path_text}: the file is empty")
    return password


def choice(environ: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = environ.get(name, "").strip().lower() or default
    if value not in allowed:
        raise RenderError(f"{name}={environ[name]!r}: expected one of {', '.join(allowed)}")
    return value


def restart_time(environ: Mapping[str, str]) -> str:
    name = "BOURSE_IBC_AUTO_RESTART_TIME"
    value = " ".join(environ.get(name, "").split()).upper() or "11:45 PM"
    if not RESTART_TIME.fullmatch(value):
        raise RenderError(f"{name}={environ[name]!r}: expected hh:mm AM|PM (12-hour clock, e.g. '11:45 PM')")
    return value


def port(environ: Mapping[str, str], name: str, default: int, *, allow_zero: bool = False) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    low = 0 if allow_zero else 1
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise RenderError(f"{name}={text!r}: expected a port number {low}..65535")
    return int(text)


def api_port(environ: Mapping[str, str]) -> int:
    value = port(environ, "BOURSE_IB_PORT", API_PORT)
    if value != API_PORT:
        raise RenderError(
            f"BOURSE_IB_PORT={value}: in the container TWS/IB Gateway's API port is {API_PORT} for TWS "
            "and the Gateway, paper and live (IBC sets it; configs/pycron_docker.yaml probes it); "
            "leave BOURSE_IB_PORT unset"
        )
    return value


def escape_value(value: str) -> str:
    """``value`` as Java's ``Properties.load`` reads it back unchanged."""
    out: list[str] = []
    for index, ch in enumerate(value):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[ch])
        elif ch == " " and index == 0:
            out.append("\\ ")
        elif code < 0x20 or 0x7F <= code < 0xA0 or code > 0xFF:
            encoded = ch.encode("utf-16-be")
            out.extend(
                f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04X}" for i in range(0, len(encoded), 2)
            )
        else:
            out.append(ch)
    return "".join(out)


def render(settings: IbcSettings, template: str) -> str:
    relogin = settings.twofa_timeout_action == "restart"
    values = {
        "ib_login_id": settings.user,
        "ib_password": settings.password,
        "trading_mode": settings.trading_mode,
        "relogin_after_2fa_timeout": "yes" if relogin else "no",
        "exit_after_2fa_timeout": "no" if relogin else "yes",
        "existing_session_action": settings.existing_session_action,
        "auto_restart_time": settings.auto_restart_time,
        "api_port": str(settings.api_port),
        "command_server_port": str(settings.command_server_port),
    }
    if settings.command_server_port == settings.api_port:
        raise RenderError(
            f"BOURSE_IBC_COMMAND_SERVER_PORT={settings.command_server_port}: the same as the API port"
        )
    return Template(template).substitute({key: escape_value(value) for key, value in values.items()})


def write_private(path: Path, text: str) -> None:
    """Write ``text`` (Latin-1, as Java reads it; anything else is escaped) atomically, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="latin-1", newline="\n") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render IBC's config.ini from the environment.")
    parser.add_argument("--out", required=True, type=Path, help="the config.ini to write (mode 0600)")
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="default: docker/ibc/config.ini.tmpl")
    parser.add_argument(
        "--print-env", action="store_true", help="print TRADING_MODE=... and TWOFA_TIMEOUT_ACTION=..."
    )
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        settings = settings_from(env)
        text = render(settings, args.template.read_text(encoding="utf-8"))
        write_private(args.out, text)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.print_env:
        for name, value in settings.start_script_env().items():
            print(f"{name}={value}")
    print(
        f"IBC settings written to {args.out} (user {settings.user}, {settings.trading_mode}, "
        f"auto-restart {settings.auto_restart_time}, 2FA timeout: {settings.twofa_timeout_action}, "
        f"existing session: {settings.existing_session_action}, command server port "
        f"{settings.command_server_port or 'off'})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``cli.py resolve|snapshot|subscribe|universes|history`` as a user runs them: real processes (a paper
exchange with a fast market and a trader service, :func:`cli_system`), exit codes, human output and
the ``--json`` envelopes. Waits are on the trader's state (IB connected) or on received ticks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_fixtures import CliSystem
from tests.integration.exchange_fixtures import con_id
from tests.integration.test_trader_orders import wait_connected
from tests.support import free_endpoint
from trader.messaging.rpc import AsyncRpcClient

pytestmark = pytest.mark.integration

AAPL = con_id("AAPL")
MSFT = con_id("MSFT")
SPY = con_id("SPY")


@pytest.fixture(scope="module")
def system(cli_system: CliSystem) -> CliSystem:
    """The module's exchange + trader, once the trader's IB session is connected."""

    async def connected() -> None:
        async with AsyncRpcClient(cli_system.trader.rpc, timeout=10.0) as rpc:
            await wait_connected(rpc)

    asyncio.run(connected())
    return cli_system


def ok(system: CliSystem, *args: str) -> Any:
    """The ``result`` of ``cli.py --json <args>`` (which must succeed)."""
    result = system.cli("--json", *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    envelope = result.json()
    assert envelope["ok"] is True
    return envelope["result"]


def human(system: CliSystem, *args: str) -> str:
    result = system.cli(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert result.stderr == ""
    return result.stdout


# -- resolve, snapshot ------------------------------------------------------------------------------


def test_resolve_when_known_symbol_then_contract_shown_and_json_has_the_con_id(system: CliSystem) -> None:
    out = human(system, "resolve", "--symbol", "AAPL")
    assert str(AAPL) in out and "NASDAQ" in out and "local symbol" in out

    contract = ok(system, "resolve", "--symbol", "AAPL")
    assert contract["conId"] == AAPL and contract["symbol"] == "AAPL" and contract["secType"] == "STK"
    assert ok(system, "resolve", "--symbol", str(AAPL))["localSymbol"] == "AAPL"  # digits: a conId

    fx = ok(system, "resolve", "--symbol", "EUR", "--sec-type", "CASH", "--exchange", "IDEALPRO")
    assert fx["localSymbol"] == "EUR.USD"


def test_resolve_when_unknown_symbol_then_exit_1_with_the_traders_message(system: CliSystem) -> None:
    result = system.cli("resolve", "--symbol", "NOSUCH")
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert (
        line.startswith("error: unknown contract STK NOSUCH SMART USD") and "No security definition" in line
    )

    as_json = system.cli("resolve", "--symbol", "NOSUCH", "--json")
    assert as_json.returncode == 1
    assert as_json.json()["error"]["code"] == "unknown_contract"


def test_snapshot_when_symbol_then_one_quote_and_delayed_says_the_data_are_live(system: CliSystem) -> None:
    out = human(system, "snapshot", "--symbol", "AAPL")
    assert f"AAPL (conId {AAPL})" in out and "bid" in out and "live" in out and "--delayed" not in out

    quote = ok(system, "snapshot", "--symbol", "AAPL")
    assert quote["symbol"] == "AAPL" and quote["con_id"] == AAPL
    assert 0 < quote["bid"] <= quote["ask"] and quote["delayed"] is False
    assert {"time", "last", "bid_size", "ask_size", "last_size", "volume"} <= quote.keys()

    delayed = ok(system, "snapshot", "--symbol", "AAPL", "--delayed")
    assert delayed["delayed_requested"] is True and delayed["delayed"] is False
    assert "live" in delayed["note"] and "no market data type parameter" in delayed["note"]
    words = " ".join(human(system, "snapshot", "--symbol", "AAPL", "--delayed").split())
    assert "The paper exchange's data are live" in words

    unknown = system.cli("snapshot", "--symbol", "NOSUCH")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: unknown contract")


# -- universes --------------------------------------------------------------------------------------


def test_universes_when_full_lifecycle_then_each_step_is_stored_and_shown(system: CliSystem) -> None:
    assert "tech" not in [u["name"] for u in ok(system, "universes", "list")]

    created = ok(system, "universes", "create", "tech", "AAPL", "MSFT")
    assert created["created"] is True and created["count"] == 2
    assert [(m["symbol"], m["con_id"]) for m in created["members"]] == [("AAPL", AAPL), ("MSFT", MSFT)]

    again = system.cli("universes", "create", "tech", "SPY")
    assert again.returncode == 1 and "already exists" in again.stderr

    refused = system.cli("universes", "add", "tech", "SPY", "NOSUCH")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: not a known instrument: NOSUCH: unknown contract")
    assert ok(system, "universes", "get", "tech")["count"] == 2  # nothing written

    added = ok(system, "universes", "add", "tech", "SPY", "AAPL")
    assert added["added"] == [SPY] and [m["symbol"] for m in added["members"]] == ["AAPL", "MSFT", "SPY"]
    assert {"name": "tech", "count": 3} in ok(system, "universes", "list")

    removed = ok(system, "universes", "remove", "tech", "MSFT")
    assert removed["removed"] == [MSFT] and [m["con_id"] for m in removed["members"]] == [AAPL, SPY]
    missing = system.cli("universes", "remove", "tech", "MSFT")
    assert missing.returncode == 1 and "not in universe 'tech': MSFT" in missing.stderr

    shown = human(system, "universes", "get", "tech")
    assert "universe tech (2 members)" in shown and "SPY" in shown and "MSFT" not in shown
    assert "tech" in human(system, "universes", "list")

    replaced = ok(system, "universes", "create", "tech", "MSFT", "--replace")
    assert replaced["created"] is False and [m["symbol"] for m in replaced["members"]] == ["MSFT"]

    unconfirmed = system.cli("universes", "destroy", "tech")
    assert unconfirmed.returncode == 1 and "pass --yes" in unconfirmed.stderr
    assert human(system, "universes", "destroy", "tech", "--yes").strip() == "deleted universe tech"
    gone = system.cli("universes", "get", "tech", "--json")
    assert gone.returncode == 1 and gone.json()["error"]["code"] == "unknown_universe"
    assert "tech" not in [u["name"] for u in ok(system, "universes", "list")]


# -- history ----------------------------------------------------------------------------------------


def test_history_when_fetched_then_read_and_summary_show_the_stored_bars(
    system: CliSystem, tmp_path: Path
) -> None:
    csv = tmp_path / "msft.csv"
    # 2 days: right after the exchange's midnight, today alone holds a single 5-minute bar
    fetched = ok(
        system, "history", "get", "--symbol", "MSFT", "--bar-size", "5 mins", "--days", "2",
        "--rows", "3", "--csv", str(csv),
    )  # fmt: skip
    assert fetched["rows"] > 3 and len(fetched["tail"]) == 3 and fetched["source"] == "get_history"
    assert fetched["tail"][-1]["time"] == fetched["last"]
    assert {"open", "high", "low", "close", "volume", "wap", "count"} <= fetched["tail"][0].keys()
    lines = csv.read_text().splitlines()
    assert lines[0] == "time,open,high,low,close,volume,wap,count" and len(lines) == fetched["rows"] + 1

    stored = ok(system, "history", "read", "--symbol", "MSFT", "--bar-size", "5 mins")
    assert stored["source"] == "store" and stored["first"] == fetched["first"]
    assert fetched["rows"] - 1 <= stored["rows"] <= fetched["rows"]  # the open bar is not stored
    window = ok(
        system, "history", "read", "--symbol", "MSFT", "--bar-size", "5 mins",
        "--start", fetched["first"], "--end", fetched["tail"][0]["time"],
    )  # fmt: skip
    assert window["first"] == fetched["first"] and window["last"] == fetched["tail"][0]["time"]

    (series,) = [s for s in ok(system, "history", "summary") if s["con_id"] == MSFT]
    assert series["symbol"] == "MSFT" and series["bar_size"] == "5 mins"
    assert series["rows"] == stored["rows"] and series["first"] == stored["first"]
    table = human(system, "history", "summary")
    assert "stored bars" in table and "MSFT" in table and "5 mins" in table

    shown = human(system, "history", "read", "--symbol", "MSFT", "--bar-size", "5 mins", "--rows", "2")
    assert "MSFT 5 mins bars (store)" in shown and "last 2 bars" in shown
    empty = ok(system, "history", "read", "--symbol", "MSFT", "--bar-size", "1 hour")
    assert empty["rows"] == 0 and empty["tail"] == []
    bad = system.cli("history", "read", "--symbol", "MSFT", "--bar-size", "7 fortnights")
    assert bad.returncode == 1 and "unknown bar size" in bad.stderr


# -- subscribe --------------------------------------------------------------------------------------


def test_subscribe_when_started_then_listen_prints_ticks_and_stop_unsubscribes(system: CliSystem) -> None:
    (info,) = ok(system, "subscribe", "start", "--symbol", "AAPL")
    assert info["topic"] == "AAPL" and info["con_id"] == AAPL and "cli" in info["owners"]

    out = human(system, "subscribe", "listen", "--symbol", "AAPL", "--count", "3")
    lines = out.splitlines()
    assert len(lines) == 3 and all(" AAPL " in line and " bid " in line and " ask " in line for line in lines)

    as_json = system.cli("--json", "subscribe", "listen", "--symbol", "AAPL", "--count", "3")
    assert as_json.returncode == 0, as_json.stderr
    ticks = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(ticks) == 3 and {t["symbol"] for t in ticks} == {"AAPL"}
    assert all(t["con_id"] == AAPL and t["bid"] > 0 and "time" in t for t in ticks)

    (listed,) = [s for s in ok(system, "subscribe", "list", "--owner", "cli") if s["con_id"] == AAPL]
    assert listed["ticks"] >= 6
    assert "AAPL" in human(system, "subscribe", "list")

    assert ok(system, "subscribe", "stop", "--symbol", "AAPL") == {"unsubscribed": 1}
    assert ok(system, "subscribe", "list", "--owner", "cli") == []
    assert human(system, "subscribe", "stop").strip() == "unsubscribed 0 (owner cli)"


def test_subscribe_start_when_universe_with_bar_size_then_every_member_streams(system: CliSystem) -> None:
    ok(system, "universes", "create", "pair", "AAPL", "SPY", "--replace")
    infos = ok(system, "subscribe", "start", "--universe", "pair", "--bar-size", "5 secs")
    assert sorted(i["con_id"] for i in infos) == sorted([AAPL, SPY])
    assert all([b["bar_size"] for b in i["bars"]] == ["5 secs"] for i in infos)
    table = human(system, "subscribe", "list", "--owner", "cli")
    assert "SPY" in table and "5 secs" in table

    assert ok(system, "subscribe", "stop")["unsubscribed"] == 2
    nothing = system.cli("subscribe", "start")
    assert nothing.returncode == 1 and "give --symbol" in nothing.stderr
    ok(system, "universes", "destroy", "pair", "--yes")


# -- the trader down --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("resolve", "--symbol", "AAPL"),
        ("snapshot", "--symbol", "AAPL"),
        ("subscribe", "start", "--symbol", "AAPL"),
        ("subscribe", "list"),
        ("subscribe", "stop"),
        ("subscribe", "listen", "--count", "1"),
        ("universes", "list"),
        ("history", "summary"),
        ("history", "get", "--symbol", "AAPL"),
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_command_when_trader_down_then_exit_2_with_one_line(system: CliSystem, args: tuple[str, ...]) -> None:
    down = free_endpoint()
    result = system.cli(*args, env={"BOURSE_ZMQ_RPC": down, "BOURSE_ZMQ_TICKS": free_endpoint()})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert (
        result.stderr == f"error: the trader service is not answering at {down} (start it with ./start.sh)\n"
    )
    assert result.stdout == ""

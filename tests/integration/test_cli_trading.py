"""``cli.py`` trading commands as a user runs them: trade, book, positions, portfolio, pnl, account.

Every test drives ``cli.py`` in a subprocess against one paper exchange + trader service per module
(``cli_system``; IB account DU1234567, a paper account, so no confirmation is asked), with its own
strategy names. The confirmation of orders on a live account runs against a second system whose
exchange reports account U7654321. Waits poll the trader's RPC with a deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.cli_fixtures import CliResult, CliSystem, cli_environment
from tests.integration.exchange_fixtures import anchor_price, start_exchange
from tests.integration.test_trader_orders import start_trader
from tests.support import Processes, free_endpoint
from trader.messaging.rpc import RpcClient

pytestmark = pytest.mark.integration

COID = r"cli-\d{14}-[0-9a-f]{6}"
LIVE_ACCOUNT = "U7654321"


# -- helpers ------------------------------------------------------------------------------------------


def rpc_until(
    system: CliSystem, method: str, done: Callable[[Any], bool], within: float = 20.0, **params: Any
) -> Any:
    """Call ``method`` on the trader until ``done(result)``; fails with the last result."""
    deadline = time.monotonic() + within
    with RpcClient(system.trader.rpc, timeout=5.0) as rpc:
        while True:
            result = rpc.call(method, params)
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{method}: not done within {within}s; last: {result!r}")
            time.sleep(0.05)


def connected(system: CliSystem) -> None:
    rpc_until(system, "status", lambda s: s["ib"]["state"] == "connected")


def run(system: CliSystem, line: str, **kw: Any) -> CliResult:
    """``cli.py <line>`` (split on spaces)."""
    return system.cli(*line.split(), **kw)


def ok(result: CliResult) -> CliResult:
    assert result.returncode == 0, (
        f"cli.py {result.args}: {result.returncode}\n{result.stdout}{result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result


def ok_json(system: CliSystem, line: str, **kw: Any) -> Any:
    """``cli.py <line> --json``: the result of an ok envelope."""
    envelope = ok(run(system, f"{line} --json", **kw)).json()
    assert envelope["ok"] is True, envelope
    return envelope["result"]


def place_json(system: CliSystem, line: str) -> dict[str, Any]:
    """``cli.py trade <line> --json``: the reply (created, order, children)."""
    reply: dict[str, Any] = ok_json(system, f"trade {line}")
    assert re.fullmatch(COID, reply["order"]["client_order_id"]), reply
    return reply


def low(symbol: str) -> str:
    """A BUY limit far below the market (rests)."""
    return f"{anchor_price(symbol) * 0.5:.2f}"


def high(symbol: str) -> str:
    """A SELL limit far above the market (rests)."""
    return f"{anchor_price(symbol) * 3:.2f}"


def one_error_line(result: CliResult) -> str:
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliSystem]:
    """An exchange whose account is not a paper account (U7654321) + a trader on it."""
    procs = Processes()
    try:
        data_dir = tmp_path_factory.mktemp("cli-live")
        exchange = start_exchange(procs, data_dir / "exchange", env={"BOURSE_ACCOUNT_ID": LIVE_ACCOUNT})
        live = {"BOURSE_RISK_TRADING_MODE": "live"}  # the trader refuses a live account otherwise
        trader = start_trader(procs, data_dir, exchange.port, env=live)
        yield CliSystem(exchange, trader, data_dir, cli_environment(exchange, trader, data_dir))
    finally:
        procs.stop_all()


# -- placing and the book -------------------------------------------------------------------------------


def test_buy_when_market_order_then_filled_and_positions_pnl_portfolio_fills_show_it(
    cli_system: CliSystem,
) -> None:
    connected(cli_system)
    human = ok(run(cli_system, "trade buy --symbol AAPL --market --quantity 10 --strategy clibuy"))
    match = re.fullmatch(rf"BUY 10 AAPL MKT \(clibuy, ({COID})\): Filled 10 @ (\d+\.\d\d+)\n", human.stdout)
    assert match, human.stdout
    coid, fill_price = match.group(1), float(match.group(2))
    reply = place_json(cli_system, "buy --symbol AAPL --market --quantity 5 --strategy clibuy")
    order = reply["order"]
    assert reply["created"] is True and reply["children"] == []
    assert (order["state"], order["filled"], order["strategy"]) == ("Filled", 5.0, "clibuy")

    (position,) = ok_json(cli_system, "positions --strategy clibuy")
    assert (position["symbol"], position["quantity"], position["fills"]) == ("AAPL", 15.0, 2)
    table = ok(run(cli_system, "positions --strategy clibuy")).stdout
    assert "positions of DU1234567" in table and re.search(r"│ clibuy\s+│ AAPL\s+│\s+15 │", table), table

    pnl = ok_json(cli_system, "pnl --strategy clibuy")
    assert list(pnl["by_strategy"]) == ["clibuy"] and pnl["total"]["commissions"] > 0
    assert pnl["total"]["total"] == pytest.approx(pnl["by_strategy"]["clibuy"]["total"])
    table = ok(run(cli_system, "pnl --strategy clibuy")).stdout
    assert re.search(r"│ clibuy\s+│", table) and re.search(r"│ total\s+│", table), table

    fills = ok_json(cli_system, "book fills --strategy clibuy")
    assert [f["client_order_id"] for f in fills] == [coid, order["client_order_id"]]
    assert fills[0]["price"] == pytest.approx(fill_price) and fills[0]["side"] == "BOT"
    table = ok(run(cli_system, "book fills --strategy clibuy")).stdout
    assert coid in table and "BOT" in table
    assert ok_json(cli_system, "book fills --strategy clibuy --since 2200-01-01") == []
    assert ok(run(cli_system, "book fills --strategy clibuy --since 2200-01-01")).stdout == "no fills\n"

    trades = ok_json(cli_system, "book trades --strategy clibuy")
    assert [len(t["fills"]) for t in trades] == [1, 1]
    assert coid in ok(run(cli_system, "book trades --strategy clibuy")).stdout

    rpc_until(cli_system, "get_portfolio", lambda rows: any(r["symbol"] == "AAPL" for r in rows))
    assert any(r["symbol"] == "AAPL" and r["position"] >= 15 for r in ok_json(cli_system, "portfolio"))
    assert re.search(r"│ DU1234567 │ AAPL\s+│", ok(run(cli_system, "portfolio")).stdout)


def test_account_when_paper_then_key_values_first_and_all_lists_every_tag(cli_system: CliSystem) -> None:
    connected(cli_system)
    key = ok_json(cli_system, "account")
    assert key["account"] == "DU1234567" and key["connected"] is True
    assert list(key["values"])[:2] == ["NetLiquidation", "TotalCashValue"]
    assert "AccountType" not in key["values"] and key["values"]["NetLiquidation"]["USD"] > 0
    every = ok_json(cli_system, "account --all")
    assert set(every["values"]) > set(key["values"]) and "AccountType" in every["values"]
    table = ok(run(cli_system, "account")).stdout
    assert "account DU1234567 (connected)" in table
    assert table.index("NetLiquidation") < table.index("BuyingPower") < table.index("RealizedPnL")
    assert "AccountType" in ok(run(cli_system, "account --all")).stdout


def test_limit_order_when_resting_then_book_orders_shows_it_and_book_cancel_cancels_it(
    cli_system: CliSystem,
) -> None:
    connected(cli_system)
    limit = low("MSFT")
    placed = ok(
        run(cli_system, f"trade buy --symbol MSFT --limit {limit} --quantity 3 --tif gtc --strategy clilmt")
    )
    match = re.fullmatch(rf"BUY 3 MSFT LMT {limit} GTC \(clilmt, ({COID})\): Submitted\n", placed.stdout)
    assert match, placed.stdout
    coid = match.group(1)

    (order,) = ok_json(cli_system, "book orders --strategy clilmt")
    assert (order["client_order_id"], order["state"], order["working"]) == (coid, "Submitted", True)
    table = ok(run(cli_system, "book orders --strategy clilmt")).stdout
    assert re.search(rf"│ {coid}\s+│ clilmt\s+│ BUY 3 MSFT LMT {limit} GTC\s+│ Submitted", table), table

    cancelled = ok(run(cli_system, f"book cancel --order-id {coid} --strategy clilmt"))
    assert cancelled.stdout == f"cancel BUY 3 MSFT LMT {limit} GTC (clilmt, {coid}): Cancelled\n"
    assert ok(run(cli_system, "book orders --strategy clilmt")).stdout == "working orders of clilmt: none\n"
    assert ok_json(cli_system, "book orders --strategy clilmt") == []
    (done,) = ok_json(cli_system, "book orders --all --strategy clilmt")
    assert done["state"] == "Cancelled"

    log = ok_json(cli_system, f"book log --order-id {coid}")
    assert [e["event"] for e in log] == ["placed", "state"] and log[-1]["detail"].startswith("Cancelled")
    assert re.search(
        rf"│ {coid}\s+│ clilmt\s+│ placed\s+│ BUY 3 MSFT LMT", ok(run(cli_system, "book log")).stdout
    )

    again = run(cli_system, f"book cancel --order-id {coid}")
    assert again.returncode == 1 and one_error_line(again) == f"error: order {coid} is already Cancelled"
    unknown = run(cli_system, "book log --order-id no-such-order")
    assert unknown.returncode == 1 and one_error_line(unknown) == "error: no order no-such-order"


def test_limit_order_when_modified_then_new_terms_and_trade_cancel_cancels_it(cli_system: CliSystem) -> None:
    connected(cli_system)
    reply = place_json(cli_system, f"buy --symbol IBM --limit {low('IBM')} --quantity 2 --strategy climod")
    coid, limit = reply["order"]["client_order_id"], f"{float(low('IBM')) - 1:.2f}"

    human = ok(run(cli_system, f"trade modify --order-id {coid} --limit {limit} --quantity 4"))
    assert human.stdout == f"modified BUY 4 IBM LMT {limit} (climod, {coid}): Submitted\n"
    modified = ok_json(cli_system, f"trade modify --order-id {coid} --quantity 5 --strategy climod")
    assert (modified["order"]["quantity"], modified["order"]["limit_price"]) == (5.0, float(limit))

    result = ok_json(cli_system, f"trade cancel --order-id {coid}")
    assert result["order"]["state"] == "Cancelled" and result["order"]["client_order_id"] == coid
    too_late = run(cli_system, f"trade modify --order-id {coid} --limit {limit}")
    assert too_late.returncode == 1 and coid in one_error_line(too_late)


def test_cancel_all_when_orders_work_then_each_is_cancelled_and_listed(cli_system: CliSystem) -> None:
    connected(cli_system)
    ids = [
        place_json(cli_system, f"buy --symbol {s} --limit {low(s)} --quantity 1 --strategy cliall")["order"]
        for s in ("XOM", "WMT")
    ]
    human = ok(run(cli_system, "trade cancel-all --strategy cliall"))
    lines = human.stdout.splitlines()
    assert len(lines) == 2 and all(line.endswith("): Cancelled") for line in lines), human.stdout
    assert all(any(o["client_order_id"] in line for line in lines) for o in ids)
    assert ok(run(cli_system, "trade cancel-all --strategy cliall")).stdout == "no working orders to cancel\n"

    third = place_json(cli_system, f"sell --symbol WMT --limit {high('WMT')} --quantity 1 --strategy cliall")
    result = ok_json(cli_system, "trade cancel-all --strategy cliall")
    assert result["cancelled"] == [third["order"]["client_order_id"]] and result["errors"] == {}
    assert [o["state"] for o in result["orders"]] == ["Cancelled"]


def test_bracket_when_take_profit_and_stop_loss_pct_then_children_priced_and_working(
    cli_system: CliSystem,
) -> None:
    connected(cli_system)
    limit, take_profit = float(low("SPY")), f"{anchor_price('SPY') * 2:.2f}"
    bracket = f"--take-profit {take_profit} --strategy clibrk --stop-loss-pct"
    rest = place_json(cli_system, f"buy --symbol SPY --limit {limit} --quantity 2 {bracket} 10")
    tp, sl = rest["children"]
    assert tp["client_order_id"] == rest["order"]["client_order_id"] + ".tp"
    assert (tp["action"], tp["order_type"], tp["limit_price"]) == ("SELL", "LMT", float(take_profit))
    assert (sl["action"], sl["order_type"], sl["aux_price"]) == ("SELL", "STP", round(limit * 0.9, 2))

    human = ok(run(cli_system, f"trade buy --symbol SPY --market --quantity 2 {bracket} 5"))
    parent, tp_line, sl_line = human.stdout.splitlines()
    filled = re.fullmatch(rf"BUY 2 SPY MKT \(clibrk, {COID}\): Filled 2 @ (\d+\.\d+)", parent)
    assert filled, human.stdout
    assert tp_line.startswith(f"  take profit: SELL 2 SPY LMT {take_profit} (clibrk, ")
    stop = re.fullmatch(rf"  stop loss: SELL 2 SPY STP (\d+\.\d\d) \(clibrk, {COID}\.sl\): \w+", sl_line)
    assert stop, sl_line
    assert float(stop.group(1)) == pytest.approx(float(filled.group(1)) * 0.95, rel=0.01)  # from the quote
    # the resting parent with its two children, and the filled one's two children
    rpc_until(cli_system, "get_orders", lambda rows: len(rows) == 5, strategy="clibrk", open_only=True)
    assert len(ok_json(cli_system, "trade cancel-all --strategy clibrk")["cancelled"]) == 5


def test_trade_twap_and_iceberg_when_run_then_algos_lists_them_and_cancel_algo_stops_one(
    cli_system: CliSystem,
) -> None:
    connected(cli_system)
    twap = ok_json(
        cli_system,
        "trade twap --symbol NKE --buy --quantity 6 --duration 2s --slices 2 --style market"
        " --strategy clialgo",
    )
    assert (twap["algo"], twap["action"], twap["quantity"]) == ("twap", "BUY", 6.0)
    assert re.fullmatch(COID, twap["client_order_id"]), twap
    done = rpc_until(
        cli_system,
        "get_algos",
        lambda rows: rows[0]["state"] == "done",
        client_order_id=twap["client_order_id"],
    )
    assert done[0]["reason"] == "filled" and done[0]["filled"] == 6.0
    ice = ok(
        run(
            cli_system,
            f"trade iceberg --symbol NKE --buy --quantity 30 --display 10 --limit {low('NKE')}"
            " --strategy clialgo",
        )
    )
    line = ice.stdout.splitlines()[0]
    assert re.fullmatch(rf"iceberg BUY 30 NKE \(clialgo, ({COID})\): running, 0 filled, 10 working", line), (
        ice.stdout
    )
    parent = line.split(", ")[1].split(")")[0]
    listed = ok(run(cli_system, "trade algos --strategy clialgo")).stdout
    assert "twap BUY 6 NKE" in listed and "done (filled)" in listed and parent in listed
    assert ok_json(cli_system, "trade algos --active --strategy clialgo")[0]["client_order_id"] == parent
    cancelled = ok(run(cli_system, f"trade cancel-algo --order-id {parent}")).stdout
    assert "done (cancelled)" in cancelled.splitlines()[0], cancelled
    rpc_until(cli_system, "get_orders", lambda rows: rows == [], strategy="clialgo", open_only=True)
    usage = run(cli_system, "trade twap --symbol NKE --buy --sell --quantity 1 --duration 1m")
    assert usage.returncode == 2 and "exactly one of --buy and --sell" in usage.stderr
    bad = run(cli_system, "trade twap --symbol NKE --buy --quantity 1 --duration soon")
    assert bad.returncode == 2 and "expected a duration" in bad.stderr


def test_trade_protect_and_oco_when_long_then_exits_sized_to_the_position(cli_system: CliSystem) -> None:
    connected(cli_system)
    place_json(cli_system, "buy --symbol DIS --market --quantity 3 --strategy cliprot")
    rpc_until(
        cli_system, "get_positions", lambda rows: sum(r["quantity"] for r in rows) == 3, strategy="cliprot"
    )
    protect = ok_json(cli_system, "trade protect --symbol DIS --trail-pct 30 --strategy cliprot")
    assert (protect["order"]["action"], protect["order"]["quantity"], protect["order"]["order_type"]) == (
        "SELL",
        3.0,
        "TRAIL",
    )
    oco = ok(
        run(
            cli_system,
            f"trade oco --symbol DIS --sell --quantity 3 --limit {high('DIS')} --stop {low('DIS')}"
            " --strategy cliprot",
        )
    )
    assert len(oco.stdout.splitlines()) == 2 and "SELL 3 DIS LMT" in oco.stdout and "STP" in oco.stdout
    assert len(ok_json(cli_system, "trade cancel-all --strategy cliprot")["cancelled"]) == 3


# -- refusals and errors --------------------------------------------------------------------------------


def test_buy_when_quantity_zero_then_exit_1_with_the_traders_reason_on_one_line(
    cli_system: CliSystem,
) -> None:
    connected(cli_system)
    result = run(cli_system, "trade buy --symbol AAPL --market --quantity 0")
    assert result.returncode == 1 and result.stdout == ""
    assert one_error_line(result) == "error: quantity must be a positive number, got 0.0"
    envelope = run(cli_system, "trade buy --symbol AAPL --market --quantity 0 --json")
    assert envelope.returncode == 1
    message = "quantity must be a positive number, got 0.0"
    assert envelope.json()["error"] == {"code": "bad_order", "message": message}
    wrong = run(cli_system, "trade buy --symbol AAPL --limit 100 --take-profit 90 --quantity 1")
    assert wrong.returncode == 1 and "take_profit 90 is on the wrong side" in one_error_line(wrong)
    unknown = run(cli_system, "trade sell --symbol NOSUCHSYM --market --quantity 1")
    assert unknown.returncode == 1 and "NOSUCHSYM" in one_error_line(unknown)


def test_order_when_the_exchange_rejects_it_then_exit_1_with_the_reason(cli_system: CliSystem) -> None:
    connected(cli_system)
    ok(run(cli_system, "exchange reject-next --count 1"))
    result = run(
        cli_system, f"trade sell --symbol AAPL --limit {high('AAPL')} --quantity 1 --strategy clirej"
    )
    assert result.returncode == 1 and "SELL 1 AAPL LMT" in result.stdout
    line = one_error_line(result)
    reason = r"201: .*Rejected by the paper exchange \(fault\)\."
    assert re.fullmatch(rf"error: order {COID} (Rejected|Inactive): {reason}", line), line
    (order,) = ok_json(cli_system, "book orders --all --strategy clirej")
    assert order["state"] in ("Rejected", "Inactive")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("trade buy --symbol AAPL --quantity 1", "give exactly one order type"),
        ("trade buy --symbol AAPL --market --limit 1 --quantity 1", "(got --market and --limit)"),
        ("trade sell --symbol AAPL --stop 1 --trail-pct 2 --quantity 1", "(got --stop and --trail-pct)"),
        ("trade buy --symbol AAPL --market", "give exactly one of --quantity N and --amount USD"),
        ("trade buy --symbol AAPL --market --quantity 1 --amount 100", "one of --quantity N and --amount"),
        ("trade buy --symbol A --market --quantity 1 --stop-loss 1 --stop-loss-pct 2", "--stop-loss-pct X"),
        ("trade buy --symbol AAPL --market --quantity 1 --stop-loss-pct 150", "--stop-loss-pct"),
        ("trade buy --symbol AAPL --market --quantity 1 --tif WEEK", "--tif"),
        ("trade buy --market --quantity 1", "Missing option '--symbol'"),
        ("trade modify --order-id x", "give at least one of --limit, --quantity and --stop"),
        ("trade cancel", "Missing option '--order-id'"),
        ("book fills --since yesterday", "is not an ISO date or time"),
        ("book fills --since 2999-01-01", "is out of range"),
    ],
)
def test_options_when_combination_is_bad_then_usage_error_exit_2(
    cli_system: CliSystem, line: str, message: str
) -> None:
    result = run(cli_system, line)
    assert result.returncode == 2, result
    assert message in result.stderr and "Usage: cli.py" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


DOWN_COMMANDS = [
    "positions",
    "portfolio",
    "pnl",
    "account",
    "book orders",
    "book trades",
    "book fills",
    "book log",
    "book cancel --order-id x",
    "trade buy --symbol AAPL --market --quantity 1",
    "trade sell --symbol AAPL --limit 1 --quantity 1 --yes",
    "trade cancel --order-id x",
    "trade cancel-all",
    "trade modify --order-id x --limit 1",
]


def test_every_command_when_trader_is_down_then_exit_2_with_one_line_and_no_traceback(
    cli_system: CliSystem,
) -> None:
    endpoint = free_endpoint()
    env = {"BOURSE_ZMQ_RPC": endpoint}
    with ThreadPoolExecutor(len(DOWN_COMMANDS) + 1) as pool:
        results = list(pool.map(lambda line: run(cli_system, line, env=env), DOWN_COMMANDS))
        as_json = pool.submit(run, cli_system, "positions --json", env=env).result()
    expected = f"error: the trader service is not answering at {endpoint} (start it with ./start.sh)\n"
    wrong = [
        (r.args, r.returncode, r.stdout, r.stderr)
        for r in results
        if (r.returncode, r.stderr) != (2, expected)
    ]
    assert wrong == []
    assert all(r.stdout == "" for r in results)
    assert as_json.returncode == 2 and as_json.json()["error"]["code"] == "unavailable"


# -- a live (non-paper) account -------------------------------------------------------------------------


def test_order_when_live_account_and_not_confirmed_then_not_sent_exit_1(live_system: CliSystem) -> None:
    connected(live_system)
    line = f"trade buy --symbol AAPL --limit {low('AAPL')} --quantity 1 --strategy clilive"
    for answer in ("n\n", ""):  # "no", or no terminal at all
        result = run(live_system, line, stdin=answer)
        assert result.returncode == 1 and result.stdout == ""
        assert f"on LIVE account {LIVE_ACCOUNT}: send it? [y/N]" in result.stderr
        assert result.stderr.endswith("error: order not sent\n") and "Traceback" not in result.stderr
    assert ok_json(live_system, "book orders --all --strategy clilive") == []


def test_order_when_live_account_and_confirmed_or_yes_then_sent(live_system: CliSystem) -> None:
    connected(live_system)
    line = f"trade buy --symbol AAPL --limit {low('AAPL')} --quantity 1 --strategy cliyes"
    confirmed = ok(run(live_system, line, stdin="y\n"))
    assert "send it?" in confirmed.stderr and re.search(rf"\(cliyes, {COID}\): Submitted", confirmed.stdout)
    unasked = ok(run(live_system, f"{line} --yes --json"))
    assert unasked.stderr == "" and unasked.json()["result"]["order"]["account"] == LIVE_ACCOUNT
    assert len(ok_json(live_system, "trade cancel-all --strategy cliyes")["cancelled"]) == 2

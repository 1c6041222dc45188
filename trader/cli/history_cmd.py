"""``cli.py history ...``: historical bars, through the trader (the store's one writer).

* ``history get`` calls ``get_history``: the store when it holds the span, else IB under its
  pacing rules (the bars fetched are then stored).
* ``history read`` calls ``read_history``: only what the store holds, never an IB request for bars.
* ``history summary`` calls ``history_summary``: every stored series (instrument x bar size) with
  its first and last bar and row count.

``get`` and ``read`` print a summary and the last ``--rows`` bars; ``--csv FILE`` writes every
bar (index ``time``, UTC). With ``--json`` the result is the summary with the last rows as
``tail`` (``--csv`` for all of them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.console import Group, RenderableType
from rich.table import Table

from trader.cli.client import trader_call
from trader.cli.market_cmd import contract_options, instrument, plain, text
from trader.cli.output import CliFailure, Outcome, failure, outcome_command, success

HISTORY_TIMEOUT_S = 180.0
"""get_history may wait on IB's pacing (a few requests per minute at worst)."""
BAR_COLUMNS = ("open", "high", "low", "close", "volume", "wap", "count")


def bars_result(
    frame: pd.DataFrame, *, symbol: str, bar_size: str, rows: int, csv: Path | None, source: str
) -> dict[str, Any]:
    """The command's result: summary, the last ``rows`` bars, where the CSV went."""
    if csv is not None:
        try:
            frame.to_csv(csv, index_label="time")
        except OSError as exc:
            raise CliFailure(failure(f"cannot write {csv}: {exc}", code="io_error")) from None
    tail = frame.tail(rows) if rows > 0 else frame.iloc[0:0]
    records = [{"time": str(t), **row} for t, row in zip(tail.index, tail.to_dict("records"), strict=True)]
    return {
        "symbol": symbol,
        "bar_size": bar_size,
        "source": source,
        "rows": len(frame),
        "first": str(frame.index[0]) if len(frame) else None,
        "last": str(frame.index[-1]) if len(frame) else None,
        "csv": None if csv is None else str(csv),
        "tail": plain(records),
    }


def bars_view(result: dict[str, Any]) -> RenderableType:
    head = Table(
        title=f"{result['symbol']} {result['bar_size']} bars ({result['source']})", show_header=False
    )
    head.add_row("rows", str(result["rows"]))
    head.add_row("first", text(result["first"]))
    head.add_row("last", text(result["last"]))
    if result["csv"]:
        head.add_row("csv", f"{result['csv']} (all {result['rows']} rows)")
    if not result["tail"]:
        if result["rows"] == 0 and result["source"] == "store":
            hint = (
                "nothing stored for this bar size (fetch it: cli.py history get --symbol ... --bar-size ...)"
            )
            return Group(head, hint)
        return head
    tail = Table(title=f"last {len(result['tail'])} bars")
    tail.add_column("time")
    for column in BAR_COLUMNS:
        tail.add_column(column, justify="right")
    for bar in result["tail"]:
        tail.add_row(str(bar["time"]), *(text(bar.get(c)) for c in BAR_COLUMNS))
    return Group(head, tail)


def summary_view(rows: list[dict[str, Any]]) -> RenderableType:
    if not rows:
        return "the store holds no bars (fetch some: cli.py history get --symbol AAPL --days 1)"
    table = Table(title="stored bars")
    for column in ("symbol", "conId", "bar size", "first", "last", "rows"):
        table.add_column(column, justify="right" if column in ("conId", "rows") else "left")
    for r in rows:
        table.add_row(
            text(r.get("symbol")),
            str(r["con_id"]),
            str(r["bar_size"]),
            text(r.get("first")),
            text(r.get("last")),
            f"{r['rows']:,}",
        )
    return table


def _output_options(fn: Any) -> Any:
    fn = click.option(
        "--csv", "csv", type=click.Path(dir_okay=False, path_type=Path), help="Write every bar to FILE."
    )(fn)
    return click.option(
        "--rows", type=click.IntRange(0), default=10, show_default=True, help="How many last bars to show."
    )(fn)


@click.group("history")
def history_group() -> None:
    """Historical bars: fetch (store, else IB), read what is stored, summary of the store."""


@history_group.command("get")
@click.option("--symbol", required=True, help="AAPL, a local symbol, or a conId.")
@click.option(
    "--bar-size", default="1 min", show_default=True, help="IB's: '5 secs', '1 min', '1 hour', '1 day'."
)
@click.option(
    "--days", type=click.IntRange(1, 3650), default=1, show_default=True, help="Span back from now."
)
@click.option("--what-to-show", default="TRADES", show_default=True, help="TRADES, MIDPOINT, BID, ASK ...")
@click.option("--rth", is_flag=True, help="Regular trading hours only.")
@_output_options
@contract_options
@outcome_command
def get_command(
    *,
    symbol: str,
    bar_size: str,
    days: int,
    what_to_show: str,
    rth: bool,
    rows: int,
    csv: Path | None,
    sec_type: str,
    exchange: str,
    currency: str,
    expiry: str,
) -> Outcome:
    """Bars of the last N days (from the store when it has them, else IB; then stored)."""
    frame = trader_call(
        "get_history",
        timeout=HISTORY_TIMEOUT_S,
        bar_size=bar_size,
        days=days,
        what_to_show=what_to_show,
        use_rth=rth,
        **instrument(symbol, sec_type, exchange, currency, expiry),
    )
    return success(
        bars_result(frame, symbol=symbol, bar_size=bar_size, rows=rows, csv=csv, source="get_history"),
        human=bars_view,
    )


@history_group.command("read")
@click.option("--symbol", required=True, help="AAPL, a local symbol, or a conId.")
@click.option("--bar-size", default="1 min", show_default=True, help="IB's: '5 secs', '1 min', '1 day' ...")
@click.option("--start", help="From this time (ISO; UTC unless it has an offset).")
@click.option("--end", help="Up to this time (ISO; UTC unless it has an offset).")
@_output_options
@contract_options
@outcome_command
def read_command(
    *,
    symbol: str,
    bar_size: str,
    start: str | None,
    end: str | None,
    rows: int,
    csv: Path | None,
    sec_type: str,
    exchange: str,
    currency: str,
    expiry: str,
) -> Outcome:
    """The bars the store holds (no IB request for bars)."""
    params = instrument(symbol, sec_type, exchange, currency, expiry)
    if start:
        params["start"] = start
    if end:
        params["end"] = end
    frame = trader_call("read_history", bar_size=bar_size, **params)
    return success(
        bars_result(frame, symbol=symbol, bar_size=bar_size, rows=rows, csv=csv, source="store"),
        human=bars_view,
    )


@history_group.command("summary")
@click.option("--bar-size", help="Only this bar size.")
@outcome_command
def summary_command(bar_size: str | None) -> Outcome:
    """What the store holds: per instrument and bar size, first and last bar, rows."""
    params: dict[str, Any] = {} if bar_size is None else {"bar_size": bar_size}
    rows = [
        {
            **r,
            "first": None if r["first"] is None else str(r["first"]),
            "last": None if r["last"] is None else str(r["last"]),
        }
        for r in trader_call("history_summary", **params)
    ]
    return success(rows, human=summary_view)

#!/usr/bin/env python3
"""Risk gate benchmark: the cost of checking one order, beside the connection-only gate.

    .venv/bin/python bench/risk.py [--orders 20000] [--book-orders 500]

Per order, in one process: the **baseline** is ``RiskGate()`` with no engine (the gate before the
risk issue: the connection rule only); then ``RiskEngine.violations`` with the shipped limits
(``configs/trader.yaml``: every rule evaluated, none refusing) on a book snapshot of P positions
and W working orders across S strategies, two ways:

* **fresh snapshot** per order, as the trader does (it builds one per order from its live book):
  whatever the engine derives from a snapshot is computed on every order;
* **same snapshot** for every order: what is derived from the snapshot is computed once (the
  snapshot keeps it), so this is the rules alone.

Then ``snapshot_from_book`` (the trader's per-order input) over a live :class:`~trader.book.Book`
built from book events: the same P positions (each from filled orders), W working orders and H
done (filled) orders of history, and the whole per-order path, snapshot + engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trader.book import Book  # noqa: E402
from trader.book.events import Commission, Execution, OrderRequest, OrderSubmitted  # noqa: E402
from trader.config.schema import load  # noqa: E402
from trader.config.trader import TraderConfig  # noqa: E402
from trader.risk import (  # noqa: E402
    BookSnapshot,
    GateContext,
    MarketSnapshot,
    OrderIntent,
    PnLSnapshot,
    PositionSnapshot,
    RiskConfig,
    RiskEngine,
    RiskGate,
    RiskSnapshot,
)
from trader.risk.gate import default_snapshot  # noqa: E402
from trader.risk.snapshot import WorkingOrder  # noqa: E402

SIZES = ((10, 10, 3, 100), (100, 200, 10, 5_000), (500, 1000, 20, 20_000))
"""(positions, working orders, strategies, done orders of history in the live book)."""
T0 = 1_763_700_000_000_000_000


def snapshot(positions: int, working: int, strategies: int) -> RiskSnapshot:
    pos = tuple(
        PositionSnapshot(f"s{i % strategies}", 1000 + i, f"SYM{i}", 10.0 * (1 if i % 2 else -1), 1.0)
        for i in range(positions)
    )
    work = tuple(
        WorkingOrder(f"s{i % strategies}", f"o{i}", 1000 + i % max(positions, 1), f"SYM{i}", 5.0)
        for i in range(working)
    )
    pnl = {f"s{i}": PnLSnapshot(realized=-10.0, unrealized=5.0) for i in range(strategies)}
    book = BookSnapshot(
        positions=pos,
        working=work,
        net_liquidation=1_000_000.0,
        pnl=types.MappingProxyType(pnl),
        account_pnl=PnLSnapshot(realized=-10.0 * strategies, unrealized=5.0 * strategies),
    )
    return RiskSnapshot(book, MarketSnapshot(marks=marks(positions)))


def marks(positions: int) -> types.MappingProxyType[int, float | None]:
    return types.MappingProxyType({1000 + i: 100.0 for i in range(max(positions, 1))})


def live_book(positions: int, working: int, strategies: int, history: int) -> Book:
    """A book built from events: ``history`` filled orders (one execution and its commission
    each) over ``positions`` instruments, each instrument one strategy's, then ``working``
    submitted orders on them."""
    book = Book()
    count = 0

    def place(i: int, quantity: float, action: str) -> tuple[str, str, int]:
        nonlocal count
        count += 1
        strategy, con_id, coid = f"s{i % strategies}", 1000 + i % max(positions, 1), f"o{count:07d}"
        book.register(
            OrderRequest(strategy, coid, con_id, f"SYM{con_id}", action, quantity, T0 + count, account="DU1")  # type: ignore[arg-type]
        )
        book.apply(OrderSubmitted(coid, count, T0 + count))
        return strategy, coid, con_id

    for i in range(history):
        action = "SELL" if (i // positions) % 3 == 2 else "BUY"
        strategy, coid, con_id = place(i, 10.0, action)
        exec_id = f"e{count}"
        side = "BOT" if action == "BUY" else "SLD"
        book.apply(
            Execution(
                exec_id, count, 0, f"{strategy}:{coid}", con_id, f"SYM{con_id}", side,  # type: ignore[arg-type]
                10.0, 100.0, T0 + count, "DU1", cum_qty=10.0, avg_price=100.0,
            )
        )  # fmt: skip
        book.apply(Commission(exec_id, 1.0))
    for i in range(working):
        place(i, 5.0, "BUY" if i % 2 else "SELL")
    return book


def per_order_us(call: Callable[[], object], orders: int) -> tuple[float, float]:
    samples = []
    for _ in range(orders):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def line(label: str, figures: tuple[float, float]) -> None:
    print(f"  {label:<58} {figures[0]:8.1f} {figures[1]:8.1f}")


def engine_lines(config: RiskConfig, order: OrderIntent, orders: int) -> None:
    for positions, working, strategies, _ in SIZES:
        snap = snapshot(positions, working, strategies)
        now = time.time_ns()
        size = f"{positions} pos, {working} working, {strategies} strategies"
        # Copies with nothing derived yet, taken from the end and then dropped, as the trader's.
        fresh = [RiskSnapshot(dataclasses.replace(snap.book), snap.market) for _ in range(orders)]
        engine = RiskEngine(config)

        def cold(engine: RiskEngine = engine, fresh: list[RiskSnapshot] = fresh, now: int = now) -> object:
            return engine.violations(order, fresh.pop(), now)

        line(f"engine, fresh snapshot: {size}", per_order_us(cold, orders))
        engine = RiskEngine(config)

        def warm(engine: RiskEngine = engine, snap: RiskSnapshot = snap, now: int = now) -> object:
            return engine.violations(order, snap, now)

        line(f"engine, same snapshot:  {size}", per_order_us(warm, orders))


def book_lines(config: RiskConfig, order: OrderIntent, orders: int) -> None:
    for positions, working, strategies, history in SIZES:
        book = live_book(positions, working, strategies, history)
        prices = {con_id: mark for con_id, mark in marks(positions).items() if mark is not None}
        size = f"{positions}/{working}/{strategies}, {history:,} done"
        context = GateContext(
            True, "connected", "", book, now_ns=time.time_ns(), marks=prices, account="DU1",
            net_liquidation=1_000_000.0,
        )  # fmt: skip
        engine = RiskEngine(config)

        def build(context: GateContext = context) -> object:
            return default_snapshot(context)

        def both(context: GateContext = context, engine: RiskEngine = engine) -> object:
            return engine.violations(order, default_snapshot(context), context.now_ns)

        line(f"snapshot_from_book: {size}", per_order_us(build, orders))
        line(f"snapshot + engine:  {size}", per_order_us(both, orders))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--book-orders", type=int, default=500, help="orders per live-book line")
    args = parser.parse_args()
    config = load(TraderConfig, ROOT / "configs" / "trader.yaml", {}).risk
    order = OrderIntent("s0", "bench-1", 1000, "SYM0", "STK", "BUY", 1.0, "MKT")
    context = GateContext(True, "connected", "", Book(), now_ns=time.time_ns())
    baseline = RiskGate()
    print(f"risk check per order, {args.orders:,} orders (µs){'p50':>32} {'p99':>8}")
    line("connection-only gate (baseline)", per_order_us(lambda: baseline.check(order, context), args.orders))
    engine_lines(config, order, args.orders)
    print(f"live book, {args.book_orders:,} orders (µs){'p50':>37} {'p99':>8}")
    book_lines(config, order, args.book_orders)


if __name__ == "__main__":
    main()

"""The deterministic price process behind the synthetic market: a pure function of (seed, conId, t).

Time is cut into steps of ``step_ns`` (1 s by default) counted from the Unix epoch; steps are
grouped in blocks of one UTC day. The log-price is a driftless GBM (``-sigma^2/2`` per unit time in
the log, so the *price* has zero drift), sampled exactly on the step grid in two levels:

* a **daily walk**: the level at every UTC midnight, one normal draw per day from a generator keyed
  by ``(seed, conId, 0)``, anchored so the price at the anchor midnight is the instrument's price;
* a **block**: inside day ``b``, a Brownian bridge between the two midnights, from a generator keyed
  by ``(seed, conId, 1, b)``, plus one 32-bit word per step for the quote attributes (sizes, spread,
  trade side).

So any block can be generated alone, in any order, and history and the live stream read the very
same arrays: they agree to the bit. A block is turned into the **bid in ticks** (int64) for every
step; the ask is ``bid + spread`` and the last trade is at the bid or the ask. Shocks (a percentage
move from a step on) enter before rounding, so the process continues from the shocked level.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from trader.exchange.instruments import Instrument, Universe
from trader.exchange.sessions import DAY_NS

YEAR_DAYS = 365.25
MAX_DAY = 1 << 15
"""Days after 1970-01-01 the daily walk covers (until 2059)."""

# Layout of the per-step attribute word.
_BID_SIZE_SHIFT, _ASK_SIZE_SHIFT, _TRADE_SIZE_SHIFT, _SIDE_SHIFT, _WIDE_SHIFT = 0, 3, 6, 9, 10


@dataclass(frozen=True, slots=True)
class StepQuote:
    """The raw state of one step: prices in ticks, sizes in units."""

    bid_ticks: int
    spread: int
    bid_size: int
    ask_size: int
    trade_size: int
    trade_at_ask: bool

    @property
    def ask_ticks(self) -> int:
        return self.bid_ticks + self.spread

    @property
    def last_ticks(self) -> int:
        return self.bid_ticks + self.spread if self.trade_at_ask else self.bid_ticks


class Block:
    """One UTC day of one instrument: the bid (ticks) and the attribute word of every step."""

    __slots__ = ("bid", "bits")

    def __init__(self, bid: NDArray[np.int64], bits: NDArray[np.uint32]) -> None:
        self.bid = bid
        self.bits = bits


def spreads(bits: NDArray[np.uint32], base: int) -> NDArray[np.int64]:
    """Spread in ticks: the typical one, one tick wider on a quarter of the steps."""
    wide: NDArray[np.int64] = (((bits >> _WIDE_SHIFT) & 3) == 0).astype(np.int64)
    return wide + base


def sizes(bits: NDArray[np.uint32], shift: int, display: int, divisor: int) -> NDArray[np.int64]:
    """Sizes around the typical displayed size: ``display * (1..8) / divisor``, at least 1."""
    level = ((bits >> shift) & 7).astype(np.int64) + 1
    return np.maximum(1, (display * level + divisor // 2) // divisor)


def trade_sizes(bits: NDArray[np.uint32], display: int) -> NDArray[np.int64]:
    return sizes(bits, _TRADE_SIZE_SHIFT, display, 16)


def trade_at_ask(bits: NDArray[np.uint32]) -> NDArray[np.bool_]:
    return ((bits >> _SIDE_SHIFT) & 1).astype(np.bool_)


def _spread(bits: int, base: int) -> int:
    return base + (1 if (bits >> _WIDE_SHIFT) & 3 == 0 else 0)


def _size(bits: int, shift: int, display: int, divisor: int) -> int:
    return max(1, (display * (((bits >> shift) & 7) + 1) + divisor // 2) // divisor)


class PriceProcess:
    """Blocks of every instrument, generated on demand and kept in an LRU cache."""

    def __init__(
        self,
        universe: Universe,
        seed: int,
        step_ns: int,
        *,
        anchor_ns: int,
        volatility_multiplier: float = 1.0,
        cache_blocks: int = 96,
    ) -> None:
        if DAY_NS % step_ns:
            raise ValueError(f"the step ({step_ns} ns) must divide a day")
        if seed < 0:
            raise ValueError("the seed must be >= 0")
        self.universe = universe
        self.seed = seed
        self.step_ns = step_ns
        self.steps_per_block = DAY_NS // step_ns
        self.anchor_day = anchor_ns // DAY_NS
        self.volatility_multiplier = volatility_multiplier
        self.cache_blocks = cache_blocks
        self._blocks: OrderedDict[tuple[int, int], Block] = OrderedDict()
        self._daily: dict[int, NDArray[np.float64]] = {}
        self._shocks: dict[int, list[tuple[int, float]]] = {}

    # -- the latent log-price ------------------------------------------------------------------

    def sigma(self, inst: Instrument) -> float:
        return inst.volatility * self.volatility_multiplier

    def daily_levels(self, con_id: int) -> NDArray[np.float64]:
        """log(price / anchor price) at every UTC midnight, before shocks."""
        levels = self._daily.get(con_id)
        if levels is None:
            inst = self.universe[con_id]
            sigma = self.sigma(inst)
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, con_id, 0])))
            walk = np.empty(MAX_DAY + 1)
            walk[0] = 0.0
            np.cumsum(rng.standard_normal(MAX_DAY), out=walk[1:])
            days = np.arange(MAX_DAY + 1, dtype=np.float64) - self.anchor_day
            walk *= sigma * math.sqrt(1.0 / YEAR_DAYS)
            levels = walk - walk[self.anchor_day] - 0.5 * sigma * sigma * days / YEAR_DAYS
            self._daily[con_id] = levels
        return levels

    def _log_path(self, con_id: int, block: int, rng: np.random.Generator) -> NDArray[np.float64]:
        n = self.steps_per_block
        levels = self.daily_levels(con_id)
        start, end = float(levels[block]), float(levels[block + 1])
        sigma_step = self.sigma(self.universe[con_id]) * math.sqrt(1.0 / (YEAR_DAYS * n))
        path = np.empty(n + 1)
        path[0] = 0.0
        np.cumsum(rng.standard_normal(n), out=path[1:])
        # Brownian bridge from `start` to `end`: the scaled walk minus its linear trend to the end,
        # plus the straight line between the two levels (computed in place: this is the hot loop).
        slope = ((end - start) - sigma_step * float(path[n])) / n
        out = path[:n]
        out *= sigma_step
        out += np.arange(n, dtype=np.float64) * slope
        out += start
        return out

    # -- blocks --------------------------------------------------------------------------------

    def block(self, con_id: int, index: int) -> Block:
        key = (con_id, index)
        found = self._blocks.get(key)
        if found is not None:
            self._blocks.move_to_end(key)
            return found
        if not 0 <= index < MAX_DAY:
            raise ValueError(f"no market data for day {index} after 1970-01-01")
        inst = self.universe[con_id]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, con_id, 1, index])))
        log_path = self._log_path(con_id, index, rng)
        bits = rng.integers(0, 1 << 32, self.steps_per_block, dtype=np.uint32)
        shocks = self._shocks.get(con_id)
        if shocks:
            first = index * self.steps_per_block
            steps = np.array([s for s, _ in shocks], dtype=np.int64)
            cum = np.concatenate(([0.0], np.cumsum([f for _, f in shocks])))
            applied = np.searchsorted(steps, np.arange(first, first + self.steps_per_block), side="right")
            log_path += cum[applied]
        mid_ticks = np.exp(log_path, out=log_path)
        mid_ticks *= inst.price / inst.minTick
        spread = spreads(bits, inst.spreadTicks)
        mid_ticks -= spread * 0.5
        mid_ticks += 0.5
        # Truncation is floor here: prices below one tick are clamped to one tick just below.
        bid = mid_ticks.astype(np.int64)
        np.maximum(bid, 1, out=bid)
        result = Block(bid, bits)
        self._blocks[key] = result
        while len(self._blocks) > self.cache_blocks:
            self._blocks.popitem(last=False)
        return result

    def step(self, con_id: int, k: int) -> StepQuote:
        """The state of step ``k`` (the step starting at ``k * step_ns``)."""
        block, j = divmod(k, self.steps_per_block)
        blk = self.block(con_id, block)
        inst = self.universe[con_id]
        bits = int(blk.bits[j])
        display = inst.displaySize
        return StepQuote(
            int(blk.bid[j]),
            _spread(bits, inst.spreadTicks),
            _size(bits, _BID_SIZE_SHIFT, display, 4),
            _size(bits, _ASK_SIZE_SHIFT, display, 4),
            _size(bits, _TRADE_SIZE_SHIFT, display, 16),
            bool((bits >> _SIDE_SHIFT) & 1),
        )

    def steps(self, con_id: int, k0: int, k1: int) -> tuple[NDArray[np.int64], NDArray[np.uint32]]:
        """Bid ticks and attribute words of steps [k0, k1), across blocks."""
        n = self.steps_per_block
        if k1 <= k0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint32)
        first, last = k0 // n, (k1 - 1) // n
        if first == last:
            blk = self.block(con_id, first)
            return blk.bid[k0 - first * n : k1 - first * n], blk.bits[k0 - first * n : k1 - first * n]
        bids, bits = [], []
        for b in range(first, last + 1):
            blk = self.block(con_id, b)
            lo, hi = max(k0, b * n) - b * n, min(k1, (b + 1) * n) - b * n
            bids.append(blk.bid[lo:hi])
            bits.append(blk.bits[lo:hi])
        return np.concatenate(bids), np.concatenate(bits)

    def volume(self, con_id: int, k0: int, k1: int) -> int:
        """Total traded size of steps [k0, k1)."""
        if k1 <= k0:
            return 0
        if k1 - k0 == 1:
            return self.step(con_id, k0).trade_size
        _, bits = self.steps(con_id, k0, k1)
        return int(trade_sizes(bits, self.universe[con_id].displaySize).sum())

    # -- shocks --------------------------------------------------------------------------------

    def shock(self, con_id: int, step: int, fraction: float) -> None:
        """Move the instrument by ``fraction`` (0.05 = +5 %) from ``step`` on, for good."""
        if fraction <= -1.0:
            raise ValueError("a shock cannot take the price to zero or below")
        shocks = self._shocks.setdefault(con_id, [])
        shocks.append((step, math.log1p(fraction)))
        shocks.sort(key=lambda s: s[0])
        first_block = step // self.steps_per_block
        for key in [k for k in self._blocks if k[0] == con_id and k[1] >= first_block]:
            del self._blocks[key]

    def shocks(self) -> dict[int, list[tuple[int, float]]]:
        """Shocks by conId: (first step, log factor)."""
        return {c: list(s) for c, s in self._shocks.items()}

    def restore_shocks(self, shocks: dict[int, list[tuple[int, float]]]) -> None:
        self._shocks = {c: sorted(s) for c, s in shocks.items() if s}
        self._blocks.clear()

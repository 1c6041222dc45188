"""RollingWindow: bounded, replaces rows of an existing time, cached frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from trader.strategy.window import BAR_COLUMNS, TICK_COLUMNS, RollingWindow

T0 = pd.Timestamp("2026-01-14 15:30", tz="UTC")


def bars(seconds: list[int], closes: list[float] | None = None) -> pd.DataFrame:
    closes = closes if closes is not None else [float(s) for s in seconds]
    index = pd.DatetimeIndex([T0 + pd.Timedelta(seconds=s) for s in seconds], name="time")
    return pd.DataFrame(
        {"open": closes, "high": closes, "low": closes, "close": closes, "volume": [1.0] * len(closes)},
        index=index,
    )


def test_append_when_bars_then_frame_indexed_by_utc_time_with_symbol() -> None:
    window = RollingWindow(BAR_COLUMNS, 10, symbol="AAPL")
    window.append(bars([0, 5, 10]))
    frame = window.frame()
    assert len(window) == 3
    assert list(frame.columns) == list(BAR_COLUMNS)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == T0
    assert frame.attrs["symbol"] == "AAPL"
    assert frame["close"].tolist() == [0.0, 5.0, 10.0]


def test_append_when_more_than_maxlen_then_only_the_last_kept_and_memory_bounded() -> None:
    window = RollingWindow(BAR_COLUMNS, 50)
    for i in range(1000):
        window.append(bars([i * 5]))
        assert len(window) == min(i + 1, 50)
    assert window._times.shape == (100,)  # never grows
    assert window.frame()["close"].tolist() == [float(s * 5) for s in range(950, 1000)]


def test_append_when_a_chunk_is_longer_than_maxlen_then_its_tail() -> None:
    window = RollingWindow(BAR_COLUMNS, 4)
    window.append(bars(list(range(10))))
    assert window.frame()["close"].tolist() == [6.0, 7.0, 8.0, 9.0]


def test_append_when_last_bar_updated_then_replaced_not_duplicated() -> None:
    window = RollingWindow(BAR_COLUMNS, 10)
    window.append(bars([0, 5], [1.0, 2.0]))
    window.append(bars([5], [3.0]))
    assert len(window) == 2
    assert window.frame()["close"].tolist() == [1.0, 3.0]


def test_append_when_overlapping_out_of_order_chunk_then_merged_sorted_new_wins() -> None:
    window = RollingWindow(BAR_COLUMNS, 10)
    window.append(bars([0, 5, 10], [1.0, 2.0, 3.0]))
    window.append(bars([7, 5, 15], [9.0, 8.0, 4.0]))
    frame = window.frame()
    assert frame["close"].tolist() == [1.0, 8.0, 9.0, 3.0, 4.0]
    assert frame.index.is_monotonic_increasing


def test_append_when_duplicate_times_in_one_chunk_then_the_last_wins() -> None:
    window = RollingWindow(BAR_COLUMNS, 10)
    window.append(bars([0, 0, 5], [1.0, 2.0, 3.0]))
    assert window.frame()["close"].tolist() == [2.0, 3.0]


def test_frame_when_not_appended_then_same_object_and_a_copy_of_the_window() -> None:
    window = RollingWindow(BAR_COLUMNS, 3)
    window.append(bars([0, 5, 10]))
    first = window.frame()
    assert window.frame() is first
    first.loc[first.index[0], "close"] = -1.0  # a strategy scribbling on it
    window.append(bars([15, 20, 25]))  # rewrites the ring's rows
    second = window.frame()
    assert second is not first
    assert first["close"].tolist() == [-1.0, 5.0, 10.0]
    assert first.index[0] == T0  # its index is its own too
    assert second["close"].tolist() == [15.0, 20.0, 25.0]


def test_append_when_tick_frame_with_time_column_then_indexed_by_it_and_missing_columns_nan() -> None:
    window = RollingWindow(TICK_COLUMNS, 5, symbol="EUR.USD")
    ticks = pd.DataFrame(
        {
            "time": pd.to_datetime([T0, T0 + pd.Timedelta(milliseconds=1)]),
            "con_id": [12087792, 12087792],
            "bid": [1.1, 1.2],
            "ask": [1.3, 1.4],
            "delayed": [False, False],
        }
    )
    window.append(ticks)
    frame = window.frame()
    assert list(frame.columns) == list(TICK_COLUMNS)
    assert frame.index[1] == T0 + pd.Timedelta(milliseconds=1)
    assert frame["bid"].tolist() == [1.1, 1.2]
    assert frame["last"].isna().all()


def test_append_when_empty_frame_then_nothing_changes() -> None:
    window = RollingWindow(BAR_COLUMNS, 5)
    window.append(bars([0]))
    version = window.version
    window.append(bars([]))
    assert window.version == version
    assert len(window) == 1


chunks = st.lists(
    st.lists(st.tuples(st.integers(0, 60), st.floats(-1e6, 1e6, allow_nan=False)), max_size=12),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(maxlen=st.integers(1, 20), chunks=chunks)
def test_append_when_any_chunks_then_equals_the_pandas_reference(
    maxlen: int, chunks: list[list[tuple[int, float]]]
) -> None:
    window = RollingWindow(["close"], maxlen)
    reference: pd.Series | None = None
    for chunk in chunks:
        index = pd.DatetimeIndex([T0 + pd.Timedelta(seconds=s) for s, _ in chunk])
        frame = pd.DataFrame({"close": [v for _, v in chunk]}, index=index)
        window.append(frame)
        if not chunk:
            continue
        combined = frame["close"] if reference is None else pd.concat([reference, frame["close"]])
        combined = combined[~combined.index.duplicated(keep="last")].sort_index()
        reference = combined.iloc[-maxlen:]
        got = window.frame()["close"]
        assert got.index.tolist() == reference.index.tolist()
        assert np.array_equal(got.to_numpy(), reference.to_numpy())
        assert len(window) <= maxlen

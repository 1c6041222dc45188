"""The pure parts of the trader's store methods (trader/service/data_api.py): bar-size names, time
bounds, and the summary of the stored bar series over a real (temporary) LMDB store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from trader.data.store import Store
from trader.messaging.rpc import RpcError
from trader.service.data_api import bar_size_name, member_record, series_summary, utc


@pytest.mark.parametrize(
    ("library", "name"),
    [
        ("bars_5s", "5 secs"),
        ("bars_1min", "1 min"),
        ("bars_5min", "5 mins"),
        ("bars_1h", "1 hour"),
        ("bars_1day", "1 day"),
        ("bars_1week", "1 week"),
    ],
)
def test_bar_size_name_when_library_then_ibs_name(library: str, name: str) -> None:
    assert bar_size_name(library) == name


def test_utc_when_naive_or_offset_then_utc_and_when_garbage_then_bad_params() -> None:
    assert utc("2026-01-05T10:00", "start") == pd.Timestamp("2026-01-05 10:00", tz="UTC")
    assert utc("2026-01-05T10:00-05:00", "end") == pd.Timestamp("2026-01-05 15:00", tz="UTC")
    assert utc(None, "start") is None and utc("", "end") is None
    with pytest.raises(RpcError) as refused:
        utc("yesterday-ish", "start")
    assert refused.value.code == "bad_params" and "start" in refused.value.message


def test_series_summary_when_bars_stored_then_first_last_rows_per_series(tmp_path: Path) -> None:
    store = Store(f"lmdb://{tmp_path / 'store'}")
    assert series_summary(store) == []
    index = pd.date_range("2026-01-05 14:30", periods=4, freq="1min", tz="UTC", name="time")
    bars = pd.DataFrame(
        {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0, "wap": 1.2, "count": 3},
        index=index,
    )
    store.write_bars(265598, "1 min", bars)
    store.write_bars(265598, "5 mins", bars.iloc[:1])
    (five, one) = sorted(series_summary(store), key=lambda r: str(r["library"]), reverse=True)
    assert one == {
        "con_id": 265598,
        "bar_size": "1 min",
        "library": "bars_1min",
        "first": index[0],
        "last": index[-1],
        "rows": 4,
    }
    assert (five["bar_size"], five["rows"], five["first"], five["last"]) == ("5 mins", 1, index[0], index[0])


def test_member_record_when_contract_unknown_then_key_and_error_only() -> None:
    assert member_record("265598", None, "IB down") == {"key": "265598", "con_id": 265598, "error": "IB down"}
    assert member_record("STK:AAPL:SMART:USD", None) == {"key": "STK:AAPL:SMART:USD", "con_id": None}

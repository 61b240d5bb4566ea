"""Event data: the record, the importers, bad input, the store and the synthetic L2 generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backforge.data.events import (
    EventData, EventStore, MarketEventKind, check_events, event_record_dt, read_binance_trades, read_l2_csv,
    read_truefx_quotes, synthetic_l2,
)
from backforge.errors import DataError

K = MarketEventKind


def _write(tmp_path: Path, text: str, name: str = "book.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


L2_HEADER = "timestamp,local_timestamp,side,price,amount,is_snapshot\n"


def test_l2_csv_snapshot_then_updates(tmp_path):
    path = _write(tmp_path, L2_HEADER + "1000,1500,bid,99.5,2,true\n1000,1500,ask,100.5,3,true\n"
                  "2000,2600,bid,99.5,0,false\n2000,2600,bid,99.0,4,false\n3000,3100,ask,100.5,1.5,false\n")
    data = read_l2_csv(path, tick_size=0.5)
    # a clear is inserted before the snapshot; µs timestamps become ns
    assert data.kind.tolist() == [K.CLEAR, K.SNAPSHOT, K.SNAPSHOT, K.DEPTH, K.DEPTH, K.DEPTH]
    assert data.exch_ts.tolist() == [1_000_000, 1_000_000, 1_000_000, 2_000_000, 2_000_000, 3_000_000]
    assert data.local_ts.tolist()[1] == 1_500_000
    assert data.side.tolist() == [0, 1, -1, 1, 1, -1]
    assert data.qty.tolist()[1:] == [2.0, 3.0, 0.0, 4.0, 1.5]


@pytest.mark.parametrize("rows, line, field, message", [
    ("1000,1000,bid,99.5,2,false\n", 2, "kind", "depth_before_snapshot"),
    ("1000,1000,bid,99.5,2,true\n900,900,bid,99.0,1,false\n", 3, "timestamp", "unsorted_exch"),
    ("1000,1000,bid,99.5,2,true\n1000,1000,ask,100.5,,true\n", 3, "amount", "bad_qty"),
    ("1000,1000,bid,99.5,2,true\n1000,1000,ask,100.5,-1,true\n", 3, "amount", "bad_qty"),
    ("1000,1000,bid,99.5,2,true\n1000,1000,ask,100.5,1,true\n2000,2000,bid,101,1,false\n", 4, "price", "crossed"),
    ("1000,1000,bid,-99.5,2,true\n", 2, "price", "bad_price"),
    ("1000,900,bid,99.5,2,true\n", 2, "local_timestamp", "local_before_exch"),
])
def test_l2_csv_bad_input_names_file_line_and_field(tmp_path, rows, line, field, message):
    path = _write(tmp_path, L2_HEADER + rows)
    with pytest.raises(DataError) as info:
        read_l2_csv(path, tick_size=0.5)
    err = info.value
    assert (err.path, err.row, err.field) == (str(path), line, field)
    assert err.message.startswith(message)


TRUEFX_HEADER = "timestamp,bid,ask\n"
BINANCE_HEADER = "timestamp,trade_id,price,quantity,buyer_maker\n"
OK_QUOTE = "2024-01-02T00:00:00Z,150.0,150.01\n"
OK_TRADE = "1700000000000,1,100,1,True\n"


@pytest.mark.parametrize("reader, text, line, field, message", [
    # every importer names the file line (the header is line 1) and the file's own column
    (read_l2_csv, L2_HEADER + "1000,1000,bid,99.5,2,true\n1000,1000,ask,100.5,x,true\n", 3, "amount", "not a number: 'x'"),
    (read_l2_csv, L2_HEADER + "1000,1000,bid,99.5,2,true\nzz,1000,ask,100.5,1,true\n", 3, "timestamp",
     "cannot parse timestamp 'zz'"),
    (read_l2_csv, L2_HEADER + "1000,,bid,99.5,2,true\n", 2, "local_timestamp", "missing timestamp"),
    (read_truefx_quotes, TRUEFX_HEADER + OK_QUOTE + "2024-01-02T00:00:01Z,x,150.01\n", 3, "bid", "not a number: 'x'"),
    (read_truefx_quotes, TRUEFX_HEADER + OK_QUOTE + "nope,150.0,150.01\n", 3, "timestamp", "cannot parse timestamp 'nope'"),
    (read_truefx_quotes, TRUEFX_HEADER + "2024-01-02T00:00:02Z,150.0,150.01\n" + OK_QUOTE, 3, "timestamp", "unsorted_exch"),
    (read_truefx_quotes, TRUEFX_HEADER + OK_QUOTE + "2024-01-02T00:00:01Z,150.0,-1\n", 3, "ask", "bad_price"),
    (read_binance_trades, BINANCE_HEADER + OK_TRADE + "1700000000001,2,100,-1,False\n", 3, "quantity", "bad_qty"),
    (read_binance_trades, BINANCE_HEADER + OK_TRADE + "1700000000001,2,100,1,maybe\n", 3, "buyer_maker",
     "buyer_maker must be True or False, got 'maybe'"),
    (read_binance_trades, BINANCE_HEADER + "1700000000002,1,100,1,True\n" + OK_TRADE, 3, "timestamp", "unsorted_exch"),
])
def test_every_importer_names_the_file_line_and_its_column(tmp_path, reader, text, line, field, message):
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as info:
        reader(path)
    err = info.value
    assert (err.path, err.row, err.field) == (str(path), line, field), str(err)
    assert err.message.startswith(message), err.message


def test_a_parquet_file_names_data_rows_from_one(tmp_path):
    import polars as pl

    path = tmp_path / "trades.parquet"
    pl.DataFrame({"timestamp": [1_700_000_000_000, 1_700_000_000_001], "trade_id": [1, 2], "price": [100.0, np.nan],
                  "quantity": [1.0, 1.0], "buyer_maker": [True, False]}).write_parquet(path)
    with pytest.raises(DataError) as info:
        read_binance_trades(path)
    assert (info.value.row, info.value.field) == (2, "price") and info.value.message.startswith("bad_price")


def test_l2_csv_unknown_side_and_flag(tmp_path):
    with pytest.raises(DataError, match="side must be bid/ask") as info:
        read_l2_csv(_write(tmp_path, L2_HEADER + "1000,1000,middle,99.5,2,true\n"))
    assert info.value.row == 2
    with pytest.raises(DataError, match="is_snapshot must be true or false") as info:
        read_l2_csv(_write(tmp_path, L2_HEADER + "1000,1000,bid,99.5,2,maybe\n"))
    assert info.value.row == 2


def test_l2_csv_drop_policy_removes_only_bad_rows(tmp_path):
    path = _write(tmp_path, L2_HEADER + "1000,1000,bid,99.5,2,true\n1000,1000,ask,100.5,3,true\n"
                  "2000,2000,bid,101,1,false\n3000,3000,ask,100.5,,false\n4000,4000,bid,99.0,5,false\n")
    data = read_l2_csv(path, tick_size=0.5, policy="drop")
    assert data.source["dropped_rows"] == 2
    assert data.price[1:].tolist() == [99.5, 100.5, 99.0]


def test_unknown_kind_and_policy_are_rejected():
    rec = np.zeros(1, dtype=event_record_dt)
    rec["kind"], rec["side"], rec["price"], rec["qty"] = 9, 1, 1.0, 1.0
    with pytest.raises(DataError, match="unknown_kind") as info:
        EventData.from_records(rec, tick_size=1.0)
    assert (info.value.row, info.value.field) == (0, "kind")
    with pytest.raises(DataError, match="unknown policy"):
        check_events(EventData.from_records(rec, tick_size=1.0, validate=False), policy="repair")


def test_truefx_quotes_file(shared):
    path = shared / "truefx-usdjpy-ticks.csv"
    # the file has one locked quote (bid == ask) on line 943: an error by default, dropped on request
    with pytest.raises(DataError) as info:
        read_truefx_quotes(path)
    assert (info.value.row, info.value.field) == (943, "ask") and "crossed" in info.value.message
    data = read_truefx_quotes(path, policy="drop", feed_latency_ns=2_000_000)
    # the repair drops the book rows of the crossing timestamp: that line's bid and ask
    assert len(data) == 2 * 1000 - 2 and data.source["dropped_rows"] == 2
    assert set(data.kind.tolist()) == {K.QUOTE} and np.isinf(data.qty).all()
    assert data.price[:2].tolist() == [86.655, 86.728]
    assert (data.local_ts - data.exch_ts == 2_000_000).all()


def test_binance_trades_file(shared):
    data = read_binance_trades(shared / "binance-btcusdt-trades.parquet")
    assert len(data) == 2001 and set(data.kind.tolist()) == {K.TRADE}
    # buyer_maker True: the seller hit the bid (aggressor side -1)
    assert data.side[:3].tolist() == [-1, 1, 1]
    assert data.price[0] == 39432.48 and data.qty[0] == 0.000263


def test_missing_file_and_column(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_l2_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="missing column 'is_snapshot'"):
        read_l2_csv(_write(tmp_path, "timestamp,side,price,amount\n1,bid,1,1\n"))


def test_store_round_trip_is_memory_mapped(tmp_path):
    data = synthetic_l2(n_events=3_000, seed=4)
    store = EventStore(tmp_path)
    store.write(data)
    loaded = store.load("SYNTH")
    for name in event_record_dt.names:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
    assert not loaded.price.flags.writeable  # a read-only view of the mapped file
    assert (loaded.tick_size, loaded.lot_size, loaded.source["seed"]) == (0.1, 0.001, 4)
    cut = store.load("SYNTH", start=int(data.exch_ts[100]), end=int(data.exch_ts[200]))
    assert cut.exch_ts[0] == data.exch_ts[100] and cut.exch_ts[-1] == data.exch_ts[200]
    with pytest.raises(DataError, match="no event stream 'OTHER'"):
        store.load("OTHER")


def test_synthetic_l2_is_deterministic_and_valid():
    a, b, c = synthetic_l2(n_events=20_000, seed=9), synthetic_l2(n_events=20_000, seed=9), synthetic_l2(n_events=20_000, seed=10)
    assert np.array_equal(a.price, b.price, equal_nan=True) and np.array_equal(a.qty, b.qty)
    assert not np.array_equal(a.qty[:5000], c.qty[:5000])
    check_events(a)  # never crossed, depth only after the snapshot, sorted clocks
    lots = a.qty[a.kind != K.CLEAR] / a.lot_size
    np.testing.assert_allclose(lots, np.round(lots), atol=1e-6)
    trades = a.kind == K.TRADE
    assert 0.05 < trades.mean() < 0.3 and (a.local_ts >= a.exch_ts).all()


def test_hftbacktest_layout():
    data = synthetic_l2(n_events=200, seed=1)
    ev = data.to_hftbacktest()
    flags = ev["ev"]
    assert ((flags & (1 << 31)) > 0).all() and ((flags & (1 << 30)) > 0).all()
    assert (flags[0] & 0xFF) == 3  # the clear
    assert ((flags[data.kind == K.TRADE] & 0xFF) == 2).all()
    assert ((flags[data.side > 0] & (1 << 29)) > 0).all()

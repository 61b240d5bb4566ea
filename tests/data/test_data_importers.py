"""Importers: every real sample file, each layout, time zones and overrides (oracles: pandas.read_csv)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from backforge.data.importers import infer_bar, normalize_frame, read_bid_ask, read_csv, read_file, read_parquet
from backforge.errors import DataError

NS = 1_000_000_000


def ts(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


# file, kind, bar, format, rows, first timestamp, last timestamp, first row values (after the timestamp)
SAMPLES = [
    ("GOOG.csv", "bars", "1d", "generic", 2148, "2004-08-19", "2013-03-01", (100.0, 104.06, 95.96, 100.34, 22351900.0)),
    ("EURUSD.csv", "bars", "1h", "generic", 5000, "2017-04-19 09:00", "2018-02-07 15:00", (1.0716, 1.0722, 1.07083, 1.07219, 1413.0)),
    ("BTCUSD.csv", "bars", "1mo", "generic", 156, "2012-01-31", "2024-12-31", (4.58, 7.38, 3.8, 5.55, 2012.25343589)),
    ("orcl-1995-2014.txt", "bars", "1d", "yahoo", 5036, "1995-01-03", "2014-12-31", (2.179012, 2.191358, 2.117284, 2.117284, 36301200.0, 1.883304)),
    ("nvda-1999-2014.txt", "bars", "1d", "yahoo", 4012, "1999-01-22", "2014-12-31", (1.75, 1.953125, 1.552083, 1.640625, 67867200.0, 1.518424)),
    ("yhoo-1996-2015.txt", "bars", "1d", "yahoo", 4965, "1996-04-12", "2015-12-31", (1.052083, 1.791667, 1.020833, 1.375, 408720000.0, 1.375)),
    ("2006-01-02-volume-min-001.txt", "bars", "1min", "backtrader", 30889, "2006-01-02 09:01", "2006-02-27 22:00",
     (3602.0, 3603.0, 3597.0, 3599.0, 5699.0, 0.0)),
    ("truefx-usdjpy-ticks.csv", "quotes", "quote", "quotes", 1000, "2013-01-01 22:00:00.295", "2013-01-01 22:35:13.494", (86.655, 86.728)),
    ("fxcm-usdjpy-m1-bid-2013.csv", "bars", "1min", "generic", 28761, "2013-02-01", "2013-03-01", (91.715, 91.715, 91.653, 91.653)),
    ("fxcm-usdjpy-m1-ask-2013.csv", "bars", "1min", "generic", 28761, "2013-02-01", "2013-03-01", (91.717, 91.717, 91.655, 91.655)),
    ("6EH4.XCME_1min_bars_20240101_20240131.csv.gz", "bars", "1min", "generic", 29996, "2024-01-01 23:01", "2024-01-31 23:59",
     (1.1076, 1.10785, 1.1076, 1.1078, 205.0)),
    ("binance-btcusdt-trades.parquet", "trades", "trade", "parquet", 2001, "2021-01-08 00:00:00.278", "2021-01-08 00:00:46.355",
     (39432.48, 0.000263, -1, 553287559)),
]


@pytest.mark.parametrize(("name", "kind", "bar", "fmt", "rows", "first", "last", "values"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_shared_file_imports(shared: Path, name, kind, bar, fmt, rows, first, last, values) -> None:
    fd = read_file(shared / name)
    assert (fd.kind, fd.bar, fd.format, fd.rows) == (kind, bar, fmt, rows)
    stamps = fd.frame["timestamp"]
    assert stamps.dtype == pl.Datetime("ns", "UTC")
    assert int(stamps.dt.epoch("ns")[0]) == ts(first)
    assert int(stamps.dt.epoch("ns")[-1]) == ts(last)
    assert fd.frame.row(0)[1:1 + len(values)] == pytest.approx(values)


def test_every_shared_file_is_covered(shared: Path) -> None:
    files = {p.name for p in shared.iterdir() if p.name != "README.md"}
    assert files == {s[0] for s in SAMPLES}


def test_goog_matches_pandas_oracle(shared: Path) -> None:
    md = read_csv(shared / "GOOG.csv")
    oracle = pd.read_csv(shared / "GOOG.csv", index_col=0, parse_dates=True)
    assert md.assets == ("GOOG",)
    np.testing.assert_array_equal(md.timestamps, oracle.index.tz_localize("UTC").as_unit("ns").asi8)
    for field in ("Open", "High", "Low", "Close", "Volume"):
        np.testing.assert_array_equal(getattr(md, field.lower())[:, 0], oracle[field].to_numpy(dtype=float))


def test_yahoo_adjust_scales_prices_by_adj_close(shared: Path) -> None:
    raw = read_file(shared / "orcl-1995-2014.txt").frame
    adjusted = read_file(shared / "orcl-1995-2014.txt", adjust=True).frame
    ratio = raw["adj_close"] / raw["close"]
    np.testing.assert_allclose(adjusted["close"].to_numpy(), raw["adj_close"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(adjusted["open"].to_numpy(), (raw["open"] * ratio).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(adjusted["volume"].to_numpy(), (raw["volume"] / ratio).to_numpy(), rtol=1e-12)


def test_backtrader_date_and_time_columns_are_combined(shared: Path) -> None:
    frame = read_file(shared / "2006-01-02-volume-min-001.txt").frame
    oracle = pd.read_csv(shared / "2006-01-02-volume-min-001.txt", skiprows=1, header=None,
                         names=["date", "time", "open", "high", "low", "close", "volume", "oi"])
    expected = pd.DatetimeIndex(pd.to_datetime(oracle["date"] + " " + oracle["time"])).tz_localize("UTC").as_unit("ns").asi8
    np.testing.assert_array_equal(frame["timestamp"].dt.epoch("ns").to_numpy(), expected)
    np.testing.assert_array_equal(frame["open_interest"].to_numpy(), oracle["oi"].to_numpy(dtype=float))


def test_gzip_is_detected_from_content_not_name(shared: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "bars.csv"
    shutil.copy(shared / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz", renamed)
    assert read_file(renamed).frame.equals(read_file(shared / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz").frame)


def test_bid_and_ask_files_merge_into_quote_bars(shared: Path) -> None:
    fd = read_bid_ask(shared / "fxcm-usdjpy-m1-bid-2013.csv", shared / "fxcm-usdjpy-m1-ask-2013.csv")
    assert (fd.kind, fd.bar, fd.rows) == ("quote_bars", "1min", 28761)
    bid = pd.read_csv(shared / "fxcm-usdjpy-m1-bid-2013.csv")
    ask = pd.read_csv(shared / "fxcm-usdjpy-m1-ask-2013.csv")
    np.testing.assert_array_equal(fd.frame["bid_close"].to_numpy(), bid["close"].to_numpy())
    np.testing.assert_array_equal(fd.frame["ask_high"].to_numpy(), ask["high"].to_numpy())


def test_bid_ask_with_unmatched_timestamps_leaves_one_sided_rows(tmp_path: Path) -> None:
    from backforge.data.quality import apply_policy

    (tmp_path / "bid.csv").write_text("timestamp,open,high,low,close\n2020-01-01 00:01,1,1,1,1\n2020-01-01 00:02,1,1,1,1\n")
    (tmp_path / "ask.csv").write_text("timestamp,open,high,low,close\n2020-01-01 00:02,2,2,2,2\n2020-01-01 00:03,2,2,2,2\n")
    fd = read_bid_ask(tmp_path / "bid.csv", tmp_path / "ask.csv")
    assert fd.rows == 3
    with pytest.raises(DataError, match="bid but no ask"):
        apply_policy(fd)
    frame, report = apply_policy(fd, policy="drop")
    assert frame.height == 1 and [str(a) for a in report.actions] == ["one_sided_quote: dropped 2 rows"]


def test_binance_trades_parquet_sides(shared: Path) -> None:
    frame = read_parquet(shared / "binance-btcusdt-trades.parquet").frame
    raw = pl.read_parquet(shared / "binance-btcusdt-trades.parquet")
    expected = np.where(raw["buyer_maker"].to_numpy() == "True", -1, 1)  # buyer is maker: the seller hit the bid
    np.testing.assert_array_equal(frame["side"].to_numpy(), expected)
    np.testing.assert_array_equal(frame["size"].to_numpy(), raw["quantity"].to_numpy())


KLINES = [
    # open_time, open, high, low, close, volume, close_time, quote volume, trades, taker base, taker quote, ignore
    (1704067200000, "42283.58", "42298.62", "42261.02", "42298.61", "35.92724", 1704067259999, "1519451.26", 1327, "19.99", "845481.4", 0),
    (1704067260000, "42298.62", "42320.00", "42298.61", "42320.00", "21.07244", 1704067319999, "891616.93", 784, "11.04", "467179.8", 0),
    (1704067320000, "42319.99", "42331.54", "42299.99", "42310.00", "25.11232", 1704067379999, "1062738.56", 963, "14.93", "631808.2", 0),
]


def _kline_text(scale: int = 1, header: bool = False) -> str:
    def scaled(i: int, v: object) -> str:  # microsecond files end a bar at ...999999, millisecond files at ...999
        if i == 0:
            return str(int(v) * scale)  # type: ignore[call-overload]
        if i == 6:
            return str(int(v) * scale + (scale - 1))  # type: ignore[call-overload]
        return str(v)

    rows = [",".join(scaled(i, v) for i, v in enumerate(k)) for k in KLINES]
    if header:
        rows.insert(0, "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize(("scale", "header"), [(1, False), (1000, False), (1, True)], ids=["ms", "us", "header"])
def test_binance_klines_are_stamped_at_bar_close(tmp_path: Path, scale: int, header: bool) -> None:
    path = tmp_path / "BTCUSDT-1m-2024-01-01.csv"
    path.write_text(_kline_text(scale, header))
    fd = read_file(path)
    assert (fd.format, fd.kind, fd.bar, fd.rows) == ("binance", "bars", "1min", 3)
    assert fd.frame["timestamp"].dt.epoch("ms").to_list() == [1704067260000, 1704067320000, 1704067380000]
    assert fd.frame.row(0)[1:6] == pytest.approx((42283.58, 42298.62, 42261.02, 42298.61, 35.92724))


def test_truefx_raw_headerless_layout(tmp_path: Path) -> None:
    path = tmp_path / "USDJPY-2013-01.csv"
    path.write_text("USD/JPY,20130101 22:00:00.295,86.655,86.728\nUSD/JPY,20130101 22:02:35.907,86.657,86.728\n")
    fd = read_file(path)
    assert fd.kind == "quotes"
    assert fd.frame["timestamp"].dt.epoch("ms").to_list() == [ts("2013-01-01 22:00:00.295") // 10**6, ts("2013-01-01 22:02:35.907") // 10**6]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(delimiter.join(["Date", "Open", "High", "Low", "Close"]) + "\n" + delimiter.join(["2020-01-02", "1", "2", "0.5", "1.5"]) + "\n")
    assert read_file(path).frame.row(0)[1:5] == (1.0, 2.0, 0.5, 1.5)
    assert read_file(path, delimiter=delimiter).frame.height == 1


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("1577923200,1.0\n1578009600,2.0\n", {"columns": ["time", "close"]}, "2020-01-02"),
        ("1577923200000,1.0\n1578009600000,2.0\n", {"columns": ["time", "close"]}, "2020-01-02"),
        ("date,close\n20200102,1\n20200103,2\n", {}, "2020-01-02"),
        ("date,close\n2020.01.02 10:30,1\n2020.01.03 10:30,2\n", {}, "2020-01-02 10:30"),
        ("date,close\n02.01.2020 10:30:00.250,1\n03.01.2020 10:30:00,2\n", {}, "2020-01-02 10:30:00.25"),
        ("date,close\n13/01/2020,1\n14/01/2020,2\n", {}, "2020-01-13"),
        ("date,close\n01/13/2020,1\n01/14/2020,2\n", {}, "2020-01-13"),
        ("date,close\n02/01/2020,1\n03/01/2020,2\n", {"time_format": "%d/%m/%Y"}, "2020-01-02"),
        ("when,close\n2020-01-02T10:00:00+02:00,1\n", {"time_column": "when"}, "2020-01-02 08:00"),
        ("date,close\n2020-01-02 09:30,1\n2020-07-02 09:30,2\n", {"timezone": "America/New_York"}, "2020-01-02 14:30"),
    ],
)
def test_timestamp_formats(tmp_path: Path, text: str, options: dict, expected: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(text)
    frame = read_file(path, **options).frame
    assert int(frame["timestamp"].dt.epoch("ns")[0]) == ts(expected)


def test_local_timezone_follows_daylight_saving(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("date,close\n2020-01-02 09:30,1\n2020-07-02 09:30,2\n")
    stamps = read_file(path, timezone="America/New_York").frame["timestamp"].dt.epoch("ns").to_list()
    assert stamps == [ts("2020-01-02 14:30"), ts("2020-07-02 13:30")]


def test_column_mapping_and_headerless_names(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("when,px_last,qty\n2020-01-02,10,5\n2020-01-03,11,6\n")
    fd = read_file(path, columns={"when": "timestamp", "px_last": "close", "qty": "volume"})
    assert fd.frame.select("close", "volume").rows() == [(10.0, 5.0), (11.0, 6.0)]
    headerless = tmp_path / "y.csv"
    headerless.write_text("2020-01-02,1,2,0.5,1.5,100\n2020-01-03,1,2,0.5,1.5,100\n")
    assert read_file(headerless).frame.columns == ["timestamp", "open", "high", "low", "close", "volume"]


def test_close_only_data_fills_open_high_low(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("date,close\n2020-01-02,1\n2020-01-03,2\n")
    fd = read_file(path)
    assert fd.frame.select("open", "high", "low", "close").rows() == [(1.0, 1.0, 1.0, 1.0), (2.0, 2.0, 2.0, 2.0)]
    assert any("filled" in n for n in fd.notes)


def test_normalize_frame_accepts_pandas_with_datetime_index() -> None:
    df = pd.DataFrame({"Close": [1.0, 2.0]}, index=pd.DatetimeIndex(["2020-01-02", "2020-01-03"], name="Date"))
    fd = normalize_frame(df)
    assert fd.kind == "bars" and fd.frame["close"].to_list() == [1.0, 2.0]


def test_read_csv_quotes_collapse_same_timestamp_to_last(shared: Path) -> None:
    md = read_csv(shared / "truefx-usdjpy-ticks.csv", symbol="USDJPY")
    raw = pd.read_csv(shared / "truefx-usdjpy-ticks.csv")
    last = raw.groupby("timestamp", sort=False).last()
    assert md.n_bars == len(last) == 1000 - 7
    np.testing.assert_array_equal(md.bid.close[:, 0], last["bid"].to_numpy())
    np.testing.assert_allclose(md.close[:, 0], (last["bid"] + last["ask"]).to_numpy() / 2)


def test_read_csv_refuses_trade_ticks(shared: Path) -> None:
    with pytest.raises(DataError, match="resample"):
        read_csv(shared / "binance-btcusdt-trades.parquet")


@pytest.mark.parametrize(("stamps", "label"), [([0, 60, 120], "1min"), ([0, 3600, 7200], "1h"), ([0, 86400 * 31, 86400 * 59], "1mo"),
                                               ([0, 86400 * 7, 86400 * 14], "1w"), ([0, 86400 * 91], "3mo")])
def test_infer_bar(stamps: list[int], label: str) -> None:
    assert infer_bar(np.array(stamps, dtype=np.int64) * NS) == label


def test_gzip_csv_written_by_python(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("timestamp,bid,ask,volume\n2020-01-02T00:00:00.001Z,1.1,1.2,3\n2020-01-02T00:00:00.002Z,1.1,1.2,4\n")
    fd = read_file(path)
    assert fd.kind == "quotes" and fd.frame["volume"].to_list() == [3.0, 4.0]

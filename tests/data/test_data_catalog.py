"""The catalog: storage layout, memory-mapped loads, alignment, appends, atomicity, concurrency, SQL, ArcticDB."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backforge.data import parquet_store as store_module
from backforge.data.catalog import Catalog, normalize_bar, validate_symbol
from backforge.data.importers import read_file
from backforge.data.market import MarketData
from backforge.data.synth import gbm
from backforge.errors import DataError


def frames_oracle(shared: Path, names: dict[str, str]) -> MarketData:
    """Slow reference: read each file and align with MarketData.from_frames (union of timestamps, NaN)."""
    return MarketData.from_frames({sym: read_file(shared / f).frame for sym, f in names.items()})


def test_import_list_info_read(catalog: Catalog, shared: Path) -> None:
    report = catalog.import_file(shared / "GOOG.csv", symbol="GOOG")
    assert (report.write.added, report.write.rows, report.bar) == (2148, 2148, "1d")
    [info] = catalog.list()
    assert (info.symbol, info.bar, info.kind, info.rows, info.version) == ("GOOG", "1d", "bars", 2148, 1)
    assert (info.start_iso, info.end_iso) == ("2004-08-19", "2013-03-01")
    assert (catalog.root / "GOOG" / "1d" / "CURRENT").read_text().strip() == "v000001"
    frame = catalog.read("GOOG", start="2013-02-27")
    assert frame["close"].to_list() == [799.78, 801.2, 806.19]
    assert info.history[0]["path"] == str(shared / "GOOG.csv")


def mapped_file_of(array: np.ndarray) -> str | None:
    """The file whose memory mapping contains ``array``'s data (Linux /proc/self/maps), else None."""
    address = array.ctypes.data
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi and len(parts) == 6:
                return parts[5].strip()
    return None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/self/maps (Linux)")
def test_single_symbol_load_is_zero_copy_memory_map(catalog: Catalog, shared: Path) -> None:
    catalog.import_file(shared / "EURUSD.csv", symbol="EURUSD")
    md = catalog.load("EURUSD", bar="1h")
    assert md.fingerprint() == frames_oracle(shared, {"EURUSD": "EURUSD.csv"}).fingerprint()
    assert not md.close.flags.writeable and md.close.flags.c_contiguous and md.close.shape == (5000, 1)
    cache = next((catalog.root / "EURUSD" / "1h").glob("v*/cache.arrow"))
    for array in (md.timestamps, md.open, md.close, md.volume):
        assert mapped_file_of(array) == str(cache.resolve())
    with pytest.raises(ValueError):
        md.close[0, 0] = 1.0


def test_multi_symbol_load_aligns_on_union_without_forward_fill(catalog: Catalog, shared: Path) -> None:
    names = {"GOOG": "GOOG.csv", "ORCL": "orcl-1995-2014.txt", "NVDA": "nvda-1999-2014.txt"}
    for sym, f in names.items():
        catalog.import_file(shared / f, symbol=sym)
    md = catalog.load(list(names), bar="1d")
    oracle = frames_oracle(shared, names)
    assert md.assets == ("GOOG", "ORCL", "NVDA")
    assert md.fingerprint() == oracle.fingerprint()
    assert np.isnan(md.close[0, 0]) and np.isnan(md.close[0, 2])  # GOOG and NVDA did not trade in 1995
    # the next load comes from the aligned cache: a zero-copy [T, A] view of the mapped file
    again = catalog.load(list(names), bar="1d")
    assert again.fingerprint() == oracle.fingerprint() and not again.close.flags.writeable
    [aligned] = (catalog.root / "_aligned").glob("*.arrow")
    if Path("/proc/self/maps").exists():
        assert mapped_file_of(again.close) == str(aligned.resolve()) and again.close.flags.c_contiguous
    window = catalog.load(["ORCL", "GOOG"], "2010-01-04", "2010-01-08", bar="1d")
    assert window.n_bars == 5 and window.assets == ("ORCL", "GOOG")
    assert window.fingerprint() == oracle.select(["ORCL", "GOOG"]).slice("2010-01-04", "2010-01-08").fingerprint()


def test_aligned_cache_is_invalidated_by_a_write(catalog: Catalog) -> None:
    md = gbm(3, 1, bar="1h", seed=1)
    catalog.write_market(md)
    first = catalog.load(list(md.assets), bar="1h")
    assert first.fingerprint() == md.fingerprint()
    changed = gbm(3, 1, bar="1h", seed=2).select(["AAPL"])
    catalog.write_market(changed, mode="replace")
    second = catalog.load(list(md.assets), bar="1h")
    np.testing.assert_array_equal(second.close[:, 0], changed.close[:, 0])
    np.testing.assert_array_equal(second.close[:, 1], md.close[:, 1])
    assert len(list((catalog.root / "_aligned").glob("*.arrow"))) == 1
    assert catalog.clear_cache() == 1


def test_round_trip_of_synthetic_minute_data(catalog: Catalog) -> None:
    md = gbm(2, 0.2, bar="1min", seed=5)
    catalog.write_market(md)
    assert catalog.load(["AAPL", "MSFT"]).fingerprint() == md.fingerprint()  # default bar is 1min


def test_quote_bars_and_quote_ticks_load_with_bid_ask(catalog: Catalog, shared: Path) -> None:
    catalog.import_file(shared / "fxcm-usdjpy-m1-bid-2013.csv", ask=shared / "fxcm-usdjpy-m1-ask-2013.csv", symbol="USDJPY", policy="drop")
    catalog.import_file(shared / "truefx-usdjpy-ticks.csv", symbol="USDJPY")
    bars = catalog.load("USDJPY", bar="1min")
    assert bars.has_quotes and bars.n_bars == 28761 - 683
    np.testing.assert_allclose(bars.close, (bars.bid.close + bars.ask.close) / 2)
    bars.validate()
    ticks = catalog.load("USDJPY", bar="quote")
    assert ticks.has_quotes and ticks.n_bars == 993
    ticks.validate()
    with pytest.raises(DataError, match="several bar sizes"):
        catalog.info("USDJPY")


def test_trade_ticks_are_stored_but_not_loaded_as_bars(catalog: Catalog, shared: Path) -> None:
    catalog.import_file(shared / "binance-btcusdt-trades.parquet", symbol="BTCUSDT")
    assert catalog.read("BTCUSDT").height == 2001
    with pytest.raises(DataError, match="resample them first"):
        catalog.load("BTCUSDT", bar="trade")


def test_append_upserts_bars_and_reports_counts(catalog: Catalog, tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text("date,close\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n")
    second = tmp_path / "b.csv"
    second.write_text("date,close\n2020-01-03,30\n2020-01-04,4\n")
    catalog.import_file(first, symbol="X")
    report = catalog.import_file(second, symbol="X")
    assert (report.write.added, report.write.replaced, report.write.rows, report.write.version) == (1, 1, 4, 2)
    assert catalog.read("X")["close"].to_list() == [1.0, 2.0, 30.0, 4.0]
    catalog.import_file(second, symbol="X", mode="replace")
    assert catalog.read("X")["close"].to_list() == [30.0, 4.0]
    assert [h["mode"] for h in catalog.info("X").history] == ["replace"]


def test_append_ticks_replaces_the_span_they_cover(catalog: Catalog) -> None:
    def quotes(stamps: list[int], bid: float) -> pl.DataFrame:
        return pl.DataFrame({"timestamp": stamps, "bid": [bid] * len(stamps), "ask": [bid + 0.1] * len(stamps), "volume": [1.0] * len(stamps)})

    catalog.write("Q", quotes([1, 2, 3, 4, 5], 1.0), kind="quotes")
    result = catalog.write("Q", quotes([2, 2, 4], 2.0), kind="quotes")
    assert (result.added, result.replaced, result.rows) == (3, 3, 5)
    assert catalog.read("Q").select("timestamp", "bid").rows() == [
        (s, b) for s, b in zip(catalog.read("Q")["timestamp"].to_list(), [1.0, 2.0, 2.0, 2.0, 1.0])]
    assert catalog.read("Q")["timestamp"].dt.epoch("ns").to_list() == [1, 2, 2, 4, 5]


def test_kind_mismatch_on_append(catalog: Catalog, shared: Path) -> None:
    # the same bar label for both (a label the data contradicts is refused first: see test_data_bad_input)
    catalog.import_file(shared / "fxcm-usdjpy-m1-bid-2013.csv", symbol="X", bar="1min", policy="drop")
    with pytest.raises(DataError, match="holds bars, cannot append quote_bars"):
        catalog.import_file(shared / "fxcm-usdjpy-m1-bid-2013.csv", ask=shared / "fxcm-usdjpy-m1-ask-2013.csv",
                            symbol="X", bar="1min", policy="drop")


def test_large_series_are_partitioned_by_year_and_appends_link_unchanged_years(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat", partition_rows=1000)
    md = gbm(1, 3, bar="1h", seed=3)  # 3 years x 252 days x 6 bars
    cat.write_market(md)
    info = cat.info("AAPL")
    assert info.partitioned
    v1 = next((tmp_path / "cat" / "AAPL" / "1h").glob("v000001"))
    years = sorted(p.name for p in v1.glob("year=*.parquet"))
    assert years == ["year=2015.parquet", "year=2016.parquet", "year=2017.parquet"]
    last = md.slice("2017-06-01", None)
    cat.write_market(last)  # touches 2017 only
    v2 = tmp_path / "cat" / "AAPL" / "1h" / "v000002"
    assert os.stat(v2 / "year=2015.parquet").st_ino == os.stat(v1 / "year=2015.parquet").st_ino
    assert os.stat(v2 / "year=2017.parquet").st_ino != os.stat(v1 / "year=2017.parquet").st_ino
    assert cat.load("AAPL", bar="1h").fingerprint() == md.fingerprint()
    assert cat.read("AAPL", start="2016-03-01", end="2016-03-31").height == 22 * 6


def test_old_versions_are_pruned(catalog: Catalog) -> None:
    md = gbm(1, 0.1, seed=1)
    for _ in range(4):
        catalog.write_market(md)
    versions = sorted(p.name for p in (catalog.root / "AAPL" / "1d").glob("v*"))
    assert versions == ["v000003", "v000004"]


def test_crash_before_publish_leaves_catalog_unchanged(catalog: Catalog, shared: Path, monkeypatch, snapshot) -> None:
    catalog.import_file(shared / "GOOG.csv", symbol="GOOG")
    before = snapshot(catalog.root)

    def crash(tmp: Path, final: Path) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(store_module, "_publish_step", crash)
    with pytest.raises(KeyboardInterrupt):
        catalog.import_file(shared / "GOOG.csv", symbol="GOOG", mode="replace")
    assert snapshot(catalog.root) == before
    monkeypatch.undo()
    assert catalog.load("GOOG", bar="1d").n_bars == 2148


def test_killed_writer_process_never_corrupts(tmp_path: Path, shared: Path) -> None:
    root = tmp_path / "cat"
    cat = Catalog(root)
    cat.import_file(shared / "GOOG.csv", symbol="GOOG")
    before = cat.load("GOOG", bar="1d").fingerprint()
    script = textwrap.dedent(f"""
        import os
        from backforge.data import catalog, parquet_store
        def die(tmp, final):
            os._exit(9)  # the process dies with the new version half-published
        parquet_store._publish_step = die
        catalog.Catalog({str(root)!r}).import_file({str(shared / 'orcl-1995-2014.txt')!r}, symbol="GOOG", mode="replace")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(store_module.__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 9, proc.stderr.decode()
    assert list((root / "GOOG" / "1d").glob(".tmp-*"))  # debris of the dead writer
    assert cat.load("GOOG", bar="1d").fingerprint() == before
    cat.import_file(shared / "GOOG.csv", symbol="GOOG")  # the next write cleans up
    assert not list((root / "GOOG" / "1d").glob(".tmp-*"))


def test_concurrent_readers_see_complete_versions(catalog: Catalog) -> None:
    versions = [gbm(2, 0.5, bar="1h", seed=s) for s in range(6)]
    complete = {(j, versions[v].close[:, j].tobytes()) for v in range(len(versions)) for j in range(2)}
    catalog.write_market(versions[0])
    errors: list[BaseException] = []
    loads = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                md = catalog.load(["AAPL", "MSFT"], bar="1h")
                single = catalog.load("MSFT", bar="1h")
                loads.append((md.close.copy(), single.close.copy()))
            except BaseException as exc:  # noqa: BLE001 - any failure is a bug
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for md in versions[1:]:
        catalog.write_market(md, mode="replace")
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert loads
    # AAPL and MSFT are two series written one after the other, so a load may pair AAPL of one version
    # with MSFT of the neighbouring one; every column must still be one complete, untorn version
    for aligned, single in loads:
        assert (0, aligned[:, 0].tobytes()) in complete and (1, aligned[:, 1].tobytes()) in complete
        assert (1, single[:, 0].tobytes()) in complete
    assert catalog.load(["AAPL", "MSFT"], bar="1h").fingerprint() == versions[-1].fingerprint()


def test_delete(catalog: Catalog, shared: Path) -> None:
    catalog.import_file(shared / "GOOG.csv", symbol="GOOG")
    catalog.import_file(shared / "EURUSD.csv", symbol="EURUSD")
    assert catalog.delete("GOOG") == 1
    assert catalog.symbols() == ["EURUSD"]
    assert not (catalog.root / "GOOG").exists()
    with pytest.raises(DataError, match="no data for symbol 'GOOG'"):
        catalog.load("GOOG", bar="1d")


def test_names_and_errors(catalog: Catalog, shared: Path) -> None:
    catalog.import_file(shared / "GOOG.csv", symbol="GOOG")
    with pytest.raises(DataError, match="did you mean 'GOOG'"):
        catalog.load("GOGL", bar="1d")
    with pytest.raises(DataError, match="GOOG has no 1min data; stored: 1d"):
        catalog.load("GOOG")
    with pytest.raises(DataError, match="invalid symbol 'EUR/USD': contains '/'"):
        validate_symbol("EUR/USD")
    with pytest.raises(DataError, match="not a bar size"):
        normalize_bar("fortnight")
    with pytest.raises(DataError, match="listed twice"):
        catalog.load(["GOOG", "GOOG"], bar="1d")
    assert [normalize_bar(b) for b in ("1m", "60min", "24h", "tick", "1MO")] == ["1min", "1h", "1d", "quote", "1mo"]


def test_default_root_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BACKFORGE_DATA", str(tmp_path / "envcat"))
    assert Catalog().root == tmp_path / "envcat"
    monkeypatch.delenv("BACKFORGE_DATA")
    assert Catalog().root == Path("backforge-data")


def test_sql_over_the_catalog(catalog: Catalog, shared: Path) -> None:
    pytest.importorskip("duckdb")
    from backforge.data.synth import synthetic_fundamentals

    catalog.import_file(shared / "GOOG.csv", symbol="GOOG")
    catalog.import_file(shared / "orcl-1995-2014.txt", symbol="ORCL")
    catalog.import_file(shared / "binance-btcusdt-trades.parquet", symbol="BTCUSDT")
    catalog.write_fundamentals(synthetic_fundamentals(("GOOG",), 1, seed=1))
    out = catalog.sql("SELECT symbol, count(*) AS n, max(close) AS top FROM bars GROUP BY symbol ORDER BY symbol")
    top = {name: float(pl.read_csv(shared / f)["Close"].max()) for name, f in (("GOOG", "GOOG.csv"), ("ORCL", "orcl-1995-2014.txt"))}
    assert out.rows() == [("GOOG", 2148, top["GOOG"]), ("ORCL", 5036, top["ORCL"])]
    assert catalog.sql("SELECT sum(size) AS s FROM trades")["s"][0] == pytest.approx(float(pl.read_parquet(shared / "binance-btcusdt-trades.parquet")["quantity"].sum()))
    assert catalog.sql("SELECT count(*) AS n FROM series")["n"][0] == 3
    assert catalog.sql("SELECT count(DISTINCT field) AS n FROM fundamentals")["n"][0] == 5
    with pytest.raises(DataError, match="SQL error: .*nope"):
        catalog.sql("SELECT * FROM nope")


# ---------------------------------------------------------------------- ArcticDB backend

@pytest.fixture()
def arctic(tmp_path: Path) -> Catalog:
    pytest.importorskip("arcticdb")
    return Catalog(f"lmdb://{tmp_path / 'arctic'}")


def test_arcticdb_backend_behaves_like_the_parquet_catalog(arctic: Catalog, catalog: Catalog, shared: Path) -> None:
    assert arctic.backend == "arcticdb"
    for cat in (arctic, catalog):
        cat.import_file(shared / "GOOG.csv", symbol="GOOG")
        cat.import_file(shared / "orcl-1995-2014.txt", symbol="ORCL")
        cat.import_file(shared / "truefx-usdjpy-ticks.csv", symbol="USDJPY")
    assert [(s.symbol, s.bar, s.kind, s.rows) for s in arctic.list()] == [(s.symbol, s.bar, s.kind, s.rows) for s in catalog.list()]
    assert arctic.load(["GOOG", "ORCL"], bar="1d").fingerprint() == catalog.load(["GOOG", "ORCL"], bar="1d").fingerprint()
    assert arctic.load("USDJPY", "2013-01-01 22:10", None, bar="quote").fingerprint() == \
        catalog.load("USDJPY", "2013-01-01 22:10", None, bar="quote").fingerprint()
    assert arctic.read("GOOG", start="2013-02-27")["close"].to_list() == [799.78, 801.2, 806.19]


def test_arcticdb_append_delete_and_fundamentals(arctic: Catalog, tmp_path: Path) -> None:
    from backforge.data.synth import synthetic_fundamentals

    first = tmp_path / "a.csv"
    first.write_text("date,close\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n")
    second = tmp_path / "b.csv"
    second.write_text("date,close\n2020-01-03,30\n2020-01-04,4\n")
    arctic.import_file(first, symbol="X")
    report = arctic.import_file(second, symbol="X")
    assert (report.write.added, report.write.replaced, report.write.rows) == (1, 1, 4)
    assert arctic.read("X")["close"].to_list() == [1.0, 2.0, 30.0, 4.0]
    assert arctic.info("X").rows == 4
    table = synthetic_fundamentals(("X",), 1, seed=1)
    arctic.write_fundamentals(table)
    assert arctic.fundamentals().frame.height == table.height
    assert arctic.delete("X") == 1 and arctic.list() == []
    with pytest.raises(DataError, match="SQL is available on the Parquet catalog only"):
        arctic.sql("SELECT 1")

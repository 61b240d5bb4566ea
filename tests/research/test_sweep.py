"""The vectorized sweep against its slow reference: ``backforge.from_signals`` plus the metrics module.

Every combination of a sweep must be the backtest ``from_signals(data, fast > slow, fast < slow, ...)``
would run, with the metrics ``equity_metrics`` / ``trade_metrics`` / ``exposure_and_turnover`` compute
from its equity curve and trades. The tests compare them on real GOOG daily bars and on synthetic
data, with and without stop-loss / take-profit brackets, fees, slippage, whole units, a tiny
account (rejected entries), partial sizing, a risk-free rate, bid/ask quotes and a multi-asset data
set with gaps: equity-derived metrics to 1e-9 relative, counts exactly.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import backforge as bf
import backforge.research.sweep as sweep_module
from backforge.data.market import MarketData
from backforge.errors import ConfigError, DataError
from backforge.research.sweep import SWEEP_METRIC_NAMES, sweep_signals, sweep_sma_cross
from backforge.results.metrics import equity_metrics, exposure_and_turnover, periods_per_year_for, trade_metrics
from backforge.strategy.indicators import ema, sma

NAN = math.nan
RTOL = 1e-9
FAST = [2, 5, 10, 20]
SLOW = [10, 30, 60]
STOPS = [NAN, 0.01, 0.03, 0.08]
TAKES = [NAN, 0.02, 0.1]
EXACT = ("n_trades", "win_rate", "exposure_time")

SETTINGS = {
    "whole_units_costs": dict(fee_rate=0.002, slippage_bps=5.0, lot_size=1.0, cash=10_000.0),
    "fractional_free": dict(),
    "half_size_risk_free": dict(size=0.5, fee_rate=0.001, slippage_bps=1.0, risk_free=0.03, periods_per_year=252.0),
    "tiny_account_rejections": dict(fee_rate=0.001, lot_size=1.0, cash=300.0),
    "lot_of_ten": dict(fee_rate=0.0005, slippage_bps=20.0, lot_size=10.0, cash=25_000.0),
}


# ------------------------------------------------------------------------------------------ oracle

def reference_row(data: MarketData, fast: np.ndarray, slow: np.ndarray, stop_loss: float | None,
                  take_profit: float | None, options: dict) -> dict[str, float]:
    """The metrics of one combination, the slow way: from_signals, then the metrics module."""
    options = dict(options)
    risk_free = options.pop("risk_free", 0.0)
    periods = options.pop("periods_per_year", None) or periods_per_year_for(data.timestamps)
    options.setdefault("lot_size", 0.0)  # the sweep's default (from_signals defaults to whole units)
    if stop_loss is not None and not math.isnan(stop_loss):
        options["stop_loss"] = stop_loss
    if take_profit is not None and not math.isnan(take_profit):
        options["take_profit"] = take_profit
    with np.errstate(invalid="ignore"):
        entries, exits = fast > slow, fast < slow
    result = bf.from_signals(data, entries, exits, size_type="equity_fraction", **options)
    equity = result.equity_values
    metrics = equity_metrics(equity, periods_per_year=periods, risk_free=risk_free)
    trades = result.trade_records
    per_trade = trade_metrics(trades["pnl"], trades["ret"], trades["exit_ts"] - trades["entry_ts"])
    state = result.state
    exposure = exposure_and_turnover(state.gross_exposure, equity, np.zeros_like(equity))
    row = {name: float(metrics[name]) for name in
           ("total_return", "annual_return", "annual_volatility", "sharpe", "sortino", "calmar", "max_drawdown")}
    row.update(n_trades=per_trade["n_trades"], win_rate=per_trade["win_rate"],
               profit_factor=per_trade["profit_factor"], exposure_time=float(exposure["exposure_time"]),
               final_equity=float(equity[-1]))
    return row


def assert_rows_match(table: pl.DataFrame, reference, label: str) -> None:
    """Compare every row of a sweep table with ``reference(row) -> dict``."""
    assert table.columns[4:] == list(SWEEP_METRIC_NAMES)
    for row in table.iter_rows(named=True):
        expected = reference(row)
        where = f"{label} {({k: row[k] for k in table.columns[:4]})}"
        for name in SWEEP_METRIC_NAMES:
            got, want = row[name], expected[name]
            if name in EXACT:
                assert got == want, f"{where}: {name} {got} != {want}"
            else:
                assert got == pytest.approx(want, rel=RTOL, abs=1e-12), f"{where}: {name} {got} != {want}"


def check_sma_sweep(data: MarketData, options: dict, label: str) -> pl.DataFrame:
    table = sweep_sma_cross(data, fast=FAST, slow=SLOW, stop_loss=STOPS, take_profit=TAKES, **options)
    close = data.close[:, 0]
    cache = {w: sma(close, data.timestamps, w) for w in set(FAST) | set(SLOW)}

    def reference(row):
        return reference_row(data, cache[row["fast"]], cache[row["slow"]], row["stop_loss"], row["take_profit"],
                             options)

    assert_rows_match(table, reference, label)
    return table


@pytest.fixture(scope="module")
def goog(shared_data_dir: Path) -> MarketData:
    path = shared_data_dir / "GOOG.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return bf.data.read_csv(path)


@pytest.fixture(scope="module")
def synthetic() -> MarketData:
    return bf.synth(n_assets=1, years=4, bar="1d", seed=11)


# ------------------------------------------------------------------------------------- equivalence

@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_sma_sweep_matches_from_signals_on_goog(goog: MarketData, setting: str) -> None:
    table = check_sma_sweep(goog, SETTINGS[setting], f"GOOG/{setting}")
    assert table["n_trades"].sum() > 0
    if setting == "tiny_account_rejections":
        # entries that cannot buy one share are rejected: fewer trades than with a big account
        big = sweep_sma_cross(goog, fast=FAST, slow=SLOW, stop_loss=STOPS, take_profit=TAKES,
                              **{**SETTINGS[setting], "cash": 1_000_000.0})
        assert table["n_trades"].sum() < big["n_trades"].sum()


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_sma_sweep_matches_from_signals_on_synthetic_data(synthetic: MarketData, setting: str) -> None:
    table = check_sma_sweep(synthetic, SETTINGS[setting], f"synth/{setting}")
    stopped = table.filter(pl.col("stop_loss").is_not_null() | pl.col("take_profit").is_not_null())
    plain = table.filter(pl.col("stop_loss").is_null() & pl.col("take_profit").is_null())
    assert stopped["n_trades"].sum() > plain["n_trades"].sum() * 2  # brackets fire and re-entries follow


def test_sweep_with_bid_ask_quotes_buys_at_the_ask_and_sells_at_the_bid(synthetic: MarketData) -> None:
    half = 0.04
    side = lambda shift: {f: getattr(synthetic, f) + shift for f in ("open", "high", "low", "close")}  # noqa: E731
    quoted = MarketData.from_arrays(synthetic.timestamps, close=None, assets=synthetic.assets,
                                    bid=side(-half), ask=side(half))
    assert quoted.has_quotes
    options = dict(fee_rate=0.001, slippage_bps=2.0)
    table = check_sma_sweep(quoted, options, "quotes")
    mid = sweep_sma_cross(synthetic, fast=FAST, slow=SLOW, stop_loss=STOPS, take_profit=TAKES, **options)
    assert (table["total_return"] < mid["total_return"] + 1e-12).mean() > 0.9  # the spread costs


def test_one_asset_of_a_multi_asset_data_set_with_gaps() -> None:
    base = bf.synth(n_assets=3, years=3, bar="1d", seed=5)
    fields = {f: getattr(base, f).copy() for f in ("open", "high", "low", "close", "volume")}
    for f in fields:
        fields[f][200:230, 1] = np.nan  # asset 1 halted for 30 bars
        fields[f][500:505, 1] = np.nan
    data = MarketData.from_arrays(base.timestamps, assets=base.assets, **fields)
    name = data.assets[1]
    with pytest.raises(ConfigError, match="pass asset=") as info:
        sweep_sma_cross(data, fast=[5], slow=[20])
    assert info.value.field == "asset"
    own = data.select([name])
    assert own.n_bars == data.n_bars - 35
    options = dict(fee_rate=0.001, lot_size=1.0)
    table = sweep_sma_cross(data, asset=name, fast=FAST, slow=SLOW, stop_loss=STOPS, take_profit=TAKES, **options)
    expected = check_sma_sweep(own, options, "asset")
    assert table.equals(expected)


def test_sweep_signals_crosses_any_two_indicator_families(synthetic: MarketData) -> None:
    close = synthetic.close[:, 0]
    fast_windows, slow_windows = [3, 8, 21], [15, 40]
    fast = np.vstack([ema(close, synthetic.timestamps, w) for w in fast_windows])
    slow = np.vstack([sma(close, synthetic.timestamps, w) for w in slow_windows] + [close])  # price as a "slow" line
    pairs = np.array([[0, 0], [2, 1], [1, 2], [0, 2]])
    options = dict(fee_rate=0.001, slippage_bps=3.0)
    table = sweep_signals(synthetic, fast, slow, pairs=pairs, stop_loss=[NAN, 0.04], take_profit=[None, 0.06],
                          **options)
    assert table.columns[:4] == ["fast_index", "slow_index", "stop_loss", "take_profit"]
    assert table.height == 4 * 2 * 2
    assert table["fast_index"].to_list()[::4] == [0, 2, 1, 0]
    assert table["take_profit"].to_list()[:2] == [None, 0.06]

    def reference(row):
        return reference_row(synthetic, fast[row["fast_index"]], slow[row["slow_index"]], row["stop_loss"],
                             row["take_profit"], options)

    assert_rows_match(table, reference, "signals")
    everything = sweep_signals(synthetic, fast, slow)  # pairs=None: every row with every row
    assert everything.height == 3 * 3
    assert everything.select("fast_index", "slow_index").rows()[:4] == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_windows_as_long_as_the_data_never_trade(synthetic: MarketData) -> None:
    n = synthetic.n_bars
    table = sweep_sma_cross(synthetic, fast=[n - 1], slow=[n], stop_loss=[NAN, 0.05])
    assert table["n_trades"].to_list() == [0, 0]
    row = table.row(0, named=True)
    assert row["total_return"] == 0.0 and row["sharpe"] == 0.0 and row["max_drawdown"] == 0.0
    assert row["final_equity"] == 100_000.0 and row["profit_factor"] == 1.0 and row["win_rate"] == 0.0


def test_decision_schedule_matches_its_slow_reference() -> None:
    rng = np.random.default_rng(3)
    n = 300
    fast = np.round(rng.normal(size=n), 1)  # rounding makes ties (no decision) frequent
    slow = np.round(rng.normal(size=n), 1)
    fast[:7] = np.nan  # warm-up
    slow[100:104] = np.nan
    arrays = [np.empty(n, dtype=np.int64) for _ in range(3)]
    sweep_module.cross_schedule_nb(fast, slow, *arrays)
    with np.errstate(invalid="ignore"):
        on, off = fast > slow, fast < slow
    rises = on & ~np.r_[False, on[:-1]]
    for flags, got in zip((on, off, rises), arrays):
        expected = [min([u for u in range(t, n) if flags[u]] or [n]) for t in range(n)]
        assert got.tolist() == expected
    always = [np.empty(3, dtype=np.int64) for _ in range(3)]
    sweep_module.cross_schedule_nb(np.ones(3), np.zeros(3), *always)  # on from bar 0: bar 0 is the one rise
    assert [a.tolist() for a in always] == [[0, 1, 2], [3, 3, 3], [0, 3, 3]]


# ------------------------------------------------------------------------------------------ layout

def test_table_layout_and_order(synthetic: MarketData) -> None:
    table = sweep_sma_cross(synthetic, fast=[20, 5, 10], slow=[10, 50], stop_loss=[0.02, None], take_profit=[NAN])
    assert table.columns == ["fast", "slow", "stop_loss", "take_profit", *SWEEP_METRIC_NAMES]
    assert table.schema["fast"] == pl.Int64 and table.schema["n_trades"] == pl.Int64
    assert table.schema["sharpe"] == pl.Float64 and table.schema["stop_loss"] == pl.Float64
    # fast=20 has no slow window above it but 50; fast=10 pairs only with 50; given order is kept
    assert table.select("fast", "slow", "stop_loss").rows() == [
        (20, 50, 0.02), (20, 50, None), (5, 10, 0.02), (5, 10, None), (5, 50, 0.02), (5, 50, None),
        (10, 50, 0.02), (10, 50, None),
    ]
    assert table["take_profit"].null_count() == table.height


# ------------------------------------------------------------------------------------ determinism

def test_results_do_not_depend_on_threads_progress_or_repetition(synthetic: MarketData) -> None:
    kwargs = dict(fast=range(2, 30, 3), slow=range(10, 80, 7), stop_loss=[NAN, 0.02, 0.05],
                  take_profit=[NAN, 0.04], fee_rate=0.001, slippage_bps=2.0, lot_size=1.0)
    first = sweep_sma_cross(synthetic, **kwargs)
    assert first.equals(sweep_sma_cross(synthetic, **kwargs))
    assert first.equals(sweep_sma_cross(synthetic, n_threads=1, **kwargs))
    assert first.equals(sweep_sma_cross(synthetic, progress=True, **kwargs))
    finite = [name for name in SWEEP_METRIC_NAMES if name not in ("sortino", "profit_factor")]  # may be +inf
    assert np.isfinite(first.select(finite).to_numpy()).all()


# ------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize(("kwargs", "field", "message"), [
    (dict(fast=[]), "fast", "is empty"),
    (dict(slow=[]), "slow", "is empty"),
    (dict(fast=[50, 60], slow=[10, 50]), "fast", "no combination has fast < slow"),
    (dict(slow=[20, 10_000]), "slow[1]", "longer than the data"),
    (dict(fast=[0, 5]), "fast[0]", "must be >= 1 bar"),
    (dict(fast=[-3]), "fast[0]", "must be >= 1 bar"),
    (dict(fast=[2.5]), "fast[0]", "whole number of bars"),
    (dict(fast=[True]), "fast[0]", "whole number of bars"),
    (dict(fast=[5, 5]), "fast", "more than once"),
    (dict(fast=5), "fast", "sequence of bar counts"),
    (dict(stop_loss=[NAN, -0.01]), "stop_loss[1]", r"fraction in \(0, 1\)"),
    (dict(stop_loss=[1.0]), "stop_loss[0]", r"fraction in \(0, 1\)"),
    (dict(stop_loss=[]), "stop_loss", "is empty"),
    (dict(stop_loss=0.05), "stop_loss", "sequence of fractions"),
    (dict(stop_loss=[0.02, 0.02]), "stop_loss", "more than once"),
    (dict(take_profit=[0.0]), "take_profit[0]", "finite fraction > 0"),
    (dict(take_profit=[-0.1]), "take_profit[0]", "finite fraction > 0"),
    (dict(take_profit=["x"]), "take_profit[0]", "fraction or nan"),
    (dict(size=1.5), "size", r"> 0 and <= 1"),
    (dict(size=0.0), "size", r"> 0 and <= 1"),
    (dict(cash=0.0), "cash", "> 0"),
    (dict(fee_rate=-0.001), "fee_rate", ">= 0"),
    (dict(slippage_bps=math.inf), "slippage_bps", "finite number"),
    (dict(lot_size=-1.0), "lot_size", ">= 0"),
    (dict(periods_per_year=0), "periods_per_year", "> 0"),
    (dict(n_threads=0), "n_threads", "integer in 1.."),
])
def test_invalid_parameters_raise_before_any_work(synthetic: MarketData, monkeypatch, kwargs, field, message) -> None:
    def no_work(*args, **kw):
        raise AssertionError("work started before the parameters were validated")

    monkeypatch.setattr(sweep_module, "sweep_cross_nb", no_work)
    monkeypatch.setattr("backforge.strategy.indicators.sma", no_work)
    arguments = {"fast": [5, 10], "slow": [20, 40], **kwargs}
    with pytest.raises(ConfigError, match=message) as info:
        sweep_sma_cross(synthetic, **arguments)
    assert info.value.field == field


def test_invalid_inputs_of_sweep_signals(synthetic: MarketData) -> None:
    close = synthetic.close[:, 0]
    line = sma(close, synthetic.timestamps, 10)
    with pytest.raises(DataError, match="expected MarketData"):
        sweep_signals(close, line, line)
    with pytest.raises(DataError, match=r"must be \[K, T\]") as info:
        sweep_signals(synthetic, line[:-1], line)
    assert info.value.field == "fast"
    with pytest.raises(DataError, match="must be numeric"):
        sweep_signals(synthetic, line, np.array(["a"] * synthetic.n_bars))
    with pytest.raises(ConfigError, match=r"\[P, 2\]") as info:
        sweep_signals(synthetic, line, line, pairs=np.array([0, 0]))
    assert info.value.field == "pairs"
    with pytest.raises(ConfigError, match="slow row 3 is outside 0..0") as info:
        sweep_signals(synthetic, line, line, pairs=np.array([[0, 0], [0, 3]]))
    assert info.value.field == "pairs[1]"
    with pytest.raises(DataError, match="at least 2 bars"):
        sweep_sma_cross(synthetic.rows(0, 1), fast=[1], slow=[2])


# ------------------------------------------------------------------------------------------ memory

MEMORY_PROBE = """
import json, resource, sys
import numpy as np
import backforge as bf
from backforge.research.sweep import sweep_sma_cross
data = bf.synth(n_assets=1, years=10, bar="1d", seed=7)
# warm up first (a fresh checkout compiles the kernels here, which takes far more memory than running
# them), then reset the high-water mark so the peak measured is the sweep's own
sweep_sma_cross(data, fast=[5], slow=[20], stop_loss=[float("nan"), 0.02], take_profit=[float("nan"), 0.03])
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
table = sweep_sma_cross(data, fast=range(2, 42), slow=range(10, 110), stop_loss=[float("nan"), 0.02, 0.04, 0.08, 0.15],
                        take_profit=[float("nan"), 0.03, 0.06, 0.12, 0.25])
print(json.dumps({"rows": table.height, "bars": data.n_bars,
                  "peak_mb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024}))
"""


@pytest.mark.slow
def test_a_big_sweep_keeps_metrics_only(tmp_path: Path) -> None:
    """86,800 combinations x 2,520 bars: their equity curves alone would take 1.6 GB; the whole process
    (interpreter, libraries, compiled code, results) stays far below that."""
    script = tmp_path / "probe.py"
    script.write_text(MEMORY_PROBE)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    curves_mb = report["rows"] * report["bars"] * 8 / 2**20
    assert report["rows"] > 80_000 and curves_mb > 1_500
    assert report["peak_mb"] < 600, report

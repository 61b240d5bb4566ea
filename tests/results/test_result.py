"""Tests of backforge.results.result: metrics and summary of a Result (hand-computed tiny runs: flat
equity, one trade, all losses, zero volatility), the returns for QuantStats, the equal-weight
benchmark, saving and loading runs (SavedRun), and comparing runs."""

from __future__ import annotations

import json
import math
import shutil
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import backforge as bf
from backforge.errors import BackforgeError, ConfigError, DataError
from backforge.results.metrics import BENCHMARK_METRIC_NAMES, EQUITY_METRIC_NAMES
from backforge.results.result import SavedRun, compare_runs, equal_weight_benchmark, equal_weight_benchmark_nb

DAY = 86_400 * 10**9
SUMMARY_KEYS = ["start", "end", "bars", "assets", "initial_cash", "final_equity", "total_return", "cagr", "sharpe",
                "max_drawdown", "trades", "win_rate", "open_positions", "fees", "financing", "slippage", "orders", "fills"]
TRADE_KEYS = ["n_trades", "win_rate", "profit_factor", "expectancy", "expectancy_pct", "avg_win", "avg_loss",
              "payoff_ratio", "kelly", "sqn", "best_trade", "worst_trade", "avg_trade_duration_ns",
              "max_trade_duration_ns", "longest_win_streak", "longest_loss_streak"]


def weekdays(n: int) -> np.ndarray:
    """``n`` consecutive weekdays from Monday 1970-01-05, as int64 ns."""
    days = [d for d in range(4, 4 + 2 * n) if (d + 3) % 7 < 5][:n]
    return np.array(days, dtype=np.int64) * DAY


def run(close, entries, exits=None, **options):
    close = np.asarray(close, dtype=float)
    data = bf.MarketData.from_arrays(weekdays(len(close)), close=close, assets=["X"])
    flags = lambda values: None if values is None else np.asarray(values, dtype=bool)  # noqa: E731
    return bf.from_signals(data, flags(entries), flags(exits), **options)


def assert_no_nan(metrics: dict) -> None:
    bad = [key for key, value in metrics.items() if isinstance(value, float) and math.isnan(value)]
    assert not bad, f"NaN metrics: {bad}"


@pytest.fixture(scope="module")
def daily_result():
    from backforge.strategy.indicators import sma

    data = bf.synth(n_assets=3, years=3, seed=11)
    fast, slow = sma(data.close, data.timestamps, 10), sma(data.close, data.timestamps, 30)
    return bf.from_signals(data, fast > slow, fast < slow, size=1 / 3, fee_rate=0.001, slippage_bps=2,
                           stop_loss=0.05, take_profit=0.08)


@pytest.fixture(scope="module")
def saved(daily_result, tmp_path_factory):
    return daily_result.save(tmp_path_factory.mktemp("runs") / "daily")


# ------------------------------------------------------------------------------ hand-computed runs
def test_flat_equity_has_defined_values_not_nan():
    result = run([100.0, 101.0, 99.0, 100.0, 102.0], entries=None)
    m = result.metrics()
    assert_no_nan(m)
    assert set(EQUITY_METRIC_NAMES) <= set(m) and set(TRADE_KEYS) <= set(m)
    assert m["total_return"] == 0.0 and m["cagr"] == 0.0 and m["final_equity"] == 100_000.0
    assert m["sharpe"] == 0.0 and m["annual_volatility"] == 0.0 and m["sortino"] == 0.0
    assert m["max_drawdown"] == 0.0 and m["calmar"] == 0.0 and m["omega"] == 1.0
    assert m["n_trades"] == 0 and m["win_rate"] == 0.0 and m["profit_factor"] == 1.0 and m["kelly"] == 0.0
    assert m["exposure_time"] == 0.0 and m["turnover"] == 0.0 and m["orders"] == 0
    s = result.summary()
    assert list(s) == SUMMARY_KEYS
    assert s["trades"] == 0 and s["win_rate"] == 0.0 and s["sharpe"] == 0.0
    assert result.drawdowns.height == 0
    assert "not enough variation" in result.to_html()


def test_one_trade_hand_computed():
    # buy at bar 1's open (100) on bar 0's signal, sell at bar 3's open (110) on bar 2's signal: 1,000 units
    result = run([100.0, 100.0, 110.0, 110.0], entries=[1, 0, 0, 0], exits=[0, 0, 1, 0])
    m = result.metrics()
    assert_no_nan(m)
    # the curve starts at the starting cash: [100k, 100k, 100k, 110k, 110k]; returns [0, 0, 0.1, 0]
    np.testing.assert_allclose(result.returns.to_numpy(), [0.0, 0.0, 0.1, 0.0], atol=1e-15)
    assert m["total_return"] == pytest.approx(0.1, rel=1e-12)
    assert m["final_equity"] == 110_000.0
    assert m["periods_per_year"] == 252.0
    # mean 0.025, sample std sqrt((3 * 0.025^2 + 0.075^2) / 3) = 0.05
    assert m["sharpe"] == pytest.approx(0.5 * math.sqrt(252), rel=1e-12)
    assert m["annual_volatility"] == pytest.approx(0.05 * math.sqrt(252), rel=1e-12)
    assert m["cagr"] == pytest.approx(1.1 ** (365.25 / 3) - 1, rel=1e-9)  # three calendar days
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_duration"] == 0.0
    assert m["sortino"] == math.inf and m["calmar"] == math.inf  # a gain with no downside is unbounded
    assert m["n_trades"] == 1 and m["win_rate"] == 1.0 and m["profit_factor"] == math.inf
    assert m["expectancy"] == pytest.approx(10_000.0) and m["best_trade"] == pytest.approx(0.1)
    assert m["avg_trade_duration_ns"] == 2 * DAY and m["max_trade_duration_ns"] == 2 * DAY
    # in the market on bars 1 and 2 of 4, fully invested; traded 100k + 110k over a mean equity of 105k
    assert m["exposure_time"] == 0.5 and m["avg_gross_leverage"] == 0.5 and m["turnover"] == pytest.approx(2.0)
    assert m["orders"] == 2 and m["fills"] == 2 and m["open_positions"] == 0 and m["fees"] == 0.0
    s = result.summary()
    assert s["total_return"] == m["total_return"] and s["trades"] == 1 and s["win_rate"] == 1.0


def test_all_losses_hand_computed(tmp_path):
    # two round trips, each losing 10,000: 100 -> 90 and 90 -> 80
    result = run([100.0, 100.0, 90.0, 90.0, 80.0, 80.0], entries=[1, 0, 1, 0, 0, 0], exits=[0, 1, 0, 1, 0, 0])
    m = result.metrics()
    assert_no_nan(m)
    assert m["final_equity"] == 80_000.0 and m["total_return"] == pytest.approx(-0.2)
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["n_trades"] == 2 and m["win_rate"] == 0.0 and m["profit_factor"] == 0.0 and m["payoff_ratio"] == 0.0
    assert m["kelly"] == -math.inf and m["longest_loss_streak"] == 2 and m["longest_win_streak"] == 0
    assert m["expectancy"] == pytest.approx(-10_000.0)
    assert m["avg_loss"] == pytest.approx((-0.1 - 1 / 9) / 2) and m["avg_win"] == 0.0
    assert m["omega"] == 0.0 and m["recovery_factor"] == pytest.approx(-1.0)
    # -inf survives saving as strict JSON and loading
    folder = result.save(tmp_path / "losses")
    text = (folder / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert '"kelly": "-inf"' in text
    loaded = bf.load_result(folder)
    assert loaded.metrics()["kelly"] == -math.inf
    html = loaded.to_html()
    assert "−∞" in html


def test_zero_volatility_position_held_at_a_constant_price():
    # the position is open for the whole run but the price never moves: flat equity, full exposure
    result = run([50.0] * 6, entries=[1, 0, 0, 0, 0, 0])
    m = result.metrics()
    assert_no_nan(m)
    assert m["annual_volatility"] == 0.0 and m["sharpe"] == 0.0 and m["sortino"] == 0.0
    assert m["var_historical"] == 0.0 and m["skew"] == 0.0 and m["kurtosis"] == 0.0 and m["tail_ratio"] == 1.0
    assert m["n_trades"] == 0 and m["open_positions"] == 1
    assert m["exposure_time"] == pytest.approx(5 / 6)
    trades = result.trades
    assert trades.height == 1 and trades["is_open"].to_list() == [True]
    html = result.to_html()
    assert "(open)" in html


def test_single_bar_run_is_defined():
    data = bf.MarketData.from_arrays(weekdays(1), close=np.array([[10.0]]), assets=["X"])
    result = bf.from_signals(data, np.array([[True]]))
    m = result.metrics()
    assert_no_nan(m)
    assert m["bars"] == 1 and m["total_return"] == 0.0 and m["sharpe"] == 0.0
    assert result.to_html().startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------------------ metrics of a real run
def test_metrics_use_the_metrics_module_on_the_curve_from_the_starting_cash(daily_result):
    from backforge.results import metrics as mx

    r = daily_result
    curve = np.r_[r.initial_cash, r.equity_values]
    ppy = mx.periods_per_year_for(r.data.timestamps)
    expected = mx.equity_metrics(curve, periods_per_year=ppy, timestamps_ns=np.r_[r.data.timestamps[:1], r.data.timestamps])
    m = r.metrics()
    for key in EQUITY_METRIC_NAMES:
        assert m[key] == float(expected[key]), key
    closed = r.trades.filter(~pl.col("is_open"))
    assert m["n_trades"] == closed.height
    assert m["win_rate"] == pytest.approx((closed["pnl"] > 0).mean())
    assert m["fees"] == pytest.approx(float(r.fills["fee"].sum()))
    assert not set(BENCHMARK_METRIC_NAMES) & set(m)
    with_benchmark = r.metrics(benchmark="equal_weight")
    assert set(BENCHMARK_METRIC_NAMES) <= set(with_benchmark)
    assert with_benchmark["sharpe"] == m["sharpe"]
    assert r.metrics(risk_free=0.05)["sharpe"] < m["sharpe"]
    assert r.metrics(calendar="crypto")["periods_per_year"] == 365.0


def test_summary_derives_from_metrics(daily_result):
    s, m = daily_result.summary(), daily_result.metrics()
    assert list(s) == SUMMARY_KEYS
    for key in SUMMARY_KEYS:
        assert s[key] == (m["n_trades"] if key == "trades" else m[key])
    assert s["total_return"] == pytest.approx(s["final_equity"] / s["initial_cash"] - 1, rel=1e-12)
    assert "Result(756 bars × 3 assets" in repr(daily_result)


def test_returns_are_ready_for_quantstats(daily_result):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantstats as qs

    returns = daily_result.returns
    assert isinstance(returns.index, pd.DatetimeIndex) and str(returns.index.tz) == "UTC"
    assert len(returns) == daily_result.data.n_bars and returns.name == "returns"
    m = daily_result.metrics()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert qs.stats.sharpe(returns, periods=252) == pytest.approx(m["sharpe"], rel=1e-9)
        assert qs.stats.max_drawdown(returns) == pytest.approx(m["max_drawdown"], rel=1e-9)
        assert qs.stats.comp(returns) == pytest.approx(m["total_return"], rel=1e-9)


@pytest.mark.slow
def test_quantstats_html_report_accepts_the_returns(daily_result, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantstats as qs

        qs.reports.html(daily_result.returns.iloc[:260], output=str(tmp_path / "qs.html"), title="quantstats")
    assert (tmp_path / "qs.html").stat().st_size > 10_000


# ------------------------------------------------------------------------------ benchmark
def test_equal_weight_benchmark_matches_a_pandas_reference():
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(300, 4)), axis=0))
    close[:40, 1] = np.nan  # listed later
    close[100:120, 2] = np.nan  # a halt
    close[:, 3] = np.nan  # never traded
    frame = pd.DataFrame(close).ffill()
    first = pd.DataFrame(close).bfill().iloc[0]
    growth = (frame / first).where(frame.notna(), 1.0).fillna(1.0)
    expected = 1_000.0 * growth.mean(axis=1).to_numpy()
    np.testing.assert_allclose(equal_weight_benchmark(close, 1_000.0), expected, rtol=1e-12)
    np.testing.assert_allclose(equal_weight_benchmark_nb(close, 1_000.0), expected, rtol=1e-12)
    with pytest.raises(DataError, match="close must be"):
        equal_weight_benchmark(np.zeros((3, 0)), 1.0)


def test_benchmark_options(daily_result):
    r = daily_result
    name, curve = r.benchmark_equity()
    assert name == "equal-weight buy & hold" and curve[0] == r.initial_cash and len(curve) == r.data.n_bars
    assert r.benchmark_equity(None) is None and r.benchmark_equity("none") is None
    prices = r.data.close[:, 0]
    name, given = r.benchmark_equity(pl.Series("GOOGish", prices))
    assert name == "GOOGish"
    np.testing.assert_allclose(given, r.initial_cash * prices / prices[0])
    index = pd.to_datetime(r.data.timestamps[::5], utc=True)
    series = pd.Series(prices[::5], index=index, name="sparse")
    name, aligned = r.benchmark_equity(series)  # as of each bar: the last value at or before it
    assert name == "sparse" and aligned[6] == pytest.approx(r.initial_cash * prices[5] / prices[0])
    with pytest.raises(DataError, match="one value per bar"):
        r.benchmark_equity(prices[:-1])
    with pytest.raises(DataError, match="finite and > 0"):
        r.benchmark_equity(np.r_[prices[:-1], -1.0])
    with pytest.raises(ConfigError, match="did you mean 'equal_weight'"):
        r.benchmark_equity("equal_wieght")
    bm = r.benchmark_metrics()
    assert bm["name"] == "equal-weight buy & hold" and bm["final_equity"] == pytest.approx(curve[-1])


# ------------------------------------------------------------------------------ saving and loading
def test_save_writes_parquet_tables_and_strict_json(daily_result, saved):
    names = sorted(p.name for p in saved.iterdir())
    assert names == ["benchmark.parquet", "chart_prices.parquet", "config.json", "equity.parquet", "fills.parquet",
                     "metadata.json", "metrics.json", "order_log.parquet", "orders.parquet", "positions.parquet",
                     "summary.json", "trades.parquet"]
    for name in ("config", "summary", "metadata", "metrics"):
        json.loads((saved / f"{name}.json").read_text(), parse_constant=lambda c: pytest.fail(f"{name}: {c}"))
    meta = json.loads((saved / "metadata.json").read_text())
    assert meta["data_fingerprint"] == daily_result.data.fingerprint()
    assert meta["bar"] == "1d" and meta["assets"] == ["AAPL", "MSFT", "GOOG"] and len(meta["run_id"]) == 16
    assert {"python", "numpy", "numba", "polars"} <= set(meta["versions"]) and meta["created"]
    config = json.loads((saved / "config.json").read_text())
    assert config["signal_config"]["stop_loss"] == 0.05 and config["sim_config"]["fee_rate"] == 0.001
    metrics = json.loads((saved / "metrics.json").read_text())
    assert metrics["options"] == {"benchmark": "equal_weight", "risk_free": 0.0, "calendar": "auto"}
    assert metrics["benchmark"]["name"] == "equal-weight buy & hold"
    chart = pl.read_parquet(saved / "chart_prices.parquet")
    assert chart.columns == ["asset", "timestamp", "close"] and chart["asset"].unique().sort().to_list() == ["AAPL", "GOOG", "MSFT"]


def test_load_result_gives_a_saved_run_equal_to_the_result(daily_result, saved):
    run = bf.load_result(saved)
    assert isinstance(run, SavedRun) and run.name == "daily"
    # the mapping interface of the former dict return value
    assert sorted(run)[:4] == ["benchmark", "chart_prices", "config", "equity"] and "trades" in run and len(run) == 12
    assert run["summary"] == run.summary() and run["config"] == run.config
    assert run.equity.equals(daily_result.equity) and run.trades.equals(daily_result.trades)
    assert run.fills.equals(daily_result.fills) and run.orders.equals(daily_result.orders)
    assert run.order_log.equals(daily_result.order_log) and run.positions.equals(daily_result.positions)
    assert run.signal_events is None
    assert run.summary() == daily_result.summary()
    assert run.metrics() == daily_result.metrics()
    assert run.metrics(benchmark="equal_weight") == daily_result.metrics(benchmark="equal_weight")
    # other options are recomputed from the saved tables, with the same code
    assert run.metrics(risk_free=0.03, calendar="fx") == daily_result.metrics(risk_free=0.03, calendar="fx")
    assert run.benchmark_metrics() == daily_result.benchmark_metrics()
    pd.testing.assert_series_equal(run.returns, daily_result.returns)
    assert run.drawdowns.equals(daily_result.drawdowns)
    assert "SavedRun(" in repr(run) and "756 bars × 3 assets" in repr(run)


def test_saved_metrics_are_used_without_recomputing(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    document = json.loads((folder / "metrics.json").read_text())
    document["metrics"]["sharpe"] = 123.0
    (folder / "metrics.json").write_text(json.dumps(document))
    run = bf.load_result(folder)
    assert run.metrics()["sharpe"] == 123.0
    assert run.metrics(risk_free=0.01)["sharpe"] != 123.0


def test_runs_saved_before_metrics_and_chart_files_still_load_and_report(daily_result, saved, tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(saved, folder)
    for name in ("metrics.json", "benchmark.parquet", "chart_prices.parquet"):
        (folder / name).unlink()
    run = bf.load_result(folder)
    assert run.metrics() == daily_result.metrics()
    assert "alpha" not in run.metrics(benchmark="equal_weight")  # no closes saved: no benchmark
    html = run.to_html()
    assert "prices were not saved with this run" in html


def test_load_result_errors_name_the_file(saved, tmp_path):
    with pytest.raises(BackforgeError, match="not a folder"):
        bf.load_result(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    (broken / "summary.json").write_text("{not json")
    with pytest.raises(BackforgeError, match=r"summary.json is corrupted"):
        bf.load_result(broken)
    (broken / "summary.json").unlink()
    with pytest.raises(BackforgeError, match="summary.json is missing"):
        bf.load_result(broken)
    damaged = tmp_path / "damaged"
    shutil.copytree(saved, damaged)
    (damaged / "trades.parquet").write_bytes(b"PAR1 garbage")
    run = bf.load_result(damaged)  # tables are read when first used
    with pytest.raises(BackforgeError, match="trades.parquet cannot be read"):
        run.trades


def test_save_replaces_a_run_atomically(daily_result, tmp_path):
    target = tmp_path / "run"
    daily_result.save(target)
    (target / "stale.txt").write_text("old")
    daily_result.save(target, report=True)
    assert not (target / "stale.txt").exists() and (target / "report.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_strategy_runs_save_their_signal_events_and_seed(tmp_path):
    from backforge.strategy.compiler import run_portfolio

    config = {"name": "cross", "universe": ["AAA", "BBB"], "data": {"years": 2, "seed": 5},
              "strategies": [
                  {"name": "enter", "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_above",
                                                  "rhs": {"sma": {"window": 30}}}, "action": {"buy": {}}},
                  {"name": "exit", "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_below",
                                                 "rhs": {"sma": {"window": 30}}}, "action": {"close": {}}}]}
    result = run_portfolio(config, bf.synth(n_assets=2, years=2, seed=5, assets=("AAA", "BBB")))
    folder = result.save(tmp_path / "strategy")
    run = bf.load_result(folder)
    assert run.signal_events.equals(result.signal_events) and run.signal_events.height > 0
    assert run.config["strategy"]["name"] == "cross" and run.metadata["seed"] == 5
    assert run.metrics() == result.metrics()


def test_compare_runs_side_by_side(daily_result, saved, tmp_path):
    cheaper = run([100.0, 100.0, 110.0, 110.0], entries=[1, 0, 0, 0], exits=[0, 0, 1, 0])
    table = compare_runs([saved, saved, daily_result], keys=["total_return", "sharpe", "alpha"])
    assert table.columns == ["metric", "daily", "daily (2)", "run 3"]
    assert table["daily"].to_list()[:2] == [daily_result.metrics()["total_return"], daily_result.metrics()["sharpe"]]
    assert table["daily"].to_list() == table["run 3"].to_list()
    everything = compare_runs([cheaper])
    assert "profit_factor" in everything["metric"].to_list() and "start" not in everything["metric"].to_list()
    with pytest.raises(ConfigError, match="at least one run"):
        compare_runs([])


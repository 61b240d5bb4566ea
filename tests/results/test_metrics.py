"""Tests of backforge.results.metrics: hand-computed cases, QuantStats/empyrical oracles on real
prices, pandas references for every kernel, and hypothesis properties.

Oracles run on daily closes from ``../shared/data`` (GOOG ``Close``; ORCL and NVDA ``Adj Close``).
Where backforge's convention differs from an oracle's (listed in docs/metrics.md), the test converts
one into the other and still asks for 1e-9 relative agreement.
"""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backforge.errors import ConfigError, DataError
from backforge.results import metrics
from backforge.results.metrics import (
    BENCHMARK_METRIC_NAMES,
    EQUITY_METRIC_NAMES,
    drawdown_periods,
    equity_metrics,
    exposure_and_turnover,
    monthly_table,
    period_returns,
    periods_per_year_for,
    returns_from_equity,
    risk_free_per_period,
    rolling_sharpe,
    rolling_volatility,
    trade_metrics,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import empyrical
    import quantstats as qs
    import scipy.stats

RTOL = 1e-9
DAY = 86_400 * 10**9
PPY = 252.0


def assert_close(actual, expected, rtol: float = RTOL, atol: float = 0.0) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), rtol=rtol, atol=atol)


def oracle(function, *args, **kwargs):
    """Call a QuantStats/empyrical function with its own warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ============================================================================================ data
def _read_close(path: Path) -> pd.Series:
    if path.name == "GOOG.csv":
        frame = pd.read_csv(path, index_col=0, parse_dates=True)
        close = frame["Close"]
    else:
        frame = pd.read_csv(path, index_col="Date", parse_dates=True)
        close = frame["Adj Close"]
    close = close.astype(float).dropna()
    close.index = pd.DatetimeIndex(close.index).as_unit("ns")
    return close[~close.index.duplicated()].sort_index()


SYMBOLS = {"GOOG": "GOOG.csv", "ORCL": "orcl-1995-2014.txt", "NVDA": "nvda-1999-2014.txt"}


@pytest.fixture(scope="module")
def closes(shared_data_dir: Path) -> dict[str, pd.Series]:
    return {symbol: _read_close(shared_data_dir / name) for symbol, name in SYMBOLS.items()}


@pytest.fixture(scope="module", params=sorted(SYMBOLS))
def stock(request, closes) -> dict:
    """One stock: its closes as an equity curve, their returns as a pandas Series, timestamps."""
    close = closes[request.param]
    equity = close.to_numpy()
    returns = pd.Series(returns_from_equity(equity), index=close.index[1:])
    return {
        "symbol": request.param,
        "equity": equity,
        "returns": returns,
        "timestamps": close.index.asi8.astype(np.int64),
        "index": close.index,
    }


@pytest.fixture(scope="module")
def pair(closes) -> dict:
    """NVDA (strategy) and ORCL (benchmark) on their common dates."""
    joined = pd.concat({"nvda": closes["NVDA"], "orcl": closes["ORCL"]}, axis=1, join="inner")
    return {
        "equity": joined["nvda"].to_numpy(),
        "benchmark": joined["orcl"].to_numpy(),
        "returns": joined["nvda"].pct_change().iloc[1:],
        "benchmark_returns": joined["orcl"].pct_change().iloc[1:],
    }


# ================================================================================ hand-computed
def test_returns_from_equity_has_t_minus_one_values():
    assert returns_from_equity(np.array([100.0, 110.0, 99.0])).tolist() == pytest.approx([0.1, -0.1])
    two = returns_from_equity(np.array([[1.0, 2.0, 1.0], [4.0, 2.0, 2.0]]))
    assert two.shape == (2, 2)
    assert two.tolist() == [[1.0, -0.5], [-0.5, 0.0]]
    assert returns_from_equity(np.array([5.0])).shape == (0,)


def test_returns_after_ruin_are_zero():
    assert returns_from_equity(np.array([100.0, 50.0, 0.0, 0.0, 10.0])).tolist() == [-0.5, -1.0, 0.0, 0.0]


def test_flat_equity_gives_neutral_values():
    m = equity_metrics(np.full(5, 100.0), periods_per_year=PPY)
    expected = {name: 0.0 for name in EQUITY_METRIC_NAMES}
    expected.update(omega=1.0, tail_ratio=1.0)
    assert {name: float(value) for name, value in m.items()} == expected


def test_flat_equity_with_risk_free_rate():
    m = equity_metrics(np.full(5, 100.0), periods_per_year=PPY, risk_free=0.05)
    assert m["sharpe"] == 0.0  # zero dispersion: no risk estimate
    assert m["sortino"] == pytest.approx(-math.sqrt(PPY), rel=1e-12)  # mean -f over downside f
    assert m["omega"] == 0.0  # no gain over the risk-free rate, only shortfall
    assert m["annual_return"] == 0.0 and m["calmar"] == 0.0


def test_rounding_noise_is_zero_dispersion():
    # a cash balance compounding at a fixed rate: returns equal up to float64 rounding (~1e-16)
    equity = 100.0 * 1.0001 ** np.arange(300)
    returns = returns_from_equity(equity)
    assert returns.std() > 0.0  # the noise is there ...
    m = equity_metrics(equity, periods_per_year=PPY)
    assert m["annual_volatility"] == 0.0 and m["sharpe"] == 0.0  # ... and is not risk
    assert m["sortino"] == math.inf and m["skew"] == 0.0 and m["kurtosis"] == 0.0
    assert m["var_parametric"] == pytest.approx(1e-4, rel=1e-9)
    assert np.nan_to_num(rolling_sharpe(returns, 20, PPY)).tolist() == [0.0] * returns.shape[0]
    nearly_flat = np.array([0.5, 0.5000000000000001, 0.5, 0.5000000000000001])
    assert equity_metrics(nearly_flat, periods_per_year=PPY, risk_free=0.01)["sharpe"] == 0.0


def test_single_bar():
    m = equity_metrics(np.array([100.0]), periods_per_year=PPY)
    assert all(math.isfinite(float(value)) for value in m.values())
    assert m["omega"] == 1.0 and m["tail_ratio"] == 1.0 and m["sharpe"] == 0.0 and m["total_return"] == 0.0


def test_one_winning_bar():
    m = equity_metrics(np.array([100.0, 110.0]), periods_per_year=1)
    assert m["total_return"] == pytest.approx(0.1) and m["annual_return"] == pytest.approx(0.1)
    assert m["annual_volatility"] == 0.0 and m["sharpe"] == 0.0  # one return: no dispersion estimate
    assert m["sortino"] == math.inf and m["omega"] == math.inf and m["gain_pain_ratio"] == math.inf
    assert m["calmar"] == math.inf and m["recovery_factor"] == math.inf  # no drawdown, positive return
    assert m["max_drawdown"] == 0.0 and m["max_drawdown_duration"] == 0.0
    assert m["var_historical"] == pytest.approx(0.1) and m["cvar_historical"] == pytest.approx(0.1)
    assert m["tail_ratio"] == 1.0
    assert m["best_period"] == m["worst_period"] == pytest.approx(0.1)


def test_all_losses():
    equity = np.array([100.0, 90.0, 81.0, 72.9])
    m = equity_metrics(equity, periods_per_year=3)
    assert m["total_return"] == pytest.approx(-0.271, rel=1e-12)
    assert m["annual_return"] == pytest.approx(-0.271, rel=1e-12)  # 3 bars = 1 year
    assert m["annual_volatility"] == 0.0 and m["sharpe"] == 0.0  # constant -10 % per bar
    assert m["sortino"] == pytest.approx(-math.sqrt(3), rel=1e-12)
    assert m["calmar"] == pytest.approx(-1.0, rel=1e-12) and m["recovery_factor"] == pytest.approx(-1.0, rel=1e-12)
    assert m["omega"] == 0.0 and m["gain_pain_ratio"] == pytest.approx(-1.0, rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(-0.271, rel=1e-12)
    assert m["max_drawdown_duration"] == 3.0 and m["avg_drawdown_duration"] == 3.0  # never recovered
    assert m["ulcer_index"] == pytest.approx(math.sqrt((0.1**2 + 0.19**2 + 0.271**2) / 3), rel=1e-12)
    assert m["var_historical"] == pytest.approx(-0.1) and m["cvar_historical"] == pytest.approx(-0.1)
    assert m["var_parametric"] == pytest.approx(-0.1) and m["cvar_parametric"] == pytest.approx(-0.1)
    assert m["tail_ratio"] == pytest.approx(1.0) and m["skew"] == 0.0 and m["kurtosis"] == 0.0


def test_drawdown_statistics_by_hand():
    equity = np.array([100.0, 120.0, 90.0, 120.0, 130.0, 117.0, 104.0, 130.0, 125.0])
    m = equity_metrics(equity, periods_per_year=PPY)
    assert m["max_drawdown"] == pytest.approx(-0.25, rel=1e-12)
    # drawdowns: bars 1->3 (2 bars), 4->7 (3 bars), 7->end (1 bar, not recovered)
    assert m["max_drawdown_duration"] == 3.0
    assert m["avg_drawdown_duration"] == pytest.approx(2.0)
    squares = 0.25**2 + 0.1**2 + 0.2**2 + (5 / 130) ** 2
    assert m["ulcer_index"] == pytest.approx(math.sqrt(squares / 8), rel=1e-12)
    assert m["recovery_factor"] == pytest.approx(0.25 / 0.25, rel=1e-12)

    table = drawdown_periods(np.arange(9) * DAY, equity)
    assert table.columns == ["start", "valley", "recovery", "depth", "duration_bars", "duration"]
    assert table.schema["start"] == pl.Datetime("ns", "UTC")
    assert table.schema["duration"] == pl.Duration("ns")
    to_day = lambda value: None if value is None else (value - pd.Timestamp(0, tz="UTC").to_pydatetime()).days  # noqa: E731
    rows = [
        (to_day(r["start"]), to_day(r["valley"]), to_day(r["recovery"]), round(r["depth"], 12), r["duration_bars"], r["duration"].days)
        for r in table.iter_rows(named=True)
    ]
    assert rows == [
        (1, 2, 3, -0.25, 2, 2),
        (4, 6, 7, -0.2, 3, 3),
        (7, 8, None, round(125 / 130 - 1, 12), 1, 1),
    ]


def test_drawdown_periods_without_drawdown_is_empty():
    table = drawdown_periods(np.arange(3) * DAY, np.array([1.0, 2.0, 3.0]))
    assert table.height == 0
    assert table.columns == ["start", "valley", "recovery", "depth", "duration_bars", "duration"]


def test_equal_peak_counts_as_recovery_and_new_start():
    table = drawdown_periods(np.arange(5) * DAY, np.array([1.0, 1.0, 0.5, 1.0, 0.9]))
    assert table["duration_bars"].to_list() == [2, 1]
    assert table["recovery"].is_null().to_list() == [False, True]


def test_var_and_tail_ratio_by_hand():
    returns = np.array([0.01, -0.02, 0.03, -0.04, 0.05])
    equity = np.r_[1.0, np.cumprod(1.0 + returns)]
    m = equity_metrics(equity, periods_per_year=PPY)
    # sorted: -0.04, -0.02, 0.01, 0.03, 0.05; 5 % at index 0.2, 95 % at index 3.8
    assert m["var_historical"] == pytest.approx(-0.04 + 0.2 * 0.02, rel=1e-12)
    assert m["cvar_historical"] == pytest.approx(-0.04, rel=1e-12)
    assert m["tail_ratio"] == pytest.approx((0.03 + 0.8 * 0.02) / 0.036, rel=1e-12)
    mean, std = returns.mean(), returns.std(ddof=1)
    assert m["var_parametric"] == pytest.approx(mean - 1.6448536269514722 * std, rel=1e-12)
    assert m["cvar_parametric"] == pytest.approx(mean - std * 2.0627128075074257, rel=1e-12)
    assert m["gain_pain_ratio"] == pytest.approx(0.03 / 0.06, rel=1e-12)
    assert m["best_period"] == pytest.approx(0.05) and m["worst_period"] == pytest.approx(-0.04)


def test_sharpe_sortino_omega_by_hand():
    returns = np.array([0.02, -0.01, 0.03, 0.0])
    equity = 100.0 * np.r_[1.0, np.cumprod(1.0 + returns)]
    m = equity_metrics(equity, periods_per_year=4)
    mean = 0.01
    std = math.sqrt(((0.01) ** 2 + 0.02**2 + 0.02**2 + 0.01**2) / 3)
    assert m["sharpe"] == pytest.approx(mean / std * 2.0, rel=1e-12)
    assert m["sortino"] == pytest.approx(mean * 2.0 / math.sqrt(0.01**2 / 4), rel=1e-12)
    assert m["omega"] == pytest.approx(0.05 / 0.01, rel=1e-12)
    assert m["annual_volatility"] == pytest.approx(std * 2.0, rel=1e-12)
    assert m["annual_return"] == pytest.approx(1.02 * 0.99 * 1.03 - 1.0, rel=1e-12)  # 4 bars = 1 year


def test_cagr_uses_calendar_time_when_timestamps_are_given():
    equity = np.array([100.0, 105.0, 121.0])
    timestamps = np.array([0, 200, 730]) * DAY  # two 365.25-day years would be 730.5 days
    m = equity_metrics(equity, periods_per_year=1, timestamps_ns=timestamps)
    assert m["annual_return"] == pytest.approx(0.1, rel=1e-12)  # 2 bars at 1 bar a year
    assert m["cagr"] == pytest.approx(1.21 ** (365.25 / 730) - 1.0, rel=1e-12)
    assert equity_metrics(equity, periods_per_year=1)["cagr"] == m["annual_return"]


def test_ruined_account_is_defined():
    m = equity_metrics(np.array([100.0, 50.0, 0.0, 0.0]), periods_per_year=PPY)
    assert m["max_drawdown"] == -1.0 and m["annual_return"] == -1.0 and m["total_return"] == -1.0
    assert not any(math.isnan(float(value)) for value in m.values())
    negative = equity_metrics(np.array([100.0, 50.0, -20.0]), periods_per_year=PPY)
    assert negative["max_drawdown"] == pytest.approx(-1.2) and negative["annual_return"] == -1.0


def test_benchmark_metrics_by_hand():
    bench_returns = np.array([0.01, -0.02, 0.03, 0.0])
    returns = 2.0 * bench_returns + 0.001
    equity = np.r_[1.0, np.cumprod(1.0 + returns)]
    benchmark = np.r_[1.0, np.cumprod(1.0 + bench_returns)]
    m = equity_metrics(equity, periods_per_year=4, benchmark=benchmark)
    assert m["beta"] == pytest.approx(2.0, rel=1e-9)
    assert m["alpha"] == pytest.approx(1.001**4 - 1.0, rel=1e-6)
    active = returns - bench_returns
    assert m["tracking_error"] == pytest.approx(active.std(ddof=1) * 2.0, rel=1e-9)
    assert m["information_ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * 2.0, rel=1e-9)
    same = equity_metrics(benchmark, periods_per_year=4, benchmark=benchmark)
    assert same["beta"] == pytest.approx(1.0) and same["alpha"] == pytest.approx(0.0, abs=1e-15)
    assert same["information_ratio"] == 0.0 and same["tracking_error"] == 0.0
    flat = equity_metrics(equity, periods_per_year=4, benchmark=np.ones(5))
    assert flat["beta"] == 0.0
    assert flat["alpha"] == pytest.approx((1.0 + returns.mean()) ** 4 - 1.0, rel=1e-9)


def test_parallel_path_equals_single_curves():
    rng = np.random.default_rng(5)
    count = metrics._PARALLEL_MIN_CURVES + 8
    equity = 100.0 * np.cumprod(1.0 + rng.standard_t(3, (count, 300)) * 0.01, axis=1)
    equity[3, 100:] = equity[3, 99]  # a curve that goes flat
    benchmark = equity[0]
    together = equity_metrics(equity, periods_per_year=PPY, risk_free=0.02, benchmark=benchmark)
    for row in (0, 3, count - 1):
        alone = equity_metrics(equity[row], periods_per_year=PPY, risk_free=0.02, benchmark=benchmark)
        assert {name: float(value[row]) for name, value in together.items()} == {
            name: float(value) for name, value in alone.items()
        }
    returns = returns_from_equity(equity)
    np.testing.assert_array_equal(returns[3], returns_from_equity(equity[3]))
    np.testing.assert_array_equal(rolling_sharpe(returns, 20, PPY)[3], rolling_sharpe(returns[3], 20, PPY))


def test_benchmark_can_be_shared_or_per_curve():
    rng = np.random.default_rng(3)
    equity = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, (3, 50)), axis=1)
    benchmark = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, 50))
    shared = equity_metrics(equity, periods_per_year=PPY, benchmark=benchmark)
    stacked = equity_metrics(equity, periods_per_year=PPY, benchmark=np.tile(benchmark, (3, 1)))
    for name in BENCHMARK_METRIC_NAMES:
        np.testing.assert_array_equal(shared[name], stacked[name])
        single = equity_metrics(equity[1], periods_per_year=PPY, benchmark=benchmark)
        assert single[name] == shared[name][1]


# ================================================================================= trade metrics
def test_trade_metrics_by_hand():
    stats = trade_metrics(
        pnl=np.array([100.0, -50.0, 200.0, -50.0, 0.0, 30.0]),
        returns=np.array([0.10, -0.05, 0.20, -0.05, 0.0, 0.03]),
        durations_ns=np.array([1, 2, 3, 4, 5, 6], dtype=np.int64) * DAY,
    )
    assert stats["n_trades"] == 6
    assert stats["win_rate"] == pytest.approx(3 / 6)
    assert stats["profit_factor"] == pytest.approx(330.0 / 100.0)
    assert stats["expectancy"] == pytest.approx(230.0 / 6)
    assert stats["expectancy_pct"] == pytest.approx(0.23 / 6)
    assert stats["avg_win"] == pytest.approx(0.11) and stats["avg_loss"] == pytest.approx(-0.05)
    assert stats["payoff_ratio"] == pytest.approx(0.11 / 0.05)
    assert stats["kelly"] == pytest.approx(0.5 - 0.5 / (0.11 / 0.05))
    trade_returns = np.array([0.10, -0.05, 0.20, -0.05, 0.0, 0.03])
    assert stats["sqn"] == pytest.approx(math.sqrt(6) * trade_returns.mean() / trade_returns.std(ddof=1))
    assert stats["best_trade"] == pytest.approx(0.2) and stats["worst_trade"] == pytest.approx(-0.05)
    assert stats["avg_trade_duration_ns"] == pytest.approx(3.5 * DAY) and stats["max_trade_duration_ns"] == 6 * DAY
    assert stats["longest_win_streak"] == 1 and stats["longest_loss_streak"] == 1
    assert isinstance(stats["n_trades"], int) and isinstance(stats["max_trade_duration_ns"], int)


def test_one_trade():
    win = trade_metrics(np.array([10.0]), np.array([0.01]), np.array([DAY]))
    assert win["win_rate"] == 1.0 and win["profit_factor"] == math.inf and win["payoff_ratio"] == math.inf
    assert win["kelly"] == 1.0 and win["sqn"] == 0.0 and win["longest_win_streak"] == 1
    loss = trade_metrics(np.array([-10.0]), np.array([-0.01]), np.array([DAY]))
    assert loss["win_rate"] == 0.0 and loss["profit_factor"] == 0.0 and loss["payoff_ratio"] == 0.0
    assert loss["kelly"] == -math.inf and loss["longest_loss_streak"] == 1 and loss["avg_win"] == 0.0


def test_all_losing_trades():
    stats = trade_metrics(np.array([-1.0, -2.0, -3.0]), np.array([-0.01, -0.02, -0.03]), np.array([1, 1, 1]))
    assert stats["win_rate"] == 0.0 and stats["profit_factor"] == 0.0 and stats["kelly"] == -math.inf
    assert stats["longest_loss_streak"] == 3 and stats["longest_win_streak"] == 0
    assert stats["sqn"] == pytest.approx(math.sqrt(3) * -0.02 / 0.01)


def test_no_trades_and_break_even_trades():
    empty = np.array([], dtype=float)
    none = trade_metrics(empty, empty, np.array([], dtype=np.int64))
    assert none["n_trades"] == 0 and none["profit_factor"] == 1.0 and none["payoff_ratio"] == 1.0
    assert none["kelly"] == 0.0 and none["win_rate"] == 0.0 and none["max_trade_duration_ns"] == 0
    scratch = trade_metrics(np.zeros(3), np.zeros(3), np.ones(3, dtype=np.int64))
    assert scratch["profit_factor"] == 1.0 and scratch["kelly"] == 0.0 and scratch["sqn"] == 0.0
    assert scratch["longest_win_streak"] == 0 and scratch["win_rate"] == 0.0


def test_streaks_match_itertools():
    pnl = np.array([1.0, 2.0, -1.0, 0.0, 3.0, 4.0, 5.0, -1.0, -2.0, 0.0, -3.0])
    stats = trade_metrics(pnl, pnl / 100.0, np.ones(pnl.shape[0], dtype=np.int64))
    groups = [(key, len(list(group))) for key, group in itertools.groupby(np.sign(pnl))]
    assert stats["longest_win_streak"] == max(length for key, length in groups if key > 0) == 3
    assert stats["longest_loss_streak"] == max(length for key, length in groups if key < 0) == 2


def test_trade_metrics_against_quantstats(stock):
    # Treat the stock's daily returns as trades (pnl = return * 10,000): QuantStats' period-based
    # trade statistics then apply to the same numbers. QuantStats drops zero returns from its win
    # rate; removing them first makes both conventions agree.
    returns = stock["returns"][stock["returns"] != 0.0]
    stats = trade_metrics(returns.to_numpy() * 1e4, returns.to_numpy(), np.ones(len(returns), dtype=np.int64))
    assert_close(stats["win_rate"], oracle(qs.stats.win_rate, returns))
    assert_close(stats["payoff_ratio"], oracle(qs.stats.payoff_ratio, returns))
    assert_close(stats["kelly"], oracle(qs.stats.kelly_criterion, returns))
    assert_close(stats["profit_factor"], oracle(qs.stats.profit_factor, returns))
    assert_close(stats["avg_win"], oracle(qs.stats.avg_win, returns))
    assert_close(stats["avg_loss"], oracle(qs.stats.avg_loss, returns))
    assert stats["longest_win_streak"] == oracle(qs.stats.consecutive_wins, returns)
    assert stats["longest_loss_streak"] == oracle(qs.stats.consecutive_losses, returns)


def test_exposure_and_turnover_by_hand():
    result = exposure_and_turnover(
        gross_exposure=np.array([[0.0, 50.0, 200.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),
        equity=np.array([[100.0, 100.0, 100.0, 100.0], [100.0, 100.0, 100.0, 100.0]]),
        traded_notional=np.array([[0.0, 50.0, 150.0, 200.0], [0.0, 0.0, 0.0, 0.0]]),
        periods_per_year=3,
    )
    np.testing.assert_allclose(result["exposure_time"], [0.5, 0.0])
    np.testing.assert_allclose(result["avg_gross_leverage"], [0.625, 0.0])
    np.testing.assert_allclose(result["turnover"], [4.0, 0.0])
    np.testing.assert_allclose(result["annual_turnover"], [4.0, 0.0])  # 3 bars = 1 year


# ============================================================================ oracle: QuantStats
@pytest.mark.parametrize("risk_free", [0.0, 0.03])
def test_ratios_match_quantstats_and_empyrical(stock, risk_free):
    returns = stock["returns"]
    m = equity_metrics(stock["equity"], periods_per_year=PPY, risk_free=risk_free)
    per_bar = risk_free_per_period(risk_free, PPY)
    assert_close(m["sharpe"], oracle(qs.stats.sharpe, returns, rf=risk_free, periods=PPY))
    assert_close(m["sharpe"], oracle(empyrical.sharpe_ratio, returns, risk_free=per_bar, annualization=PPY))
    assert_close(m["sortino"], oracle(qs.stats.sortino, returns, rf=risk_free, periods=PPY))
    assert_close(m["sortino"], oracle(empyrical.sortino_ratio, returns, required_return=per_bar, annualization=PPY))
    assert_close(m["omega"], oracle(qs.stats.omega, returns, rf=risk_free, periods=PPY))
    assert_close(m["omega"], oracle(empyrical.omega_ratio, returns, risk_free=per_bar, annualization=PPY))


def test_return_and_risk_match_quantstats_and_empyrical(stock):
    returns = stock["returns"]
    n = len(returns)
    m = equity_metrics(stock["equity"], periods_per_year=PPY)
    assert_close(m["total_return"], oracle(qs.stats.comp, returns))
    assert_close(m["annual_return"], oracle(qs.stats.cagr, returns, periods=PPY))
    assert_close(m["annual_return"], oracle(empyrical.annual_return, returns, annualization=PPY))
    assert_close(m["cagr"], oracle(empyrical.cagr, returns, annualization=PPY))
    assert_close(m["annual_volatility"], oracle(qs.stats.volatility, returns, periods=PPY))
    assert_close(m["annual_volatility"], oracle(empyrical.annual_volatility, returns, annualization=PPY))
    assert_close(m["max_drawdown"], oracle(qs.stats.max_drawdown, returns))
    assert_close(m["max_drawdown"], oracle(empyrical.max_drawdown, returns))
    assert_close(m["calmar"], oracle(qs.stats.calmar, returns, periods=PPY))
    assert_close(m["calmar"], oracle(empyrical.calmar_ratio, returns, annualization=PPY))
    assert_close(m["skew"], oracle(qs.stats.skew, returns))
    assert_close(m["skew"], scipy.stats.skew(returns, bias=False))
    assert_close(m["kurtosis"], oracle(qs.stats.kurtosis, returns))
    assert_close(m["kurtosis"], scipy.stats.kurtosis(returns, bias=False))
    assert_close(m["tail_ratio"], oracle(qs.stats.tail_ratio, returns))
    assert_close(m["tail_ratio"], oracle(empyrical.tail_ratio, returns))
    assert_close(m["gain_pain_ratio"], oracle(qs.stats.gain_to_pain_ratio, returns))
    assert_close(m["best_period"], oracle(qs.stats.best, returns))
    assert_close(m["worst_period"], oracle(qs.stats.worst, returns))
    # conventions that differ (docs/metrics.md): QuantStats divides the Ulcer index by n - 1 ...
    assert_close(m["ulcer_index"], oracle(qs.stats.ulcer_index, returns) * math.sqrt((n - 1) / n))
    # ... and its recovery factor is |sum of returns| / |max drawdown|; ours compounds
    quantstats_recovery = oracle(qs.stats.recovery_factor, returns)
    assert_close(quantstats_recovery, abs(returns.sum()) / abs(m["max_drawdown"]))
    assert_close(m["recovery_factor"], m["total_return"] / abs(oracle(qs.stats.max_drawdown, returns)))


@pytest.mark.parametrize("var_level", [0.95, 0.99])
def test_value_at_risk_matches_quantstats_and_empyrical(stock, var_level):
    returns = stock["returns"]
    m = equity_metrics(stock["equity"], periods_per_year=PPY, var_level=var_level)
    cutoff = round(1.0 - var_level, 12)
    assert_close(m["var_historical"], oracle(empyrical.value_at_risk, returns, cutoff=cutoff))
    assert_close(m["var_historical"], np.quantile(returns, cutoff))
    assert_close(m["cvar_historical"], oracle(qs.stats.cvar, returns, confidence=var_level, method="historical"))
    assert_close(m["cvar_historical"], oracle(empyrical.conditional_value_at_risk, returns, cutoff=cutoff))
    assert_close(m["var_parametric"], oracle(qs.stats.value_at_risk, returns, confidence=var_level))
    assert_close(m["cvar_parametric"], oracle(qs.stats.cvar, returns, confidence=var_level, method="parametric"))
    assert_close(m["tail_ratio"], abs(np.quantile(returns, var_level)) / abs(np.quantile(returns, cutoff)))


def test_alpha_beta_match_empyrical_and_quantstats(pair):
    returns, bench = pair["returns"], pair["benchmark_returns"]
    for risk_free in (0.0, 0.03):
        m = equity_metrics(pair["equity"], periods_per_year=PPY, risk_free=risk_free, benchmark=pair["benchmark"])
        per_bar = risk_free_per_period(risk_free, PPY)
        alpha, beta = oracle(empyrical.alpha_beta, returns, bench, risk_free=per_bar, annualization=PPY)
        assert_close(m["alpha"], alpha)
        assert_close(m["beta"], beta)
    m = equity_metrics(pair["equity"], periods_per_year=PPY, benchmark=pair["benchmark"])
    greeks = oracle(qs.stats.greeks, returns, bench, periods=PPY)
    assert_close(m["beta"], greeks["beta"])
    # QuantStats annualizes alpha arithmetically (x 252); ours compounds the per-bar alpha
    assert_close(m["alpha"], (1.0 + greeks["alpha"] / PPY) ** PPY - 1.0)
    # QuantStats and empyrical report the information ratio per bar; ours is annualized
    assert_close(m["information_ratio"], oracle(qs.stats.information_ratio, returns, bench) * math.sqrt(PPY))
    assert_close(m["information_ratio"], oracle(empyrical.excess_sharpe, returns, bench) * math.sqrt(PPY))
    assert_close(m["tracking_error"], (returns - bench).std(ddof=1) * math.sqrt(PPY))


def test_drawdown_table_matches_quantstats(stock):
    returns = stock["returns"]
    # QuantStats rebuilds prices as 1 + ((1 + r).cumprod() - 1); use the very same numbers as equity
    equity = np.r_[1.0, 1.0 + (np.cumprod(1.0 + returns.to_numpy()) - 1.0)]
    table = drawdown_periods(stock["timestamps"], equity).sort("start")
    details = oracle(qs.stats.drawdown_details, oracle(qs.stats.to_drawdown_series, returns))
    assert table.height == len(details)
    index = stock["index"]
    position = {stamp: i for i, stamp in enumerate(index.asi8)}
    utc_ns = lambda column: table[column].dt.replace_time_zone(None).cast(pl.Int64)  # noqa: E731
    starts = [position[value] for value in utc_ns("start").to_list()]
    valleys = [position[value] for value in utc_ns("valley").to_list()]
    recoveries = utc_ns("recovery").to_list()
    days = lambda i: index[i].strftime("%Y-%m-%d")  # noqa: E731
    # QuantStats' period runs from the first bar under water to the last one under water
    assert details["start"].tolist() == [days(i + 1) for i in starts]
    assert details["valley"].tolist() == [days(i) for i in valleys]
    ends = [len(index) - 1 if value is None else position[value] - 1 for value in recoveries]
    assert details["end"].tolist() == [days(i) for i in ends]
    assert_close(details["max drawdown"].to_numpy(), table["depth"].to_numpy() * 100.0)
    m = equity_metrics(equity, periods_per_year=PPY)
    assert m["max_drawdown_duration"] == table["duration_bars"].max()
    assert_close(m["avg_drawdown_duration"], table["duration_bars"].mean())


def test_monthly_returns_match_quantstats(stock):
    returns = stock["returns"]
    table = monthly_table(stock["timestamps"], stock["equity"])
    expected = oracle(qs.stats.monthly_returns, returns)
    assert [str(year) for year in table["year"].to_list()] == list(expected.index)
    for number, name in enumerate(metrics._MONTH_NAMES, start=1):
        # QuantStats fills a month without data with 0.0; ours leaves it null
        ours = table[name].fill_null(0.0).to_numpy()
        assert_close(ours, expected[name.upper()].to_numpy(), atol=1e-12)
    assert_close(table["total"].to_numpy(), expected["EOY"].to_numpy(), atol=1e-12)
    yearly = period_returns(stock["timestamps"], stock["equity"], "year")
    assert_close(np.prod(1.0 + yearly["return"].to_numpy()) - 1.0, stock["equity"][-1] / stock["equity"][0] - 1.0)


def test_rolling_metrics_match_quantstats_and_pandas(stock):
    returns = stock["returns"]
    window = 126
    ours_sharpe = rolling_sharpe(returns.to_numpy(), window, PPY)
    expected_sharpe = oracle(qs.stats.rolling_sharpe, returns, rolling_period=window, periods_per_year=PPY)
    assert_close(ours_sharpe, expected_sharpe.to_numpy())
    ours_volatility = rolling_volatility(returns.to_numpy(), window, PPY)
    expected_volatility = oracle(qs.stats.rolling_volatility, returns, rolling_period=window, periods_per_year=PPY)
    assert_close(ours_volatility, expected_volatility.to_numpy())
    risky = rolling_sharpe(returns.to_numpy(), window, PPY, risk_free=0.03)
    excess = returns - risk_free_per_period(0.03, PPY)
    reference = excess.rolling(window).mean() / returns.rolling(window).std() * math.sqrt(PPY)
    assert_close(risky, reference.to_numpy())


def test_periods_per_year_of_real_daily_data(stock):
    assert periods_per_year_for(stock["timestamps"]) == 252.0


# ==================================================================================== calendars
def _weekday_days(n_days: int) -> np.ndarray:
    days = np.arange(4, 4 + n_days)  # 1970-01-05 was a Monday
    return days[(days + 3) % 7 < 5]


def test_periods_per_year_for_calendars():
    weekdays = _weekday_days(70) * DAY
    assert periods_per_year_for(weekdays) == 252.0
    assert periods_per_year_for(weekdays, "fx") == 260.0
    assert periods_per_year_for(weekdays, "Crypto") == 365.0
    assert periods_per_year_for(weekdays, 250) == 250.0
    every_day = np.arange(70) * DAY
    assert periods_per_year_for(every_day) == 365.0
    sunday_open = np.sort(np.r_[weekdays, (np.arange(3, 70, 7) * DAY) + 22 * 3_600 * 10**9])
    assert periods_per_year_for(sunday_open) == 260.0
    session = np.arange(390) * 60 * 10**9 + 14 * 3_600 * 10**9 + 30 * 60 * 10**9
    minutes = (weekdays[:, None] + session[None, :]).ravel()
    assert periods_per_year_for(minutes) == 252.0 * 390
    hours = np.arange(0, 10 * DAY, 3_600 * 10**9)
    assert periods_per_year_for(hours) == 365.0 * 24
    assert periods_per_year_for(np.arange(0, 70 * 7, 7) * DAY) == 52.0
    months = pd.date_range("2000-01-31", periods=40, freq="ME").as_unit("ns").asi8
    assert periods_per_year_for(months) == 12.0
    assert periods_per_year_for(np.array([0], dtype=np.int64), "fx") == 260.0


def test_unknown_calendar_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'crypto'"):
        periods_per_year_for(np.arange(3) * DAY, "crpyto")
    with pytest.raises(ConfigError, match="> 0"):
        periods_per_year_for(np.arange(3) * DAY, -5)


# ======================================================================================= tables
def test_period_returns_by_hand():
    stamps = pd.DatetimeIndex(["2020-01-30", "2020-01-31", "2020-02-03", "2020-03-02", "2021-01-04"]).as_unit("ns").asi8
    equity = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
    months = period_returns(stamps, equity, "month")
    assert months.columns == ["period", "year", "month", "return", "n_bars"]
    assert months["period"].to_list()[0].isoformat() == "2020-01-01"
    assert [(y, m, round(r, 12), n) for _, y, m, r, n in months.rows()] == [
        (2020, 1, 0.1, 1),
        (2020, 2, -0.1, 1),
        (2020, 3, 0.0, 1),
        (2021, 1, 0.1, 1),
    ]
    years = period_returns(stamps, equity, "year")
    assert [(y, round(r, 12), n) for _, y, r, n in years.rows()] == [(2020, -0.01, 3), (2021, 0.1, 1)]
    table = monthly_table(stamps, equity)
    assert table.columns == ["year", *metrics._MONTH_NAMES, "total"]
    assert table["Apr"].to_list() == [None, None]
    assert table["total"].to_list() == pytest.approx([-0.01, 0.1])


def test_period_returns_first_lone_bar_has_no_period():
    stamps = pd.DatetimeIndex(["2020-01-31", "2020-02-03", "2020-02-04"]).as_unit("ns").asi8
    table = period_returns(stamps, np.array([100.0, 101.0, 102.0]), "month")
    assert table["month"].to_list() == [2]
    assert table["return"].to_list() == pytest.approx([0.02])


def test_period_returns_time_zone():
    stamps = pd.DatetimeIndex(["2020-01-31 12:00", "2020-02-01 02:00", "2020-02-03 12:00"], tz="UTC").as_unit("ns").asi8
    equity = np.array([100.0, 110.0, 121.0])
    assert period_returns(stamps, equity, "month")["month"].to_list() == [2]
    new_york = period_returns(stamps, equity, "month", time_zone="America/New_York")
    assert new_york["month"].to_list() == [1, 2]  # 02:00 UTC on Feb 1 is still January 31 in New York


# ======================================================================================= errors
def test_errors_name_the_problem():
    with pytest.raises(DataError, match="finite") as caught:
        equity_metrics(np.array([[1.0, 2.0], [1.0, np.nan]]), periods_per_year=PPY)
    assert caught.value.row == 1 and "curve 1" in str(caught.value)
    with pytest.raises(DataError, match="start above zero"):
        equity_metrics(np.array([0.0, 1.0]), periods_per_year=PPY)
    with pytest.raises(ConfigError, match="periods_per_year"):
        equity_metrics(np.ones(3), periods_per_year=0)
    with pytest.raises(ConfigError, match="var_level"):
        equity_metrics(np.ones(3), periods_per_year=PPY, var_level=95)
    with pytest.raises(ConfigError, match="risk_free"):
        equity_metrics(np.ones(3), periods_per_year=PPY, risk_free=-1.5)
    with pytest.raises(DataError, match="benchmark"):
        equity_metrics(np.ones(3), periods_per_year=PPY, benchmark=np.ones(4))
    with pytest.raises(DataError, match="1-D"):
        equity_metrics(np.ones((2, 2, 2)), periods_per_year=PPY)
    with pytest.raises(ConfigError, match="window"):
        rolling_sharpe(np.zeros(5), 1, PPY)
    with pytest.raises(DataError, match="sorted"):
        drawdown_periods(np.array([2, 1], dtype=np.int64), np.ones(2))
    with pytest.raises(DataError, match="one value per trade"):
        trade_metrics(np.ones(2), np.ones(3), np.ones(2, dtype=np.int64))
    with pytest.raises(ConfigError, match="every"):
        period_returns(np.arange(2), np.ones(2), "week")


# ==================================================================================== kernels
@given(
    values=hnp.arrays(np.float64, st.integers(1, 80), elements=st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0]) | st.floats(-5, 5)),
    q=st.sampled_from([0.01, 0.05, 1 - 0.95, 0.5, 0.95, 0.99]) | st.floats(0.0, 1.0),
    guess=st.floats(-6, 6),
)
@settings(max_examples=120, deadline=None)
def test_quantile_kernel_matches_numpy(values, q, guess):
    original = values.copy()
    got = metrics.quantile_nb(values, q, guess, np.empty(values.shape[0]))
    np.testing.assert_array_equal(values, original)
    # the virtual index is snapped to an integer within 1e-9 (so that 1 - 0.95 acts as 0.05): the
    # result may move by at most 1e-9 of the gap between two neighbouring order statistics
    assert abs(got - np.quantile(values, q)) <= 1e-9 * np.ptp(values) + 1e-12


@given(values=hnp.arrays(np.float64, st.integers(1, 60), elements=st.floats(-5, 5)), k=st.integers(0, 59))
@settings(max_examples=100, deadline=None)
def test_select_kernel_matches_partition(values, k):
    k = min(k, values.shape[0] - 1)
    expected = np.sort(values)[k]
    assert metrics.select_nb(values, k) == expected
    assert (values[:k] <= expected).all() and (values[k + 1 :] >= expected).all()


@given(
    returns=hnp.arrays(np.float64, st.integers(2, 120), elements=st.sampled_from([0.0, 0.01, -0.01]) | st.floats(-0.1, 0.1)),
    window=st.integers(2, 30),
)
@settings(max_examples=100, deadline=None)
def test_rolling_kernel_matches_exact_windows(returns, window):
    volatility = rolling_volatility(returns, window, 1.0)
    sharpe = rolling_sharpe(returns, window, 1.0)
    assert np.isnan(volatility[: window - 1]).all() and np.isnan(sharpe[: window - 1]).all()
    if returns.shape[0] < window:
        return
    windows = np.lib.stride_tricks.sliding_window_view(returns, window)
    expected = windows.std(axis=1, ddof=1)
    expected[expected <= metrics.DISPERSION_FLOOR] = 0.0
    assert_close(volatility[window - 1 :], expected, rtol=1e-7, atol=1e-15)
    constant = windows.max(axis=1) == windows.min(axis=1)
    assert (volatility[window - 1 :][constant] == 0.0).all()
    assert (sharpe[window - 1 :][constant] == 0.0).all()


# ================================================================================== properties
equity_curves = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 60)),
    elements=st.floats(0.5, 2.0) | st.just(1.0),
)


@given(equity=equity_curves)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_vectorized_equals_per_row_and_is_never_nan(equity):
    benchmark = equity[0]
    together = equity_metrics(equity, periods_per_year=PPY, risk_free=0.02, benchmark=benchmark)
    for row in range(equity.shape[0]):
        alone = equity_metrics(equity[row], periods_per_year=PPY, risk_free=0.02, benchmark=benchmark)
        for name, values in together.items():
            assert alone[name] == values[row] or (np.isnan(alone[name]) and np.isnan(values[row])), name
    for name, values in together.items():
        assert not np.isnan(values).any(), name
        assert values.shape == (equity.shape[0],)
    assert ((together["max_drawdown"] >= -1.0) & (together["max_drawdown"] <= 0.0)).all()
    assert (together["cvar_historical"] <= together["var_historical"] + 1e-15).all()
    assert (together["max_drawdown_duration"] >= together["avg_drawdown_duration"]).all()


@given(equity=hnp.arrays(np.float64, st.integers(3, 60), elements=st.floats(0.5, 2.0)), scale=st.floats(1e-3, 1e6))
@settings(max_examples=100, deadline=None)
def test_scale_invariance(equity, scale):
    base = equity_metrics(equity, periods_per_year=PPY, risk_free=0.01)
    scaled = equity_metrics(equity * scale, periods_per_year=PPY, risk_free=0.01)
    for name in ("sharpe", "sortino", "max_drawdown", "annual_volatility", "total_return", "ulcer_index", "var_historical"):
        assert scaled[name] == pytest.approx(base[name], rel=1e-6, abs=1e-9), name


@given(equity=hnp.arrays(np.float64, st.integers(2, 80), elements=st.floats(0.5, 2.0)))
@settings(max_examples=100, deadline=None)
def test_drawdown_table_agrees_with_metrics_and_pandas(equity):
    table = drawdown_periods(np.arange(equity.shape[0]) * DAY, equity)
    m = equity_metrics(equity, periods_per_year=PPY)
    series = pd.Series(equity)
    assert m["max_drawdown"] == pytest.approx((series / series.cummax() - 1.0).min(), abs=1e-15)
    if table.height:
        assert table["depth"][0] == m["max_drawdown"]
        assert table["duration_bars"].max() == m["max_drawdown_duration"]
        assert table["duration_bars"].mean() == pytest.approx(m["avg_drawdown_duration"])
        assert table["depth"].is_sorted()
    else:
        assert m["max_drawdown"] == 0.0 and m["max_drawdown_duration"] == 0.0


@given(equity=hnp.arrays(np.float64, st.integers(2, 200), elements=st.floats(0.5, 2.0)), step_hours=st.integers(1, 200))
@settings(max_examples=60, deadline=None)
def test_period_returns_compound_to_total(equity, step_hours):
    stamps = np.arange(equity.shape[0], dtype=np.int64) * step_hours * 3_600 * 10**9
    months = period_returns(stamps, equity, "month")
    assert months["n_bars"].sum() == equity.shape[0] - 1
    total = np.prod(1.0 + months["return"].to_numpy()) - 1.0
    assert total == pytest.approx(equity[-1] / equity[0] - 1.0, rel=1e-9, abs=1e-12)


@given(equity=hnp.arrays(np.float64, st.integers(2, 60), elements=st.floats(0.5, 2.0)))
@settings(max_examples=100, deadline=None)
def test_metrics_match_pandas_formulas(equity):
    returns = pd.Series(equity).pct_change().iloc[1:]
    m = equity_metrics(equity, periods_per_year=PPY)
    n = len(returns)
    assert m["total_return"] == pytest.approx(equity[-1] / equity[0] - 1.0, rel=1e-12, abs=1e-15)
    if n > 1 and returns.std() > metrics.DISPERSION_FLOOR:
        std = returns.std()
        assert m["annual_volatility"] == pytest.approx(std * math.sqrt(PPY), rel=1e-9)
        assert m["sharpe"] == pytest.approx(returns.mean() / std * math.sqrt(PPY), rel=1e-7, abs=1e-9)
    assert m["var_historical"] == pytest.approx(np.quantile(returns, 0.05), rel=1e-9, abs=1e-15)
    assert m["gain_pain_ratio"] == pytest.approx(
        metrics.ratio_nb(returns.sum(), -returns[returns < 0].sum(), 0.0), rel=1e-9, abs=1e-12
    )


# ================================================================================ documentation
def test_public_surface():
    assert sorted(metrics.__all__) == sorted(
        [
            "EQUITY_METRIC_NAMES",
            "BENCHMARK_METRIC_NAMES",
            "CALENDAR_DAYS_PER_YEAR",
            "DISPERSION_FLOOR",
            "returns_from_equity",
            "risk_free_per_period",
            "equity_metrics",
            "equity_metric_parameters",
            "trade_metrics",
            "exposure_and_turnover",
            "rolling_sharpe",
            "rolling_volatility",
            "drawdown_periods",
            "period_returns",
            "monthly_table",
            "periods_per_year_for",
            "sharpe_ratio",
            "sharpe_from_sums",
            "max_drawdown",
            "skewness",
        ]
    )
    for name in metrics.__all__:
        item = getattr(metrics, name)
        if callable(item):
            assert "Examples" in (item.__doc__ or ""), name


# ================================================= single figures: one definition with equity_metrics
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2, allow_nan=False, allow_infinity=False), min_size=2, max_size=80))
def test_single_figures_equal_equity_metrics(values):
    """``sharpe_ratio``, ``skewness``, ``max_drawdown`` and ``sharpe_from_sums`` (used by the judge, Monte
    Carlo and the optimizer) agree with the compiled ``equity_metrics`` on the same returns."""
    returns = np.asarray(values)
    curve = np.r_[100.0, 100.0 * np.cumprod(1.0 + returns)]
    full = metrics.equity_metrics(curve, periods_per_year=PPY)
    back = metrics.returns_from_equity(curve)
    assert metrics.sharpe_ratio(back, PPY) == pytest.approx(full["sharpe"], rel=1e-9, abs=1e-9)
    assert metrics.skewness(back) == pytest.approx(full["skew"], rel=1e-6, abs=1e-9)
    assert metrics.max_drawdown(curve) == full["max_drawdown"]
    shift = float(back.mean())
    x = back - shift
    from_sums = metrics.sharpe_from_sums(np.array([x.sum()]), np.array([(x * x).sum()]), shift, back.size, PPY)[0]
    assert from_sums == pytest.approx(metrics.sharpe_ratio(back, PPY), rel=1e-6, abs=1e-6)

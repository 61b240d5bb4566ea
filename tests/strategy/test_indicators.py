"""Parity and property tests of :mod:`backforge.strategy.indicators`.

Oracles: TA-Lib (bar windows, on real GOOG and NVDA daily bars), pandas ``rolling("30D")`` (duration
windows on irregular timestamps: ``(t - D, t]``), plain-Python loops of the documented formulas (time-aware
smoothers), pandas ``rank`` (cross-sectional) and hypothesis properties.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backforge._time import parse_duration
from backforge.errors import ConfigError, DataError
from backforge.strategy import indicators as ind

NS_PER_DAY = 86_400 * 10**9
NS_PER_MIN = 60 * 10**9

DATA_DIR = Path(
    os.environ.get("BACKFORGE_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
)


# ---------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------


def _bars_from_frame(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    index = pd.DatetimeIndex(frame.index)
    return {
        "timestamps": index.as_unit("ns").asi8.astype(np.int64),
        "open": frame["Open"].to_numpy(np.float64),
        "high": frame["High"].to_numpy(np.float64),
        "low": frame["Low"].to_numpy(np.float64),
        "close": frame["Close"].to_numpy(np.float64),
        "volume": frame["Volume"].to_numpy(np.float64),
    }


def _read(name: str, **kwargs) -> pd.DataFrame:
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"shared data file {path} not found; set BACKFORGE_SHARED_DATA to the shared/data folder")
    return pd.read_csv(path, parse_dates=True, **kwargs)


@pytest.fixture(scope="module")
def goog() -> dict[str, np.ndarray]:
    return _bars_from_frame(_read("GOOG.csv", index_col=0))


@pytest.fixture(scope="module")
def nvda() -> dict[str, np.ndarray]:
    return _bars_from_frame(_read("nvda-1999-2014.txt", index_col="Date"))


@pytest.fixture(scope="module", params=["goog", "nvda"])
def daily(request) -> dict[str, np.ndarray]:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def union(goog, nvda) -> dict[str, np.ndarray]:
    """GOOG and NVDA on the union of their dates, with 10 % random holes punched in each asset."""
    frames = {}
    for name, bars in (("goog", goog), ("nvda", nvda)):
        frames[name] = pd.DataFrame(
            {f: bars[f] for f in ("high", "low", "close", "volume")}, index=bars["timestamps"]
        )
    index = np.union1d(frames["goog"].index, frames["nvda"].index)
    rng = np.random.default_rng(7)
    out = {"timestamps": index.astype(np.int64)}
    holes = rng.random((index.size, 2)) < 0.10
    for field in ("high", "low", "close", "volume"):
        array = np.column_stack([frames[n][field].reindex(index).to_numpy() for n in ("goog", "nvda")])
        array[holes] = np.nan
        out[field] = np.ascontiguousarray(array)
    return out


def _thinned_minutes(seed: int, days: int = 12, keep: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """A random-walk minute series with random missing minutes, weekends removed and a 3-hour halt."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-05T00:00", "ns").astype(np.int64)  # a Friday
    t = start + np.arange(days * 1440, dtype=np.int64) * NS_PER_MIN
    weekday = (t // NS_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    minute_of_day = (t // NS_PER_MIN) % 1440
    day = (t - start) // NS_PER_DAY
    mask = (rng.random(t.size) < keep) & (weekday < 5) & ~((day == 6) & (minute_of_day >= 600) & (minute_of_day < 780))
    x = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, t.size)))
    return t[mask], x[mask]


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def assert_same(actual: np.ndarray, expected: np.ndarray, *, rtol: float = 1e-12, atol: float = 0.0) -> None:
    """Identical NaN pattern and values within tolerance."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    mismatch = np.flatnonzero(nan_a != nan_e)
    first = mismatch[:5]
    assert mismatch.size == 0, f"NaN pattern differs first at {first}: {actual[first]} vs {expected[first]}"
    np.testing.assert_allclose(actual[~nan_a], expected[~nan_e], rtol=rtol, atol=atol)


def duration_ready(t: np.ndarray, window_ns: int) -> np.ndarray:
    """Our duration warm-up: a window is complete once ``t - D`` is at or after the first bar."""
    return t - window_ns >= t[0]


def pandas_rolling(x: np.ndarray, t: np.ndarray, window_ns: int):
    return pd.Series(x, index=pd.to_datetime(t)).rolling(pd.Timedelta(window_ns, unit="ns"))


def exact_window_std(x: np.ndarray, t: np.ndarray, window_ns: int) -> np.ndarray:
    """Two-pass population std of every duration window ``(t - D, t]`` (the exact slow reference)."""
    starts = np.searchsorted(t, t - window_ns, side="right")
    return np.array([np.std(x[s : k + 1]) for k, s in enumerate(starts)])


def masked(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, values, np.nan)


def per_column(values: np.ndarray, fn) -> np.ndarray:
    """Apply a 1-D oracle to each column's existing bars and scatter the results back."""
    out = np.full(values.shape, np.nan)
    for a in range(values.shape[1]):
        rows = np.flatnonzero(~np.isnan(values[:, a]))
        out[rows, a] = fn(values[rows, a], rows)
    return out


# ---------------------------------------------------------------------------------------------------
# slow references for the time-aware smoothers (the documented formulas, one bar at a time)
# ---------------------------------------------------------------------------------------------------


def ref_window_mean(x: np.ndarray, t: np.ndarray, k: int, window_ns: int) -> float:
    inside = (t > t[k] - window_ns) & (np.arange(t.size) <= k)
    return float(np.mean(x[inside]))


def ref_time_ewm(x: np.ndarray, t: np.ndarray, seed_k: int, seed: float, tau: float) -> np.ndarray:
    out = np.full(x.size, np.nan)
    if seed_k >= x.size:
        return out
    prev = seed
    out[seed_k] = prev
    for k in range(seed_k + 1, x.size):
        alpha = 1.0 - math.exp(-(t[k] - t[k - 1]) / tau)
        prev = prev + alpha * (x[k] - prev)
        out[k] = prev
    return out


def first_ready(t: np.ndarray, window_ns: int, after: int = 0) -> int:
    ready = np.flatnonzero(t - window_ns >= t[after])
    return int(ready[0]) if ready.size else t.size


def ref_ema_duration(x, t, window_ns):
    k = first_ready(t, window_ns)
    seed = ref_window_mean(x, t, k, window_ns) if k < x.size else np.nan
    return ref_time_ewm(x, t, k, seed, window_ns / 2.0)


def ref_rsi_duration(x, t, window_ns):
    change = np.diff(x, prepend=x[0])
    gains, losses = np.maximum(change, 0.0), np.maximum(-change, 0.0)
    k = first_ready(t, window_ns)
    if k >= x.size:
        return np.full(x.size, np.nan)
    avg_gain = ref_time_ewm(gains, t, k, ref_window_mean(gains, t, k, window_ns), float(window_ns))
    avg_loss = ref_time_ewm(losses, t, k, ref_window_mean(losses, t, k, window_ns), float(window_ns))
    total = avg_gain + avg_loss
    return np.where(total == 0.0, 0.0, 100.0 * avg_gain / np.where(total == 0.0, 1.0, total))


def ref_atr_duration(high, low, close, t, window_ns):
    prev_close = np.r_[np.nan, close[:-1]]
    tr = np.nanmax(np.column_stack([high - low, np.abs(prev_close - high), np.abs(prev_close - low)]), axis=1)
    k = first_ready(t, window_ns)
    if k >= t.size:
        return np.full(t.size, np.nan)
    return ref_time_ewm(tr, t, k, ref_window_mean(tr, t, k, window_ns), float(window_ns))


def ref_macd_duration(x, t, fast_ns, slow_ns, signal_ns):
    nan = np.full(x.size, np.nan)
    k = first_ready(t, slow_ns)
    if k >= x.size:
        return nan, nan, nan
    slow = ref_time_ewm(x, t, k, ref_window_mean(x, t, k, slow_ns), slow_ns / 2.0)
    fast = ref_time_ewm(x, t, k, ref_window_mean(x, t, k, fast_ns), fast_ns / 2.0)
    line = fast - slow
    s = first_ready(t, signal_ns, after=k)
    if s >= x.size:
        return nan, nan, nan
    signal = ref_time_ewm(line, t, s, ref_window_mean(line, t, s, signal_ns), signal_ns / 2.0)
    line[:s] = np.nan
    return line, signal, line - signal


# ---------------------------------------------------------------------------------------------------
# bar windows vs TA-Lib on real data
# ---------------------------------------------------------------------------------------------------

SINGLE_INPUT_CASES = [
    ("sma", lambda x, n: talib.SMA(x, n), 1e-12, 0.0),
    ("ema", lambda x, n: talib.EMA(x, n), 1e-12, 0.0),
    ("wma", lambda x, n: talib.WMA(x, n), 1e-12, 0.0),
    ("rolling_sum", lambda x, n: talib.SUM(x, n), 1e-12, 0.0),
    ("rolling_max", lambda x, n: talib.MAX(x, n), 0.0, 0.0),
    ("rolling_min", lambda x, n: talib.MIN(x, n), 0.0, 0.0),
    ("rate_of_change", lambda x, n: talib.ROC(x, n) / 100.0, 1e-12, 1e-15),
    # TA-Lib's own running variance is ~1e-11 off the exact two-pass value at GOOG's price level
    ("stddev", lambda x, n: talib.STDDEV(x, n, 1), 1e-9, 1e-9),
]


@pytest.mark.parametrize("window", [2, 14, 20, 50, 200])
@pytest.mark.parametrize("name, oracle, rtol, atol", SINGLE_INPUT_CASES, ids=[c[0] for c in SINGLE_INPUT_CASES])
def test_bar_window_matches_talib(daily, name, oracle, rtol, atol, window):
    close = daily["close"]
    actual = getattr(ind, name)(close, daily["timestamps"], window)
    assert_same(actual, oracle(close, window), rtol=rtol, atol=atol)


@pytest.mark.parametrize("window", [2, 14, 30, 100])
def test_rsi_matches_talib(daily, window):
    actual = ind.rsi(daily["close"], daily["timestamps"], window)
    expected = talib.RSI(daily["close"], window)
    assert talib.get_unstable_period("RSI") == 0  # TA-Lib's default: the first value is written at bar n
    assert int(np.isnan(actual).sum()) == window
    # same operations in the same order as ta_RSI.c; TA-Lib's build may differ in the last bit
    assert_same(actual, expected, rtol=0.0, atol=1e-12)


def test_rsi_flat_window_is_zero_like_talib():
    x = np.r_[np.full(20, 5.0), 6.0]
    assert_same(ind.rsi(x, None, 14), talib.RSI(x, 14), rtol=0.0)
    assert ind.rsi(x, None, 14)[19] == 0.0


@pytest.mark.parametrize("window", [1, 2, 14, 50])
def test_atr_matches_talib(daily, window):
    actual = ind.atr(daily["high"], daily["low"], daily["close"], daily["timestamps"], window)
    expected = talib.ATR(daily["high"], daily["low"], daily["close"], window)
    assert_same(actual, expected, rtol=1e-12)


@pytest.mark.parametrize("fast, slow, signal", [(12, 26, 9), (5, 35, 5), (3, 10, 16), (2, 3, 1)])
def test_macd_matches_talib(daily, fast, slow, signal):
    result = ind.macd(daily["close"], daily["timestamps"], fast, slow, signal)
    line, sig, hist = talib.MACD(daily["close"], fast, slow, signal)
    scale = float(np.nanmean(daily["close"]))
    for actual, expected in zip(result, (line, sig, hist)):
        assert_same(actual, expected, rtol=1e-10, atol=1e-12 * scale)
    assert int(np.isnan(result.line).sum()) == slow + signal - 2


def test_macd_fast_ema_is_seeded_like_talib_not_like_ema(goog):
    """TA-Lib seeds MACD's fast EMA at the slow EMA's first bar, so early values differ from EMA(12)."""
    close = goog["close"]
    line = ind.macd(close, None, 12, 26, 9).line
    naive = talib.EMA(close, 12) - talib.EMA(close, 26)
    assert abs(line[33] - naive[33]) > 1e-6
    np.testing.assert_allclose(line[-100:], naive[-100:], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("window, num_std", [(20, 2.0), (10, 1.5), (5, 3.0)])
def test_bollinger_matches_talib(daily, window, num_std):
    close = daily["close"]
    bands = ind.bollinger(close, daily["timestamps"], window, num_std=num_std)
    upper, middle, lower = talib.BBANDS(close, window, num_std, num_std, 0)
    assert_same(bands.upper, upper, rtol=1e-9, atol=1e-9)
    assert_same(bands.middle, middle, rtol=1e-12)
    assert_same(bands.lower, lower, rtol=1e-9, atol=1e-9)
    assert_same(bands.width, (upper - lower) / middle, rtol=1e-7, atol=1e-10)
    assert_same(bands.percent_b, (close - lower) / (upper - lower), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("window", [5, 20])
def test_zscore_matches_talib_formula(daily, window):
    close = daily["close"]
    expected = (close - talib.SMA(close, window)) / talib.STDDEV(close, window, 1)
    assert_same(ind.zscore(close, daily["timestamps"], window), expected, rtol=1e-7, atol=1e-7)


def test_volume_average_matches_talib_sma(daily):
    volume = daily["volume"]
    assert_same(ind.volume_average(volume, daily["timestamps"], 20), talib.SMA(volume, 20), rtol=1e-12)


def test_stddev_is_more_accurate_than_talib_on_tiny_windows(goog):
    """Compensated shifted sums: two-bar windows agree with the exact value to ~1e-13 of the price."""
    close = goog["close"]
    exact = np.r_[np.nan, np.abs(np.diff(close)) / 2.0]
    assert np.nanmax(np.abs(ind.stddev(close, None, 2) - exact)) < 1e-12


# ---------------------------------------------------------------------------------------------------
# several assets on a union of timestamps, with holes
# ---------------------------------------------------------------------------------------------------

UNION_CASES = {
    "sma": (lambda v, ts: ind.sma(v, ts, 20), lambda x: talib.SMA(x, 20)),
    "ema": (lambda v, ts: ind.ema(v, ts, 20), lambda x: talib.EMA(x, 20)),
    "wma": (lambda v, ts: ind.wma(v, ts, 10), lambda x: talib.WMA(x, 10)),
    "rsi": (lambda v, ts: ind.rsi(v, ts, 14), lambda x: talib.RSI(x, 14)),
    "stddev": (lambda v, ts: ind.stddev(v, ts, 20), lambda x: talib.STDDEV(x, 20, 1)),
    "max": (lambda v, ts: ind.rolling_max(v, ts, 20), lambda x: talib.MAX(x, 20)),
    "min": (lambda v, ts: ind.rolling_min(v, ts, 20), lambda x: talib.MIN(x, 20)),
    "roc": (lambda v, ts: ind.rate_of_change(v, ts, 10), lambda x: talib.ROC(x, 10) / 100.0),
    "macd": (lambda v, ts: ind.macd(v, ts).signal, lambda x: talib.MACD(x)[1]),
    "bollinger": (lambda v, ts: ind.bollinger(v, ts, 20).upper, lambda x: talib.BBANDS(x, 20, 2, 2, 0)[0]),
    "lag": (lambda v, ts: ind.lag(v, ts, 3), lambda x: pd.Series(x).shift(3).to_numpy()),
}


@pytest.mark.parametrize("name", list(UNION_CASES))
def test_union_with_holes_matches_talib_per_asset(union, name):
    kernel, oracle = UNION_CASES[name]
    close = union["close"]
    actual = kernel(close, union["timestamps"])
    expected = per_column(close, lambda x, rows: oracle(x))
    assert_same(actual, expected, rtol=1e-9, atol=1e-9)
    assert np.isnan(actual[np.isnan(close)]).all()


def test_union_atr_and_vwap_use_rows_where_all_inputs_exist(union):
    high, low, close, volume = (union[f].copy() for f in ("high", "low", "close", "volume"))
    high[5::97, 0] = np.nan  # a bar is missing if any input is missing
    volume[9::89, 1] = np.nan
    ts = union["timestamps"]
    actual = ind.atr(high, low, close, ts, 14)
    exists = ~(np.isnan(high) | np.isnan(low) | np.isnan(close))
    for a in range(2):
        rows = np.flatnonzero(exists[:, a])
        expected = talib.ATR(high[rows, a], low[rows, a], close[rows, a], 14)
        assert_same(actual[rows, a], expected, rtol=1e-12)
        assert np.isnan(actual[~exists[:, a], a]).all()
    vw = ind.vwap(high, low, close, volume, ts, 10)
    exists &= ~np.isnan(volume)
    for a in range(2):
        rows = np.flatnonzero(exists[:, a])
        tp = (high[rows, a] + low[rows, a] + close[rows, a]) / 3.0
        pv = pd.Series(tp * volume[rows, a]).rolling(10).sum()
        expected = (pv / pd.Series(volume[rows, a]).rolling(10).sum()).to_numpy()
        assert_same(vw[rows, a], expected, rtol=1e-12)
        assert np.isnan(vw[~exists[:, a], a]).all()


# ---------------------------------------------------------------------------------------------------
# duration windows vs pandas rolling("...") on irregular timestamps
# ---------------------------------------------------------------------------------------------------

ROLLING_ORACLES = {
    "sma": lambda r: r.mean(),
    "rolling_sum": lambda r: r.sum(),
    "stddev": lambda r: r.std(ddof=0),
    "rolling_max": lambda r: r.max(),
    "rolling_min": lambda r: r.min(),
}


def check_duration_window(name: str, x: np.ndarray, t: np.ndarray, window: str) -> None:
    window_ns = parse_duration(window)
    ready = duration_ready(t, window_ns)
    actual = getattr(ind, name)(x, t, window)
    expected = masked(ROLLING_ORACLES[name](pandas_rolling(x, t, window_ns)).to_numpy(), ready)
    if name == "stddev":
        # pandas' online variance carries errors of ~1e-12 of the *price* level (not of the std), so
        # the std is also held to the exact two-pass value, which it matches to ~1e-13
        assert_same(actual, masked(exact_window_std(x, t, window_ns), ready), rtol=1e-10, atol=1e-13 * np.max(x))
        assert_same(actual, expected, rtol=1e-9, atol=1e-10 * np.max(x))
    else:
        assert_same(actual, expected, rtol=1e-12, atol=1e-13 * np.max(x))


@pytest.mark.parametrize("name", list(ROLLING_ORACLES))
@pytest.mark.parametrize("window", ["7d", "30d", "90d"])
def test_duration_window_matches_pandas_on_daily_bars(goog, name, window):
    """GOOG's weekends and holidays make a '30d' window hold 19-22 bars."""
    check_duration_window(name, goog["close"], goog["timestamps"], window)


@pytest.mark.parametrize("name", list(ROLLING_ORACLES))
@pytest.mark.parametrize("window", ["15min", "4h", "1d"])
def test_duration_window_matches_pandas_on_thinned_minutes(name, window):
    t, x = _thinned_minutes(seed=3)
    check_duration_window(name, x, t, window)


def test_duration_window_on_union_with_holes():
    """Two irregular minute series on the union of their timestamps; each asset keeps its own clock."""
    t1, x1 = _thinned_minutes(seed=11, days=5, keep=0.5)
    t2, x2 = _thinned_minutes(seed=12, days=5, keep=0.3)
    t = np.union1d(t1, t2)
    values = np.column_stack([pd.Series(x1, t1).reindex(t).to_numpy(), pd.Series(x2, t2).reindex(t).to_numpy()])
    window_ns = 3_600 * 10**9
    for name, oracle in ROLLING_ORACLES.items():
        if name == "stddev":
            oracle_1d = lambda x, rows: exact_window_std(x, t[rows], window_ns)  # noqa: E731
        else:
            oracle_1d = lambda x, rows: oracle(pandas_rolling(x, t[rows], window_ns)).to_numpy()  # noqa: E731
        actual = getattr(ind, name)(values, t, "1h")
        expected = per_column(values, lambda x, rows: masked(oracle_1d(x, rows), duration_ready(t[rows], window_ns)))
        assert_same(actual, expected, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("window", ["10d", "30d"])
def test_duration_vwap_matches_pandas(goog, window):
    t = goog["timestamps"]
    window_ns = parse_duration(window)
    tp = (goog["high"] + goog["low"] + goog["close"]) / 3.0
    expected = (
        pandas_rolling(tp * goog["volume"], t, window_ns).sum() / pandas_rolling(goog["volume"], t, window_ns).sum()
    ).to_numpy()
    actual = ind.vwap(goog["high"], goog["low"], goog["close"], goog["volume"], t, window)
    assert_same(actual, masked(expected, duration_ready(t, window_ns)), rtol=1e-12)


def test_duration_wma_matches_linear_time_weights(goog):
    t, close = goog["timestamps"], goog["close"]
    window_ns = 30 * NS_PER_DAY
    expected = np.full(close.size, np.nan)
    for k in np.flatnonzero(duration_ready(t, window_ns)):
        inside = (t > t[k] - window_ns) & (t <= t[k])
        weights = window_ns - (t[k] - t[inside]).astype(np.float64)
        expected[k] = np.sum(weights * close[inside]) / np.sum(weights)
    assert_same(ind.wma(close, t, "30d"), expected, rtol=1e-12)


@pytest.mark.parametrize("name, bar_oracle", [
    ("sma", lambda x, n: talib.SMA(x, n)),
    ("wma", lambda x, n: talib.WMA(x, n)),
    ("stddev", lambda x, n: talib.STDDEV(x, n, 1)),
    ("rolling_max", lambda x, n: talib.MAX(x, n)),
    ("rolling_min", lambda x, n: talib.MIN(x, n)),
])
def test_duration_on_regular_grid_equals_bar_window_one_bar_later(goog, name, bar_oracle):
    """On gapless data a duration of n bars is the bar window of n, first available one bar later."""
    close = goog["close"]
    t = np.arange(close.size, dtype=np.int64) * NS_PER_MIN
    expected = bar_oracle(close, 20)
    expected[19] = np.nan  # the half-open window (t - D, t] is complete only from bar 20
    assert_same(getattr(ind, name)(close, t, "20min"), expected, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------------------------------
# time-aware smoothers vs their plain-Python references
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["10d", "30d"])
def test_duration_ema_rsi_atr_match_reference_loops(goog, window):
    t = goog["timestamps"]
    window_ns = parse_duration(window)
    high, low, close = goog["high"], goog["low"], goog["close"]
    assert_same(ind.ema(close, t, window), ref_ema_duration(close, t, window_ns), rtol=1e-12)
    assert_same(ind.rsi(close, t, window), ref_rsi_duration(close, t, window_ns), rtol=1e-10, atol=1e-10)
    assert_same(ind.atr(high, low, close, t, window), ref_atr_duration(high, low, close, t, window_ns), rtol=1e-12)


def test_duration_smoothers_on_thinned_minutes_match_reference_loops():
    t, x = _thinned_minutes(seed=5, days=6)
    window_ns = 4 * 3_600 * 10**9
    assert_same(ind.ema(x, t, "4h"), ref_ema_duration(x, t, window_ns), rtol=1e-12)
    assert_same(ind.rsi(x, t, "4h"), ref_rsi_duration(x, t, window_ns), rtol=1e-9, atol=1e-9)
    high, low = x * 1.001, x * 0.999
    assert_same(ind.atr(high, low, x, t, "4h"), ref_atr_duration(high, low, x, t, window_ns), rtol=1e-11)


@pytest.mark.parametrize("fast, slow, signal", [("12d", "26d", "9d"), ("5d", "40d", "20d")])
def test_duration_macd_matches_reference_loop(goog, fast, slow, signal):
    t, close = goog["timestamps"], goog["close"]
    result = ind.macd(close, t, fast, slow, signal)
    expected = ref_macd_duration(close, t, *(parse_duration(w) for w in (fast, slow, signal)))
    for actual, oracle in zip(result, expected):
        assert_same(actual, oracle, rtol=1e-9, atol=1e-10)


def test_duration_ema_is_the_span_equivalent_on_regular_data():
    """tau = D / 2 is the large-n limit of alpha = 2 / (n + 1): after warm-up the two EMAs agree."""
    rng = np.random.default_rng(1)
    x = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, 5_000)))
    t = np.arange(x.size, dtype=np.int64) * NS_PER_MIN
    by_bars = ind.ema(x, t, 200)
    by_time = ind.ema(x, t, "200min")
    assert np.isnan(by_time[:200]).all() and not np.isnan(by_time[200])
    np.testing.assert_allclose(by_time[2_000:], by_bars[2_000:], rtol=1e-5)


def test_duration_ema_decays_with_elapsed_time():
    """A bar after a long gap moves a duration EMA far more than one after a short gap."""
    t = np.array([0, 1, 2, 3, 4, 100], dtype=np.int64) * NS_PER_MIN
    x = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    out = ind.ema(x, t, "2min")
    assert out[5] == pytest.approx(1.0 + (1.0 - math.exp(-96.0 / 1.0)))
    t2 = np.array([0, 1, 2, 3, 4, 5], dtype=np.int64) * NS_PER_MIN
    assert ind.ema(x, t2, "2min")[5] == pytest.approx(1.0 + (1.0 - math.exp(-1.0)))


# ---------------------------------------------------------------------------------------------------
# lag, returns, pct_change
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 5, 20])
def test_lag_returns_pct_change_bars(union, window):
    close, ts = union["close"], union["timestamps"]
    expected_lag = per_column(close, lambda x, rows: pd.Series(x).shift(window).to_numpy())
    expected_ret = per_column(close, lambda x, rows: (pd.Series(x) / pd.Series(x).shift(window) - 1.0).to_numpy())
    assert_same(ind.lag(close, ts, window), expected_lag, rtol=0.0)
    assert_same(ind.returns(close, ts, window), expected_ret, rtol=1e-15)
    assert_same(ind.pct_change(close, ts, window), expected_ret, rtol=1e-15)
    assert_same(ind.rate_of_change(close, ts, window), expected_ret, rtol=1e-15)


@pytest.mark.parametrize("window", ["1d", "7d", "30d"])
def test_lag_and_returns_by_duration_are_as_of(goog, window):
    t, close = goog["timestamps"], goog["close"]
    window_ns = parse_duration(window)
    base = np.searchsorted(t, t - window_ns, side="right") - 1  # last bar at or before t - D
    expected_lag = np.where(base >= 0, close[np.maximum(base, 0)], np.nan)
    frame = pd.merge_asof(
        pd.DataFrame({"t": t - window_ns}), pd.DataFrame({"t": t, "x": close}), on="t", allow_exact_matches=True
    )
    assert_same(expected_lag, frame["x"].to_numpy(), rtol=0.0)
    assert_same(ind.lag(close, t, window), expected_lag, rtol=0.0)
    assert_same(ind.returns(close, t, window), close / expected_lag - 1.0, rtol=1e-15)


def test_returns_from_zero_base_are_nan():
    x = np.array([0.0, 1.0, 2.0, 0.0, 3.0])
    np.testing.assert_array_equal(ind.returns(x, None, 1), [np.nan, np.nan, 1.0, -1.0, np.nan])
    assert talib.ROC(x, 1)[1] == 0.0  # the deliberate difference


# ---------------------------------------------------------------------------------------------------
# cross-sectional rank and percentile
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_assets", [1, 7, 60])
def test_cross_sectional_rank_matches_pandas(n_assets):
    rng = np.random.default_rng(n_assets)
    values = rng.integers(0, 5, (300, n_assets)).astype(np.float64)  # many ties
    values[rng.random(values.shape) < 0.2] = np.nan
    frame = pd.DataFrame(values)
    expected_rank = frame.rank(axis=1, method="average").to_numpy()
    count = frame.count(axis=1).to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected_pct = np.where(count > 1, (expected_rank - 1.0) / (count - 1.0), 0.5)
    expected_pct[np.isnan(values)] = np.nan
    assert_same(ind.cross_sectional_rank(values), expected_rank, rtol=0.0)
    assert_same(ind.cross_sectional_percentile(values), expected_pct, rtol=1e-15)


def test_cross_sectional_percentile_bounds_and_single_asset():
    values = np.array([[1.0, 2.0, 3.0], [np.nan, 5.0, np.nan], [2.0, 2.0, 2.0], [np.nan] * 3])
    pct = ind.cross_sectional_percentile(values)
    np.testing.assert_array_equal(pct[0], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(pct[1], [np.nan, 0.5, np.nan])
    np.testing.assert_array_equal(pct[2], [0.5, 0.5, 0.5])
    assert np.isnan(pct[3]).all()


# ---------------------------------------------------------------------------------------------------
# long series: O(T) sliding sums do not drift
# ---------------------------------------------------------------------------------------------------


def exact_sliding_std(x: np.ndarray, window: int) -> np.ndarray:
    """Two-pass population std of every bar window, in blocks (the exact slow reference)."""
    out = np.full(x.size, np.nan)
    view = np.lib.stride_tricks.sliding_window_view(x, window)
    for start in range(0, view.shape[0], 50_000):
        block = view[start : start + 50_000]
        out[window - 1 + start : window - 1 + start + block.shape[0]] = block.std(axis=1)
    return out


@pytest.mark.slow
def test_sliding_sums_do_not_drift_over_a_million_values():
    rng = np.random.default_rng(42)
    n = 1_000_000
    x = 1_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    x[rng.random(n) < 0.02] = np.nan  # missing minutes
    t = np.arange(n, dtype=np.int64) * NS_PER_MIN
    keep = ~np.isnan(x)
    xs, ts = x[keep], t[keep]
    series = pd.Series(xs)
    for window in (20, 200):
        assert_same(ind.sma(x, None, window)[keep], series.rolling(window).mean().to_numpy(), rtol=1e-9)
        exact = exact_sliding_std(xs, window)
        assert_same(ind.stddev(x, None, window)[keep], exact, rtol=1e-12)
        # pandas' online variance drifts to ~1e-6 relative here; ours stays at ~1e-14
        assert_same(ind.stddev(x, None, window)[keep], series.rolling(window).std(ddof=0).to_numpy(), rtol=1e-5)
    ready = duration_ready(ts, NS_PER_DAY)
    timed = pandas_rolling(xs, ts, NS_PER_DAY)
    assert_same(ind.sma(x, t, "1d")[keep], masked(timed.mean().to_numpy(), ready), rtol=1e-9)
    assert_same(ind.stddev(x, t, "1d")[keep], masked(timed.std(ddof=0).to_numpy(), ready), rtol=1e-5)
    # duration windows against the exact two-pass value at 300 sampled bars
    rows = np.random.default_rng(0).choice(np.flatnonzero(ready), 300, replace=False)
    starts = np.searchsorted(ts, ts[rows] - NS_PER_DAY, side="right")
    exact = np.array([np.std(xs[s : k + 1]) for s, k in zip(starts, rows)])
    np.testing.assert_allclose(ind.stddev(x, t, "1d")[keep][rows], exact, rtol=1e-12)
    exact_means = [math.fsum(xs[s : k + 1]) / (k + 1 - s) for s, k in zip(starts, rows)]
    np.testing.assert_allclose(ind.sma(x, t, "1d")[keep][rows], exact_means, rtol=1e-14)


# ---------------------------------------------------------------------------------------------------
# hypothesis properties
# ---------------------------------------------------------------------------------------------------


@st.composite
def panels(draw, max_rows: int = 60, max_assets: int = 3):
    """A [T, A] panel with NaN holes and strictly increasing, irregular timestamps."""
    n_rows = draw(st.integers(1, max_rows))
    n_assets = draw(st.integers(1, max_assets))
    gaps = draw(st.lists(st.integers(1, 5), min_size=n_rows, max_size=n_rows))
    t = np.cumsum(np.asarray(gaps, dtype=np.int64)) * NS_PER_MIN
    cell = st.one_of(st.floats(1.0, 1_000.0), st.integers(1, 4).map(float), st.just(np.nan))
    flat = draw(st.lists(cell, min_size=n_rows * n_assets, max_size=n_rows * n_assets))
    return t, np.asarray(flat, dtype=np.float64).reshape(n_rows, n_assets)


windows = st.one_of(st.integers(1, 12), st.sampled_from(["1min", "3min", "7min", "20min"]))
property_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@property_settings
@given(panels(), windows)
def test_rolling_max_and_min_bracket_the_value_and_the_averages(panel, window):
    t, values = panel
    high = ind.rolling_max(values, t, window)
    low = ind.rolling_min(values, t, window)
    defined = ~np.isnan(high)
    assert np.array_equal(defined, ~np.isnan(low))
    assert (high[defined] >= values[defined]).all() and (values[defined] >= low[defined]).all()
    for name in ("sma", "wma"):
        average = getattr(ind, name)(values, t, window)
        assert np.array_equal(~np.isnan(average), defined)
        assert (average[defined] <= high[defined] * (1 + 1e-12)).all()
        assert (average[defined] >= low[defined] * (1 - 1e-12)).all()


@property_settings
@given(panels())
def test_sma_of_one_bar_is_the_input(panel):
    t, values = panel
    np.testing.assert_array_equal(ind.sma(values, t, 1), values)
    np.testing.assert_array_equal(ind.rolling_max(values, t, 1), values)
    # a 1 ns window holds only the current bar; only each asset's first bar is still warming up
    by_time = ind.sma(values, t, "1ns")
    expected = values.copy()
    for a in range(values.shape[1]):
        rows = np.flatnonzero(~np.isnan(values[:, a]))
        if rows.size:
            expected[rows[0], a] = np.nan
    np.testing.assert_array_equal(by_time, expected)


@property_settings
@given(panels())
def test_duration_longer_than_history_is_all_nan(panel):
    t, values = panel
    span = int(t[-1] - t[0]) + 1
    for name in ("sma", "ema", "wma", "stddev", "rolling_max", "lag", "rsi"):
        assert np.isnan(getattr(ind, name)(values, t, f"{span}ns")).all()


@property_settings
@given(panels(), windows)
def test_each_asset_is_computed_on_its_own_existing_bars(panel, window):
    """A column of a panel with holes gives bit-identical results to that asset alone, compressed."""
    t, values = panel
    for name in ("sma", "ema", "wma", "rsi", "stddev", "zscore", "rolling_max", "lag", "returns"):
        if name == "rsi" and window == 1:
            continue
        full = getattr(ind, name)(values, t, window)
        for a in range(values.shape[1]):
            rows = np.flatnonzero(~np.isnan(values[:, a]))
            alone = getattr(ind, name)(values[rows, a], t[rows], window)
            np.testing.assert_array_equal(full[rows, a], alone)
            assert np.isnan(np.delete(full[:, a], rows)).all()


@property_settings
@given(panels(), windows)
def test_rsi_is_within_0_and_100_and_percentile_within_0_and_1(panel, window):
    t, values = panel
    if window != 1:
        r = ind.rsi(values, t, window)
        defined = r[~np.isnan(r)]
        assert ((defined >= 0.0) & (defined <= 100.0)).all()
    pct = ind.cross_sectional_percentile(values)
    defined = pct[~np.isnan(pct)]
    assert ((defined >= 0.0) & (defined <= 1.0)).all()
    assert np.array_equal(np.isnan(pct), np.isnan(values))


# ---------------------------------------------------------------------------------------------------
# validation at the boundary
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window, fragment", [
    (0, "got 0"),
    (-5, "got -5"),
    ("abc", "not a duration"),
    ("0d", "must be > 0"),
    ("3 months", "unknown duration unit"),
    (True, "got True"),
    (2.5, "got 2.5"),
    (None, "got None"),
    (np.timedelta64(-1, "D"), "duration > 0"),
])
def test_impossible_windows_raise_config_error_naming_the_parameter(window, fragment):
    with pytest.raises(ConfigError) as info:
        ind.sma(np.ones(5), np.arange(5, dtype=np.int64), window)
    assert info.value.field == "window"
    assert "window" in str(info.value)
    assert fragment in str(info.value)


def test_windows_accept_timedeltas():
    t = np.arange(10, dtype=np.int64) * NS_PER_DAY
    x = np.arange(10.0)
    expected = ind.sma(x, t, "3d")
    np.testing.assert_array_equal(ind.sma(x, t, np.timedelta64(3, "D")), expected)
    np.testing.assert_array_equal(ind.sma(x, t, pd.Timedelta(days=3).to_pytimedelta()), expected)
    np.testing.assert_array_equal(ind.sma(x, t.astype("datetime64[ns]"), "3d"), expected)


def test_parameter_errors_name_the_parameter_value_and_fix():
    x = np.ones(50)
    with pytest.raises(ConfigError, match=r"fast must be shorter than slow, got fast=26 and slow=12; swap"):
        ind.macd(x, None, 26, 12, 9)
    with pytest.raises(ConfigError, match="fast must be shorter than slow"):
        ind.macd(x, np.arange(50), "12d", "12d", "9d")
    with pytest.raises(ConfigError, match="all be bar counts or all durations"):
        ind.macd(x, np.arange(50), 12, "26d", 9)
    with pytest.raises(ConfigError, match="window must be at least 2 bars, got 1"):
        ind.rsi(x, None, 1)
    for bad in (0.0, -1.0, float("nan"), "2"):
        with pytest.raises(ConfigError, match="num_std must be a finite number > 0"):
            ind.bollinger(x, None, 20, num_std=bad)
    with pytest.raises(ConfigError, match="needs timestamps"):
        ind.ema(x, None, "30d")


def test_bad_arrays_raise_data_error():
    with pytest.raises(DataError, match="strictly increasing: row 2") as info:
        ind.sma(np.ones(4), np.array([1, 2, 2, 3]), 2)
    assert info.value.row == 2
    with pytest.raises(DataError, match="one entry per row"):
        ind.sma(np.ones(4), np.arange(3), 2)
    with pytest.raises(DataError, match="same shape"):
        ind.atr(np.ones(4), np.ones(4), np.ones(5), None, 2)
    with pytest.raises(DataError, match="3-D"):
        ind.sma(np.ones((2, 2, 2)), None, 2)
    with pytest.raises(DataError, match="numeric array"):
        ind.sma(["a", "b"], None, 1)
    with pytest.raises(DataError, match=r"values\[None, :\]"):
        ind.cross_sectional_rank(np.array([3.0, 1.0, 2.0]))


# ---------------------------------------------------------------------------------------------------
# API surface, docstring examples, kernels called directly
# ---------------------------------------------------------------------------------------------------


def test_public_names_are_pinned():
    assert set(ind.__all__) == {
        "Window", "MACDResult", "BollingerResult",
        "sma", "rolling_sum", "ema", "wma", "rsi", "macd", "bollinger", "atr", "stddev", "zscore",
        "rolling_max", "rolling_min", "returns", "rate_of_change", "pct_change", "lag", "vwap",
        "volume_average", "cross_sectional_rank", "cross_sectional_percentile", "arithmetic",
        "sma_nb", "rolling_sum_nb", "ema_nb", "wma_nb", "rsi_nb", "macd_nb", "bollinger_nb", "atr_nb",
        "stddev_nb", "zscore_nb", "rolling_max_nb", "rolling_min_nb", "returns_nb", "lag_nb", "vwap_nb",
        "cross_sectional_rank_nb", "cross_sectional_percentile_nb",
    }
    for name in set(ind.__all__) - {"Window"}:
        assert getattr(ind, name).__doc__, name


def test_kernels_allocate_their_output_when_none_is_given(goog):
    values = np.ascontiguousarray(goog["close"].reshape(-1, 1))
    t = goog["timestamps"]
    np.testing.assert_array_equal(ind.sma_nb(values, t, 20, 0)[:, 0], ind.sma(goog["close"], t, 20))
    macd_out = ind.macd_nb(values, t, 12, 26, 9, 0, 0, 0)
    assert macd_out.shape == (3, values.shape[0], 1)
    np.testing.assert_array_equal(macd_out[2, :, 0], ind.macd(goog["close"], t).histogram)


# ---------------------------------------------------------------------------------------------------
# speed on the 7 x 982,800 minute-bar benchmark shape
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_speed_on_seven_assets_of_ten_years_of_minutes():
    n_rows, n_assets = 982_800, 7
    rng = np.random.default_rng(0)
    values = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, (n_rows, n_assets)), axis=0))
    values[rng.random(values.shape) < 0.02] = np.nan
    t = np.arange(n_rows, dtype=np.int64) * NS_PER_MIN
    cases = {
        "sma(20)": lambda: ind.sma(values, t, 20),
        "sma('1d')": lambda: ind.sma(values, t, "1d"),
        "ema(20)": lambda: ind.ema(values, t, 20),
        "ema('1h')": lambda: ind.ema(values, t, "1h"),
        "rsi(14)": lambda: ind.rsi(values, t, 14),
        "stddev(20)": lambda: ind.stddev(values, t, 20),
        "stddev('1d')": lambda: ind.stddev(values, t, "1d"),
    }
    timings = {}
    for name, run in cases.items():
        run()
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    print("\n" + "\n".join(f"{name:14s} {seconds * 1e3:7.1f} ms" for name, seconds in timings.items()))
    assert max(timings.values()) < 2.0, timings


def test_kernels_reject_impossible_arguments_instead_of_reading_out_of_bounds():
    values = np.ones((5, 2))
    t = np.arange(5, dtype=np.int64)
    with pytest.raises(ConfigError, match="exactly one of window_bars and window_ns"):
        ind.sma_nb(values, t, 0, 0)
    with pytest.raises(ConfigError, match="exactly one of window_bars and window_ns"):
        ind.rolling_max_nb(values, t, 3, 10)
    with pytest.raises(DataError, match="one entry per row"):
        ind.ema_nb(values, t[:4], 3, 0)
    with pytest.raises(DataError, match="shape of values"):
        ind.stddev_nb(values, t, 3, 0, np.empty((4, 2)))
    with pytest.raises(ConfigError, match="fast must be shorter than slow"):
        ind.macd_nb(values, t, 26, 12, 9, 0, 0, 0)
    with pytest.raises(DataError, match="same shape"):
        ind.atr_nb(np.ones((4, 2)), values, values, t, 3, 0)


def test_flat_windows_and_zero_volume_give_documented_values():
    bands = ind.bollinger(np.full(5, 3.0), None, 3)
    np.testing.assert_array_equal(bands.upper[2:], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(bands.width[2:], [0.0, 0.0, 0.0])
    assert np.isnan(bands.percent_b).all()
    np.testing.assert_array_equal(ind.stddev(np.full(4, 0.1), None, 2), [np.nan, 0.0, 0.0, 0.0])
    assert np.isnan(ind.zscore(np.full(4, 0.1), None, 2)).all()
    price = np.array([10.0, 11.0, 12.0, 13.0])
    np.testing.assert_array_equal(
        ind.vwap(price, price, price, np.array([0.0, 0.0, 5.0, 0.0]), None, 2), [np.nan, np.nan, 12.0, 12.0]
    )


# ---------------------------------------------------------------------------------------------------
# the bar-window fast path of the sliding sum (issue 17) is the general kernel, bit for bit
# ---------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_rows=st.integers(1, 3000),
    window=st.sampled_from([1, 2, 3, 20, 1023, 1024, 1025, 2500]),
    nan_fraction=st.sampled_from([0.0, 0.05, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_bar_window_sum_is_the_general_kernel_bit_for_bit(n_rows, window, nan_fraction, seed):
    rng = np.random.default_rng(seed)
    values = (100.0 + np.cumsum(rng.normal(size=(n_rows, 2)), axis=0)) * rng.choice([1e-3, 1.0, 1e6])
    values[rng.random(values.shape) < nan_fraction] = np.nan
    timestamps = np.arange(n_rows, dtype=np.int64) * NS_PER_MIN
    general = {}
    for as_mean in (True, False):
        general[as_mean] = np.full(values.shape, -1.0)
        fast = np.full(values.shape, -2.0)
        for col in range(2):
            ind._rolling_sum_col_nb(values, timestamps, col, window, 0, as_mean, general[as_mean])
            ind._rolling_sum_bars_col_nb(values, col, window, as_mean, fast)
        np.testing.assert_array_equal(fast, general[as_mean])  # NaN where NaN, every other value identical
    np.testing.assert_array_equal(ind.sma(values, timestamps, window), general[True])
    np.testing.assert_array_equal(ind.rolling_sum(values, None, window), general[False])


def test_non_increasing_timestamps_are_found_in_one_pass():
    ts = np.array([1, 2, 3, 3, 5], dtype=np.int64)
    assert ind._first_not_increasing_nb(ts) == 3
    assert ind._first_not_increasing_nb(np.array([1, 2, 4], dtype=np.int64)) == -1
    with pytest.raises(DataError, match="row 3"):
        ind.sma(np.arange(5.0), ts, 2)

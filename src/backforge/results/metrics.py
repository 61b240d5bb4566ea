"""Performance metrics of equity curves and trades, vectorized over many curves at once.

Three layers, as everywhere in backforge:

* compiled kernels (``*_nb``) that take and return arrays only, each naming its slow reference;
* dispatch functions (:func:`equity_metrics`, :func:`trade_metrics`, ...) that validate input once,
  lower options to scalars, call the kernels and name the results;
* Polars tables at the edge (:func:`drawdown_periods`, :func:`period_returns`, :func:`monthly_table`).

Conventions (``docs/metrics.md`` lists every difference from QuantStats and empyrical, with reasons)
----------------------------------------------------------------------------------------------------
* **Equity in, time on the last axis.** ``equity`` is float64 ``[T]`` (one curve) or ``[N, T]``
  (``N`` curves). The first value is the starting capital and must be > 0; all values must be finite.
* **Returns** are simple returns between consecutive bars, ``r[t] = equity[t + 1] / equity[t] - 1``,
  so there are ``n = T - 1`` of them (:func:`returns_from_equity`). A bar that follows an equity
  of zero or less (a ruined account) has return 0.0: there is no capital left to earn a return on.
* **Fractions, not percent**: 0.05 is 5 %. Drawdowns and VaR/CVaR are negative numbers (losses).
* **Annualization**: ``periods_per_year`` is the number of bars per year (see
  :func:`periods_per_year_for`: 252 trading days for equities, 365 for crypto, 260 for FX, times the
  bars per day). Return-based quantities scale by ``periods_per_year`` (geometric for returns),
  dispersions by its square root. The sample covers ``n / periods_per_year`` years.
* **Risk-free rate** ``risk_free`` is an *annual* rate, converted to the per-bar rate
  ``(1 + risk_free) ** (1 / periods_per_year) - 1`` and subtracted from every return for Sharpe,
  Sortino, Omega and alpha. Return, CAGR, Calmar, recovery factor and gain/pain use raw returns.
* **Standard deviations** are sample ones (``ddof=1``); downside deviation divides by all ``n``.
* **Defined values, never NaN.** A ratio whose denominator is zero is ``+inf`` (or ``-inf``) when its
  numerator is non-zero and takes the ratio's *neutral value* when the numerator is zero too: 0.0 for
  ratios of a return (Sharpe, Sortino, Calmar, recovery factor, gain/pain, information ratio, SQN),
  1.0 for ratios of gains to losses (Omega, profit factor, payoff ratio, tail ratio).
  One exception: **Sharpe, information ratio and volatility are 0.0 when the returns have zero
  dispersion** (a flat curve, a constant return) or when there are fewer than two returns, because
  the risk estimate itself is missing, not infinitely small. A standard deviation of at most
  :data:`DISPERSION_FLOOR` (1e-13 per bar) is floating-point noise and counts as zero. Statistics that need more observations
  than there are (skew < 3 returns, kurtosis < 4) are 0.0, the value of a normal distribution.

Examples
--------
>>> import numpy as np
>>> equity = np.array([100.0, 110.0, 99.0, 108.9])
>>> metrics = equity_metrics(equity, periods_per_year=252)
>>> round(float(metrics["total_return"]), 6), round(float(metrics["max_drawdown"]), 6)
(0.089, -0.1)
"""

from __future__ import annotations

import difflib
import math
from statistics import NormalDist
from typing import Literal

import numpy as np
import polars as pl
from numba import njit, prange

from backforge._time import NS_PER, median_bar_ns, to_ns
from backforge.errors import ConfigError, DataError

__all__ = [
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

NS_PER_DAY = NS_PER["d"]
NS_PER_YEAR = 365.25 * NS_PER_DAY

# ---------------------------------------------------------------------------------------------- names
# Row codes of the matrix written by ``equity_metrics_nb`` (numba sees the integers as constants).
TOTAL_RETURN = 0
ANNUAL_RETURN = 1
CAGR = 2
ANNUAL_VOLATILITY = 3
SHARPE = 4
SORTINO = 5
CALMAR = 6
OMEGA = 7
MAX_DRAWDOWN = 8
MAX_DRAWDOWN_DURATION = 9
AVG_DRAWDOWN_DURATION = 10
ULCER_INDEX = 11
RECOVERY_FACTOR = 12
VAR_HISTORICAL = 13
CVAR_HISTORICAL = 14
VAR_PARAMETRIC = 15
CVAR_PARAMETRIC = 16
SKEW = 17
KURTOSIS = 18
TAIL_RATIO = 19
GAIN_PAIN_RATIO = 20
BEST_PERIOD = 21
WORST_PERIOD = 22
N_EQUITY_METRICS = 23

EQUITY_METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "annual_return",
    "cagr",
    "annual_volatility",
    "sharpe",
    "sortino",
    "calmar",
    "omega",
    "max_drawdown",
    "max_drawdown_duration",
    "avg_drawdown_duration",
    "ulcer_index",
    "recovery_factor",
    "var_historical",
    "cvar_historical",
    "var_parametric",
    "cvar_parametric",
    "skew",
    "kurtosis",
    "tail_ratio",
    "gain_pain_ratio",
    "best_period",
    "worst_period",
)
"""Keys of :func:`equity_metrics`, in the row order of :func:`equity_metrics_nb`."""

ALPHA = 0
BETA = 1
INFORMATION_RATIO = 2
TRACKING_ERROR = 3
N_BENCHMARK_METRICS = 4

BENCHMARK_METRIC_NAMES: tuple[str, ...] = ("alpha", "beta", "information_ratio", "tracking_error")
"""Keys added by :func:`equity_metrics` when a benchmark is given, in kernel row order."""

CALENDAR_DAYS_PER_YEAR: dict[str, float] = {
    "equities": 252.0,
    "crypto": 365.0,
    "fx": 260.0,
}
"""Trading days per year of each named calendar of :func:`periods_per_year_for`."""

_CALENDAR_ALIASES = {
    "equity": "equities",
    "stocks": "equities",
    "stock": "equities",
    "futures": "equities",
    "forex": "fx",
    "currencies": "fx",
    "24/7": "crypto",
}

# Bars longer than a day: (lower, upper) bounds of the median bar in days -> bars per year.
_MULTI_DAY_BARS = ((6.0, 8.0, 52.0), (27.0, 32.0, 12.0), (88.0, 93.0, 4.0), (360.0, 367.0, 1.0))

DISPERSION_FLOOR = 1e-13
"""Per-bar standard deviations (of returns, downside, active returns) at or below this are zero.

Returns computed from float64 equity carry rounding noise of about 1e-16 (a cash balance accruing
interest has a "volatility" of that size); a ratio over such noise is meaningless (Sharpe 1e12), so
the noise counts as zero dispersion. No real series has a per-bar volatility of 1e-13.
"""

# Fewer curves than this run in the calling thread: waking the thread pool costs more than it saves
# (milliseconds on a busy machine), and one curve is the common case of a single backtest.
_PARALLEL_MIN_CURVES = 32

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ============================================================================================ kernels
@njit(cache=True)
def ratio_nb(numerator: float, denominator: float, neutral: float) -> float:
    """``numerator / denominator`` with the module's zero-denominator rule.

    Equivalent to ``numerator / denominator`` when the denominator is non-zero; otherwise ``+inf`` or
    ``-inf`` following the numerator's sign, and ``neutral`` when the numerator is zero as well.
    """
    if denominator != 0.0:
        return numerator / denominator
    if numerator > 0.0:
        return np.inf
    if numerator < 0.0:
        return -np.inf
    return neutral


@njit(cache=True)
def select_nb(values: np.ndarray, k: int) -> float:
    """Reorder ``values`` in place so that ``values[k]`` is the k-th smallest (0-based) and return it.

    Afterwards ``values[:k] <= values[k] <= values[k + 1:]``. Equivalent to ``np.partition(values, k)[k]``.
    """
    return select_range_nb(values, 0, values.shape[0], k)


@njit(cache=True)
def select_range_nb(values: np.ndarray, left: int, end: int, k: int) -> float:
    """Partition ``values[left:end]`` in place so that ``values[k]`` is its (k - left)-th smallest.

    Hoare partition with a median-of-three pivot, O(n) on average. Equivalent to
    ``np.partition(values[left:end], k - left)[k - left]``.
    """
    right = end - 1
    while right > left:
        middle = (left + right) >> 1
        first = values[left]
        second = values[middle]
        third = values[right]
        if first > second:
            first, second = second, first
        if second > third:
            second = third
            if first > second:
                second = first
        pivot = second
        i = left
        j = right
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                swap = values[i]
                values[i] = values[j]
                values[j] = swap
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            break
    return values[k]


@njit(cache=True)
def split_order_statistic_nb(scratch: np.ndarray, n_negative: int, n_zero: int, rank: int) -> float:
    """The ``rank``-th smallest value (0-based) of an array split by :func:`quantile_nb` at zero.

    ``scratch`` holds the negative values in ``[:n_negative]`` and the positive ones in
    ``[n_negative + n_zero:]``; the ``n_zero`` zeros in between are implied. Equivalent to
    ``np.sort(values)[rank]``; reorders the segment it selects in.
    """
    if rank < n_negative:
        return select_nb(scratch[:n_negative], rank)
    if rank < n_negative + n_zero:
        return 0.0
    return select_nb(scratch[n_negative + n_zero :], rank - n_negative - n_zero)


@njit(cache=True)
def quantile_nb(values: np.ndarray, q: float, guess: float, scratch: np.ndarray) -> float:
    """Quantile ``q`` of ``values`` with linear interpolation, leaving ``values`` untouched.

    Equivalent to ``np.quantile(values, q)`` (NumPy's default ``method="linear"``, including its
    interpolation formula). A virtual index within 1e-9 of an integer is snapped to it, so that
    ``1 - 0.95`` (which is 0.050000000000000044) selects the same order statistic as ``0.05``.

    ``guess`` only affects speed: the values on the tail side of it (``<= guess`` when ``q <= 0.5``,
    ``>= guess`` otherwise) are copied to ``scratch`` (length ``len(values)``) without branching and
    the two order statistics around the virtual index are selected there (:func:`select_nb`). When
    the guess does not hold enough values, the values are split at zero instead (negatives to the
    front of ``scratch``, positives to the back, zeros only counted: flat bars are the usual ties of
    a backtest and need no selection) and the order statistics are selected in their segment.
    """
    n = values.shape[0]
    position = q * (n - 1)
    nearest = np.floor(position + 0.5)
    if abs(position - nearest) < 1e-9:
        position = nearest
    low = min(max(int(np.floor(position)), 0), n - 1)
    fraction = position - low
    need_next = fraction > 0.0 and low + 1 < n
    count = 0
    if q <= 0.5:
        for index in range(n):
            value = values[index]
            scratch[count] = value
            count += 1 if value <= guess else 0
        enough = count >= low + (2 if need_next else 1)
    else:
        for index in range(n):
            value = values[index]
            scratch[count] = value
            count += 1 if value >= guess else 0
        enough = count >= n - low
    if enough:
        candidates = scratch[:count]
        rank = low - (n - count if q > 0.5 else 0)
        lower_value = select_nb(candidates, rank)
        if not need_next:
            return lower_value
        upper_value = np.inf
        for index in range(rank + 1, count):
            if candidates[index] < upper_value:
                upper_value = candidates[index]
    else:
        front = 0
        back = n - 1
        for index in range(n):
            value = values[index]
            scratch[front] = value
            scratch[back] = value
            front += 1 if value < 0.0 else 0
            back -= 1 if value > 0.0 else 0
        n_zero = back + 1 - front
        lower_value = split_order_statistic_nb(scratch, front, n_zero, low)
        if not need_next:
            return lower_value
        upper_value = split_order_statistic_nb(scratch, front, n_zero, low + 1)
    difference = upper_value - lower_value
    if fraction >= 0.5:
        return upper_value - difference * (1.0 - fraction)
    return lower_value + difference * fraction


@njit(cache=True)
def returns_from_equity_1d_nb(equity: np.ndarray, out: np.ndarray) -> None:
    """Write the ``T - 1`` simple returns of one equity curve into ``out``.

    Equivalent to ``equity[1:] / equity[:-1] - 1`` where the previous equity is > 0, and 0.0 where it
    is not (a ruined account earns nothing).
    """
    for t in range(1, equity.shape[0]):
        previous = equity[t - 1]
        if previous > 0.0:
            out[t - 1] = equity[t] / previous - 1.0
        else:
            out[t - 1] = 0.0


@njit(cache=True, parallel=True)
def returns_from_equity_nb(equity: np.ndarray) -> np.ndarray:
    """Simple returns ``[N, T - 1]`` of ``[N, T]`` equity curves; see :func:`returns_from_equity_1d_nb`."""
    n_curves, n_bars = equity.shape
    out = np.empty((n_curves, max(n_bars - 1, 0)))
    for curve in prange(n_curves):
        returns_from_equity_1d_nb(equity[curve], out[curve])
    return out


@njit(cache=True)
def equity_metrics_1d_nb(
    equity: np.ndarray,
    periods_per_year: float,
    risk_free_per_period: float,
    var_level: float,
    normal_quantile: float,
    normal_shortfall_factor: float,
    filter_quantile: float,
    years: float,
    tails: bool = True,
) -> np.ndarray:
    """All equity metrics of one curve, as a vector indexed by the row codes (``SHARPE``, ...).

    ``normal_quantile`` is the standard normal quantile at ``1 - var_level`` and
    ``normal_shortfall_factor`` is ``pdf(normal_quantile) / (1 - var_level)``; ``filter_quantile`` is a
    less extreme standard normal quantile used only to speed up the historical quantiles (see
    :func:`quantile_nb`); ``years`` > 0 gives the calendar length of the sample for CAGR (0 to use
    ``n / periods_per_year``); ``tails=False`` leaves the historical quantile figures (``VAR_HISTORICAL``,
    ``CVAR_HISTORICAL``, ``TAIL_RATIO``) at 0 and skips their two selection passes (a ranking that does
    not need them: :func:`backforge.strategy.batch.score_run_nb`).

    Equivalent to the pandas formulas written in :func:`equity_metrics` (``r.std(ddof=1)``,
    ``(equity / equity.cummax() - 1).min()``, ``np.quantile(r, 1 - var_level)``, ``r.skew()``, ...)
    under the conventions of this module; the tests compare it with QuantStats and empyrical.
    """
    out = np.zeros(N_EQUITY_METRICS)
    n_bars = equity.shape[0]
    n = n_bars - 1
    start = equity[0]
    end = equity[n_bars - 1]
    total = end / start - 1.0
    out[TOTAL_RETURN] = total

    # pass 1: returns, their sum and range, and every drawdown statistic
    returns = np.empty(max(n, 0))
    sum_returns = 0.0
    best = -np.inf
    worst = np.inf
    peak = start
    peak_index = 0
    in_drawdown = False
    max_drawdown = 0.0
    ulcer_sum = 0.0
    n_drawdowns = 0
    duration_sum = 0.0
    duration_max = 0.0
    for t in range(1, n_bars):
        previous = equity[t - 1]
        value = equity[t]
        r = value / previous - 1.0 if previous > 0.0 else 0.0
        returns[t - 1] = r
        sum_returns += r
        if r > best:
            best = r
        if r < worst:
            worst = r
        if value >= peak:
            if in_drawdown:
                duration = float(t - peak_index)
                n_drawdowns += 1
                duration_sum += duration
                if duration > duration_max:
                    duration_max = duration
                in_drawdown = False
            peak = value
            peak_index = t
        else:
            in_drawdown = True
            drawdown = value / peak - 1.0
            ulcer_sum += drawdown * drawdown
            if drawdown < max_drawdown:
                max_drawdown = drawdown
    if in_drawdown:
        duration = float(n_bars - 1 - peak_index)
        n_drawdowns += 1
        duration_sum += duration
        if duration > duration_max:
            duration_max = duration

    out[MAX_DRAWDOWN] = max_drawdown
    out[MAX_DRAWDOWN_DURATION] = duration_max
    out[AVG_DRAWDOWN_DURATION] = duration_sum / n_drawdowns if n_drawdowns > 0 else 0.0

    if n <= 0:
        # a single bar: nothing happened; ratios take their neutral values
        out[OMEGA] = 1.0
        out[TAIL_RATIO] = 1.0
        return out

    if end > 0.0:
        annual = (end / start) ** (periods_per_year / n) - 1.0
        cagr = (end / start) ** (1.0 / years) - 1.0 if years > 0.0 else annual
    else:
        annual = -1.0
        cagr = -1.0
    out[ANNUAL_RETURN] = annual
    out[CAGR] = cagr
    out[BEST_PERIOD] = best
    out[WORST_PERIOD] = worst
    out[ULCER_INDEX] = math.sqrt(ulcer_sum / n)
    out[CALMAR] = ratio_nb(annual, abs(max_drawdown), 0.0)
    out[RECOVERY_FACTOR] = ratio_nb(total, abs(max_drawdown), 0.0)

    # pass 2: central moments and the sums of the threshold ratios
    mean = sum_returns / n
    sum_squares = 0.0
    sum_cubes = 0.0
    sum_fourths = 0.0
    sum_excess = 0.0
    downside_squares = 0.0
    excess_gains = 0.0
    excess_losses = 0.0
    losses = 0.0
    for t in range(n):
        r = returns[t]
        deviation = r - mean
        square = deviation * deviation
        sum_squares += square
        sum_cubes += square * deviation
        sum_fourths += square * square
        excess = r - risk_free_per_period
        sum_excess += excess
        gain = excess if excess > 0.0 else 0.0
        shortfall = excess if excess < 0.0 else 0.0
        excess_gains += gain
        excess_losses -= shortfall
        downside_squares += shortfall * shortfall
        losses -= r if r < 0.0 else 0.0
    mean_excess = sum_excess / n
    annualizer = math.sqrt(periods_per_year)
    std = math.sqrt(sum_squares / (n - 1)) if n > 1 else 0.0
    if std <= DISPERSION_FLOOR:
        std = 0.0
        sum_squares = 0.0
    out[ANNUAL_VOLATILITY] = std * annualizer
    out[SHARPE] = mean_excess / std * annualizer if std > 0.0 else 0.0
    downside = math.sqrt(downside_squares / n)
    if downside <= DISPERSION_FLOOR:
        out[SORTINO] = np.inf if mean_excess > DISPERSION_FLOOR else 0.0
    else:
        out[SORTINO] = mean_excess * annualizer / downside
    out[OMEGA] = ratio_nb(excess_gains, excess_losses, 1.0)
    out[GAIN_PAIN_RATIO] = ratio_nb(sum_returns, losses, 0.0)

    if n >= 3 and sum_squares > 0.0:
        out[SKEW] = (n * math.sqrt(n - 1.0) / (n - 2.0)) * (sum_cubes / sum_squares**1.5)
    if n >= 4 and sum_squares > 0.0:
        numerator = n * (n + 1.0) * (n - 1.0) * sum_fourths
        denominator = (n - 2.0) * (n - 3.0) * sum_squares * sum_squares
        out[KURTOSIS] = numerator / denominator - 3.0 * (n - 1.0) ** 2 / ((n - 2.0) * (n - 3.0))

    out[VAR_PARAMETRIC] = mean + std * normal_quantile
    out[CVAR_PARAMETRIC] = mean - std * normal_shortfall_factor

    if not tails:
        return out
    scratch = np.empty(n)
    upper = quantile_nb(returns, var_level, mean - std * filter_quantile, scratch)
    lower = quantile_nb(returns, 1.0 - var_level, mean + std * filter_quantile, scratch)
    tail_sum = 0.0
    tail_count = 0
    for t in range(n):
        value = returns[t]
        inside = value <= lower
        tail_sum += value if inside else 0.0
        tail_count += 1 if inside else 0
    out[VAR_HISTORICAL] = lower
    out[CVAR_HISTORICAL] = tail_sum / tail_count
    out[TAIL_RATIO] = ratio_nb(abs(upper), abs(lower), 1.0)
    return out


@njit(cache=True, parallel=True)
def equity_metrics_nb(
    equity: np.ndarray,
    periods_per_year: float,
    risk_free_per_period: float,
    var_level: float,
    normal_quantile: float,
    normal_shortfall_factor: float,
    filter_quantile: float,
    years: float,
) -> np.ndarray:
    """Equity metrics ``[N_EQUITY_METRICS, N]`` of ``[N, T]`` curves, one thread per block of curves.

    Equivalent to stacking :func:`equity_metrics_1d_nb` over the rows of ``equity``.
    """
    n_curves = equity.shape[0]
    out = np.empty((N_EQUITY_METRICS, n_curves))
    for curve in prange(n_curves):
        row = equity_metrics_1d_nb(
            equity[curve],
            periods_per_year,
            risk_free_per_period,
            var_level,
            normal_quantile,
            normal_shortfall_factor,
            filter_quantile,
            years,
        )
        for metric in range(N_EQUITY_METRICS):
            out[metric, curve] = row[metric]
    return out


@njit(cache=True)
def benchmark_metrics_1d_nb(
    equity: np.ndarray,
    benchmark_returns: np.ndarray,
    periods_per_year: float,
    risk_free_per_period: float,
) -> np.ndarray:
    """Alpha, beta, information ratio and tracking error of one curve against benchmark returns.

    ``benchmark_returns`` has ``T - 1`` values (:func:`returns_from_equity_1d_nb` of the benchmark
    equity). With ``r`` the returns of the curve, ``b`` those of the benchmark and ``f`` the per-bar
    risk-free rate, equivalent to::

        beta = np.cov(r, b)[0, 1] / np.var(b, ddof=1)
        alpha = (1 + np.mean((r - f) - beta * (b - f))) ** periods_per_year - 1
        tracking_error = np.std(r - b, ddof=1) * np.sqrt(periods_per_year)
        information_ratio = np.mean(r - b) / np.std(r - b, ddof=1) * np.sqrt(periods_per_year)

    Beta is 0.0 when the benchmark returns have zero dispersion (a standard deviation of at most
    ``DISPERSION_FLOOR``); the information ratio and tracking error are 0.0 when the active returns
    do; everything is 0.0 with fewer than two returns.
    """
    out = np.zeros(N_BENCHMARK_METRICS)
    n = equity.shape[0] - 1
    if n < 2:
        return out
    returns = np.empty(n)
    returns_from_equity_1d_nb(equity, returns)
    sum_returns = 0.0
    sum_bench = 0.0
    sum_active = 0.0
    for t in range(n):
        bench = benchmark_returns[t]
        active = returns[t] - bench
        sum_returns += returns[t]
        sum_bench += bench
        sum_active += active
    mean_returns = sum_returns / n
    mean_bench = sum_bench / n
    mean_active = sum_active / n
    covariance = 0.0
    bench_variance = 0.0
    active_variance = 0.0
    for t in range(n):
        bench_deviation = benchmark_returns[t] - mean_bench
        covariance += bench_deviation * (returns[t] - mean_returns)
        bench_variance += bench_deviation * bench_deviation
        active_deviation = returns[t] - benchmark_returns[t] - mean_active
        active_variance += active_deviation * active_deviation
    bench_std = math.sqrt(bench_variance / (n - 1))
    beta = covariance / bench_variance if bench_std > DISPERSION_FLOOR else 0.0
    # mean((r - f) - beta * (b - f)), from the sums
    residual_mean = mean_returns - risk_free_per_period - beta * (mean_bench - risk_free_per_period)
    growth = 1.0 + residual_mean
    out[ALPHA] = growth**periods_per_year - 1.0 if growth > 0.0 else -1.0
    out[BETA] = beta
    annualizer = math.sqrt(periods_per_year)
    active_std = math.sqrt(active_variance / (n - 1))
    if active_std > DISPERSION_FLOOR:
        out[TRACKING_ERROR] = active_std * annualizer
        out[INFORMATION_RATIO] = mean_active / active_std * annualizer
    return out


@njit(cache=True, parallel=True)
def benchmark_metrics_nb(
    equity: np.ndarray, benchmark_returns: np.ndarray, periods_per_year: float, risk_free_per_period: float
) -> np.ndarray:
    """Benchmark metrics ``[N_BENCHMARK_METRICS, N]`` of ``[N, T]`` curves.

    ``benchmark_returns`` is ``[1, T - 1]`` (one benchmark shared by all curves) or ``[N, T - 1]``.
    Equivalent to stacking :func:`benchmark_metrics_1d_nb` over the rows of ``equity``.
    """
    n_curves = equity.shape[0]
    stride = 0 if benchmark_returns.shape[0] == 1 else 1
    out = np.empty((N_BENCHMARK_METRICS, n_curves))
    for curve in prange(n_curves):
        row = benchmark_metrics_1d_nb(
            equity[curve], benchmark_returns[curve * stride], periods_per_year, risk_free_per_period
        )
        for metric in range(N_BENCHMARK_METRICS):
            out[metric, curve] = row[metric]
    return out


@njit(cache=True)
def rolling_mean_std_1d_nb(returns: np.ndarray, window: int, means: np.ndarray, stds: np.ndarray) -> None:
    """Rolling mean and sample standard deviation over ``window`` bars, written into ``means``/``stds``.

    Equivalent to ``s.rolling(window).mean()`` and ``s.rolling(window).std()`` for
    ``s = pd.Series(returns)``: the first ``window - 1`` outputs are NaN. The window slides with
    Welford's replace-one update and is recomputed exactly every ``window`` bars, and whenever the
    variance collapses by a factor of a million, so that rounding cannot drift. A standard deviation
    of at most ``DISPERSION_FLOOR`` (rounding noise, or a window of identical values) is 0.0.
    """
    n = returns.shape[0]
    mean = 0.0
    sum_squares = 0.0
    largest_squares = 0.0
    for t in range(n):
        if t < window - 1:
            means[t] = np.nan
            stds[t] = np.nan
            continue
        exact = (t - (window - 1)) % window == 0
        if not exact:
            old = returns[t - window]
            new = returns[t]
            new_mean = mean + (new - old) / window
            sum_squares += (new - old) * (new - new_mean + old - mean)
            mean = new_mean
            # a collapse of the variance (large values leaving the window) leaves a rounding residue
            # of about 1e-16 of the largest sum seen: recompute the window exactly then
            exact = sum_squares < 1e-6 * largest_squares
        if exact:
            total = 0.0
            for index in range(t - window + 1, t + 1):
                total += returns[index]
            mean = total / window
            sum_squares = 0.0
            for index in range(t - window + 1, t + 1):
                deviation = returns[index] - mean
                sum_squares += deviation * deviation
            largest_squares = sum_squares
        elif sum_squares > largest_squares:
            largest_squares = sum_squares
        means[t] = mean
        std = math.sqrt(sum_squares / (window - 1)) if sum_squares > 0.0 else 0.0
        stds[t] = std if std > DISPERSION_FLOOR else 0.0


@njit(cache=True, parallel=True)
def rolling_mean_std_nb(returns: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and standard deviation of ``[N, T]`` returns; see :func:`rolling_mean_std_1d_nb`."""
    n_curves, n = returns.shape
    means = np.empty((n_curves, n))
    stds = np.empty((n_curves, n))
    for curve in prange(n_curves):
        rolling_mean_std_1d_nb(returns[curve], window, means[curve], stds[curve])
    return means, stds


@njit(cache=True)
def drawdown_periods_nb(equity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every drawdown of one equity curve: ``(start, valley, recovery, depth)`` bar indices and depth.

    A drawdown starts at the last bar at the high-water mark (``start``), reaches its lowest equity
    at ``valley`` (the first bar of that lowest value) and ends at ``recovery``, the first bar whose
    equity is at or above the starting peak (-1 when the curve ends under water). ``depth`` is
    ``equity[valley] / equity[start] - 1``. Equivalent to QuantStats'
    ``drawdown_details(to_drawdown_series(returns))`` with its start moved one bar earlier (to the
    peak) and its end one bar later (to the recovery).
    """
    n_bars = equity.shape[0]
    capacity = n_bars // 2 + 1
    starts = np.empty(capacity, dtype=np.int64)
    valleys = np.empty(capacity, dtype=np.int64)
    recoveries = np.empty(capacity, dtype=np.int64)
    depths = np.empty(capacity)
    count = 0
    peak = equity[0]
    peak_index = 0
    in_drawdown = False
    for t in range(1, n_bars):
        value = equity[t]
        if value >= peak:
            if in_drawdown:
                recoveries[count] = t
                count += 1
                in_drawdown = False
            peak = value
            peak_index = t
        else:
            drawdown = value / peak - 1.0
            if not in_drawdown:
                in_drawdown = True
                starts[count] = peak_index
                valleys[count] = t
                depths[count] = drawdown
            elif drawdown < depths[count]:
                valleys[count] = t
                depths[count] = drawdown
    if in_drawdown:
        recoveries[count] = -1
        count += 1
    return starts[:count].copy(), valleys[:count].copy(), recoveries[:count].copy(), depths[:count].copy()


@njit(cache=True)
def streaks_nb(pnl: np.ndarray) -> tuple[int, int]:
    """Longest runs of consecutive winning (pnl > 0) and losing (pnl < 0) trades, in the given order.

    A break-even trade (pnl == 0) ends both runs. Equivalent to
    ``max(len(list(g)) for k, g in itertools.groupby(pnl > 0) if k)`` (and likewise for ``< 0``).
    """
    longest_win = 0
    longest_loss = 0
    win = 0
    loss = 0
    for index in range(pnl.shape[0]):
        value = pnl[index]
        if value > 0.0:
            win += 1
            loss = 0
        elif value < 0.0:
            loss += 1
            win = 0
        else:
            win = 0
            loss = 0
        if win > longest_win:
            longest_win = win
        if loss > longest_loss:
            longest_loss = loss
    return longest_win, longest_loss


# ========================================================================================= validation
@njit(cache=True)
def trade_pnl_sums_nb(pnl: np.ndarray) -> tuple[int, int, float, float]:
    """``(wins, losses, gross profit, gross loss)`` of trade pnl, summed in order.

    Equivalent to ``((pnl > 0).sum(), (pnl < 0).sum(), pnl[pnl > 0].sum(), -pnl[pnl < 0].sum())`` up to
    the order of summation (sequential here, pairwise in NumPy): :func:`trade_metrics` and the batched
    runtime (``backforge.strategy.batch``) both call this kernel, so they agree bit for bit.
    """
    n_wins = 0
    n_losses = 0
    gross_profit = 0.0
    gross_loss = 0.0
    for i in range(pnl.shape[0]):
        value = pnl[i]
        if value > 0.0:
            n_wins += 1
            gross_profit += value
        elif value < 0.0:
            n_losses += 1
            gross_loss -= value
    return n_wins, n_losses, gross_profit, gross_loss


def _as_float_array(values: np.ndarray, name: str, *, ndims: tuple[int, ...] = (1, 2)) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim not in ndims:
        shapes = " or ".join({1: "1-D [T]", 2: "2-D [N, T]"}[d] for d in ndims)
        raise DataError(f"{name} must be a {shapes} array, got shape {array.shape}", field=name)
    finite = np.isfinite(array)
    if not finite.all():
        position = tuple(int(i) for i in np.argwhere(~finite)[0])
        where = f"curve {position[0]}, bar {position[1]}" if array.ndim == 2 else f"bar {position[0]}"
        raise DataError(
            f"{name} must be finite, got {array[position]} at {where}; "
            "fill or drop missing values before computing metrics",
            row=position[-1],
            field=name,
        )
    return array


def _as_curves(equity: np.ndarray, name: str = "equity") -> tuple[np.ndarray, bool]:
    array = _as_float_array(equity, name)
    one_dimensional = array.ndim == 1
    curves = array[np.newaxis, :] if one_dimensional else array
    if curves.shape[1] < 1:
        raise DataError(f"{name} needs at least one bar, got shape {array.shape}", field=name)
    bad = curves[:, 0] <= 0.0
    if bad.any():
        curve = int(np.argmax(bad))
        raise DataError(
            f"{name} must start above zero (it is the starting capital), got {curves[curve, 0]}"
            + ("" if one_dimensional else f" for curve {curve}"),
            row=0,
            field=name,
        )
    return curves, one_dimensional


def _check_periods_per_year(periods_per_year: float) -> float:
    try:
        value = float(periods_per_year)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0.0:
        raise ConfigError(
            f"periods_per_year must be a number > 0, got {periods_per_year!r}; "
            "use periods_per_year_for(timestamps) to derive it from the data",
            field="periods_per_year",
        )
    return value


def _check_timestamps(timestamps_ns: np.ndarray, n_bars: int) -> np.ndarray:
    timestamps = np.ascontiguousarray(to_ns(timestamps_ns), dtype=np.int64)
    if timestamps.ndim != 1 or timestamps.shape[0] != n_bars:
        raise DataError(
            f"timestamps_ns must be 1-D with one timestamp per bar ({n_bars}), got shape {timestamps.shape}",
            field="timestamps_ns",
        )
    steps = np.diff(timestamps)
    if (steps < 0).any():
        row = int(np.argmax(steps < 0)) + 1
        raise DataError("timestamps_ns must be sorted in increasing order", row=row, field="timestamps_ns")
    return timestamps


def _finish(values: np.ndarray, one_dimensional: bool) -> np.ndarray | np.float64:
    return values[0] if one_dimensional else values


def _returns(curves: np.ndarray) -> np.ndarray:
    if curves.shape[0] >= _PARALLEL_MIN_CURVES:
        return returns_from_equity_nb(curves)
    out = np.empty((curves.shape[0], max(curves.shape[1] - 1, 0)))
    for row in range(curves.shape[0]):
        returns_from_equity_1d_nb(curves[row], out[row])
    return out


# ========================================================================================== dispatch
def returns_from_equity(equity: np.ndarray) -> np.ndarray:
    """Simple returns between consecutive bars: ``equity[..., 1:] / equity[..., :-1] - 1``.

    The result has ``T - 1`` values per curve (no artificial zero for the first bar). A bar that
    follows an equity of zero or less gets a return of 0.0 (a ruined account earns nothing).

    Parameters
    ----------
    equity
        float64 ``[T]`` or ``[N, T]``: equity (account value) per bar, time on the last axis.

    Returns
    -------
    numpy.ndarray
        float64 ``[T - 1]`` or ``[N, T - 1]``.

    Examples
    --------
    >>> returns_from_equity(np.array([100.0, 110.0, 99.0])).round(6).tolist()
    [0.1, -0.1]
    >>> returns_from_equity(np.array([[1.0, 2.0], [4.0, 2.0]])).tolist()
    [[1.0], [-0.5]]
    """
    array = _as_float_array(equity, "equity")
    curves = array[np.newaxis, :] if array.ndim == 1 else array
    returns = _returns(curves)
    return returns[0] if array.ndim == 1 else returns


def risk_free_per_period(risk_free: float, periods_per_year: float) -> float:
    """Per-bar risk-free rate of an annual rate: ``(1 + risk_free) ** (1 / periods_per_year) - 1``.

    Parameters
    ----------
    risk_free
        Annual risk-free rate as a fraction (0.04 = 4 % a year); must be > -1.
    periods_per_year
        Bars per year.

    Returns
    -------
    float
        The rate per bar, compounding to ``risk_free`` over ``periods_per_year`` bars.

    Examples
    --------
    >>> round(risk_free_per_period(0.1025, 2), 10)
    0.05
    """
    periods = _check_periods_per_year(periods_per_year)
    rate = float(risk_free)
    if not math.isfinite(rate) or rate <= -1.0:
        raise ConfigError(
            f"risk_free must be an annual rate > -1 (0.04 for 4 %), got {risk_free!r}", field="risk_free"
        )
    return (1.0 + rate) ** (1.0 / periods) - 1.0


def equity_metric_parameters(
    n_bars: int,
    *,
    periods_per_year: float,
    risk_free: float = 0.0,
    var_level: float = 0.95,
    timestamps_ns: np.ndarray | None = None,
) -> tuple[float, float, float, float, float, float, float]:
    """The scalar arguments of :func:`equity_metrics_1d_nb` after ``equity`` for curves of ``n_bars``
    bars: ``(periods_per_year, risk_free_per_period, var_level, normal_quantile,
    normal_shortfall_factor, filter_quantile, years)``, validated. :func:`equity_metrics` lowers its
    options with it; compiled callers (the batched runtime) pass the same tuple to the kernel.

    Examples
    --------
    >>> equity_metric_parameters(5, periods_per_year=252)[:3]
    (252.0, 0.0, 0.95)
    """
    periods = _check_periods_per_year(periods_per_year)
    rate = risk_free_per_period(risk_free, periods)
    level = float(var_level)
    if not 0.5 < level < 1.0:
        raise ConfigError(
            f"var_level must be a confidence level between 0.5 and 1 (e.g. 0.95), got {var_level!r}",
            field="var_level",
        )
    tail = 1.0 - level
    normal_quantile = NormalDist().inv_cdf(tail)
    normal_shortfall_factor = NormalDist().pdf(normal_quantile) / tail
    filter_quantile = NormalDist().inv_cdf(min(4.0 * tail, 0.5))
    years = 0.0
    if timestamps_ns is not None:
        timestamps = _check_timestamps(timestamps_ns, n_bars)
        years = float(timestamps[-1] - timestamps[0]) / NS_PER_YEAR
    return (periods, rate, level, normal_quantile, normal_shortfall_factor, filter_quantile, years)


def equity_metrics(
    equity: np.ndarray,
    *,
    periods_per_year: float,
    risk_free: float = 0.0,
    benchmark: np.ndarray | None = None,
    var_level: float = 0.95,
    timestamps_ns: np.ndarray | None = None,
) -> dict[str, np.ndarray | np.float64]:
    """Performance and risk metrics of one or many equity curves, computed in one compiled pass.

    With ``r`` the ``n = T - 1`` returns of a curve (:func:`returns_from_equity`), ``P`` =
    ``periods_per_year``, ``f`` the per-bar risk-free rate (:func:`risk_free_per_period`) and
    ``x = r - f`` the excess returns:

    ========================= ===================================================================
    key                       definition (defined value when the formula breaks down)
    ========================= ===================================================================
    total_return              ``equity[-1] / equity[0] - 1``
    annual_return             ``(1 + total_return) ** (P / n) - 1`` (0.0 when n = 0; -1.0 when the
                              final equity is <= 0)
    cagr                      ``(1 + total_return) ** (1 / years) - 1`` with years measured on
                              ``timestamps_ns`` (365.25-day years); equal to annual_return without them
    annual_volatility         ``std(r, ddof=1) * sqrt(P)`` (0.0 with n < 2 or constant returns: a per-bar
                              std of at most ``DISPERSION_FLOOR`` = 1e-13 is rounding noise, taken as 0)
    sharpe                    ``mean(x) / std(x, ddof=1) * sqrt(P)`` (0.0 when std is 0 or n < 2)
    sortino                   ``mean(x) * sqrt(P) / sqrt(mean(min(x, 0) ** 2))`` (+inf when that downside
                              deviation is 0 and the mean is > 0, else 0.0)
    calmar                    ``annual_return / abs(max_drawdown)``
    omega                     ``sum(max(x, 0)) / sum(max(-x, 0))`` (threshold: the risk-free rate)
    max_drawdown              ``min(equity / running_max(equity) - 1)`` <= 0; the running max starts at
                              ``equity[0]``
    max_drawdown_duration     longest drawdown in bars, from the last bar at the peak to the first bar
                              back at or above it (to the last bar when not recovered)
    avg_drawdown_duration     mean of those durations over all drawdowns (0.0 when there are none)
    ulcer_index               ``sqrt(sum(drawdown[1:] ** 2) / n)``, drawdowns as fractions
    recovery_factor           ``total_return / abs(max_drawdown)``
    var_historical            ``quantile(r, 1 - var_level)``, linear interpolation (a return, < 0 for a
                              loss)
    cvar_historical           mean of the returns ``<= var_historical``
    var_parametric            ``mean(r) + std(r) * z`` with ``z = Phi^-1(1 - var_level)``
    cvar_parametric           ``mean(r) - std(r) * phi(z) / (1 - var_level)`` (normal expected shortfall)
    skew                      adjusted Fisher-Pearson G1 as in ``pandas.Series.skew`` (0.0 if n < 3 or std 0)
    kurtosis                  excess kurtosis G2 as in ``pandas.Series.kurt`` (0.0 if n < 4 or std 0)
    tail_ratio                ``abs(quantile(r, var_level)) / abs(quantile(r, 1 - var_level))``
    gain_pain_ratio           ``sum(r) / abs(sum(r[r < 0]))``
    best_period, worst_period ``max(r)``, ``min(r)`` (0.0 when n = 0)
    ========================= ===================================================================

    With a ``benchmark`` equity curve (``b`` its returns), also: ``beta = cov(r, b) / var(b)`` (0.0 for
    a constant benchmark), ``alpha = (1 + mean(x - beta * (b - f))) ** P - 1`` (Jensen's alpha,
    compounded to a year), ``tracking_error = std(r - b, ddof=1) * sqrt(P)`` and
    ``information_ratio = mean(r - b) / std(r - b, ddof=1) * sqrt(P)`` (0.0 when the active returns
    are constant); all four are 0.0 with fewer than two returns.

    A zero denominator gives ``+inf``/``-inf`` when the numerator is non-zero and the ratio's neutral
    value otherwise (0.0 for Sortino, Calmar, recovery and gain/pain; 1.0 for Omega and tail ratio).
    No key is ever NaN.

    Parameters
    ----------
    equity
        float64 ``[T]`` or ``[N, T]`` equity curves, time on the last axis, finite, first value > 0.
    periods_per_year
        Bars per year, e.g. 252 for daily equities (see :func:`periods_per_year_for`).
    risk_free
        Annual risk-free rate as a fraction; converted per bar.
    benchmark
        Optional benchmark equity ``[T]`` (shared by all curves) or ``[N, T]``.
    var_level
        Confidence level of VaR and CVaR, and the upper quantile of the tail ratio; in (0.5, 1).
    timestamps_ns
        Optional int64 ns timestamps ``[T]``; only used to measure calendar years for ``cagr``.

    Returns
    -------
    dict[str, numpy.ndarray | numpy.float64]
        Metric name -> float64 array ``[N]``; NumPy float64 scalars for a 1-D ``equity``.

    Examples
    --------
    >>> equity = np.array([100.0, 102.0, 99.0, 104.0, 103.0, 108.0])
    >>> metrics = equity_metrics(equity, periods_per_year=252)
    >>> round(float(metrics["total_return"]), 6)
    0.08
    >>> round(float(metrics["max_drawdown"]), 6), float(metrics["max_drawdown_duration"])
    (-0.029412, 2.0)
    >>> many = equity_metrics(np.vstack([equity, equity * 3.0]), periods_per_year=252)
    >>> many["sharpe"].shape, bool(np.isclose(many["sharpe"][0], many["sharpe"][1]))
    ((2,), True)
    """
    curves, one_dimensional = _as_curves(equity)
    parameters = equity_metric_parameters(curves.shape[1], periods_per_year=periods_per_year, risk_free=risk_free,
                                          var_level=var_level, timestamps_ns=timestamps_ns)
    periods, rate = parameters[0], parameters[1]
    if curves.shape[0] >= _PARALLEL_MIN_CURVES:
        table = equity_metrics_nb(curves, *parameters)
    else:
        table = np.empty((N_EQUITY_METRICS, curves.shape[0]))
        for row in range(curves.shape[0]):
            table[:, row] = equity_metrics_1d_nb(curves[row], *parameters)
    result = {name: _finish(table[row], one_dimensional) for row, name in enumerate(EQUITY_METRIC_NAMES)}
    if benchmark is not None:
        bench, _ = _as_curves(benchmark, "benchmark")
        if bench.shape[1] != curves.shape[1] or bench.shape[0] not in (1, curves.shape[0]):
            raise DataError(
                f"benchmark must be [T] or [N, T] like equity {curves.shape}, got shape {np.shape(benchmark)}",
                field="benchmark",
            )
        bench_returns = _returns(bench)
        if curves.shape[0] >= _PARALLEL_MIN_CURVES:
            relative = benchmark_metrics_nb(curves, bench_returns, periods, rate)
        else:
            relative = np.empty((N_BENCHMARK_METRICS, curves.shape[0]))
            stride = 0 if bench_returns.shape[0] == 1 else 1
            for row in range(curves.shape[0]):
                relative[:, row] = benchmark_metrics_1d_nb(curves[row], bench_returns[row * stride], periods, rate)
        for row, name in enumerate(BENCHMARK_METRIC_NAMES):
            result[name] = _finish(relative[row], one_dimensional)
    return result


def trade_metrics(pnl: np.ndarray, returns: np.ndarray, durations_ns: np.ndarray) -> dict[str, float | int]:
    """Statistics of closed trades, one value per array element, in closing order.

    A trade is a win when ``pnl > 0``, a loss when ``pnl < 0`` and break-even otherwise; break-even
    trades count in ``n_trades`` (and the win-rate denominator) but in neither average.

    ====================== ======================================================================
    key                    definition (value with no trades, or when the formula breaks down)
    ====================== ======================================================================
    n_trades               number of trades
    win_rate               wins / n_trades (0.0)
    profit_factor          sum of winning pnl / abs(sum of losing pnl) (+inf with no losses; 1.0 when
                           there are neither wins nor losses)
    expectancy             mean pnl per trade, in account currency (0.0)
    expectancy_pct         mean return per trade (0.0)
    avg_win, avg_loss      mean return of winning / losing trades (0.0 when there are none)
    payoff_ratio           avg_win / abs(avg_loss) (+inf with wins and no losses; 0.0 with losses and
                           no wins; 1.0 with neither)
    kelly                  ``win_rate - (1 - win_rate) / payoff_ratio`` (= win_rate when there are no
                           losses; -inf with losses and no wins; 0.0 with neither)
    sqn                    ``sqrt(n) * mean(returns) / std(returns, ddof=1)`` (0.0 when n < 2 or the std
                           is at most ``DISPERSION_FLOOR``)
    best_trade, worst_trade  largest and smallest trade return (0.0)
    avg_trade_duration_ns  mean holding time in ns (0.0); max_trade_duration_ns its maximum (0)
    longest_win_streak     longest run of consecutive wins; longest_loss_streak likewise (0)
    ====================== ======================================================================

    Parameters
    ----------
    pnl
        float64 ``[K]`` profit and loss of each closed trade in account currency, net of costs.
    returns
        float64 ``[K]`` return of each trade (pnl over the capital committed at entry).
    durations_ns
        int64 ``[K]`` holding time of each trade in nanoseconds.

    Returns
    -------
    dict[str, float | int]
        Counts (``n_trades``, streaks, ``max_trade_duration_ns``) are ints, the rest floats.

    Examples
    --------
    >>> stats = trade_metrics(
    ...     pnl=np.array([50.0, -20.0, 30.0]),
    ...     returns=np.array([0.05, -0.02, 0.03]),
    ...     durations_ns=np.array([3, 1, 2]) * 86_400 * 10**9,
    ... )
    >>> stats["n_trades"], round(stats["win_rate"], 4), stats["profit_factor"]
    (3, 0.6667, 4.0)
    >>> stats["payoff_ratio"], round(stats["kelly"], 4), stats["longest_win_streak"]
    (2.0, 0.5, 1)
    """
    pnl_values = _as_float_array(pnl, "pnl", ndims=(1,))
    trade_returns = _as_float_array(returns, "returns", ndims=(1,))
    durations = np.ascontiguousarray(durations_ns, dtype=np.int64)
    count = pnl_values.shape[0]
    if trade_returns.shape[0] != count or durations.ndim != 1 or durations.shape[0] != count:
        raise DataError(
            "pnl, returns and durations_ns must be 1-D arrays with one value per trade, got lengths "
            f"{pnl_values.shape[0]}, {trade_returns.shape[0]} and {durations.shape}",
            field="returns",
        )
    if count == 0:
        return {
            "n_trades": 0,
            "win_rate": 0.0,
            "profit_factor": 1.0,
            "expectancy": 0.0,
            "expectancy_pct": 0.0,
            "avg_win": 0.0,
            "avg_loss": 0.0,
            "payoff_ratio": 1.0,
            "kelly": 0.0,
            "sqn": 0.0,
            "best_trade": 0.0,
            "worst_trade": 0.0,
            "avg_trade_duration_ns": 0.0,
            "max_trade_duration_ns": 0,
            "longest_win_streak": 0,
            "longest_loss_streak": 0,
        }
    wins = pnl_values > 0.0
    losses = pnl_values < 0.0
    n_wins, n_losses, gross_profit, gross_loss = trade_pnl_sums_nb(pnl_values)
    win_rate = n_wins / count
    avg_win = float(trade_returns[wins].mean()) if n_wins else 0.0
    avg_loss = float(trade_returns[losses].mean()) if n_losses else 0.0
    payoff = float(ratio_nb(avg_win, abs(avg_loss), 1.0))
    if n_wins == 0 and n_losses == 0:
        kelly = 0.0
    elif n_losses == 0:
        kelly = win_rate
    elif payoff == 0.0:
        kelly = -math.inf
    else:
        kelly = win_rate - (1.0 - win_rate) / payoff
    std = float(trade_returns.std(ddof=1)) if count > 1 else 0.0
    mean_return = float(trade_returns.mean())
    sqn = math.sqrt(count) * mean_return / std if std > DISPERSION_FLOOR else 0.0
    longest_win, longest_loss = streaks_nb(pnl_values)
    return {
        "n_trades": count,
        "win_rate": win_rate,
        "profit_factor": float(ratio_nb(gross_profit, gross_loss, 1.0)),
        "expectancy": float(pnl_values.mean()),
        "expectancy_pct": mean_return,
        "avg_win": avg_win,
        "avg_loss": avg_loss,
        "payoff_ratio": payoff,
        "kelly": kelly,
        "sqn": sqn,
        "best_trade": float(trade_returns.max()),
        "worst_trade": float(trade_returns.min()),
        "avg_trade_duration_ns": float(durations.mean()),
        "max_trade_duration_ns": int(durations.max()),
        "longest_win_streak": int(longest_win),
        "longest_loss_streak": int(longest_loss),
    }


def exposure_and_turnover(
    gross_exposure: np.ndarray,
    equity: np.ndarray,
    traded_notional: np.ndarray,
    *,
    periods_per_year: float | None = None,
) -> dict[str, np.ndarray | np.float64]:
    """How often and how heavily the capital was at work, and how much of it was traded.

    * ``exposure_time``: fraction of the ``T`` bars with a non-zero gross exposure.
    * ``avg_gross_leverage``: mean over the bars of ``gross_exposure / equity`` (bars with equity <= 0
      are left out; 0.0 when none is left).
    * ``turnover``: ``sum(abs(traded_notional)) / mean(equity)`` over the whole sample (2.0: the
      strategy traded twice its average capital); 0.0 when the mean equity is <= 0.
    * ``annual_turnover`` (only with ``periods_per_year``): ``turnover`` per year of data,
      ``turnover * periods_per_year / max(T - 1, 1)``, the sample spanning ``T - 1`` bars as in
      :func:`equity_metrics`.

    Parameters
    ----------
    gross_exposure
        float64 ``[T]`` or ``[N, T]``: sum of the absolute market values of the open positions per bar.
    equity
        float64, same shape: account equity per bar.
    traded_notional
        float64, same shape: absolute notional traded in each bar (buys plus sells).
    periods_per_year
        Bars per year; when given, ``annual_turnover`` is added.

    Returns
    -------
    dict[str, numpy.ndarray | numpy.float64]
        Name -> float64 ``[N]`` (NumPy float64 scalars for 1-D input).

    Examples
    --------
    >>> result = exposure_and_turnover(
    ...     gross_exposure=np.array([0.0, 100.0, 100.0, 0.0]),
    ...     equity=np.array([100.0, 100.0, 100.0, 100.0]),
    ...     traded_notional=np.array([0.0, 100.0, 0.0, 100.0]),
    ... )
    >>> float(result["exposure_time"]), float(result["avg_gross_leverage"]), float(result["turnover"])
    (0.5, 0.5, 2.0)
    """
    exposure = np.abs(_as_float_array(gross_exposure, "gross_exposure"))
    capital = _as_float_array(equity, "equity")
    traded = np.abs(_as_float_array(traded_notional, "traded_notional"))
    if exposure.shape != capital.shape or traded.shape != capital.shape:
        raise DataError(
            "gross_exposure, equity and traded_notional must have the same shape, got "
            f"{exposure.shape}, {capital.shape} and {traded.shape}",
            field="gross_exposure",
        )
    if capital.shape[-1] < 1:
        raise DataError("equity needs at least one bar", field="equity")
    one_dimensional = capital.ndim == 1
    if one_dimensional:
        exposure, capital, traded = exposure[np.newaxis], capital[np.newaxis], traded[np.newaxis]
    n_bars = capital.shape[1]
    exposure_time = (exposure != 0.0).sum(axis=1) / n_bars
    solvent = capital > 0.0
    leverage = np.divide(exposure, capital, out=np.zeros_like(exposure), where=solvent)
    solvent_bars = solvent.sum(axis=1)
    avg_leverage = np.divide(
        leverage.sum(axis=1), solvent_bars, out=np.zeros(capital.shape[0]), where=solvent_bars > 0
    )
    mean_equity = capital.mean(axis=1)
    turnover = np.divide(
        traded.sum(axis=1), mean_equity, out=np.zeros(capital.shape[0]), where=mean_equity > 0.0
    )
    result = {
        "exposure_time": _finish(exposure_time, one_dimensional),
        "avg_gross_leverage": _finish(avg_leverage, one_dimensional),
        "turnover": _finish(turnover, one_dimensional),
    }
    if periods_per_year is not None:
        periods = _check_periods_per_year(periods_per_year)
        result["annual_turnover"] = _finish(turnover * periods / max(n_bars - 1, 1), one_dimensional)
    return result


def _rolling(returns: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, bool]:
    array = _as_float_array(returns, "returns")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise ConfigError(f"window must be a whole number of bars >= 2, got {window!r}", field="window")
    one_dimensional = array.ndim == 1
    curves = array[np.newaxis, :] if one_dimensional else array
    if curves.shape[0] >= _PARALLEL_MIN_CURVES:
        means, stds = rolling_mean_std_nb(curves, int(window))
    else:
        means = np.empty(curves.shape)
        stds = np.empty(curves.shape)
        for row in range(curves.shape[0]):
            rolling_mean_std_1d_nb(curves[row], int(window), means[row], stds[row])
    return means, stds, one_dimensional


def rolling_sharpe(
    returns: np.ndarray, window: int, periods_per_year: float, *, risk_free: float = 0.0
) -> np.ndarray:
    """Annualized Sharpe ratio over a sliding window of ``window`` returns.

    ``mean(x) / std(x, ddof=1) * sqrt(periods_per_year)`` over the last ``window`` excess returns
    ``x = r - f`` (``f`` the per-bar risk-free rate). The first ``window - 1`` values are NaN (no
    full window yet, as in pandas); a window of constant returns gives 0.0, as in
    :func:`equity_metrics`.

    Parameters
    ----------
    returns
        float64 ``[T]`` or ``[N, T]`` simple returns (e.g. from :func:`returns_from_equity`).
    window
        Window length in bars, >= 2.
    periods_per_year
        Bars per year.
    risk_free
        Annual risk-free rate.

    Returns
    -------
    numpy.ndarray
        Same shape as ``returns``.

    Examples
    --------
    >>> r = np.array([0.01, -0.01, 0.02, 0.0, 0.0, 0.0])
    >>> rolling_sharpe(r, 3, 252).round(4).tolist()
    [nan, nan, 6.9282, 3.4641, 9.1652, 0.0]
    """
    rate = risk_free_per_period(risk_free, periods_per_year)
    means, stds, one_dimensional = _rolling(returns, window)
    scale = math.sqrt(float(periods_per_year))
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(stds > 0.0, (means - rate) / stds * scale, np.where(np.isnan(stds), np.nan, 0.0))
    return sharpe[0] if one_dimensional else sharpe


def rolling_volatility(returns: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """Annualized volatility ``std(r, ddof=1) * sqrt(periods_per_year)`` over a sliding window.

    Equivalent to ``pd.Series(returns).rolling(window).std() * sqrt(periods_per_year)``: the first
    ``window - 1`` values are NaN; a window of constant returns gives exactly 0.0.

    Parameters
    ----------
    returns
        float64 ``[T]`` or ``[N, T]`` simple returns.
    window
        Window length in bars, >= 2.
    periods_per_year
        Bars per year.

    Returns
    -------
    numpy.ndarray
        Same shape as ``returns``.

    Examples
    --------
    >>> rolling_volatility(np.array([0.01, -0.01, 0.01, 0.01, 0.01]), 3, 1).round(6).tolist()
    [nan, nan, 0.011547, 0.011547, 0.0]
    """
    periods = _check_periods_per_year(periods_per_year)
    _, stds, one_dimensional = _rolling(returns, window)
    volatility = stds * math.sqrt(periods)
    return volatility[0] if one_dimensional else volatility


def drawdown_periods(timestamps_ns: np.ndarray, equity: np.ndarray) -> pl.DataFrame:
    """Table of every drawdown of one equity curve, deepest first.

    Columns:

    * ``start``: the last bar at the high-water mark before the decline (the peak);
    * ``valley``: the first bar at the lowest equity of the drawdown;
    * ``recovery``: the first bar back at or above the peak; null when the curve ends under water;
    * ``depth``: ``equity[valley] / equity[start] - 1`` (a negative fraction);
    * ``duration_bars``: bars from ``start`` to ``recovery`` (to the last bar when not recovered);
    * ``duration``: the same span in time (a Polars ``Duration``), ``recovery - start`` or
      ``last timestamp - start``.

    Timestamps are Polars ``Datetime("ns", "UTC")``. Ties in depth keep chronological order.
    ``max_drawdown_duration`` and ``avg_drawdown_duration`` of :func:`equity_metrics` are the max and
    mean of ``duration_bars``.

    Parameters
    ----------
    timestamps_ns
        int64 ``[T]`` timestamps in ns UTC, sorted.
    equity
        float64 ``[T]`` equity of one curve.

    Returns
    -------
    polars.DataFrame

    Examples
    --------
    >>> day = 86_400 * 10**9
    >>> table = drawdown_periods(np.arange(6) * day, np.array([100.0, 90.0, 100.0, 80.0, 95.0, 99.0]))
    >>> [(round(depth, 6), bars) for depth, bars in table.select("depth", "duration_bars").rows()]
    [(-0.2, 3), (-0.1, 2)]
    >>> table["recovery"].to_list()[0] is None
    True
    """
    curves, _ = _as_curves(equity)
    if curves.shape[0] != 1 or np.ndim(equity) != 1:
        raise DataError(f"equity must be one curve [T], got shape {np.shape(equity)}", field="equity")
    curve = curves[0]
    timestamps = _check_timestamps(timestamps_ns, curve.shape[0])
    starts, valleys, recoveries, depths = drawdown_periods_nb(curve)
    recovered = recoveries >= 0
    end_index = np.where(recovered, recoveries, curve.shape[0] - 1)
    frame = pl.DataFrame(
        {
            "start": pl.Series(timestamps[starts], dtype=pl.Int64),
            "valley": pl.Series(timestamps[valleys], dtype=pl.Int64),
            "recovery": pl.Series(np.where(recovered, timestamps[end_index], 0), dtype=pl.Int64),
            "recovered": pl.Series(recovered, dtype=pl.Boolean),
            "depth": pl.Series(depths, dtype=pl.Float64),
            "duration_bars": pl.Series(end_index - starts, dtype=pl.Int64),
            "duration": pl.Series(timestamps[end_index] - timestamps[starts], dtype=pl.Int64),
        }
    )
    utc = pl.Datetime("ns", "UTC")
    return (
        frame.with_columns(
            pl.col("start").cast(utc),
            pl.col("valley").cast(utc),
            pl.when(pl.col("recovered")).then(pl.col("recovery")).otherwise(None).cast(utc).alias("recovery"),
            pl.col("duration").cast(pl.Duration("ns")),
        )
        .drop("recovered")
        .sort("depth", "start", maintain_order=True)
    )


def _period_keys(timestamps: np.ndarray, every: str, time_zone: str) -> tuple[np.ndarray, np.ndarray]:
    moments = pl.Series(timestamps, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))
    if time_zone != "UTC":
        moments = moments.dt.convert_time_zone(time_zone)
    years = moments.dt.year().to_numpy().astype(np.int64)
    months = moments.dt.month().to_numpy().astype(np.int64) if every == "month" else np.ones_like(years)
    return years, months


def period_returns(
    timestamps_ns: np.ndarray,
    equity: np.ndarray,
    every: Literal["month", "year"] = "month",
    *,
    time_zone: str = "UTC",
) -> pl.DataFrame:
    """Compounded return of every calendar month or year, from one equity curve.

    Each bar's return (:func:`returns_from_equity`) belongs to the period of the bar it ends on; a
    period's return is ``prod(1 + r) - 1`` over its bars, i.e. the equity at its last bar over the
    equity at the last bar of the previous period (the first bar for the first period), minus 1.
    Periods without any return (such as one holding only the very first bar) are not listed: a
    period without data is not a 0 % period.

    Parameters
    ----------
    timestamps_ns
        int64 ``[T]`` timestamps in ns UTC, sorted.
    equity
        float64 ``[T]`` equity of one curve.
    every
        ``"month"`` or ``"year"``.
    time_zone
        Time zone whose calendar defines months and years (IANA name, default UTC).

    Returns
    -------
    polars.DataFrame
        Columns ``period`` (Date, first day of the period), ``year``, ``month`` (monthly only),
        ``return`` and ``n_bars`` (returns in the period).

    Examples
    --------
    >>> day = 86_400 * 10**9
    >>> ts = np.array([0, 1, 31, 32, 59]) * day  # 1970-01-01, 01-02, 02-01, 02-02, 03-01
    >>> table = period_returns(ts, np.array([100.0, 110.0, 121.0, 121.0, 108.9]), "month")
    >>> [(month, round(value, 6)) for month, value in table.select("month", "return").rows()]
    [(1, 0.1), (2, 0.1), (3, -0.1)]
    """
    if every not in ("month", "year"):
        raise ConfigError(f"every must be 'month' or 'year', got {every!r}", field="every")
    curves, _ = _as_curves(equity)
    if np.ndim(equity) != 1:
        raise DataError(f"equity must be one curve [T], got shape {np.shape(equity)}", field="equity")
    curve = curves[0]
    timestamps = _check_timestamps(timestamps_ns, curve.shape[0])
    schema: dict[str, pl.DataType] = {"period": pl.Date(), "year": pl.Int32()}
    if every == "month":
        schema["month"] = pl.Int8()
    schema.update({"return": pl.Float64(), "n_bars": pl.Int64()})
    if curve.shape[0] < 2:
        return pl.DataFrame(schema=schema)
    returns = _returns(curve[np.newaxis, :])[0]
    years, months = _period_keys(timestamps[1:], every, time_zone)
    keys = years * 12 + (months - 1)
    firsts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    growth = np.multiply.reduceat(1.0 + returns, firsts)
    counts = np.diff(np.r_[firsts, keys.shape[0]])
    frame = pl.DataFrame(
        {
            "year": years[firsts],
            "month": months[firsts],
            "return": growth - 1.0,
            "n_bars": counts,
        }
    ).with_columns(pl.date(pl.col("year"), pl.col("month"), 1).alias("period"))
    return frame.select(list(schema)).cast(schema)


def monthly_table(timestamps_ns: np.ndarray, equity: np.ndarray, *, time_zone: str = "UTC") -> pl.DataFrame:
    """Monthly returns pivoted to one row per year: ``year``, ``Jan`` ... ``Dec`` and ``total``.

    Cells are compounded monthly returns (:func:`period_returns`); a month without data is null, not
    0.0. ``total`` is the compounded return of the calendar year (the product of its months).

    Parameters
    ----------
    timestamps_ns
        int64 ``[T]`` timestamps in ns UTC, sorted.
    equity
        float64 ``[T]`` equity of one curve.
    time_zone
        Time zone whose calendar defines months and years.

    Returns
    -------
    polars.DataFrame
        One row per year with data, sorted by year.

    Examples
    --------
    >>> day = 86_400 * 10**9
    >>> ts = np.array([0, 1, 31, 32]) * day
    >>> table = monthly_table(ts, np.array([100.0, 110.0, 110.0, 99.0]))
    >>> row = table.row(0, named=True)
    >>> row["year"], round(row["Jan"], 6), round(row["Feb"], 6), row["Mar"], round(row["total"], 6)
    (1970, 0.1, -0.1, None, -0.01)
    """
    months = period_returns(timestamps_ns, equity, "month", time_zone=time_zone)
    years = period_returns(timestamps_ns, equity, "year", time_zone=time_zone)
    cells = np.full((years.height, 12), np.nan)
    row_of_year = {year: row for row, year in enumerate(years["year"].to_list())}
    rows = np.array([row_of_year[year] for year in months["year"].to_list()], dtype=np.int64)
    cells[rows, months["month"].to_numpy().astype(np.int64) - 1] = months["return"].to_numpy()
    columns: dict[str, object] = {"year": years["year"]}
    for number, name in enumerate(_MONTH_NAMES):
        columns[name] = pl.Series(name, cells[:, number], dtype=pl.Float64, nan_to_null=True)
    columns["total"] = years["return"]
    return pl.DataFrame(columns)


def periods_per_year_for(timestamps_ns: np.ndarray, calendar: str | float = "auto") -> float:
    """Bars per year of a timestamp series: trading days per year times bars per trading day.

    * Bars of up to a day: ``days_per_year * bars_per_day``, where ``bars_per_day`` is the median
      number of bars per UTC calendar date present in the data (1 for daily bars, 390 for US equity
      minutes, 1440 for crypto minutes) and ``days_per_year`` comes from ``calendar``:
      ``"equities"`` 252, ``"crypto"`` 365, ``"fx"`` 260, or a number. ``"auto"`` looks at the
      weekdays in the data (UTC): bars on a Saturday mean a 24/7 market (365); bars on Sundays only
      mean FX, which opens on Sunday evening (260); no weekend bars mean equities (252).
    * Bars longer than a day (median spacing of 2 days or more) do not depend on a calendar: weekly
      bars give 52, monthly 12, quarterly 4, yearly 1, and other spacings ``365.25 / days``.
    * Fewer than two timestamps: ``days_per_year`` (one bar per day is assumed).

    Parameters
    ----------
    timestamps_ns
        int64 ``[T]`` timestamps in ns UTC, sorted.
    calendar
        ``"auto"``, ``"equities"``, ``"crypto"``, ``"fx"`` or a number of trading days per year.

    Returns
    -------
    float

    Examples
    --------
    >>> day = 86_400 * 10**9
    >>> weekdays = np.array([d for d in range(4, 60) if d % 7 not in (2, 3)]) * day  # no Sat/Sun
    >>> periods_per_year_for(weekdays), periods_per_year_for(weekdays, "fx")
    (252.0, 260.0)
    >>> periods_per_year_for(np.arange(0, 3 * day, 60 * 10**9))  # crypto minutes, with a weekend
    525600.0
    """
    timestamps = np.ascontiguousarray(to_ns(timestamps_ns), dtype=np.int64)
    if timestamps.ndim != 1:
        raise DataError(f"timestamps_ns must be 1-D, got shape {timestamps.shape}", field="timestamps_ns")
    days = np.floor_divide(timestamps, NS_PER_DAY)
    weekdays = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    if isinstance(calendar, str):
        name = calendar.strip().lower()
        name = _CALENDAR_ALIASES.get(name, name)
        if name == "auto":
            if (weekdays == 5).any():
                name = "crypto"
            elif (weekdays == 6).any():
                name = "fx"
            else:
                name = "equities"
        if name not in CALENDAR_DAYS_PER_YEAR:
            choices = ["auto", *CALENDAR_DAYS_PER_YEAR]
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown calendar {calendar!r}: use one of {', '.join(choices)} or a number of "
                f"trading days per year{hint}",
                field="calendar",
            )
        days_per_year = CALENDAR_DAYS_PER_YEAR[name]
    else:
        days_per_year = float(calendar)
        if not math.isfinite(days_per_year) or days_per_year <= 0.0:
            raise ConfigError(f"calendar days per year must be > 0, got {calendar!r}", field="calendar")
    if timestamps.shape[0] < 2:
        return days_per_year
    bar_days = median_bar_ns(timestamps) / NS_PER_DAY
    if bar_days >= 2.0:
        for lower, upper, periods in _MULTI_DAY_BARS:
            if lower <= bar_days <= upper:
                return periods
        return 365.25 / bar_days
    _, bars_per_date = np.unique(days, return_counts=True)
    return days_per_year * float(np.median(bars_per_date))


# ================================================================= single figures of returns or a curve
def sharpe_ratio(returns: np.ndarray, periods_per_year: float, *, risk_free: float = 0.0) -> float:
    """Annualized Sharpe ratio of per-bar ``returns``: ``mean(x) / std(x, ddof=1) * sqrt(P)`` with
    ``x = returns - f`` (``f`` from :func:`risk_free_per_period`); 0.0 with fewer than two returns or a std
    of at most :data:`DISPERSION_FLOOR` — the definition of ``sharpe`` in :func:`equity_metrics`, for
    callers that hold returns rather than a curve (the judge's sub-periods, regimes).

    Examples
    --------
    >>> round(sharpe_ratio(np.array([0.01, -0.005, 0.02, 0.0]), 252), 4)
    8.949
    >>> sharpe_ratio(np.array([0.01, 0.01]), 252)
    0.0
    """
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    if r.shape[0] < 2:
        return 0.0
    x = r - risk_free_per_period(risk_free, periods_per_year)
    mean = float(np.mean(x))
    std = math.sqrt(float(np.sum((r - float(np.mean(r))) ** 2)) / (r.shape[0] - 1))
    if std <= DISPERSION_FLOOR:
        return 0.0
    return mean / std * math.sqrt(periods_per_year)


def sharpe_from_sums(sums: np.ndarray, squares: np.ndarray, shift: float, n: int, periods_per_year: float) -> np.ndarray:
    """Annualized Sharpe ratios of many return paths from their running sums (Monte Carlo): ``sums`` and
    ``squares`` are the sums of ``x = r - shift`` and ``x ** 2`` over ``n`` returns (shifting by a typical
    return keeps the one-pass variance accurate). Same definition and floor as :func:`sharpe_ratio`.

    Examples
    --------
    >>> r = np.array([0.01, -0.005, 0.02, 0.0])
    >>> x = r - 0.005
    >>> round(float(sharpe_from_sums(np.array([x.sum()]), np.array([(x * x).sum()]), 0.005, 4, 252)[0]), 4)
    8.949
    """
    if n < 2:
        return np.zeros_like(sums)
    means = shift + sums / n
    std = np.sqrt(np.maximum(squares - sums * sums / n, 0.0) / (n - 1))
    zero = std <= DISPERSION_FLOOR
    return np.where(zero, 0.0, means / np.where(zero, 1.0, std) * math.sqrt(periods_per_year))


def max_drawdown(equity: np.ndarray) -> float:
    """Deepest fall of an equity curve from its running maximum, a fraction <= 0 (``max_drawdown`` of
    :func:`equity_metrics`).

    Examples
    --------
    >>> max_drawdown(np.array([100.0, 120.0, 90.0, 130.0]))
    -0.25
    """
    curve = np.asarray(equity, dtype=np.float64).reshape(-1)
    if curve.shape[0] < 2:
        return 0.0
    return float(equity_metrics(curve, periods_per_year=1.0)["max_drawdown"])


def skewness(values: np.ndarray) -> float:
    """Adjusted Fisher-Pearson skewness G1, as ``pandas.Series.skew`` and the ``skew`` of
    :func:`equity_metrics` (0.0 with fewer than 3 values or no dispersion).

    Examples
    --------
    >>> round(skewness(np.array([0.0, 0.0, 0.0, 1.0])), 4)
    2.0
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = v.shape[0]
    if n < 3:
        return 0.0
    d = v - float(np.mean(v))
    sum_squares = float(np.sum(d * d))
    if sum_squares / (n - 1) <= DISPERSION_FLOOR ** 2:
        return 0.0
    return (n * math.sqrt(n - 1.0) / (n - 2.0)) * (float(np.sum(d * d * d)) / sum_squares ** 1.5)

"""Overfitting statistics: is a backtest's Sharpe ratio skill, luck, or the best of many tries?

* :func:`probabilistic_sharpe_ratio` — the probability that the true Sharpe ratio exceeds a benchmark,
  given the track record's length, skewness and kurtosis (Bailey & López de Prado 2012).
* :func:`minimum_track_record_length` — how many observations that probability needs to reach a
  confidence level (same paper).
* :func:`expected_max_sharpe` — the best Sharpe ratio expected from ``N`` skill-less trials (the False
  Strategy theorem, Bailey & López de Prado 2014; López de Prado 2018).
* :func:`deflated_sharpe_ratio` — the probabilistic Sharpe ratio against that expected maximum: what
  is left of the best backtest once the number of trials is accounted for (Bailey & López de Prado 2014).
* :func:`probability_of_backtest_overfitting` — combinatorially symmetric cross-validation over a
  ``[T, N]`` matrix of the trials' returns (Bailey, Borwein, López de Prado & Zhu 2015).
* :func:`sharpe_statistics` — the per-period Sharpe ratio, skewness and kurtosis of a return series,
  the inputs of the functions above, with the conventions of :mod:`backforge.results.metrics`.

Conventions
-----------
* **Sharpe ratios are per period** (not annualized): ``mean(r) / std(r, ddof=1)`` of the same returns
  whose number of observations is ``n_obs``. An annualized ratio is ``sharpe * sqrt(periods_per_year)``;
  :func:`deflated_sharpe_ratio` converts annualized inputs when given ``periods_per_year``.
* **Kurtosis is the non-excess (Pearson) kurtosis**: 3.0 for a normal distribution, as in the papers'
  formulas. :func:`backforge.results.metrics.equity_metrics` reports *excess* kurtosis: add 3.
  Every kurtosis must satisfy ``kurtosis >= 1 + skew ** 2`` (true of every distribution); a value
  below that bound is rejected with a hint, which catches most excess-kurtosis mix-ups.
* Probabilities are fractions in ``[0, 1]``; Φ is the standard normal CDF, Φ⁻¹ its inverse.

Examples
--------
>>> import numpy as np
>>> round(probabilistic_sharpe_ratio(0.1, 250), 4)  # per-day Sharpe 0.1 (1.58 a year), 250 days
0.9423
>>> # the same Sharpe ratio, as the best of 50 trials whose Sharpe ratios vary with a variance of 0.002
>>> round(deflated_sharpe_ratio(sharpe=0.1, n_obs=250, n_trials=50, sharpe_variance=0.002).deflated_sharpe, 4)
0.4887
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import polars as pl
from numba import njit, prange

from backforge._validate import finite, finite_array, is_whole, whole
from backforge.errors import ConfigError, DataError, did_you_mean
from backforge.results.metrics import DISPERSION_FLOOR, equity_metrics

__all__ = [
    "EULER_GAMMA",
    "SharpeStatistics",
    "DeflatedSharpe",
    "BacktestOverfitting",
    "sharpe_statistics",
    "probabilistic_sharpe_ratio",
    "minimum_track_record_length",
    "expected_max_sharpe",
    "deflated_sharpe_ratio",
    "probability_of_backtest_overfitting",
]

EULER_GAMMA = 0.5772156649015329
"""The Euler–Mascheroni constant γ of the False Strategy theorem."""

_NORMAL = NormalDist()

# metric codes of the CSCV kernel
_METRIC_SHARPE = 0
_METRIC_MEAN = 1
_METRICS = {"sharpe": _METRIC_SHARPE, "mean": _METRIC_MEAN}


# ============================================================================================ kernels
@njit(cache=True)
def normal_cdf_nb(z: np.ndarray) -> np.ndarray:
    """Standard normal CDF Φ(z) = erfc(-z / √2) / 2 of every element of a 1-D float64 array.

    Equivalent to ``np.vectorize(statistics.NormalDist().cdf)(z)`` (and ``scipy.stats.norm.cdf``).
    """
    out = np.empty(z.shape[0])
    for index in range(z.shape[0]):
        out[index] = 0.5 * math.erfc(-z[index] / math.sqrt(2.0))
    return out


@njit(cache=True)
def binomial_table_nb(n_max: int) -> np.ndarray:
    """``table[n, k] = C(n, k)`` for ``0 <= k <= n <= n_max`` as int64 (exact up to ``n_max = 66``).

    Equivalent to ``[[math.comb(n, k) for k in range(n_max + 1)] for n in range(n_max + 1)]``.
    """
    table = np.zeros((n_max + 1, n_max + 1), dtype=np.int64)
    for n in range(n_max + 1):
        table[n, 0] = 1
        for k in range(1, n + 1):
            table[n, k] = table[n - 1, k - 1] + table[n - 1, k]
    return table


@njit(cache=True)
def unrank_combinations_nb(ranks: np.ndarray, n: int, k: int, binomial: np.ndarray) -> np.ndarray:
    """The combinations of ``k`` out of ``range(n)`` at lexicographic positions ``ranks``, ``[len(ranks), k]``.

    Equivalent to ``np.array(list(itertools.combinations(range(n), k)))[ranks]`` without listing them
    all (the combinatorial number system); ``binomial`` is :func:`binomial_table_nb` of ``n``.
    """
    out = np.empty((ranks.shape[0], k), dtype=np.int64)
    for row in range(ranks.shape[0]):
        rank = ranks[row]
        element = 0
        for slot in range(k):
            # skip every combination that starts with ``element`` while the rank lies past them
            while True:
                count = binomial[n - element - 1, k - slot - 1]
                if rank < count:
                    break
                rank -= count
                element += 1
            out[row, slot] = element
            element += 1
    return out


@njit(cache=True)
def _performance_nb(
    metric: int, sums: np.ndarray, squares: np.ndarray, means: np.ndarray, n_rows: int, out: np.ndarray
) -> None:
    """Per-strategy performance of a row set from its centred sums; see :func:`cscv_nb`."""
    for strategy in range(sums.shape[0]):
        mean = means[strategy] + sums[strategy] / n_rows
        if metric == _METRIC_MEAN:
            out[strategy] = mean
            continue
        variance = (squares[strategy] - sums[strategy] * sums[strategy] / n_rows) / (n_rows - 1)
        std = math.sqrt(variance) if variance > 0.0 else 0.0
        out[strategy] = mean / std if std > DISPERSION_FLOOR else 0.0


@njit(cache=True, parallel=True)
def cscv_nb(
    block_sums: np.ndarray,
    block_squares: np.ndarray,
    means: np.ndarray,
    block_rows: int,
    combinations: np.ndarray,
    metric: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Combinatorially symmetric cross-validation of ``N`` strategies over ``S`` blocks of rows.

    ``block_sums[s, n]`` and ``block_squares[s, n]`` are the sums of ``d`` and ``d ** 2`` over the
    ``block_rows`` rows of block ``s``, where ``d = returns - means`` is strategy ``n``'s returns minus
    its full-sample mean (centring keeps the variance from cancelling). Each row of ``combinations``
    lists the ``S / 2`` in-sample blocks; the others are out of sample.

    For every combination: the performance of every strategy in and out of sample (``metric`` 0:
    Sharpe ratio ``mean / std(ddof=1)``, 0.0 when ``std <= DISPERSION_FLOOR``; 1: mean), the in-sample
    best ``n*`` (the first on ties), the rank of ``n*`` out of sample (1 = worst, ties averaged), its
    relative rank ``ω = rank / (N + 1)`` and the logit ``λ = ln(ω / (1 - ω))``.

    Returns ``(best, is_performance, oos_performance, relative_rank, logit)``, each ``[C]``.

    Equivalent to, per combination, ``perf = metric(M[is_rows])``, ``n* = argmax(perf)``,
    ``rank = scipy.stats.rankdata(metric(M[oos_rows]))[n*]`` on the full matrix ``M``.
    """
    n_combinations, half = combinations.shape
    n_blocks, n_strategies = block_sums.shape
    n_rows = half * block_rows
    best = np.empty(n_combinations, dtype=np.int64)
    is_best = np.empty(n_combinations)
    oos_best = np.empty(n_combinations)
    relative = np.empty(n_combinations)
    logits = np.empty(n_combinations)
    for combination in prange(n_combinations):
        in_sample = np.zeros(n_blocks, dtype=np.bool_)
        for slot in range(half):
            in_sample[combinations[combination, slot]] = True
        is_sums = np.zeros(n_strategies)
        is_squares = np.zeros(n_strategies)
        oos_sums = np.zeros(n_strategies)
        oos_squares = np.zeros(n_strategies)
        for block in range(n_blocks):
            if in_sample[block]:
                for strategy in range(n_strategies):
                    is_sums[strategy] += block_sums[block, strategy]
                    is_squares[strategy] += block_squares[block, strategy]
            else:
                for strategy in range(n_strategies):
                    oos_sums[strategy] += block_sums[block, strategy]
                    oos_squares[strategy] += block_squares[block, strategy]
        is_performance = np.empty(n_strategies)
        oos_performance = np.empty(n_strategies)
        _performance_nb(metric, is_sums, is_squares, means, n_rows, is_performance)
        _performance_nb(metric, oos_sums, oos_squares, means, n_rows, oos_performance)
        chosen = 0
        for strategy in range(1, n_strategies):
            if is_performance[strategy] > is_performance[chosen]:
                chosen = strategy
        target = oos_performance[chosen]
        below = 0
        equal = 0
        for strategy in range(n_strategies):
            value = oos_performance[strategy]
            if value < target:
                below += 1
            elif value == target:
                equal += 1
        rank = below + 0.5 * (equal + 1)  # average rank of the tied group, 1-based
        omega = rank / (n_strategies + 1.0)
        best[combination] = chosen
        is_best[combination] = is_performance[chosen]
        oos_best[combination] = target
        relative[combination] = omega
        logits[combination] = math.log(omega / (1.0 - omega))
    return best, is_best, oos_best, relative, logits


# ========================================================================================= validation
def _check_moments(skew: np.ndarray, kurtosis: np.ndarray) -> None:
    bad = kurtosis < 1.0 + skew * skew - 1e-12
    if bad.any():
        index = tuple(np.argwhere(bad)[0]) if bad.ndim else ()
        k, s = float(kurtosis[index]), float(skew[index])
        raise ConfigError(
            f"kurtosis must be the non-excess (Pearson) kurtosis, 3.0 for normal returns, and at least "
            f"1 + skew**2 = {1.0 + s * s:g}; got {k:g}. Did you pass excess kurtosis "
            f"(metrics.equity_metrics reports it)? Add 3.",
            field="kurtosis",
        )


def _scalar_or_array(values: np.ndarray) -> float | np.ndarray:
    return float(values) if values.ndim == 0 else values


# ===================================================================================== Sharpe & co.
@dataclass(frozen=True)
class SharpeStatistics:
    """Per-period Sharpe ratio and higher moments of one return series (see :func:`sharpe_statistics`).

    Attributes
    ----------
    sharpe
        ``mean(r) / std(r, ddof=1)``, per period, not annualized.
    skew
        Adjusted Fisher–Pearson skewness G1 (``pandas.Series.skew``).
    kurtosis
        Non-excess kurtosis: G2 (``pandas.Series.kurt``) + 3, so 3.0 for normal returns.
    n_obs
        Number of returns.
    """

    sharpe: float
    skew: float
    kurtosis: float
    n_obs: int


def sharpe_statistics(returns: Any) -> SharpeStatistics:
    """Per-period Sharpe ratio, skewness, non-excess kurtosis and count of a series of simple returns.

    Computed by :func:`backforge.results.metrics.equity_metrics` (``periods_per_year=1``) on the
    equity curve ``cumprod(1 + r)``, so the estimators and their edge cases are the library's: sample
    standard deviation (``ddof=1``), Sharpe 0.0 for constant returns, skew G1 and excess kurtosis G2
    as in pandas (0.0 with fewer than 3 and 4 returns) — and kurtosis is reported *non-excess* here
    (G2 + 3), the convention of :func:`probabilistic_sharpe_ratio` and friends.

    Parameters
    ----------
    returns
        1-D simple returns per period (fractions), finite and > -1, at least 2 of them.

    Returns
    -------
    SharpeStatistics

    Examples
    --------
    >>> stats = sharpe_statistics([0.01, -0.02, 0.015, 0.005, -0.004, 0.012])
    >>> round(stats.sharpe, 4), round(stats.skew, 4), round(stats.kurtosis, 4), stats.n_obs
    (0.2293, -1.2994, 4.2005, 6)
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] < 2:
        raise DataError(f"returns must be 1-D with at least 2 values, got shape {r.shape}", field="returns")
    finite = np.isfinite(r)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"returns must be finite, got {r[row]} at index {row}; drop or fill missing values",
                        row=row, field="returns")
    if (r <= -1.0).any():
        row = int(np.argmax(r <= -1.0))
        raise DataError(f"simple returns must be > -1 (a loss of more than everything), got {r[row]} at "
                        f"index {row}", row=row, field="returns")
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    metrics = equity_metrics(equity, periods_per_year=1.0)
    return SharpeStatistics(
        sharpe=float(metrics["sharpe"]),
        skew=float(metrics["skew"]),
        kurtosis=float(metrics["kurtosis"]) + 3.0,
        n_obs=int(r.shape[0]),
    )


def _sharpe_variance_factor(sharpe: np.ndarray, skew: np.ndarray, kurtosis: np.ndarray) -> np.ndarray:
    """``1 - γ3 SR + (γ4 - 1) / 4 SR²``: ``n`` times the asymptotic variance of the estimated Sharpe."""
    return 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe


def probabilistic_sharpe_ratio(
    sharpe: float | np.ndarray,
    n_obs: int | np.ndarray,
    skew: float | np.ndarray = 0.0,
    kurtosis: float | np.ndarray = 3.0,
    benchmark_sharpe: float | np.ndarray = 0.0,
) -> float | np.ndarray:
    """Probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (PSR).

    Bailey, D. H. & López de Prado, M. (2012), "The Sharpe Ratio Efficient Frontier", *Journal of
    Risk* 15(2), eq. (11)::

        PSR(SR*) = Φ( (SR - SR*) * sqrt(n - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²) )

    with ``SR`` the observed per-period Sharpe ratio over ``n`` returns, ``γ3`` their skewness and
    ``γ4`` their non-excess kurtosis (Mertens' 2002 variance of the Sharpe estimator under non-normal
    i.i.d. returns). Inputs broadcast against each other.

    Parameters
    ----------
    sharpe
        Observed Sharpe ratio, per period (not annualized).
    n_obs
        Number of returns it was measured on (>= 2).
    skew
        Skewness of the returns (0 for normal).
    kurtosis
        Non-excess kurtosis of the returns (3 for normal; must be >= 1 + skew²).
    benchmark_sharpe
        The threshold ``SR*``, per period.

    Returns
    -------
    float or numpy.ndarray
        PSR in [0, 1]; an array when any input is an array.

    Examples
    --------
    >>> round(probabilistic_sharpe_ratio(0.1, 250), 4)
    0.9423
    >>> round(probabilistic_sharpe_ratio(0.1, 250, skew=-1.0, kurtosis=8.0), 4)  # fat left tail
    0.9322
    >>> probabilistic_sharpe_ratio(np.array([0.0, 0.05, 0.1]), 250).round(3).tolist()
    [0.5, 0.785, 0.942]
    """
    values = np.broadcast_arrays(
        finite_array(sharpe, "sharpe"), finite_array(n_obs, "n_obs"), finite_array(skew, "skew"),
        finite_array(kurtosis, "kurtosis"), finite_array(benchmark_sharpe, "benchmark_sharpe"),
    )
    sr, n, g3, g4, sr_star = (np.asarray(v, dtype=np.float64) for v in values)
    if (n < 2).any():
        raise ConfigError(f"n_obs must be >= 2 returns, got {float(n.min()):g}", field="n_obs")
    _check_moments(g3, g4)
    factor = np.maximum(_sharpe_variance_factor(sr, g3, g4), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(factor > 0.0, (sr - sr_star) * np.sqrt(n - 1.0) / np.sqrt(factor),
                     np.sign(sr - sr_star) * np.inf)
    flat = np.ascontiguousarray(z, dtype=np.float64).reshape(-1)
    return _scalar_or_array(normal_cdf_nb(flat).reshape(np.shape(z)))


def minimum_track_record_length(
    sharpe: float | np.ndarray,
    skew: float | np.ndarray = 0.0,
    kurtosis: float | np.ndarray = 3.0,
    benchmark_sharpe: float | np.ndarray = 0.0,
    confidence: float = 0.95,
) -> float | np.ndarray:
    """Minimum number of returns for the observed Sharpe ratio to beat ``benchmark_sharpe`` at ``confidence``.

    Bailey, D. H. & López de Prado, M. (2012), "The Sharpe Ratio Efficient Frontier", *Journal of
    Risk* 15(2), eq. (13)::

        MinTRL = 1 + (1 - γ3 SR + (γ4 - 1) / 4 SR²) * (Φ⁻¹(confidence) / (SR - SR*))²

    The number of observations ``n`` at which :func:`probabilistic_sharpe_ratio` equals ``confidence``
    (assuming the moments stay as measured). ``+inf`` when ``SR <= SR*``: no track record is long
    enough. The unit is the returns' period: divide by ``periods_per_year`` for years.

    Parameters
    ----------
    sharpe
        Observed Sharpe ratio, per period.
    skew
        Skewness of the returns.
    kurtosis
        Non-excess kurtosis of the returns (3 for normal).
    benchmark_sharpe
        The threshold ``SR*``, per period.
    confidence
        Required probability, in (0, 1).

    Returns
    -------
    float or numpy.ndarray
        Number of returns (not rounded; take the ceiling for a count).

    Examples
    --------
    >>> months = minimum_track_record_length(1.0 / np.sqrt(12))  # Sharpe 1 a year, monthly returns
    >>> round(months, 2), round(months / 12, 2)
    (34.82, 2.9)
    >>> round(minimum_track_record_length(0.1, skew=-1.0, kurtosis=8.0), 1)  # daily, fat left tail
    303.3
    """
    level = finite(confidence, "confidence")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}", field="confidence")
    values = np.broadcast_arrays(
        finite_array(sharpe, "sharpe"), finite_array(skew, "skew"), finite_array(kurtosis, "kurtosis"),
        finite_array(benchmark_sharpe, "benchmark_sharpe"),
    )
    sr, g3, g4, sr_star = (np.asarray(v, dtype=np.float64) for v in values)
    _check_moments(g3, g4)
    z = _NORMAL.inv_cdf(level)
    excess = sr - sr_star
    with np.errstate(divide="ignore", invalid="ignore"):
        length = 1.0 + _sharpe_variance_factor(sr, g3, g4) * (z / excess) ** 2
    return _scalar_or_array(np.where(excess > 0.0, length, np.inf))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` skill-less trials (the False Strategy theorem).

    Bailey, D. H. & López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for Selection
    Bias, Backtest Overfitting and Non-Normality", *Journal of Portfolio Management* 40(5), eq. (6)
    (also López de Prado 2018, *Advances in Financial Machine Learning*, §8.7 / §14.7)::

        E[max SR] ≈ sqrt(V) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))

    where ``V`` is the variance of the trials' Sharpe ratios, ``N`` the number of independent trials
    and ``γ`` the Euler–Mascheroni constant: the expected maximum of ``N`` draws from
    ``Normal(0, V)``, i.e. the Sharpe ratio the best of ``N`` strategies with *zero* true Sharpe is
    expected to show. The result has the units of ``sqrt(V)`` (per period when ``V`` is). One trial
    selects nothing: ``expected_max_sharpe(1, V) == 0``.

    Parameters
    ----------
    n_trials
        Number of independent trials the search actually ran (>= 1).
    sharpe_variance
        Variance of the Sharpe ratios across those trials (>= 0).

    Returns
    -------
    float

    Examples
    --------
    >>> round(expected_max_sharpe(100, 0.5 / 250), 4)  # the paper's example, per day
    0.1132
    >>> round(expected_max_sharpe(1000, 1.0), 3)  # in units of the trials' standard deviation
    3.255
    """
    n = float(whole(n_trials, "n_trials", 1, integral_floats=True))
    variance = finite(sharpe_variance, "sharpe_variance")
    if variance < 0.0:
        raise ConfigError(f"sharpe_variance must be >= 0, got {sharpe_variance!r}", field="sharpe_variance")
    if n == 1.0:
        return 0.0
    # Φ⁻¹(1 - p) = -Φ⁻¹(p), accurate even when 1 - p rounds to 1
    first = -_NORMAL.inv_cdf(1.0 / n)
    second = -_NORMAL.inv_cdf(1.0 / (n * math.e))
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * first + EULER_GAMMA * second)


@dataclass(frozen=True)
class DeflatedSharpe:
    """The deflated Sharpe ratio and everything it was computed from (:func:`deflated_sharpe_ratio`).

    All Sharpe ratios are per period, whatever the units of the inputs.

    Attributes
    ----------
    deflated_sharpe
        DSR in [0, 1]: the probability that the true Sharpe ratio exceeds ``benchmark_sharpe``.
    probabilistic_sharpe
        PSR against zero, for comparison: what the Sharpe ratio looks like without deflation.
    sharpe, n_obs, skew, kurtosis
        The selected strategy's per-period Sharpe ratio, number of returns, skewness and non-excess
        kurtosis.
    benchmark_sharpe
        ``E[max SR]`` of :func:`expected_max_sharpe`: the Sharpe ratio expected from the best of
        ``n_trials`` skill-less trials.
    z_score
        ``(SR - E[max SR]) * sqrt(n - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²)``; DSR = Φ(z).
    n_trials, sharpe_variance
        The number of trials and the variance of their per-period Sharpe ratios.
    """

    deflated_sharpe: float
    probabilistic_sharpe: float
    sharpe: float
    n_obs: int
    skew: float
    kurtosis: float
    benchmark_sharpe: float
    z_score: float
    n_trials: int
    sharpe_variance: float

    def __float__(self) -> float:
        return self.deflated_sharpe

    def summary(self) -> dict[str, float | int]:
        """The fields as a plain dict (JSON-ready)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def deflated_sharpe_ratio(
    returns: Any = None,
    *,
    n_trials: int | None = None,
    sharpe_variance: float | None = None,
    trial_sharpes: Any = None,
    sharpe: float | None = None,
    n_obs: int | None = None,
    skew: float = 0.0,
    kurtosis: float = 3.0,
    periods_per_year: float | None = None,
) -> DeflatedSharpe:
    """Deflated Sharpe ratio (DSR) of the best of ``n_trials`` backtests.

    Bailey, D. H. & López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for Selection
    Bias, Backtest Overfitting and Non-Normality", *Journal of Portfolio Management* 40(5), eq. (9)::

        DSR = PSR(SR0) = Φ( (SR - SR0) * sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²) )
        SR0 = sqrt(V) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))

    ``SR``, ``T``, ``γ3``, ``γ4``: the selected strategy's per-period Sharpe ratio, number of returns,
    skewness and non-excess kurtosis; ``N``: the number of trials the search *actually ran* (every
    parameter set, every discarded variant — not only the ones kept); ``V``: the variance of the
    trials' Sharpe ratios. DSR is the probability that the strategy's true Sharpe ratio exceeds what
    the best of ``N`` worthless strategies would show; 0.95 is the usual bar.

    Give the selected strategy either as ``returns`` (its per-period simple returns; the moments come
    from :func:`sharpe_statistics`) or as ``sharpe`` and ``n_obs`` (with ``skew`` and ``kurtosis``).
    Give the trials either as ``trial_sharpes`` (the Sharpe ratio of every trial; ``V`` is their
    sample variance, and ``n_trials`` defaults to their count) or as ``n_trials`` and
    ``sharpe_variance``. ``N`` assumes independent trials; for correlated ones pass an effective
    number (e.g. the number of clusters of trials), which López de Prado recommends.

    Parameters
    ----------
    returns
        1-D per-period simple returns of the selected strategy.
    n_trials
        Number of trials run (>= 1); required unless ``trial_sharpes`` is given, and at least its length.
    sharpe_variance
        Variance of the trials' Sharpe ratios.
    trial_sharpes
        1-D Sharpe ratios of all trials (at least 2), instead of ``sharpe_variance``.
    sharpe, n_obs
        The selected strategy's Sharpe ratio and number of returns, instead of ``returns``.
    skew, kurtosis
        Skewness and non-excess kurtosis with ``sharpe``; ignored with ``returns``.
    periods_per_year
        When given, ``sharpe``, ``trial_sharpes`` and ``sharpe_variance`` are *annualized* at this many
        periods a year and are converted to per-period values (``SR / sqrt(P)``, ``V / P``);
        ``returns`` and ``n_obs`` are always per period. Without it, everything is per period.

    Returns
    -------
    DeflatedSharpe
        ``.deflated_sharpe`` plus its components; ``float(result)`` is the DSR.

    Examples
    --------
    The numerical example of the paper: annualized Sharpe 2.5 over 5 years of daily returns
    (T = 1250), skewness -3, kurtosis 10, best of N = 100 trials whose annualized Sharpe ratios have
    a variance of 0.5:

    >>> dsr = deflated_sharpe_ratio(sharpe=2.5, n_obs=1250, skew=-3.0, kurtosis=10.0, n_trials=100,
    ...                             sharpe_variance=0.5, periods_per_year=250)
    >>> round(dsr.benchmark_sharpe, 4), round(dsr.deflated_sharpe, 4)
    (0.1132, 0.9004)

    From returns and the Sharpe ratios of all trials:

    >>> rng = np.random.default_rng(1)
    >>> trials = rng.normal(0.0, 0.01, size=(1000, 20))  # 20 strategies without any edge
    >>> sharpes = trials.mean(axis=0) / trials.std(axis=0, ddof=1)
    >>> best = trials[:, sharpes.argmax()]
    >>> result = deflated_sharpe_ratio(best, trial_sharpes=sharpes)
    >>> result.n_trials, round(result.probabilistic_sharpe, 3), round(result.deflated_sharpe, 3)
    (20, 0.914, 0.38)

    The 20 Sharpe ratios kept, out of 200 variants actually run:

    >>> round(deflated_sharpe_ratio(best, trial_sharpes=sharpes, n_trials=200).deflated_sharpe, 3)
    0.143
    """
    scale = 1.0
    if periods_per_year is not None:
        scale = finite(periods_per_year, "periods_per_year")
        if scale <= 0.0:
            raise ConfigError(f"periods_per_year must be > 0, got {periods_per_year!r}", field="periods_per_year")

    # --- the selected strategy
    if (returns is None) == (sharpe is None):
        raise ConfigError("give either returns (the selected strategy's per-period returns) or sharpe and "
                          "n_obs, not both or neither", field="returns")
    if returns is not None:
        stats = sharpe_statistics(returns)
        sr, count, g3, g4 = stats.sharpe, stats.n_obs, stats.skew, stats.kurtosis
    else:
        if n_obs is None:
            raise ConfigError("n_obs (the number of returns behind sharpe) is required with sharpe", field="n_obs")
        sr = finite(sharpe, "sharpe") / math.sqrt(scale)
        count = n_obs
        g3, g4 = finite(skew, "skew"), finite(kurtosis, "kurtosis")

    # --- the trials
    if (sharpe_variance is None) == (trial_sharpes is None):
        raise ConfigError("give either sharpe_variance or trial_sharpes (the Sharpe ratio of every trial), "
                          "not both or neither", field="sharpe_variance")
    if trial_sharpes is not None:
        values = finite_array(trial_sharpes, "trial_sharpes")
        if values.ndim != 1 or values.shape[0] < 2:
            raise ConfigError(f"trial_sharpes must be 1-D with at least 2 values, got shape {values.shape}",
                              field="trial_sharpes")
        variance = float(np.var(values / math.sqrt(scale), ddof=1))
        if n_trials is None:
            n_trials = values.shape[0]
        elif whole(n_trials, "n_trials", 1, integral_floats=True) < values.shape[0]:
            raise ConfigError(f"n_trials ({n_trials}) cannot be smaller than the number of trial_sharpes "
                              f"({values.shape[0]})", field="n_trials")
    else:
        if n_trials is None:
            raise ConfigError("n_trials (how many trials the search actually ran) is required with "
                              "sharpe_variance", field="n_trials")
        variance = finite(sharpe_variance, "sharpe_variance") / scale

    benchmark = expected_max_sharpe(n_trials, variance)
    deflated = float(probabilistic_sharpe_ratio(sr, count, g3, g4, benchmark))
    factor = _sharpe_variance_factor(np.float64(sr), np.float64(g3), np.float64(g4))
    z = (sr - benchmark) * math.sqrt(count - 1.0) / math.sqrt(factor) if factor > 0.0 else math.copysign(
        math.inf, sr - benchmark)
    return DeflatedSharpe(
        deflated_sharpe=deflated,
        probabilistic_sharpe=float(probabilistic_sharpe_ratio(sr, count, g3, g4, 0.0)),
        sharpe=float(sr),
        n_obs=int(count),
        skew=float(g3),
        kurtosis=float(g4),
        benchmark_sharpe=float(benchmark),
        z_score=float(z),
        n_trials=int(n_trials),
        sharpe_variance=float(variance),
    )


# =============================================================================================== PBO
@dataclass(frozen=True, eq=False)
class BacktestOverfitting:
    """Result of :func:`probability_of_backtest_overfitting` (CSCV).

    Attributes
    ----------
    pbo
        Probability of backtest overfitting: the share of combinations whose in-sample best strategy
        ranks in the bottom half out of sample (``logit <= 0``).
    logits
        ``λ = ln(ω / (1 - ω))`` per combination, ``[C]``; its histogram is the paper's Figure.
    relative_ranks
        ``ω = rank / (N + 1)`` of the in-sample best strategy out of sample (rank 1 = worst), ``[C]``.
    best
        Column index of the in-sample best strategy per combination, ``[C]``.
    is_performance, oos_performance
        The in-sample and out-of-sample performance of that strategy, ``[C]`` (the metric's units:
        a per-period Sharpe ratio or a mean return).
    degradation_slope, degradation_intercept, degradation_r2
        Least-squares fit ``oos = intercept + slope * is`` over the combinations: a slope below zero
        means that a better in-sample result predicts a *worse* out-of-sample one.
    probability_of_loss
        Share of combinations whose selected strategy loses out of sample (``oos_performance < 0``).
    metric, n_splits, block_rows, n_rows_used, n_combinations, n_combinations_total, sampled
        How it was computed: ``n_rows_used = n_splits * block_rows`` (the first ``T mod n_splits``
        rows are dropped); ``sampled`` is True when a seeded random subset of the
        ``n_combinations_total`` combinations was evaluated.
    """

    pbo: float
    logits: np.ndarray
    relative_ranks: np.ndarray
    best: np.ndarray
    is_performance: np.ndarray
    oos_performance: np.ndarray
    degradation_slope: float
    degradation_intercept: float
    degradation_r2: float
    probability_of_loss: float
    metric: str
    n_splits: int
    block_rows: int
    n_rows_used: int
    n_combinations: int
    n_combinations_total: int
    sampled: bool
    columns: tuple[str, ...] = field(default=())

    def summary(self) -> dict[str, Any]:
        """Headline figures as a plain dict (JSON-ready).

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> summary = probability_of_backtest_overfitting(rng.normal(size=(400, 10)), n_splits=4).summary()
        >>> sorted(summary)[:4]
        ['degradation_intercept', 'degradation_r2', 'degradation_slope', 'logit_median']
        """
        return {
            "pbo": self.pbo,
            "probability_of_loss": self.probability_of_loss,
            "degradation_slope": self.degradation_slope,
            "degradation_intercept": self.degradation_intercept,
            "degradation_r2": self.degradation_r2,
            "logit_median": float(np.median(self.logits)),
            "metric": self.metric,
            "n_splits": self.n_splits,
            "n_rows_used": self.n_rows_used,
            "n_combinations": self.n_combinations,
            "n_combinations_total": self.n_combinations_total,
            "sampled": self.sampled,
        }


def _performance_matrix(performance: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    columns: tuple[str, ...] = ()
    if isinstance(performance, pl.DataFrame):
        columns = tuple(performance.columns)
        try:
            performance = performance.to_numpy().astype(np.float64)
        except (TypeError, ValueError):
            raise DataError("performance_matrix columns must all be numeric (one column per trial)",
                            field="performance_matrix") from None
    try:
        matrix = np.ascontiguousarray(performance, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("performance_matrix must be a numeric [T, N] array", field="performance_matrix") from None
    if matrix.ndim != 2:
        raise DataError(f"performance_matrix must be 2-D [T rows (periods), N columns (trials)], got shape "
                        f"{matrix.shape}", field="performance_matrix")
    finite = np.isfinite(matrix)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        raise DataError(f"performance_matrix must be finite, got {matrix[row, column]} at row {row}, column "
                        f"{column}; fill or drop missing periods first", row=row, field="performance_matrix")
    return matrix, columns


def probability_of_backtest_overfitting(
    performance_matrix: Any,
    n_splits: int = 16,
    metric: Literal["sharpe", "mean"] = "sharpe",
    *,
    max_combinations: int = 20_000,
    seed: int = 0,
) -> BacktestOverfitting:
    """Probability of backtest overfitting (PBO) by combinatorially symmetric cross-validation (CSCV).

    Bailey, D. H., Borwein, J., López de Prado, M. & Zhu, Q. J. (2017), "The Probability of Backtest
    Overfitting", *Journal of Computational Finance* 20(4) (SSRN 2326253, 2015):

    1. Drop the first ``T mod S`` rows and split the ``T`` rows (periods) of the ``[T, N]`` matrix of
       the trials' returns into ``S = n_splits`` blocks of equal length, in time order.
    2. For each of the ``C(S, S/2)`` ways to pick ``S/2`` blocks as the in-sample set (the rest is out
       of sample, the same size): score every trial on both sets (``metric``), take the in-sample
       best ``n*``, its out-of-sample rank ``r`` among the ``N`` trials (1 = worst, ties averaged),
       ``ω = r / (N + 1)`` and the logit ``λ = ln(ω / (1 - ω))``.
    3. ``PBO = #{λ <= 0} / C``: how often the in-sample winner is at best median out of sample.

    With more than ``max_combinations`` combinations, a random subset of that size (without
    replacement, drawn with ``seed``) is evaluated instead. The inner loop runs compiled and in
    parallel over combinations on block sums, so the cost is ``O(C * S * N)``; the result does not
    depend on the number of threads.

    A PBO near 0 means that in-sample selection carries over out of sample; near 0.5 that selection is
    no better than chance (skill-less trials); above 0.5 that it is worse than chance (overfitting).

    Parameters
    ----------
    performance_matrix
        ``[T, N]`` per-period returns of ``N`` trials (columns) over the same ``T`` periods (rows): a
        NumPy array or a Polars DataFrame with one numeric column per trial. Finite, ``N >= 2``.
    n_splits
        ``S``, an even number of blocks between 2 and 64; at least 2 rows per block.
    metric
        ``"sharpe"`` (per-period mean / std, ddof=1; 0.0 for zero dispersion) or ``"mean"``.
    max_combinations
        Cap on the number of combinations evaluated (>= 1).
    seed
        Seed of the random subset (used only when the cap applies).

    Returns
    -------
    BacktestOverfitting

    Examples
    --------
    Skill-less strategies: selection is a coin toss. PBO scatters around 0.5 from one sample to the
    next (the combinations of one sample are far from independent); over many samples it averages 0.5:

    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(0.0, 0.01, size=(1000, 50))
    >>> result = probability_of_backtest_overfitting(noise, n_splits=8)
    >>> result.n_combinations, round(result.pbo, 2)
    (70, 0.36)

    One strategy better than the rest in every period: never overfit.

    >>> edge = noise.copy(); edge[:, 7] = noise.max(axis=1) + 0.001
    >>> probability_of_backtest_overfitting(edge, n_splits=8).pbo
    0.0

    Strategies whose total is zero by construction: what wins in sample must lose out of sample.

    >>> zero_sum = noise - noise.mean(axis=0)
    >>> overfit = probability_of_backtest_overfitting(zero_sum, n_splits=8, metric="mean")
    >>> overfit.pbo, round(overfit.degradation_slope, 6)
    (1.0, -1.0)
    """
    matrix, columns = _performance_matrix(performance_matrix)
    n_rows, n_strategies = matrix.shape
    if not is_whole(n_splits) or not (2 <= n_splits <= 64 and n_splits % 2 == 0):
        raise ConfigError(f"n_splits must be an even whole number from 2 to 64, got {n_splits!r}", field="n_splits")
    splits = int(n_splits)
    if metric not in _METRICS:
        raise ConfigError(f"unknown metric {metric!r}: use one of {', '.join(_METRICS)}"
                          + did_you_mean(str(metric), _METRICS), field="metric")
    cap = whole(max_combinations, "max_combinations", 1, integral_floats=True)
    seed_value = whole(seed, "seed", 0, integral_floats=True)
    if n_strategies < 2:
        raise DataError(f"performance_matrix needs at least 2 trials (columns) to rank, got {n_strategies}",
                        field="performance_matrix")
    block_rows = n_rows // splits
    if block_rows < 2:
        raise DataError(f"performance_matrix has {n_rows} rows: too few for n_splits={splits} blocks of at "
                        f"least 2 rows; lower n_splits", field="performance_matrix")

    used = matrix[n_rows - splits * block_rows:]
    means = used.mean(axis=0)
    centred = (used - means).reshape(splits, block_rows, n_strategies)
    block_sums = centred.sum(axis=1)
    block_squares = (centred * centred).sum(axis=1)

    half = splits // 2
    total = math.comb(splits, half)
    sampled = total > cap
    if sampled:
        rng = np.random.default_rng(seed_value)
        ranks = np.sort(rng.choice(total, size=cap, replace=False)).astype(np.int64)
    else:
        ranks = np.arange(total, dtype=np.int64)
    combinations = unrank_combinations_nb(ranks, splits, half, binomial_table_nb(splits))

    best, is_best, oos_best, relative, logits = cscv_nb(
        block_sums, block_squares, means, block_rows, combinations, _METRICS[metric]
    )
    slope, intercept, r2 = _least_squares(is_best, oos_best)
    return BacktestOverfitting(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        relative_ranks=relative,
        best=best,
        is_performance=is_best,
        oos_performance=oos_best,
        degradation_slope=slope,
        degradation_intercept=intercept,
        degradation_r2=r2,
        probability_of_loss=float(np.mean(oos_best < 0.0)),
        metric=str(metric),
        n_splits=splits,
        block_rows=int(block_rows),
        n_rows_used=int(splits * block_rows),
        n_combinations=int(combinations.shape[0]),
        n_combinations_total=int(total),
        sampled=bool(sampled),
        columns=columns,
    )


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and R² of ``y = a + b x`` (slope 0 and R² 0 when ``x`` is constant)."""
    x_mean, y_mean = float(x.mean()), float(y.mean())
    dx, dy = x - x_mean, y - y_mean
    sxx, syy, sxy = float(dx @ dx), float(dy @ dy), float(dx @ dy)
    if sxx <= 0.0:
        return 0.0, y_mean, 0.0
    slope = sxy / sxx
    r2 = sxy * sxy / (sxx * syy) if syy > 0.0 else 0.0
    return slope, y_mean - slope * x_mean, r2

"""Monte Carlo of a finished run: how much of its path was luck of the order or of the sample?

Three resampling schemes, each simulating ``n_simulations`` equity paths from one run:

* ``"reshuffle"`` — the run's closed trades in a random order (a permutation without replacement).
  With compounded trade returns the final equity of every path is the same (a product does not
  depend on the order), so only the *path* changes: drawdowns, time under water, ruin.
* ``"bootstrap"`` — as many trades as the run had, drawn with replacement: final equity, Sharpe and
  drawdowns all vary, as if the same edge had been sampled again.
* ``"block_bootstrap"`` — the stationary bootstrap of Politis & Romano (1994) on per-bar returns:
  blocks of consecutive bars with geometric lengths (mean ``block_length``) starting at random bars,
  wrapping around the end, so that volatility clustering and autocorrelation survive the resampling.

Per path the compiled kernel tracks the final equity, the maximum drawdown and the Sharpe ratio in one
pass, and writes the equity of every path for a chunk of steps into a buffer from which the fan chart
(quantiles of equity at every step) is taken; the buffer is reused chunk after chunk, so memory stays
at about 64 MB whatever the number of simulations and steps (``keep_paths=True`` keeps every path as
float32, ``4 * n_simulations * (n_steps + 1)`` bytes).

Randomness: every path has its own SplitMix64 stream seeded from ``(seed, path index)``; the result is
bit-identical for the same inputs and seed, whatever the number of threads.

Examples
--------
>>> import numpy as np
>>> trades = np.array([0.04, -0.02, 0.03, -0.05, 0.06, -0.01, 0.02, -0.03])  # returns on equity
>>> mc = monte_carlo(trades, method="reshuffle", n_simulations=2000, seed=1)
>>> bool(np.allclose(mc.final_equity, np.prod(1 + trades)))  # same trades, same product
True
>>> round(float(mc.max_drawdown.min()), 4), round(float(mc.max_drawdown.max()), 4)
(-0.106, -0.05)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
import numba
from numba import njit, prange

from backforge._validate import positive, whole
from backforge.errors import ConfigError, DataError, did_you_mean
from backforge.results.metrics import (
    equity_metrics,
    periods_per_year_for,
    returns_from_equity,
    select_range_nb,
    sharpe_from_sums,
)
from backforge.results.result import Result, RunAnalysis

__all__ = ["MonteCarloResult", "monte_carlo", "optimal_block_length", "METHODS", "TRADE_MODELS"]

RESHUFFLE = 0
BOOTSTRAP = 1
BLOCK_BOOTSTRAP = 2
METHODS: dict[str, int] = {"reshuffle": RESHUFFLE, "bootstrap": BOOTSTRAP, "block_bootstrap": BLOCK_BOOTSTRAP}
"""Method name -> kernel code."""

TRADE_MODELS: tuple[str, ...] = ("compound", "additive")
"""How trade methods rebuild equity: multiply by ``1 + return`` or add the P&L."""

_BUFFER_BYTES = 64 * 2**20  # equity buffer of one chunk of steps, float64 [steps, n_simulations]
_GROUP = 64  # paths advanced in lock-step by one thread
_PERMUTATION_BYTES = 4 * 2**20  # reshuffle: int32 permutations of one group of paths
_NS_PER_YEAR = 365.25 * 86_400 * 10**9

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2 ** -53


# ============================================================================================ kernels
@njit(cache=True)
def mix64_nb(z: np.uint64) -> np.uint64:
    """The SplitMix64 finalizer (Steele, Lea & Flood 2014), a bijection of 64-bit integers."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def path_state_nb(seed: np.uint64, path: int) -> np.uint64:
    """Initial SplitMix64 state of path ``path`` under ``seed`` (distinct paths, distinct states)."""
    return mix64_nb(mix64_nb(seed + _GOLDEN) + np.uint64(path) * _GOLDEN)


@njit(cache=True)
def path_states_nb(seed: np.uint64, n_paths: int) -> np.ndarray:
    """Initial states of paths ``0 .. n_paths - 1``: ``[path_state_nb(seed, p) for p in range(n_paths)]``."""
    out = np.empty(n_paths, dtype=np.uint64)
    for path in range(n_paths):
        out[path] = path_state_nb(seed, path)
    return out


@njit(cache=True)
def next_uniform_nb(state: np.uint64) -> tuple[np.uint64, float]:
    """Advance a SplitMix64 state; return it and a uniform float in [0, 1) with 53 random bits."""
    state = state + _GOLDEN
    return state, float(mix64_nb(state) >> np.uint64(11)) * _TO_UNIT


@njit(cache=True)
def uniform_index_nb(u: float, n: int) -> int:
    """``floor(u * n)`` clipped to ``n - 1``: a uniform integer in ``[0, n)`` from ``u`` in [0, 1)."""
    index = int(u * n)
    return index if index < n else n - 1


@njit(cache=True)
def advance_equity_nb(equity: float, value: float, additive: bool) -> tuple[float, float]:
    """Equity after one step and the step's simple return.

    Compound: ``equity * (1 + value)``; additive: ``equity + value``. An account at or below zero is
    ruined: its equity is 0.0 from then on and its returns are 0.0, except the step that ruined it
    (-1.0, the whole account lost), as in :func:`backforge.results.metrics.returns_from_equity`.
    """
    if equity <= 0.0:
        return 0.0, 0.0
    new = equity + value if additive else equity * (1.0 + value)
    if new <= 0.0:
        return 0.0, -1.0
    return new, new / equity - 1.0


@njit(cache=True)
def equity_path_nb(values: np.ndarray, initial_equity: float, additive: bool) -> np.ndarray:
    """The equity path ``[M + 1]`` of ``values`` taken in order; see :func:`advance_equity_nb`.

    Equivalent to ``initial_equity * np.cumprod(np.r_[1, 1 + values])`` (compound) or
    ``initial_equity + np.cumsum(np.r_[0, values])`` (additive) while the account stays above zero.
    """
    path = np.empty(values.shape[0] + 1)
    path[0] = initial_equity
    equity = initial_equity
    for step in range(values.shape[0]):
        equity, _ = advance_equity_nb(equity, values[step], additive)
        path[step + 1] = equity
    return path


@njit(cache=True, inline="always")
def _apply_step_nb(
    step_value: float, k: int, additive: bool, shift: float, value: np.ndarray, peak: np.ndarray,
    trough: np.ndarray, total: np.ndarray, total_squares: np.ndarray,
) -> float:
    """Apply one resampled value to path ``k`` of a group; see :func:`simulate_paths_nb`."""
    current, step_return = advance_equity_nb(value[k], step_value, additive)
    value[k] = current
    if current > peak[k]:
        peak[k] = current
    drawdown = current / peak[k] - 1.0
    if drawdown < trough[k]:
        trough[k] = drawdown
    deviation = step_return - shift
    total[k] += deviation
    total_squares[k] += deviation * deviation
    return current


@njit(cache=True, parallel=True)
def simulate_paths_nb(
    values: np.ndarray,
    method: int,
    additive: bool,
    new_block_probability: float,
    seed: np.uint64,
    start: int,
    stop: int,
    shift: float,
    rng_states: np.ndarray,
    positions: np.ndarray,
    equity: np.ndarray,
    peaks: np.ndarray,
    max_drawdowns: np.ndarray,
    sums: np.ndarray,
    squares: np.ndarray,
    out: np.ndarray,
    group_size: int,
    n_workers: int,
) -> None:
    """Advance every simulated path from step ``start`` to ``stop``, updating its state in place.

    ``values`` holds what is resampled (trade returns or P&L, or bar returns); step ``s`` of a path
    takes ``values[index]`` with ``index`` chosen by ``method``:

    * ``RESHUFFLE``: position ``s`` of a Fisher–Yates shuffle of ``range(len(values))`` (the shuffle
      of a path is replayed from its seed at every call, so no permutation is kept between calls);
    * ``BOOTSTRAP``: a uniform index (with replacement);
    * ``BLOCK_BOOTSTRAP``: with probability ``new_block_probability`` (and always at step 0) a uniform
      index starts a new block, otherwise the index after the previous one, modulo ``len(values)``
      (two uniforms are drawn at every step: the coin, then the candidate index).

    Per path ``p``: ``equity[p]`` (:func:`advance_equity_nb`), ``peaks[p]`` (running maximum, from the
    initial equity), ``max_drawdowns[p]`` (``min(equity / peak - 1)`` <= 0), and the sums of
    ``x = step return - shift`` and of ``x ** 2`` in ``sums[p]`` and ``squares[p]`` (``shift``, close
    to the mean return, keeps the variance ``(squares - sums ** 2 / n) / (n - 1)`` from cancelling);
    ``rng_states[p]`` (SplitMix64) and ``positions[p]`` carry the stream and the block position
    between calls. ``out[s - start, p]`` receives the equity after step ``s`` when ``out`` has rows.

    Paths are advanced ``group_size`` at a time in lock-step (independent dependency chains, and one
    contiguous run of ``out`` per step), groups spread over ``n_workers`` threads; each path's
    numbers depend only on ``seed`` and its index, so the result is the same for any number of
    threads and any group size. Equivalent to, per path,
    :func:`equity_path_nb` of ``values[indices]`` followed by ``equity_metrics(path)`` for the max
    drawdown and the Sharpe ratio; the tests compare them.
    """
    n_paths = equity.shape[0]
    n_values = values.shape[0]
    n_groups = (n_paths + group_size - 1) // group_size
    n_workers = max(1, min(n_workers, n_groups))
    record = out.shape[0] > 0
    reshuffle = method == RESHUFFLE
    for worker in prange(n_workers):
        permutations = np.empty((group_size if reshuffle else 0, n_values), dtype=np.int32)
        states = np.empty(_GROUP, dtype=np.uint64)
        where = np.empty(_GROUP, dtype=np.int64)
        value = np.empty(_GROUP)
        peak = np.empty(_GROUP)
        trough = np.empty(_GROUP)
        total = np.empty(_GROUP)
        total_squares = np.empty(_GROUP)
        for group in range(worker, n_groups, n_workers):
            first = group * group_size
            size = min(group_size, n_paths - first)
            for k in range(size):
                path = first + k
                states[k] = rng_states[path]
                where[k] = positions[path]
                value[k] = equity[path]
                peak[k] = peaks[path]
                trough[k] = max_drawdowns[path]
                total[k] = sums[path]
                total_squares[k] = squares[path]
            if reshuffle:
                for k in range(size):
                    row = permutations[k]
                    for i in range(n_values):
                        row[i] = i
                    state = path_state_nb(seed, first + k)
                    for i in range(start):  # replay the swaps of earlier calls
                        state, u = next_uniform_nb(state)
                        j = i + uniform_index_nb(u, n_values - i)
                        swap = row[i]
                        row[i] = row[j]
                        row[j] = swap
                    states[k] = state
            # one loop per method, so that the choice is not re-made at every step
            if reshuffle:
                for step in range(start, stop):
                    for k in range(size):
                        row = permutations[k]
                        state, u = next_uniform_nb(states[k])
                        states[k] = state
                        j = step + uniform_index_nb(u, n_values - step)
                        index = row[j]
                        row[j] = row[step]
                        row[step] = index
                        current = _apply_step_nb(values[index], k, additive, shift, value, peak, trough, total,
                                                 total_squares)
                        if record:
                            out[step - start, first + k] = current
            elif method == BOOTSTRAP:
                for step in range(start, stop):
                    for k in range(size):
                        state, u = next_uniform_nb(states[k])
                        states[k] = state
                        index = uniform_index_nb(u, n_values)
                        current = _apply_step_nb(values[index], k, additive, shift, value, peak, trough, total,
                                                 total_squares)
                        if record:
                            out[step - start, first + k] = current
            else:
                for step in range(start, stop):
                    for k in range(size):
                        # two draws every step (a coin and a fresh index), selected without a branch
                        state, coin = next_uniform_nb(states[k])
                        state, u = next_uniform_nb(state)
                        states[k] = state
                        fresh = uniform_index_nb(u, n_values)
                        following = where[k] + 1
                        following = 0 if following == n_values else following
                        index = fresh if (coin < new_block_probability or step == 0) else following
                        where[k] = index
                        current = _apply_step_nb(values[index], k, additive, shift, value, peak, trough, total,
                                                 total_squares)
                        if record:
                            out[step - start, first + k] = current
            for k in range(size):
                path = first + k
                rng_states[path] = states[k]
                positions[path] = where[k]
                equity[path] = value[k]
                peaks[path] = peak[k]
                max_drawdowns[path] = trough[k]
                sums[path] = total[k]
                squares[path] = total_squares[k]


@njit(cache=True)
def row_quantiles_nb(
    row: np.ndarray, quantiles: np.ndarray, out: np.ndarray, scratch: np.ndarray, counts: np.ndarray,
    slots: np.ndarray,
) -> None:
    """Quantiles of one row (linear interpolation) by histogram selection; see :func:`step_quantiles_nb`.

    One pass finds the range, one counts the values in ``len(counts)`` equal-width bins (the bin of
    a value is monotone in the value, so ranks map to bins through the cumulative counts), one copies
    the values of the few bins holding a needed order statistic into ``scratch``; the order
    statistics are then selected inside those bins only. ``slots`` has ``len(counts)`` entries.
    """
    n = row.shape[0]
    n_quantiles = quantiles.shape[0]
    low_value = row[0]
    high_value = row[0]
    for index in range(n):
        value = row[index]
        if value < low_value:
            low_value = value
        if value > high_value:
            high_value = value
    if high_value == low_value:
        for q_index in range(n_quantiles):
            out[q_index] = low_value
        return
    ranks = np.empty(2 * n_quantiles, dtype=np.int64)
    fractions = np.empty(n_quantiles)
    for q_index in range(n_quantiles):
        position = quantiles[q_index] * (n - 1)
        nearest = np.floor(position + 0.5)
        if abs(position - nearest) < 1e-9:
            position = nearest
        low = min(max(int(np.floor(position)), 0), n - 1)
        fractions[q_index] = position - low
        ranks[2 * q_index] = low
        ranks[2 * q_index + 1] = min(low + 1, n - 1)
    width = high_value - low_value
    n_bins = counts.shape[0]
    if not np.isfinite(width):
        n_bins = 1  # infinite range: one bin, plain selection
    scale = n_bins / width if n_bins > 1 else 0.0
    for b in range(n_bins):
        counts[b] = 0
        slots[b] = -1
    for index in range(n):
        b = int((row[index] - low_value) * scale)
        counts[b if b < n_bins else n_bins - 1] += 1
    # the bin of every needed rank, and where that bin's values go in ``scratch``
    rank_bins = np.empty(2 * n_quantiles, dtype=np.int64)
    rank_offsets = np.empty(2 * n_quantiles, dtype=np.int64)
    below = 0
    b = 0
    for r_index in range(2 * n_quantiles):  # ranks are non-decreasing: one sweep over the bins
        rank = ranks[r_index]
        while below + counts[b] <= rank:
            below += counts[b]
            b += 1
        rank_bins[r_index] = b
        rank_offsets[r_index] = rank - below
    starts = np.empty(2 * n_quantiles, dtype=np.int64)
    fill = np.empty(2 * n_quantiles, dtype=np.int64)
    used = 0
    n_slots = 0
    for r_index in range(2 * n_quantiles):
        b = rank_bins[r_index]
        if slots[b] < 0:
            slots[b] = n_slots
            starts[n_slots] = used
            fill[n_slots] = used
            used += counts[b]
            n_slots += 1
    for index in range(n):
        value = row[index]
        b = int((value - low_value) * scale)
        slot = slots[b if b < n_bins else n_bins - 1]
        if slot >= 0:
            scratch[fill[slot]] = value
            fill[slot] += 1
    selected = np.empty(2 * n_quantiles)
    for r_index in range(2 * n_quantiles):
        b = rank_bins[r_index]
        begin = starts[slots[b]]
        selected[r_index] = select_range_nb(scratch, begin, begin + counts[b], begin + rank_offsets[r_index])
    for q_index in range(n_quantiles):
        lower_value = selected[2 * q_index]
        fraction = fractions[q_index]
        if fraction > 0.0:
            difference = selected[2 * q_index + 1] - lower_value
            if fraction >= 0.5:
                out[q_index] = selected[2 * q_index + 1] - difference * (1.0 - fraction)
            else:
                out[q_index] = lower_value + difference * fraction
        else:
            out[q_index] = lower_value


@njit(cache=True, parallel=True)
def step_quantiles_nb(buffer: np.ndarray, quantiles: np.ndarray, n_workers: int) -> np.ndarray:
    """Quantiles ``[K, Q]`` of every row of ``buffer`` ``[K, N]``.

    Equivalent to ``np.quantile(buffer, quantiles, axis=1).T`` (linear interpolation with NumPy's
    formula; a virtual index within 1e-9 of an integer is snapped to it, as in
    :func:`backforge.results.metrics.quantile_nb`), in ``O(N)`` per row (:func:`row_quantiles_nb`).
    """
    n_rows, n = buffer.shape
    out = np.empty((n_rows, quantiles.shape[0]))
    n_workers = max(1, min(n_workers, n_rows))
    n_bins = min(max(n // 4, 16), 4096)
    for worker in prange(n_workers):
        scratch = np.empty(n)
        counts = np.empty(n_bins, dtype=np.int64)
        slots = np.empty(n_bins, dtype=np.int64)
        for row in range(worker, n_rows, n_workers):
            row_quantiles_nb(buffer[row], quantiles, out[row], scratch, counts, slots)
    return out


@njit(cache=True)
def autocovariances_nb(x: np.ndarray, max_lag: int) -> np.ndarray:
    """``R(k) = sum_t (x[t] - m)(x[t + k] - m) / n`` for ``k = 0 .. max_lag`` (``m`` the mean).

    Equivalent to ``[np.dot(d[:n - k], d[k:]) / n for k in range(max_lag + 1)]`` with ``d = x - x.mean()``.
    """
    n = x.shape[0]
    mean = 0.0
    for t in range(n):
        mean += x[t]
    mean /= n
    out = np.zeros(max_lag + 1)
    for k in range(min(max_lag, n - 1) + 1):
        total = 0.0
        for t in range(n - k):
            total += (x[t] - mean) * (x[t + k] - mean)
        out[k] = total / n
    return out


# ====================================================================================== block length
def optimal_block_length(returns: Any) -> float:
    """Expected block length of the stationary bootstrap by the Politis–White rule.

    Politis, D. N. & White, H. (2004), "Automatic Block-Length Selection for the Dependent Bootstrap",
    *Econometric Reviews* 23(1), with the correction of Patton, Politis & White (2009), *Econometric
    Reviews* 28(4). With ``R(k)`` the autocovariances and ``ρ(k)`` the autocorrelations of the ``n``
    returns:

    1. ``m̂`` = the smallest lag after which ``K_n = max(5, ceil(sqrt(log10 n)))`` consecutive
       autocorrelations are all inside ``± 2 sqrt(log10(n) / n)``, searched up to
       ``m_max = ceil(sqrt(n)) + K_n``; ``M = min(2 max(m̂, 1), m_max)`` (``m_max`` when none is found).
    2. With the flat-top lag window ``λ(t) = 1`` for ``|t| <= 1/2``, ``2 (1 - |t|)`` up to 1, 0 after:
       ``G = 2 Σ_{k=1..M} λ(k/M) k R(k)`` and ``g = R(0) + 2 Σ_{k=1..M} λ(k/M) R(k)``.
    3. ``b = (2 G² / D)^(1/3) n^(1/3)`` with ``D = 2 g²`` (stationary bootstrap), clipped to
       ``[1, ceil(min(3 sqrt(n), n / 3))]``.

    Serially uncorrelated returns give a length near 1 (the i.i.d. bootstrap); persistent ones give
    longer blocks. Short series (fewer than 10 values) and constant ones give 1.0.

    Parameters
    ----------
    returns
        1-D finite values (per-bar returns, or their squares to measure volatility clustering).

    Returns
    -------
    float
        Expected block length in bars (not rounded).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(size=5000)
    >>> ar = np.zeros(5000)
    >>> for t in range(1, 5000):
    ...     ar[t] = 0.7 * ar[t - 1] + noise[t]
    >>> round(optimal_block_length(noise), 1), round(optimal_block_length(ar), 1)
    (1.0, 31.8)
    """
    x = _finite_1d(returns, "returns")
    n = x.shape[0]
    if n < 10:
        return 1.0
    k_n = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = math.ceil(math.sqrt(n)) + k_n
    b_max = math.ceil(min(3.0 * math.sqrt(n), n / 3.0))
    autocov = autocovariances_nb(x, m_max + k_n)
    if autocov[0] <= 0.0:
        return 1.0
    rho = np.abs(autocov / autocov[0])
    threshold = 2.0 * math.sqrt(math.log10(n) / n)
    m_hat = None
    for m in range(0, m_max + 1):
        if (rho[m + 1:m + 1 + k_n] < threshold).all():
            m_hat = m
            break
    big_m = m_max if m_hat is None else min(2 * max(m_hat, 1), m_max)
    lags = np.arange(1, big_m + 1)
    ratio = lags / big_m
    window = np.where(ratio <= 0.5, 1.0, 2.0 * (1.0 - ratio))
    big_g = 2.0 * float(np.sum(window * lags * autocov[1:big_m + 1]))
    spectrum = float(autocov[0] + 2.0 * np.sum(window * autocov[1:big_m + 1]))
    d_sb = 2.0 * spectrum * spectrum
    if d_sb <= 0.0:
        return 1.0
    b = (2.0 * big_g * big_g / d_sb) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return float(min(max(b, 1.0), b_max))


# ============================================================================================ result
def _label(q: float) -> str:
    return f"p{q * 100:g}"


@dataclass(frozen=True, eq=False)
class MonteCarloResult:
    """The simulated distributions of one run (:func:`monte_carlo`).

    Attributes
    ----------
    method, trade_model, block_length
        How the paths were made (``trade_model`` is None for the block bootstrap, ``block_length`` is
        None for the trade methods).
    n_simulations, n_steps, seed
        Number of paths, steps per path (trades or bars), and the seed.
    initial_equity, periods_per_year
        Starting equity of every path, and the annualization of ``sharpe`` (steps per year).
    final_equity, max_drawdown, sharpe
        float64 ``[n_simulations]``: equity after the last step, maximum drawdown (a fraction <= 0)
        and annualized Sharpe ratio of the step returns (mean / std with ``ddof=1`` times
        ``sqrt(periods_per_year)``; 0.0 when the std is <= ``DISPERSION_FLOOR``, as in
        :mod:`backforge.results.metrics`).
    quantiles
        The quantile levels of ``bands`` and of the summary.
    bands
        Polars DataFrame with one row per step (``step`` 0 is the start): the quantiles of the
        simulated equity at that step (columns ``p5``, ``p25``, ... for 0.05, 0.25, ...) and the
        ``original`` path. The fan chart.
    ruin_drawdown, probability_of_ruin
        The ruin threshold (a positive fraction: 0.5 = a 50 % drawdown) and the share of paths whose
        maximum drawdown reached it.
    original
        ``final_equity``, ``max_drawdown`` and ``sharpe`` of the run's own path (the trades in their
        actual order, or the actual bars).
    paths
        float32 ``[n_simulations, n_steps + 1]`` of every path when ``keep_paths=True``, else None.
    """

    method: str
    trade_model: str | None
    block_length: float | None
    n_simulations: int
    n_steps: int
    seed: int
    initial_equity: float
    periods_per_year: float
    final_equity: np.ndarray
    max_drawdown: np.ndarray
    sharpe: np.ndarray
    quantiles: tuple[float, ...]
    bands: pl.DataFrame
    ruin_drawdown: float
    probability_of_ruin: float
    original: dict[str, float]
    paths: np.ndarray | None = None

    def probability_of_ruin_at(self, drawdown: float) -> float:
        """Share of paths whose maximum drawdown reached ``drawdown`` (a positive fraction, 0.3 = 30 %).

        Examples
        --------
        >>> mc = monte_carlo(np.array([0.1, -0.2, 0.15, -0.1]), method="bootstrap", n_simulations=500)
        >>> mc.probability_of_ruin_at(0.1) >= mc.probability_of_ruin_at(0.3)
        True
        """
        level = _ruin_level(drawdown, "drawdown")
        return float(np.mean(self.max_drawdown <= -level))

    def summary(self) -> dict[str, Any]:
        """Distributions as a JSON-ready dict: mean, std and quantiles of each statistic, and more.

        Keys: the settings (``method``, ``n_simulations``, ``n_steps``, ``seed``, ``trade_model``,
        ``block_length``, ``initial_equity``, ``periods_per_year``), ``ruin_drawdown`` and
        ``probability_of_ruin``, one dict per statistic (``final_equity``, ``total_return``,
        ``max_drawdown``, ``sharpe``) with ``mean``, ``std`` and a key per quantile (``p5``, ...),
        ``original`` (the run's own values) and ``original_percentile`` (the share of simulations at or
        below each original value: a real max drawdown at 0.9 was milder than 90 % of the paths).

        Examples
        --------
        >>> mc = monte_carlo(np.array([0.02, -0.01, 0.03, -0.02]), method="bootstrap", n_simulations=200)
        >>> summary = mc.summary()
        >>> sorted(summary["max_drawdown"])
        ['mean', 'p25', 'p5', 'p50', 'p75', 'p95', 'std']
        """
        statistics = {
            "final_equity": self.final_equity,
            "total_return": self.final_equity / self.initial_equity - 1.0,
            "max_drawdown": self.max_drawdown,
            "sharpe": self.sharpe,
        }
        levels = np.asarray(self.quantiles)
        out: dict[str, Any] = {
            "method": self.method,
            "n_simulations": self.n_simulations,
            "n_steps": self.n_steps,
            "seed": self.seed,
            "trade_model": self.trade_model,
            "block_length": self.block_length,
            "initial_equity": self.initial_equity,
            "periods_per_year": self.periods_per_year,
            "ruin_drawdown": self.ruin_drawdown,
            "probability_of_ruin": self.probability_of_ruin,
        }
        for name, values in statistics.items():
            entry = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.shape[0] > 1 else 0.0}
            for level, value in zip(levels, np.quantile(values, levels)):
                entry[_label(float(level))] = float(value)
            out[name] = entry
        out["original"] = dict(self.original)
        out["original_percentile"] = {
            name: float(np.mean(statistics[name] <= value)) for name, value in self.original.items()
        }
        return out


# ========================================================================================== dispatch
def _finite_1d(values: Any, name: str) -> np.ndarray:
    if isinstance(values, (pl.Series,)):
        values = values.to_numpy()
    try:
        array = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a 1-D numeric array, got {type(values).__name__}", field=name) from None
    if array.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {array.shape}", field=name)
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"{name} must be finite, got {array[row]} at index {row}; drop or fill missing values "
                        "before resampling", row=row, field=name)
    return array


def _ruin_level(value: Any, name: str) -> float:
    try:
        level = float(value)
    except (TypeError, ValueError):
        level = math.nan
    if not 0.0 < level <= 1.0:
        raise ConfigError(f"{name} must be a drawdown fraction in (0, 1] (0.5 = 50 %), got {value!r}", field=name)
    return level


def _check_quantiles(quantiles: Any) -> tuple[float, ...]:
    try:
        levels = tuple(float(q) for q in quantiles)
    except (TypeError, ValueError):
        raise ConfigError(f"quantiles must be a sequence of numbers in [0, 1], got {quantiles!r}",
                          field="quantiles") from None
    if not levels or any(not 0.0 <= q <= 1.0 for q in levels) or any(b <= a for a, b in zip(levels, levels[1:])):
        raise ConfigError(f"quantiles must be increasing numbers in [0, 1], e.g. (0.05, 0.5, 0.95), got "
                          f"{quantiles!r}", field="quantiles")
    return levels


def _trade_values(result: RunAnalysis, trade_model: str) -> tuple[np.ndarray, float, float]:
    """Per-trade values of a run's closed trades, its initial cash and its trades per year."""
    trades = result.trades.filter(~pl.col("is_open"))
    if trades.height == 0:
        raise DataError("the run has no closed trades to resample; use method='block_bootstrap' to resample "
                        "its per-bar returns", field="trades")
    cash = float(result.initial_cash)
    pnl = trades["pnl"].to_numpy().astype(np.float64)
    if trade_model == "additive":
        values = pnl
    else:
        equity = np.asarray(result.equity_values, dtype=np.float64)
        entry = trades["entry_bar"].to_numpy().astype(np.int64)
        before = np.where(entry >= 1, equity[np.maximum(entry - 1, 0)], cash)
        if (before <= 0.0).any():
            row = int(np.argmax(before <= 0.0))
            raise DataError("a trade was entered with no equity left, its return on equity is undefined; use "
                            "trade_model='additive'", row=row, field="trades")
        values = pnl / before
    timestamps = np.asarray(result.timestamps_ns, dtype=np.int64)
    years = float(timestamps[-1] - timestamps[0]) / _NS_PER_YEAR if timestamps.shape[0] > 1 else 0.0
    per_year = values.shape[0] / years if years > 0.0 else 1.0
    return _finite_1d(values, "trades"), cash, per_year


def monte_carlo(
    source: Result | Any,
    *,
    method: Literal["reshuffle", "bootstrap", "block_bootstrap"] = "reshuffle",
    n_simulations: int = 1000,
    seed: int = 0,
    ruin_drawdown: float = 0.5,
    block_length: float | None = None,
    quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95),
    trade_model: Literal["compound", "additive"] = "compound",
    initial_equity: float | None = None,
    periods_per_year: float | None = None,
    keep_paths: bool = False,
) -> MonteCarloResult:
    """Monte Carlo of a finished run: distributions of final equity, drawdown and Sharpe, and a fan chart.

    **What is resampled.**

    * ``method="reshuffle"`` and ``"bootstrap"`` resample *closed trades*. From a :class:`Result`,
      with ``trade_model="compound"`` (default) each trade's value is its return on the account,
      ``pnl / equity at the close of the bar before its entry`` (the initial cash for a trade entered
      on the first bar), and a path is ``initial_equity * prod(1 + value)``: the trade keeps the size
      it had relative to the account, which is how fractional position sizing behaves. (The
      ``return`` column of ``Result.trades`` is the return on the position, not on the account, and
      would overstate every trade of a partly invested strategy.) With ``trade_model="additive"``
      each trade's value is its P&L and a path is ``initial_equity + cumsum(pnl)``: fixed position
      sizes. Open positions at the end are not trades and are left out.
    * ``method="block_bootstrap"`` resamples *per-bar returns* (from a :class:`Result`:
      ``returns_from_equity([initial cash, *equity])``) with the stationary bootstrap of Politis &
      Romano (1994), "The Stationary Bootstrap", *JASA* 89(428): a path starts at a uniform random
      bar; each following step starts a new block at a uniform random bar with probability
      ``1 / block_length`` and otherwise takes the next bar (wrapping after the last). Block lengths
      are geometric with mean ``block_length``; ``block_length=1`` is the i.i.d. bootstrap. By
      default ``block_length = max(optimal_block_length(r), optimal_block_length(r ** 2))``: the
      Politis–White rule on the returns *and* on their squares, because drawdowns depend on
      volatility clustering, which shows in ``r ** 2`` even when ``r`` itself is uncorrelated.

    Every path has as many steps as the source (trades or bars) and starts at ``initial_equity``. An
    account that reaches zero stays at zero (ruin). Raw arrays are taken as the values to resample:
    trade returns on equity (or P&L with ``trade_model="additive"``) for the trade methods, per-bar
    returns for the block bootstrap.

    **Outputs** (:class:`MonteCarloResult`): per path the final equity, maximum drawdown and Sharpe
    ratio; ``probability_of_ruin``, the share of paths whose maximum drawdown reached
    ``ruin_drawdown``; ``bands``, the ``quantiles`` of equity at every step; ``original``, the same
    statistics for the run itself; ``summary()``.

    **Memory and speed.** The paths are simulated in chunks of steps into one float64 buffer of at
    most 64 MB (``n_simulations`` columns), whose rows are reduced to quantiles before the next chunk
    overwrites it; the per-path state is a few floats. ``keep_paths=True`` also returns every path
    as float32 ``[n_simulations, n_steps + 1]`` (``4 * n_simulations * (n_steps + 1)`` bytes: 100 MB
    for 10,000 × 2,520). 10,000 simulations of 2,520 bars take about 0.2–0.35 s on 2 idle cores once
    compiled, bands included.

    Parameters
    ----------
    source
        A :class:`backforge.Result`, or a 1-D array of values to resample (see above).
    method
        ``"reshuffle"``, ``"bootstrap"`` or ``"block_bootstrap"``.
    n_simulations
        Number of simulated paths (>= 1).
    seed
        Seed (>= 0); the same seed gives bit-identical results.
    ruin_drawdown
        Drawdown counted as ruin, a fraction in (0, 1] (0.5 = losing half from a peak).
    block_length
        Expected block length in bars for the block bootstrap (>= 1); None for the Politis–White
        default. Only valid with ``method="block_bootstrap"``.
    quantiles
        Increasing levels in [0, 1] for the bands and the summary.
    trade_model
        ``"compound"`` or ``"additive"``, for the trade methods only.
    initial_equity
        Starting equity; default the run's initial cash, or 1.0 for raw arrays.
    periods_per_year
        Steps per year to annualize the Sharpe ratio; default for a :class:`Result` the bars per
        year (:func:`~backforge.results.metrics.periods_per_year_for`) for the block bootstrap and the
        closed trades per calendar year for the trade methods; 1.0 (per-step Sharpe) for raw arrays.
    keep_paths
        Also return every path (float32).

    Returns
    -------
    MonteCarloResult

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=2, seed=3)
    >>> result = bf.from_signals(data, data.close > data.open, data.close < data.open)
    >>> mc = monte_carlo(result, method="bootstrap", n_simulations=2000, seed=7)
    >>> mc.n_steps, mc.final_equity.shape, mc.bands.columns
    (130, (2000,), ['step', 'p5', 'p25', 'p50', 'p75', 'p95', 'original'])
    >>> 0.0 <= mc.probability_of_ruin <= 1.0
    True
    >>> blocks = monte_carlo(result, method="block_bootstrap", n_simulations=500, block_length=10)
    >>> blocks.n_steps == result.equity_values.shape[0]
    True
    """
    # ------------------------------------------------------------------ settings
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}: use one of {', '.join(METHODS)}"
                          + did_you_mean(str(method), METHODS), field="method")
    if trade_model not in TRADE_MODELS:
        raise ConfigError(f"unknown trade_model {trade_model!r}: use one of {', '.join(TRADE_MODELS)}"
                          + did_you_mean(str(trade_model), TRADE_MODELS), field="trade_model")
    n_paths = whole(n_simulations, "n_simulations", 1)
    seed_value = whole(seed, "seed", 0, maximum=2**64 - 1)  # the generator state is a uint64
    ruin = _ruin_level(ruin_drawdown, "ruin_drawdown")
    levels = _check_quantiles(quantiles)
    is_block = method == "block_bootstrap"
    if not is_block and block_length is not None:
        raise ConfigError("block_length only applies to method='block_bootstrap'", field="block_length")
    if is_block and trade_model != "compound":
        raise ConfigError("trade_model only applies to the trade methods ('reshuffle', 'bootstrap'); the block "
                          "bootstrap always compounds per-bar returns", field="trade_model")

    # ------------------------------------------------------------------ values to resample
    original_path: np.ndarray | None = None
    if isinstance(source, RunAnalysis):  # a Result or a saved run
        if is_block:
            cash = float(source.initial_cash)
            original_path = np.concatenate(([cash], np.asarray(source.equity_values, dtype=np.float64)))
            values = returns_from_equity(original_path)
            default_per_year = periods_per_year_for(np.asarray(source.timestamps_ns, dtype=np.int64))
        else:
            values, cash, default_per_year = _trade_values(source, trade_model)
        start_equity = cash
    else:
        values = _finite_1d(source, "returns" if is_block else "trades")
        start_equity = 1.0
        default_per_year = 1.0
    if values.shape[0] < (2 if is_block else 1):
        raise DataError(f"nothing to resample: got {values.shape[0]} "
                        + ("returns (need at least 2)" if is_block else "trades (need at least 1)"),
                        field="returns" if is_block else "trades")
    if initial_equity is not None:
        start_equity = positive(initial_equity, "initial_equity")
        original_path = None
    per_year = default_per_year if periods_per_year is None else positive(periods_per_year, "periods_per_year")
    length: float | None = None
    if is_block:
        if block_length is None:
            length = max(optimal_block_length(values), optimal_block_length(values * values))
        else:
            length = positive(block_length, "block_length")
            if length < 1.0:
                raise ConfigError(f"block_length must be >= 1 bar, got {block_length!r}", field="block_length")
    additive = trade_model == "additive" and not is_block

    # ------------------------------------------------------------------ simulate, chunk by chunk
    if original_path is None:
        original_path = equity_path_nb(values, start_equity, additive)
    n_steps = values.shape[0]
    shift = float(np.mean(returns_from_equity(original_path)))
    rng_seed = np.uint64(seed_value)
    rng_states = path_states_nb(rng_seed, n_paths)
    positions = np.zeros(n_paths, dtype=np.int64)
    equity = np.full(n_paths, start_equity)
    peaks = equity.copy()
    max_drawdowns = np.zeros(n_paths)
    sums = np.zeros(n_paths)
    squares = np.zeros(n_paths)
    level_array = np.asarray(levels)
    bands = np.empty((n_steps + 1, len(levels)))
    bands[0] = start_equity
    paths = np.empty((n_paths, n_steps + 1), dtype=np.float32) if keep_paths else None
    if paths is not None:
        paths[:, 0] = start_equity
    chunk = max(1, min(n_steps, _BUFFER_BYTES // (8 * n_paths)))
    buffer = np.empty((chunk, n_paths))
    workers = numba.get_num_threads()
    group = _GROUP if method != "reshuffle" else max(1, min(_GROUP, _PERMUTATION_BYTES // (4 * n_steps)))
    for start in range(0, n_steps, chunk):
        stop = min(start + chunk, n_steps)
        rows = buffer[: stop - start]
        simulate_paths_nb(values, METHODS[method], additive, 1.0 / length if length else 1.0, rng_seed, start,
                          stop, shift, rng_states, positions, equity, peaks, max_drawdowns, sums, squares, rows, group,
                          workers)
        bands[start + 1:stop + 1] = step_quantiles_nb(rows, level_array, workers)
        if paths is not None:
            paths[:, start + 1:stop + 1] = rows.T
    sharpe = sharpe_from_sums(sums, squares, shift, n_steps, per_year)

    # ------------------------------------------------------------------ the run itself
    own = equity_metrics(original_path, periods_per_year=per_year)
    original = {
        "final_equity": float(original_path[-1]),
        "max_drawdown": float(own["max_drawdown"]),
        "sharpe": float(own["sharpe"]),
    }
    table = pl.DataFrame({"step": np.arange(n_steps + 1, dtype=np.int64)})
    table = table.with_columns([pl.Series(_label(q), bands[:, i]) for i, q in enumerate(levels)]
                               + [pl.Series("original", original_path)])
    return MonteCarloResult(
        method=str(method),
        trade_model=None if is_block else str(trade_model),
        block_length=length,
        n_simulations=n_paths,
        n_steps=int(n_steps),
        seed=seed_value,
        initial_equity=float(start_equity),
        periods_per_year=float(per_year),
        final_equity=equity,
        max_drawdown=max_drawdowns,
        sharpe=sharpe,
        quantiles=levels,
        bands=table,
        ruin_drawdown=ruin,
        probability_of_ruin=float(np.mean(max_drawdowns <= -ruin)),
        original=original,
        paths=paths,
    )


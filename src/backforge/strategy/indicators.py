"""Compiled technical indicators of the strategy language.

Two layers live here (see ``docs/indicators.md`` for the full table of conventions):

* **Kernels** (``*_nb``): numba-compiled functions that take and return arrays and scalars only. Every
  2-D kernel takes ``values`` float64 ``[T, A]`` (time on axis 0, assets on axis 1, NaN where an asset
  has no bar), ``timestamps`` int64 ns ``[T]`` and a window given as the pair
  ``(window_bars, window_ns)`` of which exactly one is > 0. Each asset (column) is processed on its
  own *existing* bars only: NaN rows are skipped, do not count as bars, and get NaN outputs. Each
  column is processed in one streaming pass that uses the input column itself as the
  window buffer (O(T), no temporaries). Every kernel accepts an optional preallocated ``out`` (shape
  ``[T, A]``, or ``[k, T, A]`` for the ``k`` outputs of MACD and Bollinger) and returns it.
* **Python functions** (``sma``, ``ema``, ...): validate the inputs once, turn ``window=20`` into
  ``(20, 0)`` and ``window="30d"`` into ``(0, 2_592_000_000_000_000)``, and call the kernel.
  Impossible parameters raise :class:`~backforge.errors.ConfigError`; unusable arrays raise
  :class:`~backforge.errors.DataError`.

Windows
-------
* A **bar window** of ``n`` holds the asset's last ``n`` existing bars. Warm-up matches TA-Lib's
  lookback exactly (e.g. SMA: the first ``n - 1`` bars are NaN; RSI and ATR: the first ``n``).
* A **duration window** ``D`` at the bar stamped ``t`` holds the asset's bars stamped in the half-open
  interval ``(t - D, t]`` -- the same interval as pandas ``Series.rolling("30D")``. Its output is NaN
  until the window is fully covered by the asset's history, i.e. for every bar with
  ``t - D < t_first`` (``t_first`` is the asset's first bar). On gapless data with spacing ``dt`` and
  ``D = n * dt`` a duration window therefore holds ``n`` bars and first appears one bar later than the
  bar window of ``n`` (the bar exactly ``D`` before ``t`` is outside the half-open window).
* Recursive smoothers with a duration decay with elapsed time: between consecutive bars of the asset
  ``dt`` apart, ``alpha = 1 - exp(-dt / tau)``, with ``tau = D / 2`` for EMA-style smoothing (the
  large-``n`` limit of ``alpha = 2 / (n + 1)`` on bars ``D / n`` apart) and ``tau = D`` for Wilder
  smoothing in RSI and ATR (the limit of ``alpha = 1 / n``). They are seeded, like TA-Lib's bar
  versions, with the simple average over the first complete window.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import NamedTuple, Union

import numba
import numpy as np

from backforge._jit import frozen
from backforge._time import lower_macd_windows, lower_window as _window
from backforge.errors import ConfigError, DataError

__all__ = [
    "Window",
    "MACDResult",
    "BollingerResult",
    # Python API
    "sma",
    "rolling_sum",
    "ema",
    "wma",
    "rsi",
    "macd",
    "bollinger",
    "atr",
    "stddev",
    "zscore",
    "rolling_max",
    "rolling_min",
    "returns",
    "rate_of_change",
    "pct_change",
    "lag",
    "vwap",
    "volume_average",
    "cross_sectional_rank",
    "cross_sectional_percentile",
    "arithmetic",
    # kernels
    "sma_nb",
    "rolling_sum_nb",
    "ema_nb",
    "wma_nb",
    "rsi_nb",
    "macd_nb",
    "bollinger_nb",
    "atr_nb",
    "stddev_nb",
    "zscore_nb",
    "rolling_max_nb",
    "rolling_min_nb",
    "returns_nb",
    "lag_nb",
    "vwap_nb",
    "cross_sectional_rank_nb",
    "cross_sectional_percentile_nb",
]

Window = Union[int, str, _dt.timedelta, np.timedelta64]
"""A window: a positive bar count (``20``) or a duration (``"30d"``, ``"15min"``, a ``timedelta``)."""

# Sliding sums are recomputed exactly from the window once every bar present at the previous
# recomputation has left it and at least this many updates have passed: bounded drift, O(1) amortized.
_RECOMPUTE_MIN = 1024
# All kernels use ``error_model="numpy"``: a division by zero gives inf/NaN instead of raising.



# ---------------------------------------------------------------------------------------------------
# Building blocks. Kernels stream down one column at a time and use the input column itself as the
# window buffer: ``front`` is the row of the oldest bar still in the window, and popping it advances
# ``front`` to the column's next non-NaN row. No per-column temporaries are allocated (large
# allocations made inside compiled code cost a page fault per 4 KiB).
# ---------------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def _check_window_nb(window_bars, window_ns):
    """Kernels trust validated input, but a window of neither kind would read out of bounds."""
    if (window_bars > 0) == (window_ns > 0):
        raise ConfigError("exactly one of window_bars and window_ns must be > 0")


@numba.njit(cache=True, error_model="numpy")
def _check_shapes_nb(n_rows, n_cols, n_timestamps, out_rows, out_cols):
    if n_timestamps != n_rows:
        raise DataError("timestamps must have one entry per row of values")
    if out_rows != n_rows or out_cols != n_cols:
        raise DataError("out must have the shape of values ([T, A], or [k, T, A] for k outputs)")


@numba.njit(cache=True, error_model="numpy")
def _first_not_increasing_nb(timestamps):
    """First row whose timestamp is not after the previous row's, or -1 (one pass, no temporaries;
    equivalent to ``np.flatnonzero(ts[1:] <= ts[:-1])[0] + 1``)."""
    for row in range(1, timestamps.shape[0]):
        if timestamps[row] <= timestamps[row - 1]:
            return row
    return -1


@numba.njit(cache=True, error_model="numpy")
def _next_bar_nb(values, col, row):
    """First row ``>= row`` where ``values[row, col]`` is not NaN (the caller guarantees one exists)."""
    while values[row, col] != values[row, col]:
        row += 1
    return row


@numba.njit(cache=True, error_model="numpy")
def _is_expired_nb(timestamps, front, count, now, window_bars, window_ns):
    """Whether the oldest bar (row ``front``) has left a window that holds ``count`` bars at ``now``."""
    if window_bars > 0:
        return count > window_bars
    return timestamps[front] <= now - window_ns


@numba.njit(cache=True, error_model="numpy")
def _is_ready_nb(seen, first_time, now, window_bars, window_ns):
    """Whether the window ending at ``now`` is complete: ``n`` bars seen, or ``now - D >= first bar``."""
    if window_bars > 0:
        return seen >= window_bars
    return now - window_ns >= first_time


@numba.njit(cache=True, error_model="numpy")
def _neumaier_add_nb(total, compensation, value):
    """Compensated (Kahan-Babuska-Neumaier) addition: returns the new ``(total, compensation)``."""
    new_total = total + value
    if abs(total) >= abs(value):
        compensation += (total - new_total) + value
    else:
        compensation += (value - new_total) + total
    return new_total, compensation


@numba.njit(cache=True, error_model="numpy")
def _window_mean_back_nb(values, timestamps, col, row, limit):
    """Mean of the column's bars at rows ``<= row`` stamped after ``limit`` (seeds duration smoothers)."""
    total = 0.0
    count = 0
    j = row
    while j >= 0 and timestamps[j] > limit:
        v = values[j, col]
        if v == v:
            total += v
            count += 1
        j -= 1
    return total / count


@numba.njit(cache=True, error_model="numpy")
def _window_gain_loss_back_nb(values, timestamps, col, row, limit):
    """Mean gain and mean loss of the bars at rows ``<= row`` stamped after ``limit``.

    Each bar's change is taken from the asset's previous bar, which exists (possibly before
    ``limit``) because the window is complete.
    """
    gain = 0.0
    loss = 0.0
    count = 0
    later = values[row, col]
    j = row - 1
    while True:
        v = values[j, col]
        if v == v:
            d = later - v
            if d < 0.0:
                loss -= d
            else:
                gain += d
            count += 1
            if timestamps[j] <= limit:
                break
            later = v
        j -= 1
    return gain / count, loss / count


@numba.njit(cache=True, error_model="numpy")
def _true_range_nb(high, low, previous_close):
    """TA-Lib ``TRANGE``: the largest of high - low, |previous close - high|, |previous close - low|."""
    greatest = high - low
    v = abs(previous_close - high)
    if v > greatest:
        greatest = v
    v = abs(previous_close - low)
    if v > greatest:
        greatest = v
    return greatest


@numba.njit(cache=True, error_model="numpy")
def _is_hlc_bar_nb(high, low, close, row, col):
    return high[row, col] == high[row, col] and low[row, col] == low[row, col] and close[row, col] == close[row, col]


@numba.njit(cache=True, error_model="numpy")
def _window_true_range_back_nb(high, low, close, timestamps, col, row, limit):
    """Mean true range of the bars at rows ``<= row`` stamped after ``limit`` (seeds duration ATR)."""
    total = 0.0
    count = 0
    later_high = high[row, col]
    later_low = low[row, col]
    j = row - 1
    while True:
        if _is_hlc_bar_nb(high, low, close, j, col):
            total += _true_range_nb(later_high, later_low, close[j, col])
            count += 1
            if timestamps[j] <= limit:
                break
            later_high = high[j, col]
            later_low = low[j, col]
        j -= 1
    return total / count


# ---------------------------------------------------------------------------------------------------
# Column kernels: one asset, writing every row of ``out[:, col]`` (NaN where there is no value)
# ---------------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def _rolling_sum_col_nb(values, timestamps, col, window_bars, window_ns, as_mean, out):
    """Sliding-window sum (or mean) with compensated add/remove.

    The sum is recomputed exactly from the window once every bar present at the previous
    recomputation has left it (and at least 1024 updates have passed): bounded drift, O(1) amortized.
    """
    n_rows = values.shape[0]
    total = 0.0
    comp = 0.0
    front = 0
    count = 0
    seen = 0
    first_time = 0
    anchor = -1
    since = 0
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        if seen == 0:
            first_time = now
            front = i
        seen += 1
        total, comp = _neumaier_add_nb(total, comp, v)
        count += 1
        while _is_expired_nb(timestamps, front, count, now, window_bars, window_ns):
            total, comp = _neumaier_add_nb(total, comp, -values[front, col])
            count -= 1
            front = _next_bar_nb(values, col, front + 1)
        since += 1
        if since >= _RECOMPUTE_MIN and front > anchor:
            total = 0.0
            comp = 0.0
            for j in range(front, i + 1):
                u = values[j, col]
                if u == u:
                    total, comp = _neumaier_add_nb(total, comp, u)
            anchor = i
            since = 0
        if _is_ready_nb(seen, first_time, now, window_bars, window_ns):
            out[i, col] = (total + comp) / count if as_mean else total + comp
        else:
            out[i, col] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _rolling_sum_bars_col_nb(values, col, window_bars, as_mean, out):
    """:func:`_rolling_sum_col_nb` for a bar window: the same additions in the same order (bit-identical
    results), without the timestamp reads and the duration tests. A bar window of ``n`` loses at most one
    bar per new bar (the count grows by one and the window holds ``n``), so the expiry loop is one test."""
    n_rows = values.shape[0]
    total = 0.0
    comp = 0.0
    front = 0
    count = 0
    seen = 0
    anchor = -1
    since = 0
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            out[i, col] = np.nan
            continue
        if seen == 0:
            front = i
        seen += 1
        total, comp = _neumaier_add_nb(total, comp, v)
        count += 1
        if count > window_bars:
            total, comp = _neumaier_add_nb(total, comp, -values[front, col])
            count -= 1
            front = _next_bar_nb(values, col, front + 1)
        since += 1
        if since >= _RECOMPUTE_MIN and front > anchor:
            total = 0.0
            comp = 0.0
            for j in range(front, i + 1):
                u = values[j, col]
                if u == u:
                    total, comp = _neumaier_add_nb(total, comp, u)
            anchor = i
            since = 0
        if seen >= window_bars:
            out[i, col] = (total + comp) / count if as_mean else total + comp
        else:
            out[i, col] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _window_mean_nb(values, col, lo, hi):
    """Compensated mean of the bars in rows ``lo..hi`` of the column."""
    total = 0.0
    comp = 0.0
    count = 0
    for j in range(lo, hi + 1):
        v = values[j, col]
        if v == v:
            total, comp = _neumaier_add_nb(total, comp, v)
            count += 1
    return (total + comp) / count


_MOMENTS_STDDEV = 0
_MOMENTS_ZSCORE = 1
_MOMENTS_BOLLINGER = 2


@numba.njit(cache=True, error_model="numpy")
def _rolling_moments_col_nb(values, timestamps, col, window_bars, window_ns, mode, num_std, out):
    """Sliding mean and population variance (ddof=0) from compensated sums of shifted values.

    Keeps ``s1 = sum(x - K)`` and ``s2 = sum((x - K) ** 2)`` over the window with Neumaier add/remove;
    ``variance = (s2 - s1**2 / n) / n``. Each time the whole window has turned over, the shift ``K`` is
    reset to the window's exact mean and the sums are recomputed, so ``K`` stays within about one
    window range of the mean and the subtraction loses no more than a few ulps of the variance
    (O(1) amortized). A window whose bars all hold the same value gets exactly ``mean = value`` and
    ``variance = 0``. ``mode`` selects the outputs: stddev ``out[0]``, z-score ``out[0]``, or the five
    Bollinger arrays ``out[0..4]``.
    """
    n_rows = values.shape[0]
    n_out = 5 if mode == _MOMENTS_BOLLINGER else 1
    shift = 0.0
    s1 = 0.0
    c1 = 0.0
    s2 = 0.0
    c2 = 0.0
    front = 0
    count = 0
    seen = 0
    first_time = 0
    anchor = -1
    run = 0
    last = np.nan
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            for q in range(n_out):
                out[q, i, col] = np.nan
            continue
        now = timestamps[i]
        if seen == 0:
            first_time = now
            front = i
        seen += 1
        run = run + 1 if v == last else 1
        last = v
        count += 1
        d = v - shift
        s1, c1 = _neumaier_add_nb(s1, c1, d)
        s2, c2 = _neumaier_add_nb(s2, c2, d * d)
        while _is_expired_nb(timestamps, front, count, now, window_bars, window_ns):
            d = values[front, col] - shift
            s1, c1 = _neumaier_add_nb(s1, c1, -d)
            s2, c2 = _neumaier_add_nb(s2, c2, -(d * d))
            count -= 1
            front = _next_bar_nb(values, col, front + 1)
        if front > anchor:
            shift = _window_mean_nb(values, col, front, i)
            s1 = 0.0
            c1 = 0.0
            s2 = 0.0
            c2 = 0.0
            for j in range(front, i + 1):
                u = values[j, col]
                if u == u:
                    d = u - shift
                    s1, c1 = _neumaier_add_nb(s1, c1, d)
                    s2, c2 = _neumaier_add_nb(s2, c2, d * d)
            anchor = i
        if not _is_ready_nb(seen, first_time, now, window_bars, window_ns):
            for q in range(n_out):
                out[q, i, col] = np.nan
            continue
        if run >= count:
            mu = v
            var = 0.0
        else:
            mean_shift = (s1 + c1) / count
            mu = shift + mean_shift
            var = (s2 + c2) / count - mean_shift * mean_shift
            if var < 0.0:
                var = 0.0
        std = math.sqrt(var)
        if mode == _MOMENTS_STDDEV:
            out[0, i, col] = std
        elif mode == _MOMENTS_ZSCORE:
            out[0, i, col] = (v - mu) / std if var > 0.0 else np.nan
        else:
            band = num_std * std
            upper = mu + band
            lower = mu - band
            out[0, i, col] = upper
            out[1, i, col] = mu
            out[2, i, col] = lower
            out[3, i, col] = (upper - lower) / mu
            out[4, i, col] = (v - lower) / (upper - lower) if var > 0.0 else np.nan


@numba.njit(cache=True, error_model="numpy")
def _rolling_extreme_col_nb(values, timestamps, col, window_bars, window_ns, sign, out):
    """Sliding maximum (``sign = 1``) or minimum (``sign = -1``) with a monotonic deque, O(T).

    The deque holds rows in a ring buffer sized for the bar window (grown by doubling when a
    duration window needs more room).
    """
    n_rows = values.shape[0]
    capacity = 64
    while capacity <= window_bars:
        capacity *= 2
    mask = capacity - 1
    ring = np.empty(capacity, dtype=np.int64)
    head = 0
    size = 0
    front = 0
    count = 0
    seen = 0
    first_time = 0
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        if seen == 0:
            first_time = now
            front = i
        seen += 1
        count += 1
        while size > 0 and sign * (v - values[ring[(head + size - 1) & mask], col]) >= 0.0:
            size -= 1
        if size == capacity:
            grown = np.empty(2 * capacity, dtype=np.int64)
            for q in range(size):
                grown[q] = ring[(head + q) & mask]
            ring = grown
            capacity *= 2
            mask = capacity - 1
            head = 0
        ring[(head + size) & mask] = i
        size += 1
        while _is_expired_nb(timestamps, front, count, now, window_bars, window_ns):
            count -= 1
            front = _next_bar_nb(values, col, front + 1)
        while ring[head] < front:
            head = (head + 1) & mask
            size -= 1
        if _is_ready_nb(seen, first_time, now, window_bars, window_ns):
            out[i, col] = values[ring[head], col]
        else:
            out[i, col] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _wma_col_nb(values, timestamps, col, window_bars, window_ns, out):
    """Linearly weighted average: a bar's weight is ``H - age`` (bars: ``H = n``; duration: ``H = D``).

    Sliding sums ``s0 = sum(x)``, ``s1 = sum((p - ref) * x)`` and ``w1 = sum(p - ref)`` over the window,
    with positions ``p`` (bar ordinal or timestamp) relative to a reference ``ref`` moved to the
    newest bar at each exact recomputation, so that no large numbers cancel.
    """
    n_rows = values.shape[0]
    by_bars = window_bars > 0
    horizon = float(window_bars) if by_bars else float(window_ns)
    ref = 0
    s0 = 0.0
    s1 = 0.0
    w1 = 0.0
    front = 0
    front_ordinal = 0
    count = 0
    seen = 0
    first_time = 0
    anchor = -1
    since = 0
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        if seen == 0:
            first_time = now
            front = i
        position = seen if by_bars else now
        seen += 1
        count += 1
        u = float(position - ref)
        s0 += v
        s1 += u * v
        w1 += u
        while _is_expired_nb(timestamps, front, count, now, window_bars, window_ns):
            x_front = values[front, col]
            u = float((front_ordinal if by_bars else timestamps[front]) - ref)
            s0 -= x_front
            s1 -= u * x_front
            w1 -= u
            count -= 1
            front_ordinal += 1
            front = _next_bar_nb(values, col, front + 1)
        since += 1
        if (since >= _RECOMPUTE_MIN and front > anchor) or float(position - ref) > horizon:
            ref = position
            s0 = 0.0
            s1 = 0.0
            w1 = 0.0
            ordinal = front_ordinal
            for j in range(front, i + 1):
                x_j = values[j, col]
                if x_j == x_j:
                    u = float((ordinal if by_bars else timestamps[j]) - ref)
                    s0 += x_j
                    s1 += u * x_j
                    w1 += u
                    ordinal += 1
            anchor = i
            since = 0
        if _is_ready_nb(seen, first_time, now, window_bars, window_ns):
            c = horizon - float(position - ref)
            out[i, col] = (c * s0 + s1) / (c * count + w1)
        else:
            out[i, col] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _ema_col_nb(values, timestamps, col, window_bars, window_ns, out):
    """EMA: TA-Lib's for bars; time-decay ``alpha = 1 - exp(-dt / (D / 2))`` for durations."""
    n_rows = values.shape[0]
    k = 2.0 / (window_bars + 1.0)
    tau = window_ns / 2.0
    seen = 0
    total = 0.0
    prev = np.nan
    seeded = False
    first_time = 0
    last_time = 0
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        seen += 1
        if window_bars > 0:
            if seen < window_bars:
                total += v
            elif seen == window_bars:
                total += v
                prev = total / window_bars
            else:
                prev = ((v - prev) * k) + prev
        else:
            if seen == 1:
                first_time = now
            if seeded:
                prev = prev + -math.expm1(-float(now - last_time) / tau) * (v - prev)
            elif now - window_ns >= first_time:
                prev = _window_mean_back_nb(values, timestamps, col, i, now - window_ns)
                seeded = True
            last_time = now
        out[i, col] = prev


@numba.njit(cache=True, error_model="numpy")
def _rsi_col_nb(values, timestamps, col, window_bars, window_ns, out):
    """Wilder RSI (0-100): a line-by-line port of TA-Lib's ``RSI`` for bars; time-decay for durations."""
    n_rows = values.shape[0]
    period = window_bars
    seen = 0
    gain = 0.0
    loss = 0.0
    seeded = False
    prev_value = 0.0
    first_time = 0
    last_time = 0
    for i in range(n_rows):
        v = values[i, col]
        if v != v:
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        seen += 1
        if seen == 1:
            prev_value = v
            first_time = now
            last_time = now
            out[i, col] = np.nan
            continue
        d = v - prev_value
        prev_value = v
        if window_bars > 0:
            if seen <= period + 1:
                if d < 0.0:
                    loss -= d
                else:
                    gain += d
                if seen == period + 1:
                    loss /= period
                    gain /= period
                    seeded = True
            else:
                loss *= period - 1
                gain *= period - 1
                if d < 0.0:
                    loss -= d
                else:
                    gain += d
                loss /= period
                gain /= period
        else:
            if seeded:
                alpha = -math.expm1(-float(now - last_time) / float(window_ns))
                gain += alpha * ((d if d > 0.0 else 0.0) - gain)
                loss += alpha * ((-d if d < 0.0 else 0.0) - loss)
            elif now - window_ns >= first_time:
                gain, loss = _window_gain_loss_back_nb(values, timestamps, col, i, now - window_ns)
                seeded = True
            last_time = now
        if seeded:
            total = gain + loss
            out[i, col] = 100.0 * (gain / total) if total != 0.0 else 0.0
        else:
            out[i, col] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _atr_col_nb(high, low, close, timestamps, col, window_bars, window_ns, out):
    """Wilder ATR: a port of TA-Lib's ``ATR`` for bars; time-decay ``alpha = 1 - exp(-dt / D)`` otherwise."""
    n_rows = close.shape[0]
    period = window_bars
    seen = 0
    total = 0.0
    prev = np.nan
    seeded = False
    prev_close = 0.0
    first_time = 0
    last_time = 0
    for i in range(n_rows):
        if not _is_hlc_bar_nb(high, low, close, i, col):
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        seen += 1
        if seen == 1:
            prev_close = close[i, col]
            first_time = now
            last_time = now
            out[i, col] = np.nan
            continue
        tr = _true_range_nb(high[i, col], low[i, col], prev_close)
        prev_close = close[i, col]
        if window_bars > 0:
            if seen <= period + 1:
                total += tr
                if seen == period + 1:
                    prev = total / period
            else:
                prev *= period - 1
                prev += tr
                prev /= period
        else:
            if seeded:
                prev = prev + -math.expm1(-float(now - last_time) / float(window_ns)) * (tr - prev)
            elif now - window_ns >= first_time:
                prev = _window_true_range_back_nb(high, low, close, timestamps, col, i, now - window_ns)
                seeded = True
            last_time = now
        out[i, col] = prev


@numba.njit(cache=True, error_model="numpy")
def _macd_bars_col_nb(values, col, fast, slow, signal, out):
    """TA-Lib ``MACD`` port: slow EMA seeded with the SMA of bars ``0..slow-1``; the fast EMA seeded at
    the same bar with the SMA of the ``fast`` bars ending there; signal seeded with the mean of the
    first ``signal`` MACD values; all outputs start at bar ``slow + signal - 2``."""
    n_rows = values.shape[0]
    k_slow = 2.0 / (slow + 1.0)
    k_fast = 2.0 / (fast + 1.0)
    k_signal = 2.0 / (signal + 1.0)
    seen = 0
    slow_total = 0.0
    fast_total = 0.0
    signal_total = 0.0
    slow_ema = 0.0
    fast_ema = 0.0
    sig = 0.0
    for i in range(n_rows):
        v = values[i, col]
        out[0, i, col] = np.nan
        out[1, i, col] = np.nan
        out[2, i, col] = np.nan
        if v != v:
            continue
        seen += 1
        if seen <= slow:
            slow_total += v
            if seen > slow - fast:
                fast_total += v
            if seen < slow:
                continue
            slow_ema = slow_total / slow
            fast_ema = fast_total / fast
        else:
            slow_ema = ((v - slow_ema) * k_slow) + slow_ema
            fast_ema = ((v - fast_ema) * k_fast) + fast_ema
        line = fast_ema - slow_ema
        n_line = seen - slow + 1
        if n_line < signal:
            signal_total += line
            continue
        if n_line == signal:
            signal_total += line
            sig = signal_total / signal
        else:
            sig = ((line - sig) * k_signal) + sig
        out[0, i, col] = line
        out[1, i, col] = sig
        out[2, i, col] = line - sig


@numba.njit(cache=True, error_model="numpy")
def _macd_duration_col_nb(values, timestamps, col, fast_ns, slow_ns, signal_ns, out):
    """Duration MACD: time-decay EMAs (``tau = D / 2``) with TA-Lib's seeding structure.

    Both EMAs are seeded at the first complete slow window (each with its own window mean); the
    signal is seeded at the first bar whose signal window lies within the MACD line's history, with
    the mean of the line over that window. The line is hidden (NaN) until the signal exists.
    """
    n_rows = values.shape[0]
    slow_ema = 0.0
    fast_ema = 0.0
    sig = 0.0
    seen = 0
    first_time = 0
    line_start = -1
    line_start_time = 0
    last_time = 0
    prev_line_time = 0
    signal_seeded = False
    for i in range(n_rows):
        v = values[i, col]
        out[0, i, col] = np.nan
        out[1, i, col] = np.nan
        out[2, i, col] = np.nan
        if v != v:
            continue
        now = timestamps[i]
        seen += 1
        if seen == 1:
            first_time = now
        if line_start >= 0:
            dt = float(now - last_time)
            slow_ema = slow_ema + -math.expm1(-dt / (slow_ns / 2.0)) * (v - slow_ema)
            fast_ema = fast_ema + -math.expm1(-dt / (fast_ns / 2.0)) * (v - fast_ema)
        elif now - slow_ns >= first_time:
            slow_ema = _window_mean_back_nb(values, timestamps, col, i, now - slow_ns)
            fast_ema = _window_mean_back_nb(values, timestamps, col, i, now - fast_ns)
            line_start = i
            line_start_time = now
        last_time = now
        if line_start < 0:
            continue
        line = fast_ema - slow_ema
        # the line is kept in out[0] as scratch until the signal can be seeded from it
        out[0, i, col] = line
        if signal_seeded:
            sig = sig + -math.expm1(-float(now - prev_line_time) / (signal_ns / 2.0)) * (line - sig)
        elif now - signal_ns >= line_start_time:
            sig = _window_mean_back_nb(out[0], timestamps, col, i, now - signal_ns)
            signal_seeded = True
            for j in range(line_start, i):
                out[0, j, col] = np.nan
        prev_line_time = now
        if signal_seeded:
            out[1, i, col] = sig
            out[2, i, col] = line - sig
    if line_start >= 0 and not signal_seeded:
        for j in range(line_start, n_rows):
            out[0, j, col] = np.nan


@numba.njit(cache=True, error_model="numpy")
def _lag_col_nb(values, timestamps, col, window_bars, window_ns, as_return, out):
    """Value ``n`` bars back / as of ``t - D`` (``as_return``: ``x / lagged - 1``, NaN on a zero base)."""
    n_rows = values.shape[0]
    seen = 0
    front = 0
    count = 0
    first_time = 0
    base = -1
    base_next = -1
    for i in range(n_rows):
        v = values[i, col]
        out[i, col] = np.nan
        if v != v:
            continue
        now = timestamps[i]
        if seen == 0:
            first_time = now
            front = i
            base = i
            base_next = -1
        seen += 1
        lagged = -1
        if window_bars > 0:
            count += 1
            if count > window_bars + 1:
                count -= 1
                front = _next_bar_nb(values, col, front + 1)
            if seen > window_bars:
                lagged = front
        else:
            limit = now - window_ns
            if limit >= first_time:
                if base_next < 0:
                    base_next = _next_bar_nb(values, col, base + 1)
                while timestamps[base_next] <= limit:
                    base = base_next
                    base_next = _next_bar_nb(values, col, base + 1)
                lagged = base
        if lagged >= 0:
            x_lag = values[lagged, col]
            if not as_return:
                out[i, col] = x_lag
            elif x_lag != 0.0:
                out[i, col] = v / x_lag - 1.0


@numba.njit(cache=True, error_model="numpy")
def _is_ohlcv_bar_nb(high, low, close, volume, row, col):
    return _is_hlc_bar_nb(high, low, close, row, col) and volume[row, col] == volume[row, col]


@numba.njit(cache=True, error_model="numpy")
def _typical_price_volume_nb(high, low, close, volume, row, col):
    return (high[row, col] + low[row, col] + close[row, col]) / 3.0 * volume[row, col]


@numba.njit(cache=True, error_model="numpy")
def _vwap_col_nb(high, low, close, volume, timestamps, col, window_bars, window_ns, out):
    """Rolling ``sum(typical price * volume) / sum(volume)``, compensated sums, exact recomputation."""
    n_rows = close.shape[0]
    pv = 0.0
    pv_comp = 0.0
    vol = 0.0
    vol_comp = 0.0
    front = 0
    count = 0
    seen = 0
    first_time = 0
    anchor = -1
    since = 0
    for i in range(n_rows):
        if not _is_ohlcv_bar_nb(high, low, close, volume, i, col):
            out[i, col] = np.nan
            continue
        now = timestamps[i]
        if seen == 0:
            first_time = now
            front = i
        seen += 1
        count += 1
        pv, pv_comp = _neumaier_add_nb(pv, pv_comp, _typical_price_volume_nb(high, low, close, volume, i, col))
        vol, vol_comp = _neumaier_add_nb(vol, vol_comp, volume[i, col])
        while _is_expired_nb(timestamps, front, count, now, window_bars, window_ns):
            pv, pv_comp = _neumaier_add_nb(
                pv, pv_comp, -_typical_price_volume_nb(high, low, close, volume, front, col)
            )
            vol, vol_comp = _neumaier_add_nb(vol, vol_comp, -volume[front, col])
            count -= 1
            front += 1
            while not _is_ohlcv_bar_nb(high, low, close, volume, front, col):
                front += 1
        since += 1
        if since >= _RECOMPUTE_MIN and front > anchor:
            pv = 0.0
            pv_comp = 0.0
            vol = 0.0
            vol_comp = 0.0
            for j in range(front, i + 1):
                if _is_ohlcv_bar_nb(high, low, close, volume, j, col):
                    tpv = _typical_price_volume_nb(high, low, close, volume, j, col)
                    pv, pv_comp = _neumaier_add_nb(pv, pv_comp, tpv)
                    vol, vol_comp = _neumaier_add_nb(vol, vol_comp, volume[j, col])
            anchor = i
            since = 0
        total_volume = vol + vol_comp
        if _is_ready_nb(seen, first_time, now, window_bars, window_ns) and total_volume != 0.0:
            out[i, col] = (pv + pv_comp) / total_volume
        else:
            out[i, col] = np.nan


# ---------------------------------------------------------------------------------------------------
# 2-D kernels: [T, A] in, [T, A] out, one column (asset) after the other. ``out`` may be passed
# preallocated (the Python layer does, so the big arrays come from NumPy's allocator). Columns are
# not processed in parallel: with the time axis first, every column pass reads the whole array, so
# the kernels are memory-bound and prange measured no faster on 2 cores while compiling 60 % slower;
# parallelism belongs one level up (many backtests at once).
# ---------------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def sma_nb(values, timestamps, window_bars, window_ns, out=None):
    """Simple moving average over each asset's existing bars.

    Equivalent to ``talib.SMA(x, n)`` on each column with its NaN rows removed (bars), and to
    ``pd.Series(x, index=times).rolling("30D").mean()`` (durations, after our warm-up).
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        if window_bars > 0:
            _rolling_sum_bars_col_nb(values, col, window_bars, True, out)
        else:
            _rolling_sum_col_nb(values, timestamps, col, window_bars, window_ns, True, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def rolling_sum_nb(values, timestamps, window_bars, window_ns, out=None):
    """Rolling sum over each asset's existing bars.

    Equivalent to ``talib.SUM(x, n)`` and ``pd.Series.rolling("30D").sum()``.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        if window_bars > 0:
            _rolling_sum_bars_col_nb(values, col, window_bars, False, out)
        else:
            _rolling_sum_col_nb(values, timestamps, col, window_bars, window_ns, False, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def ema_nb(values, timestamps, window_bars, window_ns, out=None):
    """Exponential moving average.

    Bars: equivalent to ``talib.EMA(x, n)`` (``alpha = 2 / (n + 1)``, seeded with the SMA of the first
    ``n`` bars). Duration: ``alpha = 1 - exp(-dt / tau)``, ``tau = D / 2``, seeded with the duration
    SMA at the first complete window (slow reference: the plain-Python loop in the tests).
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _ema_col_nb(values, timestamps, col, window_bars, window_ns, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def wma_nb(values, timestamps, window_bars, window_ns, out=None):
    """Linearly weighted moving average.

    Bars: equivalent to ``talib.WMA(x, n)`` (weights ``1..n``, newest heaviest). Duration: weight
    ``D - (t - t_i)`` for a bar of age ``t - t_i``, identical to the bar version on regular data.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _wma_col_nb(values, timestamps, col, window_bars, window_ns, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def rsi_nb(values, timestamps, window_bars, window_ns, out=None):
    """Wilder's relative strength index on a 0-100 scale.

    Bars: equivalent to ``talib.RSI(x, n)`` at TA-Lib's defaults (classic seeding, unstable period 0:
    average gain/loss seeded with the mean of the first ``n`` changes, first output at bar ``n``).
    Duration: Wilder smoothing with ``alpha = 1 - exp(-dt / D)``.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _rsi_col_nb(values, timestamps, col, window_bars, window_ns, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def macd_nb(values, timestamps, fast_bars, slow_bars, signal_bars, fast_ns, slow_ns, signal_ns, out=None):
    """MACD ``out[0]`` line (fast EMA - slow EMA), ``out[1]`` signal, ``out[2]`` histogram; ``[3, T, A]``.

    Either the three ``*_bars`` or the three ``*_ns`` are > 0. Bars: equivalent to
    ``talib.MACD(x, fast, slow, signal)``, including its seeding (the fast EMA is seeded at the slow
    EMA's first bar; all outputs start at bar ``slow + signal - 2``). Duration: the time-aware EMA of
    :func:`ema_nb` with the same structure.
    """
    n_rows, n_cols = values.shape
    if out is None:
        out = np.empty((3, n_rows, n_cols))
    _check_window_nb(fast_bars, fast_ns)
    _check_window_nb(slow_bars, slow_ns)
    _check_window_nb(signal_bars, signal_ns)
    if (fast_bars > 0) != (slow_bars > 0) or (signal_bars > 0) != (slow_bars > 0):
        raise ConfigError("fast, slow and signal must all be bar counts or all durations")
    if fast_bars + fast_ns >= slow_bars + slow_ns:
        raise ConfigError("fast must be shorter than slow")
    _check_shapes_nb(n_rows, n_cols, timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(n_cols):
        if slow_bars > 0:
            _macd_bars_col_nb(values, col, fast_bars, slow_bars, signal_bars, out)
        else:
            _macd_duration_col_nb(values, timestamps, col, fast_ns, slow_ns, signal_ns, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def bollinger_nb(values, timestamps, window_bars, window_ns, num_std, out=None):
    """Bollinger bands ``out[0..4]`` = upper, middle, lower, width, percent_b; ``[5, T, A]``.

    ``middle`` is the SMA, ``upper/lower = middle +/- num_std * population std``: equivalent to
    ``talib.BBANDS(x, n, num_std, num_std, matype=0)``. ``width = (upper - lower) / middle`` and
    ``percent_b = (x - lower) / (upper - lower)`` (NaN when the window is flat).
    """
    n_rows, n_cols = values.shape
    if out is None:
        out = np.empty((5, n_rows, n_cols))
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(n_cols):
        _rolling_moments_col_nb(values, timestamps, col, window_bars, window_ns, _MOMENTS_BOLLINGER, num_std, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def stddev_nb(values, timestamps, window_bars, window_ns, out=None):
    """Rolling population standard deviation (ddof=0).

    Equivalent to ``talib.STDDEV(x, n, 1)`` and ``pd.Series.rolling("30D").std(ddof=0)``.
    """
    n_rows, n_cols = values.shape
    if out is None:
        out = np.empty((n_rows, n_cols))
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    view = out.reshape((1, n_rows, n_cols))
    for col in range(n_cols):
        _rolling_moments_col_nb(values, timestamps, col, window_bars, window_ns, _MOMENTS_STDDEV, 0.0, view)
    return out


@numba.njit(cache=True, error_model="numpy")
def zscore_nb(values, timestamps, window_bars, window_ns, out=None):
    """Rolling z-score ``(x - mean) / std`` (population std; the window includes the current bar).

    Equivalent to ``(x - talib.SMA(x, n)) / talib.STDDEV(x, n)``; NaN where the window is flat.
    """
    n_rows, n_cols = values.shape
    if out is None:
        out = np.empty((n_rows, n_cols))
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    view = out.reshape((1, n_rows, n_cols))
    for col in range(n_cols):
        _rolling_moments_col_nb(values, timestamps, col, window_bars, window_ns, _MOMENTS_ZSCORE, 0.0, view)
    return out


@numba.njit(cache=True, error_model="numpy")
def atr_nb(high, low, close, timestamps, window_bars, window_ns, out=None):
    """Average true range with Wilder smoothing.

    A bar exists where high, low and close are all non-NaN. Bars: equivalent to
    ``talib.ATR(high, low, close, n)`` (first value = mean of the first ``n`` true ranges, at bar
    ``n``). Duration: Wilder smoothing with ``alpha = 1 - exp(-dt / D)``.
    """
    if out is None:
        out = np.empty(close.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(close.shape[0], close.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    if high.shape != close.shape or low.shape != close.shape:
        raise DataError("high, low and close must have the same shape")
    for col in range(close.shape[1]):
        _atr_col_nb(high, low, close, timestamps, col, window_bars, window_ns, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def rolling_max_nb(values, timestamps, window_bars, window_ns, out=None):
    """Rolling maximum (upper Donchian channel), monotonic deque, O(T).

    Equivalent to ``talib.MAX(x, n)`` and ``pd.Series.rolling("30D").max()``.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _rolling_extreme_col_nb(values, timestamps, col, window_bars, window_ns, 1.0, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def rolling_min_nb(values, timestamps, window_bars, window_ns, out=None):
    """Rolling minimum (lower Donchian channel), monotonic deque, O(T).

    Equivalent to ``talib.MIN(x, n)`` and ``pd.Series.rolling("30D").min()``.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _rolling_extreme_col_nb(values, timestamps, col, window_bars, window_ns, -1.0, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def lag_nb(values, timestamps, window_bars, window_ns, out=None):
    """Value ``n`` existing bars back, or as of ``t - D`` (the last bar stamped ``<= t - D``).

    Equivalent to ``pd.Series(x).dropna().shift(n)`` (bars) and to ``pd.merge_asof`` on ``t - D``
    with ``allow_exact_matches=True`` (durations).
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _lag_col_nb(values, timestamps, col, window_bars, window_ns, False, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def returns_nb(values, timestamps, window_bars, window_ns, out=None):
    """Simple return over the window, ``x / lagged - 1``, as a fraction (lag as in :func:`lag_nb`).

    Equivalent to ``talib.ROC(x, n) / 100`` and ``pd.Series(x).dropna().pct_change(n)``; NaN where the
    lagged value is 0 (TA-Lib's ROC gives 0 there).
    """
    if out is None:
        out = np.empty(values.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(values.shape[0], values.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    for col in range(values.shape[1]):
        _lag_col_nb(values, timestamps, col, window_bars, window_ns, True, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def vwap_nb(high, low, close, volume, timestamps, window_bars, window_ns, out=None):
    """Rolling volume-weighted average of the typical price ``(high + low + close) / 3``.

    ``sum(tp * volume) / sum(volume)`` over the window; a bar exists where all four inputs are
    non-NaN; NaN where the window's volume is 0. Equivalent to
    ``(tp * v).rolling(w).sum() / v.rolling(w).sum()`` in pandas.
    """
    if out is None:
        out = np.empty(close.shape)
    _check_window_nb(window_bars, window_ns)
    _check_shapes_nb(close.shape[0], close.shape[1], timestamps.shape[0], out.shape[-2], out.shape[-1])
    if high.shape != close.shape or low.shape != close.shape or volume.shape != close.shape:
        raise DataError("high, low, close and volume must have the same shape")
    for col in range(close.shape[1]):
        _vwap_col_nb(high, low, close, volume, timestamps, col, window_bars, window_ns, out)
    return out


@numba.njit(cache=True, error_model="numpy")
def _rank_row_nb(values, i, buf, cols, out, as_percentile):
    """Average ranks (1 = smallest) of the non-NaN values of row ``i``, written into ``out[i]``."""
    n_cols = values.shape[1]
    m = 0
    for a in range(n_cols):
        v = values[i, a]
        out[i, a] = np.nan
        if v == v:
            buf[m] = v
            cols[m] = a
            m += 1
    # Shell sort by value (Ciura gaps), carrying the column index: insertion sort for small
    # universes, sub-quadratic for large ones, and far cheaper to compile than np.argsort
    for gap in (701, 301, 132, 57, 23, 10, 4, 1):
        if gap >= m:
            continue
        for p in range(gap, m):
            v = buf[p]
            a = cols[p]
            j = p
            while j >= gap and buf[j - gap] > v:
                buf[j] = buf[j - gap]
                cols[j] = cols[j - gap]
                j -= gap
            buf[j] = v
            cols[j] = a
    j = 0
    while j < m:
        j2 = j
        while j2 + 1 < m and buf[j2 + 1] == buf[j]:
            j2 += 1
        rank = (j + j2) / 2.0 + 1.0
        if as_percentile:
            rank = (rank - 1.0) / (m - 1.0) if m > 1 else 0.5
        for q in range(j, j2 + 1):
            out[i, cols[q]] = rank
        j = j2 + 1


@numba.njit(cache=True, error_model="numpy")
def _cross_sectional_nb(values, as_percentile, out):
    buf = np.empty(values.shape[1])
    cols = np.empty(values.shape[1], dtype=np.int64)
    for i in range(values.shape[0]):
        _rank_row_nb(values, i, buf, cols, out, as_percentile)
    return out


@numba.njit(cache=True, error_model="numpy")
def cross_sectional_rank_nb(values, out=None):
    """Rank of each asset within its row (1 = smallest), NaN ignored, ties averaged.

    Equivalent to ``pd.DataFrame(values).rank(axis=1, method="average")``.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_shapes_nb(values.shape[0], values.shape[1], values.shape[0], out.shape[0], out.shape[1])
    return _cross_sectional_nb(values, False, out)


@numba.njit(cache=True, error_model="numpy")
def cross_sectional_percentile_nb(values, out=None):
    """Percentile of each asset within its row in [0, 1]: ``(rank - 1) / (count - 1)``.

    0 = smallest, 1 = largest, ties averaged, 0.5 when the row has a single value. Equivalent to
    ``(df.rank(axis=1) - 1) / (df.count(axis=1) - 1)``.
    """
    if out is None:
        out = np.empty(values.shape)
    _check_shapes_nb(values.shape[0], values.shape[1], values.shape[0], out.shape[0], out.shape[1])
    return _cross_sectional_nb(values, True, out)


# ---------------------------------------------------------------------------------------------------
# Python API: validation and dispatch
# ---------------------------------------------------------------------------------------------------


class MACDResult(NamedTuple):
    """Outputs of :func:`macd`, each shaped like the input."""

    line: np.ndarray
    signal: np.ndarray
    histogram: np.ndarray


class BollingerResult(NamedTuple):
    """Outputs of :func:`bollinger`, each shaped like the input."""

    upper: np.ndarray
    middle: np.ndarray
    lower: np.ndarray
    width: np.ndarray
    percent_b: np.ndarray


def _values(values: object, name: str) -> tuple[np.ndarray, bool]:
    """float64 C-contiguous read-only ``[T, A]`` view of ``values`` (:func:`~backforge._jit.frozen`: one compiled
    kernel for memory-mapped and in-memory data) and whether the input was 1-D."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array, could not convert it: {exc}", field=name) from None
    if array.ndim == 1:
        return frozen(array.reshape(-1, 1)), True
    if array.ndim != 2:
        raise DataError(
            f"{name} must be 1-D [T] or 2-D [T, A] (time on axis 0), got {array.ndim}-D shape {array.shape}",
            field=name,
        )
    return frozen(array), False


def _cross_section(values: object) -> np.ndarray:
    array, was_1d = _values(values, "values")
    if was_1d:
        raise DataError(
            "cross-sectional functions need 2-D values [T, A]; for one cross-section pass values[None, :]",
            field="values",
        )
    return array


def _timestamps(timestamps: object, n_rows: int, *, needed: bool) -> np.ndarray:
    """int64 ns timestamps of length ``n_rows``, strictly increasing; zeros when not needed."""
    if timestamps is None:
        if needed:
            raise ConfigError(
                "a duration window needs timestamps; pass the int64 ns timestamps [T] or use a bar count",
                field="timestamps",
            )
        return frozen(np.zeros(n_rows, dtype=np.int64), np.int64)
    ts = np.asarray(timestamps)
    if ts.dtype.kind == "M":
        ts = ts.astype("datetime64[ns]").view(np.int64)
    elif ts.dtype.kind not in "iu":
        raise DataError(
            f"timestamps must be int64 nanoseconds or datetime64, got dtype {ts.dtype}; convert with "
            "backforge._time.to_ns",
            field="timestamps",
        )
    ts = frozen(ts, np.int64)
    if ts.ndim != 1 or ts.shape[0] != n_rows:
        raise DataError(
            f"timestamps must be 1-D with one entry per row of the values ({n_rows}), got shape {ts.shape}",
            field="timestamps",
        )
    if n_rows > 1:
        row = _first_not_increasing_nb(ts)
        if row > 0:
            raise DataError(
                f"timestamps must be strictly increasing: row {row} ({int(ts[row])}) is not after row "
                f"{row - 1} ({int(ts[row - 1])}); sort and de-duplicate the bars first",
                row=row,
                field="timestamps",
            )
    return ts


def _same_shape(arrays: dict[str, np.ndarray]) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise DataError(f"inputs must have the same shape, got {listing}")


def _shape_out(array: np.ndarray, was_1d: bool) -> np.ndarray:
    return array[:, 0] if was_1d else array


def _run_window_kernel(kernel, values: object, timestamps: object, window: Window, name: str = "values") -> np.ndarray:
    bars, ns = _window(window, "window")
    array, was_1d = _values(values, name)
    ts = _timestamps(timestamps, array.shape[0], needed=ns > 0)
    return _shape_out(kernel(array, ts, bars, ns, np.empty(array.shape)), was_1d)


def sma(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Simple moving average over each asset's existing bars.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``, NaN where an asset has no bar.
    timestamps
        int64 ns (or datetime64) ``[T]``, strictly increasing; may be ``None`` for a bar window.
    window
        Bars (``20``) or a duration (``"30d"``): the bars stamped in ``(t - D, t]``.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``; NaN during warm-up (the first ``n - 1`` bars, like ``talib.SMA``, or
        while ``t - D`` precedes the asset's first bar) and where the asset has no bar.

    Examples
    --------
    >>> import numpy as np
    >>> sma(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), None, 3)
    array([nan, nan,  2.,  3.,  4.])
    >>> ts = np.array(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-05"], dtype="datetime64[ns]")
    >>> sma(np.array([1.0, 2.0, 3.0, 4.0]), ts, "2d")
    array([nan, nan, 2.5, 4. ])
    """
    return _run_window_kernel(sma_nb, values, timestamps, window)


def rolling_sum(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Rolling sum over each asset's existing bars (``talib.SUM`` for bars, ``rolling("30D").sum()``).

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``, NaN where an asset has no bar.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``, with the same warm-up as :func:`sma`.

    Examples
    --------
    >>> import numpy as np
    >>> rolling_sum(np.array([1.0, 2.0, np.nan, 3.0]), None, 2)
    array([nan,  3., nan,  5.])
    """
    return _run_window_kernel(rolling_sum_nb, values, timestamps, window)


def ema(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Exponential moving average.

    A bar window ``n`` matches ``talib.EMA`` exactly: ``alpha = 2 / (n + 1)``, seeded with the SMA of
    the first ``n`` bars. A duration ``D`` decays with elapsed time: ``alpha = 1 - exp(-dt / (D / 2))``
    between consecutive bars ``dt`` apart, seeded with the duration SMA at the first complete window.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``, NaN where an asset has no bar.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> ema(np.array([1.0, 2.0, 3.0, 4.0]), None, 3)
    array([nan, nan,  2.,  3.])
    >>> ts = np.arange(4, dtype=np.int64) * 60_000_000_000  # one bar a minute
    >>> ema(np.array([1.0, 1.0, 1.0, 3.0]), ts, "2min").round(4)  # alpha = 1 - exp(-1)
    array([   nan,    nan, 1.    , 2.2642])
    """
    return _run_window_kernel(ema_nb, values, timestamps, window)


def wma(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Linearly weighted moving average (newest bar heaviest).

    Bars: weights ``1, 2, ..., n`` like ``talib.WMA``. Duration: a bar of age ``a = t - t_i`` weighs
    ``D - a``, which equals the bar weights on regular data.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> wma(np.array([1.0, 2.0, 3.0, 4.0]), None, 3).round(4)
    array([   nan,    nan, 2.3333, 3.3333])
    """
    return _run_window_kernel(wma_nb, values, timestamps, window)


def rsi(values: np.ndarray, timestamps: np.ndarray | None, window: Window = 14) -> np.ndarray:
    """Wilder's relative strength index, on the conventional 0-100 scale.

    A bar window matches ``talib.RSI`` exactly (first value at bar ``n``). A duration uses Wilder
    smoothing with ``alpha = 1 - exp(-dt / D)``. When average gain and loss are both 0 (a flat window)
    the RSI is 0, as in TA-Lib.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        At least 2 bars, or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``, in [0, 100].

    Examples
    --------
    >>> import numpy as np
    >>> rsi(np.array([1.0, 2.0, 1.5, 2.5, 3.0]), None, 2).round(2)
    array([  nan,   nan, 66.67, 85.71, 90.91])
    """
    bars, ns = _window(window, "window", min_bars=2)
    array, was_1d = _values(values, "values")
    ts = _timestamps(timestamps, array.shape[0], needed=ns > 0)
    return _shape_out(rsi_nb(array, ts, bars, ns, np.empty(array.shape)), was_1d)


def macd(
    values: np.ndarray,
    timestamps: np.ndarray | None,
    fast: Window = 12,
    slow: Window = 26,
    signal: Window = 9,
) -> MACDResult:
    """Moving average convergence/divergence: ``(line, signal, histogram)``.

    Bar windows match ``talib.MACD`` exactly, including its seeding: the fast EMA is seeded with the
    SMA of the ``fast`` bars ending at bar ``slow - 1`` (so it differs from ``talib.EMA(x, fast)`` in
    the early bars) and all three outputs start at bar ``slow + signal - 2``. Durations use the
    time-aware EMA of :func:`ema` with the same structure.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for bar windows.
    fast, slow, signal
        All bar counts or all durations, with ``fast < slow``.

    Returns
    -------
    MACDResult
        ``line = EMA_fast - EMA_slow``, ``signal = EMA_signal(line)``, ``histogram = line - signal``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.linspace(1.0, 2.0, 40)
    >>> result = macd(x, None)
    >>> int(np.isnan(result.line).sum()), bool(result.line[-1] > 0)  # warm-up 26 + 9 - 2 bars
    (33, True)
    """
    (fast_bars, fast_ns), (slow_bars, slow_ns), (signal_bars, signal_ns) = lower_macd_windows(fast, slow, signal)
    array, was_1d = _values(values, "values")
    ts = _timestamps(timestamps, array.shape[0], needed=slow_ns > 0)
    out = np.empty((3,) + array.shape)
    macd_nb(array, ts, fast_bars, slow_bars, signal_bars, fast_ns, slow_ns, signal_ns, out)
    return MACDResult(*(_shape_out(a, was_1d) for a in out))


def bollinger(
    values: np.ndarray,
    timestamps: np.ndarray | None,
    window: Window = 20,
    *,
    num_std: float = 2.0,
) -> BollingerResult:
    """Bollinger bands around the SMA with the population standard deviation (like ``talib.BBANDS``).

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.
    num_std
        Band half-width in standard deviations, > 0.

    Returns
    -------
    BollingerResult
        ``upper``, ``middle``, ``lower``, ``width = (upper - lower) / middle`` (a fraction) and
        ``percent_b = (x - lower) / (upper - lower)`` (0 at the lower band, 1 at the upper band; NaN
        when the window is flat).

    Examples
    --------
    >>> import numpy as np
    >>> bands = bollinger(np.array([1.0, 2.0, 3.0]), None, 3, num_std=1.0)
    >>> [round(float(a[-1]), 4) for a in bands]
    [2.8165, 2.0, 1.1835, 0.8165, 1.1124]
    """
    bars, ns = _window(window, "window")
    if isinstance(num_std, bool) or not isinstance(num_std, (int, float, np.floating, np.integer)) or not (
        math.isfinite(float(num_std)) and float(num_std) > 0.0
    ):
        raise ConfigError(f"num_std must be a finite number > 0, got {num_std!r}; e.g. num_std=2.0", field="num_std")
    array, was_1d = _values(values, "values")
    ts = _timestamps(timestamps, array.shape[0], needed=ns > 0)
    out = np.empty((5,) + array.shape)
    bollinger_nb(array, ts, bars, ns, float(num_std), out)
    return BollingerResult(*(_shape_out(a, was_1d) for a in out))


def atr(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    timestamps: np.ndarray | None,
    window: Window = 14,
) -> np.ndarray:
    """Average true range with Wilder smoothing (``talib.ATR`` for bar windows).

    The true range of a bar needs the asset's previous close, so the first value appears at bar ``n``
    (bars) or at the first complete duration window. Durations use ``alpha = 1 - exp(-dt / D)``.

    Parameters
    ----------
    high, low, close
        float64 ``[T]`` or ``[T, A]`` of the same shape; a bar exists where all three are non-NaN.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``close``, in price units.

    Examples
    --------
    >>> import numpy as np
    >>> close = np.array([10.0, 11.0, 10.5, 12.0])
    >>> atr(close + 0.5, close - 0.5, close, None, 2)
    array([  nan,   nan, 1.25 , 1.625])
    """
    bars, ns = _window(window, "window")
    h, was_1d = _values(high, "high")
    lw, _ = _values(low, "low")
    c, _ = _values(close, "close")
    _same_shape({"high": h, "low": lw, "close": c})
    ts = _timestamps(timestamps, c.shape[0], needed=ns > 0)
    return _shape_out(atr_nb(h, lw, c, ts, bars, ns, np.empty(c.shape)), was_1d)


def stddev(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Rolling population standard deviation (ddof=0, like ``talib.STDDEV``).

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``; exactly 0 for a flat window.

    Examples
    --------
    >>> import numpy as np
    >>> stddev(np.array([1.0, 3.0, 5.0, 5.0]), None, 2)
    array([nan,  1.,  1.,  0.])
    """
    return _run_window_kernel(stddev_nb, values, timestamps, window)


def zscore(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Rolling z-score ``(x - sma) / stddev`` over a window that includes the current bar.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``; NaN where the window is flat (std 0).

    Examples
    --------
    >>> import numpy as np
    >>> zscore(np.array([1.0, 2.0, 3.0, 3.0, 3.0]), None, 3).round(4)
    array([   nan,    nan, 1.2247, 0.7071,    nan])
    """
    return _run_window_kernel(zscore_nb, values, timestamps, window)


def rolling_max(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Rolling maximum over the window (upper Donchian channel, ``talib.MAX``).

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> rolling_max(np.array([1.0, 3.0, 2.0, 0.0]), None, 2)
    array([nan,  3.,  3.,  2.])
    """
    return _run_window_kernel(rolling_max_nb, values, timestamps, window)


def rolling_min(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Rolling minimum over the window (lower Donchian channel, ``talib.MIN``).

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> rolling_min(np.array([1.0, 3.0, 2.0, 0.0]), None, 2)
    array([nan,  1.,  2.,  0.])
    """
    return _run_window_kernel(rolling_min_nb, values, timestamps, window)


def lag(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """The asset's value ``n`` existing bars back, or as of ``t - D`` for a duration.

    "As of" means the last bar of the asset stamped at or before ``t - D``; NaN when the asset has no
    bar that old.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> lag(np.array([1.0, np.nan, 2.0, 3.0]), None, 1)  # NaN rows are not bars
    array([nan, nan,  1.,  2.])
    >>> ts = np.array(["2024-01-01", "2024-01-02", "2024-01-05"], dtype="datetime64[ns]")
    >>> lag(np.array([1.0, 2.0, 3.0]), ts, "2d")
    array([nan, nan,  2.])
    """
    return _run_window_kernel(lag_nb, values, timestamps, window)


def returns(values: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Simple return over the window as a fraction: ``x[t] / lag(x, window) - 1``.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]`` (prices).
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration (the base is the last bar at or before ``t - D``).

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``; NaN where the base price is missing or 0.

    Examples
    --------
    >>> import numpy as np
    >>> returns(np.array([100.0, 110.0, 121.0]), None, 1)
    array([nan, 0.1, 0.1])
    """
    return _run_window_kernel(returns_nb, values, timestamps, window)


def rate_of_change(values: np.ndarray, timestamps: np.ndarray | None, window: Window = 10) -> np.ndarray:
    """Rate of change as a fraction: ``talib.ROC(x, n) / 100``, i.e. :func:`returns` with TA-Lib's name.

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars (TA-Lib's default is 10) or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``; 0.05 means +5 %. NaN where the base is 0 (TA-Lib returns 0 there).

    Examples
    --------
    >>> import numpy as np
    >>> rate_of_change(np.array([100.0, 102.0, 105.0]), None, 2).round(4)
    array([ nan,  nan, 0.05])
    """
    return _run_window_kernel(returns_nb, values, timestamps, window)


def pct_change(values: np.ndarray, timestamps: np.ndarray | None = None, window: Window = 1) -> np.ndarray:
    """Percent change from the previous existing bar, as a fraction (pandas ``pct_change`` name).

    Parameters
    ----------
    values
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars back (default 1) or a duration; same as :func:`returns`.

    Returns
    -------
    numpy.ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np
    >>> pct_change(np.array([[100.0, 50.0], [np.nan, 55.0], [90.0, 44.0]]))
    array([[ nan,  nan],
           [ nan,  0.1],
           [-0.1, -0.2]])
    """
    return _run_window_kernel(returns_nb, values, timestamps, window)


def vwap(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    timestamps: np.ndarray | None,
    window: Window,
) -> np.ndarray:
    """Rolling VWAP of the typical price ``(high + low + close) / 3``: ``sum(tp * v) / sum(v)``.

    Parameters
    ----------
    high, low, close, volume
        float64 ``[T]`` or ``[T, A]`` of the same shape; a bar exists where all four are non-NaN.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``close``; NaN where the window's total volume is 0.

    Examples
    --------
    >>> import numpy as np
    >>> close = np.array([10.0, 12.0, 11.0])
    >>> vwap(close, close, close, np.array([1.0, 3.0, 0.0]), None, 2)
    array([ nan, 11.5, 12. ])
    """
    bars, ns = _window(window, "window")
    h, was_1d = _values(high, "high")
    lw, _ = _values(low, "low")
    c, _ = _values(close, "close")
    v, _ = _values(volume, "volume")
    _same_shape({"high": h, "low": lw, "close": c, "volume": v})
    ts = _timestamps(timestamps, c.shape[0], needed=ns > 0)
    return _shape_out(vwap_nb(h, lw, c, v, ts, bars, ns, np.empty(c.shape)), was_1d)


def volume_average(volume: np.ndarray, timestamps: np.ndarray | None, window: Window) -> np.ndarray:
    """Average volume over the window: :func:`sma` of the volume.

    Parameters
    ----------
    volume
        float64 ``[T]`` or ``[T, A]``.
    timestamps
        int64 ns ``[T]``; may be ``None`` for a bar window.
    window
        Bars or a duration.

    Returns
    -------
    numpy.ndarray
        Same shape as ``volume``.

    Examples
    --------
    >>> import numpy as np
    >>> volume_average(np.array([100.0, 300.0, 200.0]), None, 2)
    array([ nan, 200., 250.])
    """
    return _run_window_kernel(sma_nb, volume, timestamps, window, name="volume")


def arithmetic(kind: str, values: list[np.ndarray]) -> np.ndarray:
    """The strategy language's n-ary arithmetic node ``kind`` (``add``, ``sub``, ``mul``, ``div``, ``min``,
    ``max``) folded left over ``values`` (arrays of one shape); a division by zero is NaN.
    Batch compilation and the streamed session evaluate expressions with this one function.

    Examples
    --------
    >>> import numpy as np
    >>> arithmetic("div", [np.array([1.0, 2.0]), np.array([0.0, 4.0])])
    array([nan, 0.5])
    >>> arithmetic("sub", [np.array([10.0]), np.array([1.0]), np.array([2.0])])
    array([7.])
    """
    out = values[0].copy()
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for v in values[1:]:
            if kind == "add":
                out = out + v
            elif kind == "sub":
                out = out - v
            elif kind == "mul":
                out = out * v
            elif kind == "div":
                out = np.where(v != 0, out / v, np.nan)
            elif kind == "min":
                out = np.minimum(out, v)
            else:
                out = np.maximum(out, v)
    return out


def cross_sectional_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each asset among the assets with a value in the same row (1 = smallest, ties averaged).

    Parameters
    ----------
    values
        float64 ``[T, A]``; NaN entries are ignored and stay NaN.

    Returns
    -------
    numpy.ndarray
        ``[T, A]`` ranks, like ``pandas.DataFrame.rank(axis=1, method="average")``.

    Examples
    --------
    >>> import numpy as np
    >>> cross_sectional_rank(np.array([[3.0, 1.0, np.nan, 3.0]]))
    array([[2.5, 1. , nan, 2.5]])
    """
    array = _cross_section(values)
    return cross_sectional_rank_nb(array, np.empty(array.shape))


def cross_sectional_percentile(values: np.ndarray) -> np.ndarray:
    """Percentile of each asset within its row in [0, 1]: ``(rank - 1) / (count - 1)``.

    0 is the smallest, 1 the largest, ties share their average; a row with a single value gives 0.5.

    Parameters
    ----------
    values
        float64 ``[T, A]``; NaN entries are ignored and stay NaN.

    Returns
    -------
    numpy.ndarray
        ``[T, A]`` percentiles.

    Examples
    --------
    >>> import numpy as np
    >>> cross_sectional_percentile(np.array([[3.0, 1.0, np.nan, 2.0], [np.nan, 5.0, np.nan, np.nan]]))
    array([[1. , 0. , nan, 0.5],
           [nan, 0.5, nan, nan]])
    """
    array = _cross_section(values)
    return cross_sectional_percentile_nb(array, np.empty(array.shape))

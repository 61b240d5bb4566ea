"""Streaming indicators: the data-only part of a compiled strategy advanced a block of bars at a time, with
constant work and bounded memory per bar, and values bit-identical to the batch kernels.

Every indicator kernel of :mod:`backforge.strategy.indicators` streams forward over a column: its row ``t``
depends only on rows ``<= t``, through a few scalars (sums, counts, the smoothed value, the front of the
window) and the bars still inside the window. A **streaming kernel** here (``*_stream_nb``) keeps exactly
those scalars in a per-asset state (``fs`` float64 ``[A, F]``, ``ist`` int64 ``[A, I]``) and the window's bars
in a per-asset ring buffer (``rv`` float64 ``[A, K, cap]``, ``rt`` int64 ``[A, cap]``, indexed by the bar's
ordinal among the asset's existing bars), and performs the batch kernel's arithmetic in the same order —
the same helper functions (``_neumaier_add_nb``, ``_true_range_nb``), the same recomputation points — so the
value is the batch value bit for bit. The tests (``tests/strategy/test_streaming.py``) check every kind
against the batch kernel on data with NaN holes and irregular timestamps, bar by bar and in blocks.

A kernel takes a block of rows ``x[m, A]`` stamped ``ts[m]`` from row ``r`` on and returns the row it stopped
at: ``m`` when done, or earlier when a ring buffer is full (a duration window holding more bars than the
ring has room for); :class:`_Ring` then doubles the ring and calls again. A ring holds the window's bars
only (plus, for duration smoothers, the bars before their seeding), so memory is bounded by the window, not
by the session's length.

:class:`StreamingEvaluator` walks the data-only nodes of a compiled portfolio (the keys of
:attr:`~backforge.strategy.compiler.CompiledPortfolio.nodes`) with one state per node, in the same shape as
the compiler's batch evaluation (``_Compiler.value`` / ``condition``): prices, constants, fundamentals (as of
each bar's time), every windowed indicator, arithmetic, cross-sectional ranks and the conditions (compare,
crosses, all/any/not/at_least, held_for).

Examples
--------
>>> import numpy as np
>>> from backforge.strategy import indicators as ind
>>> x = np.array([[1.0], [2.0], [np.nan], [4.0], [3.0]])
>>> ts = np.arange(5, dtype=np.int64)
>>> s = WindowStream("sma", 2, 1)
>>> rows = np.concatenate([s.push(x[i:i + 1], ts[i:i + 1]) for i in range(5)])  # one bar at a time
>>> rows.ravel().tolist()[3:], np.array_equal(rows, ind.sma(x, ts, 2), equal_nan=True)
([3.0, 3.5], True)
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from backforge._time import parse_duration
from backforge.strategy import indicators as ind
from backforge.strategy import schema as sc
from backforge.strategy.indicators import _neumaier_add_nb, _true_range_nb

__all__ = ["STREAMING_KINDS", "StreamingEvaluator", "WindowStream"]

_RECOMPUTE_MIN = ind._RECOMPUTE_MIN
_nb = numba.njit(cache=True, error_model="numpy")

# int state slots common to every ringed kernel
N = 0  # bars appended (the next bar's ordinal)
LOW = 1  # oldest ordinal still needed in the ring


@_nb
def _room_nb(ist, col, cap):
    """Whether the ring of ``col`` has room for one more bar."""
    return ist[col, N] - ist[col, LOW] + 1 < cap


@_nb
def _push_nb(ist, rv, rt, col, k, value, now):
    """Store ``value`` (ring ``k``) and ``now`` at the next ordinal (the caller increments ``ist[col, N]``)."""
    slot = ist[col, N] & (rt.shape[1] - 1)
    rv[col, k, slot] = value
    rt[col, slot] = now


# ------------------------------------------------------------------------------------ sum / mean (SMA)
# ist: N, LOW(front), COUNT, FIRST_TIME, ANCHOR, SINCE   fs: TOTAL, COMP


@_nb
def sum_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, as_mean, out):
    """Streaming :func:`~backforge.strategy.indicators._rolling_sum_col_nb` (SMA, rolling sum, volume average)."""
    m, n_cols = x.shape
    mask = rt.shape[1] - 1
    for i in range(r, m):
        for col in range(n_cols):
            if not _room_nb(ist, col, rt.shape[1]):
                return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            if v != v:
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            if o == 0:
                ist[col, 3] = now
                ist[col, LOW] = 0
                ist[col, 4] = -1
            _push_nb(ist, rv, rt, col, 0, v, now)
            ist[col, N] = o + 1
            total, comp = _neumaier_add_nb(fs[col, 0], fs[col, 1], v)
            count = ist[col, 2] + 1
            front = ist[col, LOW]
            while (count > wb) if wb > 0 else (rt[col, front & mask] <= now - wns):
                total, comp = _neumaier_add_nb(total, comp, -rv[col, 0, front & mask])
                count -= 1
                front += 1
            since = ist[col, 5] + 1
            if since >= _RECOMPUTE_MIN and front > ist[col, 4]:
                total = 0.0
                comp = 0.0
                for j in range(front, o + 1):
                    total, comp = _neumaier_add_nb(total, comp, rv[col, 0, j & mask])
                ist[col, 4] = o
                since = 0
            fs[col, 0] = total
            fs[col, 1] = comp
            ist[col, 2] = count
            ist[col, LOW] = front
            ist[col, 5] = since
            ready = (o + 1 >= wb) if wb > 0 else (now - wns >= ist[col, 3])
            if ready:
                out[i, col] = (total + comp) / count if as_mean else total + comp
            else:
                out[i, col] = np.nan
    return m


# ------------------------------------------------------------------------------------ moments
# ist: N, LOW(front), COUNT, FIRST_TIME, ANCHOR, RUN   fs: SHIFT, S1, C1, S2, C2, LAST


@_nb
def moments_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, mode, num_std, out):
    """Streaming :func:`~backforge.strategy.indicators._rolling_moments_col_nb` (stddev, z-score, Bollinger;
    ``out`` is ``[k, m, A]``)."""
    m, n_cols = x.shape
    mask = rt.shape[1] - 1
    n_out = 5 if mode == 2 else 1
    for i in range(r, m):
        for col in range(n_cols):
            if not _room_nb(ist, col, rt.shape[1]):
                return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            if v != v:
                for q in range(n_out):
                    out[q, i, col] = np.nan
                continue
            o = ist[col, N]
            if o == 0:
                ist[col, 3] = now
                ist[col, LOW] = 0
                ist[col, 4] = -1
                fs[col, 5] = np.nan
            _push_nb(ist, rv, rt, col, 0, v, now)
            ist[col, N] = o + 1
            run = ist[col, 5] + 1 if v == fs[col, 5] else 1
            fs[col, 5] = v
            count = ist[col, 2] + 1
            shift = fs[col, 0]
            d = v - shift
            s1, c1 = _neumaier_add_nb(fs[col, 1], fs[col, 2], d)
            s2, c2 = _neumaier_add_nb(fs[col, 3], fs[col, 4], d * d)
            front = ist[col, LOW]
            while (count > wb) if wb > 0 else (rt[col, front & mask] <= now - wns):
                d = rv[col, 0, front & mask] - shift
                s1, c1 = _neumaier_add_nb(s1, c1, -d)
                s2, c2 = _neumaier_add_nb(s2, c2, -(d * d))
                count -= 1
                front += 1
            if front > ist[col, 4]:
                total = 0.0
                comp = 0.0
                for j in range(front, o + 1):
                    total, comp = _neumaier_add_nb(total, comp, rv[col, 0, j & mask])
                shift = (total + comp) / (o + 1 - front)
                s1 = 0.0
                c1 = 0.0
                s2 = 0.0
                c2 = 0.0
                for j in range(front, o + 1):
                    d = rv[col, 0, j & mask] - shift
                    s1, c1 = _neumaier_add_nb(s1, c1, d)
                    s2, c2 = _neumaier_add_nb(s2, c2, d * d)
                ist[col, 4] = o
            fs[col, 0] = shift
            fs[col, 1] = s1
            fs[col, 2] = c1
            fs[col, 3] = s2
            fs[col, 4] = c2
            ist[col, 2] = count
            ist[col, LOW] = front
            ist[col, 5] = run
            ready = (o + 1 >= wb) if wb > 0 else (now - wns >= ist[col, 3])
            if not ready:
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
            if mode == 0:
                out[0, i, col] = std
            elif mode == 1:
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
    return m


# ------------------------------------------------------------------------------------ extremes
# ist: N, LOW(front), COUNT, FIRST_TIME, HEAD, SIZE   rings: 0 values, 1 deque of ordinals (as float)


@_nb
def extreme_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, sign, out):
    """Streaming :func:`~backforge.strategy.indicators._rolling_extreme_col_nb` (monotonic deque)."""
    m, n_cols = x.shape
    mask = rt.shape[1] - 1
    for i in range(r, m):
        for col in range(n_cols):
            if not _room_nb(ist, col, rt.shape[1]):
                return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            if v != v:
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            if o == 0:
                ist[col, 3] = now
                ist[col, LOW] = 0
            _push_nb(ist, rv, rt, col, 0, v, now)
            ist[col, N] = o + 1
            count = ist[col, 2] + 1
            head = ist[col, 4]
            size = ist[col, 5]
            while size > 0 and sign * (v - rv[col, 0, np.int64(rv[col, 1, (head + size - 1) & mask]) & mask]) >= 0.0:
                size -= 1
            rv[col, 1, (head + size) & mask] = float(o)
            size += 1
            front = ist[col, LOW]
            while (count > wb) if wb > 0 else (rt[col, front & mask] <= now - wns):
                count -= 1
                front += 1
            while np.int64(rv[col, 1, head & mask]) < front:
                head += 1
                size -= 1
            ist[col, 2] = count
            ist[col, LOW] = front
            ist[col, 4] = head
            ist[col, 5] = size
            ready = (o + 1 >= wb) if wb > 0 else (now - wns >= ist[col, 3])
            out[i, col] = rv[col, 0, np.int64(rv[col, 1, head & mask]) & mask] if ready else np.nan
    return m


# ------------------------------------------------------------------------------------ WMA
# ist: N, LOW(front), COUNT, FIRST_TIME, ANCHOR, SINCE, REF   fs: S0, S1, W1


@_nb
def wma_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, out):
    """Streaming :func:`~backforge.strategy.indicators._wma_col_nb`."""
    m, n_cols = x.shape
    mask = rt.shape[1] - 1
    by_bars = wb > 0
    horizon = float(wb) if by_bars else float(wns)
    for i in range(r, m):
        for col in range(n_cols):
            if not _room_nb(ist, col, rt.shape[1]):
                return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            if v != v:
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            if o == 0:
                ist[col, 3] = now
                ist[col, LOW] = 0
                ist[col, 4] = -1
            _push_nb(ist, rv, rt, col, 0, v, now)
            ist[col, N] = o + 1
            ref = ist[col, 6]
            position = o if by_bars else now
            count = ist[col, 2] + 1
            u = float(position - ref)
            s0 = fs[col, 0] + v
            s1 = fs[col, 1] + u * v
            w1 = fs[col, 2] + u
            front = ist[col, LOW]
            while (count > wb) if by_bars else (rt[col, front & mask] <= now - wns):
                x_front = rv[col, 0, front & mask]
                u = float((front if by_bars else rt[col, front & mask]) - ref)
                s0 -= x_front
                s1 -= u * x_front
                w1 -= u
                count -= 1
                front += 1
            since = ist[col, 5] + 1
            if (since >= _RECOMPUTE_MIN and front > ist[col, 4]) or float(position - ref) > horizon:
                ref = position
                s0 = 0.0
                s1 = 0.0
                w1 = 0.0
                for j in range(front, o + 1):
                    x_j = rv[col, 0, j & mask]
                    u = float((j if by_bars else rt[col, j & mask]) - ref)
                    s0 += x_j
                    s1 += u * x_j
                    w1 += u
                ist[col, 4] = o
                since = 0
            fs[col, 0] = s0
            fs[col, 1] = s1
            fs[col, 2] = w1
            ist[col, 2] = count
            ist[col, LOW] = front
            ist[col, 5] = since
            ist[col, 6] = ref
            ready = (o + 1 >= wb) if by_bars else (now - wns >= ist[col, 3])
            if ready:
                c = horizon - float(position - ref)
                out[i, col] = (c * s0 + s1) / (c * count + w1)
            else:
                out[i, col] = np.nan
    return m


# ------------------------------------------------------------------------------------ EMA
# ist: N, LOW, FIRST_TIME, LAST_TIME, SEEDED   fs: TOTAL, PREV


@_nb
def _mean_back_nb(rv, rt, col, k, newest, oldest, limit):
    """:func:`~backforge.strategy.indicators._window_mean_back_nb` on ring ``k``: the mean of the bars from
    ordinal ``newest`` back (not below ``oldest``) stamped after ``limit``, summed newest first."""
    mask = rt.shape[1] - 1
    total = 0.0
    count = 0
    j = newest
    while j >= oldest and rt[col, j & mask] > limit:
        total += rv[col, k, j & mask]
        count += 1
        j -= 1
    return total / count


@_nb
def ema_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, out):
    """Streaming :func:`~backforge.strategy.indicators._ema_col_nb`."""
    m, n_cols = x.shape
    k = 2.0 / (wb + 1.0)
    tau = wns / 2.0
    for i in range(r, m):
        if wb == 0:
            for col in range(n_cols):
                if not _room_nb(ist, col, rt.shape[1]):
                    return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            if v != v:
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            ist[col, N] = o + 1
            seen = o + 1
            prev = fs[col, 1] if o > 0 else np.nan
            if wb > 0:
                ist[col, LOW] = o + 1
                if seen < wb:
                    fs[col, 0] += v
                elif seen == wb:
                    fs[col, 0] += v
                    prev = fs[col, 0] / wb
                else:
                    prev = ((v - prev) * k) + prev
            else:
                if seen == 1:
                    ist[col, 2] = now
                if ist[col, 4] == 0:
                    slot = o & (rt.shape[1] - 1)
                    rv[col, 0, slot] = v
                    rt[col, slot] = now
                if ist[col, 4] != 0:
                    prev = prev + -math.expm1(-float(now - ist[col, 3]) / tau) * (v - prev)
                elif now - wns >= ist[col, 2]:
                    prev = _mean_back_nb(rv, rt, col, 0, o, 0, now - wns)
                    ist[col, 4] = 1
                    ist[col, LOW] = o + 1
                ist[col, 3] = now
            fs[col, 1] = prev
            out[i, col] = prev
    return m


# ------------------------------------------------------------------------------------ RSI
# ist: N, LOW, FIRST_TIME, LAST_TIME, SEEDED   fs: GAIN, LOSS, PREV_VALUE   ring 0: changes, rt: previous bar's time


@_nb
def rsi_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, out):
    """Streaming :func:`~backforge.strategy.indicators._rsi_col_nb`."""
    m, n_cols = x.shape
    period = wb
    mask = rt.shape[1] - 1
    for i in range(r, m):
        if wb == 0:
            for col in range(n_cols):
                if not _room_nb(ist, col, rt.shape[1]):
                    return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            if v != v:
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            ist[col, N] = o + 1
            seen = o + 1
            if seen == 1:
                fs[col, 2] = v
                ist[col, 2] = now
                ist[col, 3] = now
                ist[col, LOW] = 1
                out[i, col] = np.nan
                continue
            d = v - fs[col, 2]
            fs[col, 2] = v
            gain = fs[col, 0]
            loss = fs[col, 1]
            seeded = ist[col, 4] != 0
            if wb > 0:
                ist[col, LOW] = o + 1
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
                if not seeded:
                    slot = o & mask
                    rv[col, 0, slot] = d
                    rt[col, slot] = ist[col, 3]  # the previous bar's time
                if seeded:
                    alpha = -math.expm1(-float(now - ist[col, 3]) / float(wns))
                    gain += alpha * ((d if d > 0.0 else 0.0) - gain)
                    loss += alpha * ((-d if d < 0.0 else 0.0) - loss)
                elif now - wns >= ist[col, 2]:
                    limit = now - wns
                    gain = 0.0
                    loss = 0.0
                    count = 0
                    j = o
                    while True:
                        dj = rv[col, 0, j & mask]
                        if dj < 0.0:
                            loss -= dj
                        else:
                            gain += dj
                        count += 1
                        if rt[col, j & mask] <= limit:
                            break
                        j -= 1
                    gain, loss = gain / count, loss / count
                    seeded = True
                    ist[col, LOW] = o + 1
                ist[col, 3] = now
            fs[col, 0] = gain
            fs[col, 1] = loss
            ist[col, 4] = 1 if seeded else 0
            if seeded:
                total = gain + loss
                out[i, col] = 100.0 * (gain / total) if total != 0.0 else 0.0
            else:
                out[i, col] = np.nan
    return m


# ------------------------------------------------------------------------------------ ATR
# ist: N, LOW, FIRST_TIME, LAST_TIME, SEEDED   fs: TOTAL, PREV, PREV_CLOSE   ring 0: true ranges, rt: previous bar's time


@_nb
def atr_stream_nb(fs, ist, rv, rt, high, low, close, ts, r, wb, wns, out):
    """Streaming :func:`~backforge.strategy.indicators._atr_col_nb`."""
    m, n_cols = close.shape
    period = wb
    mask = rt.shape[1] - 1
    for i in range(r, m):
        if wb == 0:
            for col in range(n_cols):
                if not _room_nb(ist, col, rt.shape[1]):
                    return i
        now = ts[i]
        for col in range(n_cols):
            h = high[i, col]
            lo = low[i, col]
            c = close[i, col]
            if not (h == h and lo == lo and c == c):
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            ist[col, N] = o + 1
            seen = o + 1
            if seen == 1:
                fs[col, 2] = c
                fs[col, 1] = np.nan
                ist[col, 2] = now
                ist[col, 3] = now
                ist[col, LOW] = 1
                out[i, col] = np.nan
                continue
            tr = _true_range_nb(h, lo, fs[col, 2])
            fs[col, 2] = c
            prev = fs[col, 1]
            if wb > 0:
                ist[col, LOW] = o + 1
                if seen <= period + 1:
                    fs[col, 0] += tr
                    if seen == period + 1:
                        prev = fs[col, 0] / period
                else:
                    prev *= period - 1
                    prev += tr
                    prev /= period
            else:
                seeded = ist[col, 4] != 0
                if not seeded:
                    slot = o & mask
                    rv[col, 0, slot] = tr
                    rt[col, slot] = ist[col, 3]
                if seeded:
                    prev = prev + -math.expm1(-float(now - ist[col, 3]) / float(wns)) * (tr - prev)
                elif now - wns >= ist[col, 2]:
                    limit = now - wns
                    total = 0.0
                    count = 0
                    j = o
                    while True:
                        total += rv[col, 0, j & mask]
                        count += 1
                        if rt[col, j & mask] <= limit:
                            break
                        j -= 1
                    prev = total / count
                    ist[col, 4] = 1
                    ist[col, LOW] = o + 1
                ist[col, 3] = now
            fs[col, 1] = prev
            out[i, col] = prev
    return m


# ------------------------------------------------------------------------------------ MACD
# bars  ist: N   fs: SLOW_TOTAL, FAST_TOTAL, SIGNAL_TOTAL, SLOW_EMA, FAST_EMA, SIG
# durations  ist: N, LOW, FIRST_TIME, LINE_START (ordinal, -1), LINE_START_TIME, LAST_TIME, PREV_LINE_TIME, SEEDED
#            fs: SLOW_EMA, FAST_EMA, SIG   rings: 0 values, 1 line


@_nb
def macd_stream_nb(fs, ist, rv, rt, x, ts, r, fast, slow, signal, fast_ns, slow_ns, signal_ns, out):
    """Streaming :func:`~backforge.strategy.indicators._macd_bars_col_nb` / ``_macd_duration_col_nb``
    (``out`` is ``[3, m, A]``)."""
    m, n_cols = x.shape
    mask = rt.shape[1] - 1
    k_slow = 2.0 / (slow + 1.0)
    k_fast = 2.0 / (fast + 1.0)
    k_signal = 2.0 / (signal + 1.0)
    for i in range(r, m):
        if slow == 0:
            for col in range(n_cols):
                if not _room_nb(ist, col, rt.shape[1]):
                    return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            out[0, i, col] = np.nan
            out[1, i, col] = np.nan
            out[2, i, col] = np.nan
            if v != v:
                continue
            o = ist[col, N]
            ist[col, N] = o + 1
            seen = o + 1
            if slow > 0:
                if seen <= slow:
                    fs[col, 0] += v
                    if seen > slow - fast:
                        fs[col, 1] += v
                    if seen < slow:
                        continue
                    fs[col, 3] = fs[col, 0] / slow
                    fs[col, 4] = fs[col, 1] / fast
                else:
                    fs[col, 3] = ((v - fs[col, 3]) * k_slow) + fs[col, 3]
                    fs[col, 4] = ((v - fs[col, 4]) * k_fast) + fs[col, 4]
                line = fs[col, 4] - fs[col, 3]
                n_line = seen - slow + 1
                if n_line < signal:
                    fs[col, 2] += line
                    continue
                if n_line == signal:
                    fs[col, 2] += line
                    fs[col, 5] = fs[col, 2] / signal
                else:
                    fs[col, 5] = ((line - fs[col, 5]) * k_signal) + fs[col, 5]
                sig = fs[col, 5]
                out[0, i, col] = line
                out[1, i, col] = sig
                out[2, i, col] = line - sig
                continue
            # durations
            if seen == 1:
                ist[col, 2] = now
                ist[col, 3] = -1
                ist[col, LOW] = 0
            slot = o & mask
            rv[col, 0, slot] = v
            rt[col, slot] = now
            slow_ema = fs[col, 0]
            fast_ema = fs[col, 1]
            if ist[col, 3] >= 0:
                dt = float(now - ist[col, 5])
                slow_ema = slow_ema + -math.expm1(-dt / (slow_ns / 2.0)) * (v - slow_ema)
                fast_ema = fast_ema + -math.expm1(-dt / (fast_ns / 2.0)) * (v - fast_ema)
            elif now - slow_ns >= ist[col, 2]:
                slow_ema = _mean_back_nb(rv, rt, col, 0, o, 0, now - slow_ns)
                fast_ema = _mean_back_nb(rv, rt, col, 0, o, 0, now - fast_ns)
                ist[col, 3] = o
                ist[col, 4] = now
                ist[col, LOW] = o
            ist[col, 5] = now
            fs[col, 0] = slow_ema
            fs[col, 1] = fast_ema
            if ist[col, 3] < 0:
                continue
            line = fast_ema - slow_ema
            rv[col, 1, slot] = line
            seeded = ist[col, 7] != 0
            sig = fs[col, 2]
            if seeded:
                sig = sig + -math.expm1(-float(now - ist[col, 6]) / (signal_ns / 2.0)) * (line - sig)
            elif now - signal_ns >= ist[col, 4]:
                sig = _mean_back_nb(rv, rt, col, 1, o, ist[col, 3], now - signal_ns)
                seeded = True
                ist[col, 7] = 1
            if seeded:
                ist[col, LOW] = o + 1
            ist[col, 6] = now
            fs[col, 2] = sig
            if seeded:
                out[0, i, col] = line
                out[1, i, col] = sig
                out[2, i, col] = line - sig
    return m


# ------------------------------------------------------------------------------------ lag / returns
# ist: N, LOW(front / base), COUNT, FIRST_TIME


@_nb
def lag_stream_nb(fs, ist, rv, rt, x, ts, r, wb, wns, as_return, out):
    """Streaming :func:`~backforge.strategy.indicators._lag_col_nb` (lag, returns, rate of change, pct change)."""
    m, n_cols = x.shape
    mask = rt.shape[1] - 1
    for i in range(r, m):
        for col in range(n_cols):
            if not _room_nb(ist, col, rt.shape[1]):
                return i
        now = ts[i]
        for col in range(n_cols):
            v = x[i, col]
            out[i, col] = np.nan
            if v != v:
                continue
            o = ist[col, N]
            if o == 0:
                ist[col, 3] = now
                ist[col, LOW] = 0
            _push_nb(ist, rv, rt, col, 0, v, now)
            ist[col, N] = o + 1
            seen = o + 1
            lagged = -1
            if wb > 0:
                count = ist[col, 2] + 1
                if count > wb + 1:
                    count -= 1
                    ist[col, LOW] += 1
                ist[col, 2] = count
                if seen > wb:
                    lagged = ist[col, LOW]
            else:
                limit = now - wns
                if limit >= ist[col, 3]:
                    base = ist[col, LOW]
                    while rt[col, (base + 1) & mask] <= limit:
                        base += 1
                    ist[col, LOW] = base
                    lagged = base
            if lagged >= 0:
                x_lag = rv[col, 0, lagged & mask]
                if not as_return:
                    out[i, col] = x_lag
                elif x_lag != 0.0:
                    out[i, col] = v / x_lag - 1.0
    return m


# ------------------------------------------------------------------------------------ VWAP
# ist: N, LOW(front), COUNT, FIRST_TIME, ANCHOR, SINCE   fs: PV, PV_COMP, VOL, VOL_COMP   rings: 0 tpv, 1 volume


@_nb
def vwap_stream_nb(fs, ist, rv, rt, high, low, close, volume, ts, r, wb, wns, out):
    """Streaming :func:`~backforge.strategy.indicators._vwap_col_nb`."""
    m, n_cols = close.shape
    mask = rt.shape[1] - 1
    for i in range(r, m):
        for col in range(n_cols):
            if not _room_nb(ist, col, rt.shape[1]):
                return i
        now = ts[i]
        for col in range(n_cols):
            h = high[i, col]
            lo = low[i, col]
            c = close[i, col]
            vo = volume[i, col]
            if not (h == h and lo == lo and c == c and vo == vo):
                out[i, col] = np.nan
                continue
            o = ist[col, N]
            if o == 0:
                ist[col, 3] = now
                ist[col, LOW] = 0
                ist[col, 4] = -1
            tpv = (h + lo + c) / 3.0 * vo
            _push_nb(ist, rv, rt, col, 0, tpv, now)
            rv[col, 1, o & mask] = vo
            ist[col, N] = o + 1
            count = ist[col, 2] + 1
            pv, pv_comp = _neumaier_add_nb(fs[col, 0], fs[col, 1], tpv)
            vol, vol_comp = _neumaier_add_nb(fs[col, 2], fs[col, 3], vo)
            front = ist[col, LOW]
            while (count > wb) if wb > 0 else (rt[col, front & mask] <= now - wns):
                pv, pv_comp = _neumaier_add_nb(pv, pv_comp, -rv[col, 0, front & mask])
                vol, vol_comp = _neumaier_add_nb(vol, vol_comp, -rv[col, 1, front & mask])
                count -= 1
                front += 1
            since = ist[col, 5] + 1
            if since >= _RECOMPUTE_MIN and front > ist[col, 4]:
                pv = 0.0
                pv_comp = 0.0
                vol = 0.0
                vol_comp = 0.0
                for j in range(front, o + 1):
                    pv, pv_comp = _neumaier_add_nb(pv, pv_comp, rv[col, 0, j & mask])
                    vol, vol_comp = _neumaier_add_nb(vol, vol_comp, rv[col, 1, j & mask])
                ist[col, 4] = o
                since = 0
            fs[col, 0] = pv
            fs[col, 1] = pv_comp
            fs[col, 2] = vol
            fs[col, 3] = vol_comp
            ist[col, 2] = count
            ist[col, LOW] = front
            ist[col, 5] = since
            total_volume = vol + vol_comp
            ready = (o + 1 >= wb) if wb > 0 else (now - wns >= ist[col, 3])
            if ready and total_volume != 0.0:
                out[i, col] = (pv + pv_comp) / total_volume
            else:
                out[i, col] = np.nan
    return m


# ------------------------------------------------------------------------------------ conditions with memory


@_nb
def crosses_stream_nb(prev, diff, above, out):
    """Streaming :func:`~backforge.strategy.compiler._crosses_nb` (``prev``: each column's last difference)."""
    for i in range(diff.shape[0]):
        for j in range(diff.shape[1]):
            v = diff[i, j]
            out[i, j] = False
            if np.isnan(v):
                continue
            p = prev[j]
            if not np.isnan(p):
                out[i, j] = (p <= 0.0 < v) if above else (p >= 0.0 > v)
            prev[j] = v


@_nb
def held_stream_nb(state, inner, present, ts, bars, ns, out):
    """Streaming :func:`~backforge.strategy.compiler.held_for` (``state[j]`` = run length, start time)."""
    for i in range(inner.shape[0]):
        for j in range(inner.shape[1]):
            out[i, j] = False
            if not present[i, j]:
                continue
            if inner[i, j]:
                if state[j, 0] == 0:
                    state[j, 1] = ts[i]
                state[j, 0] += 1
            else:
                state[j, 0] = 0
            run = state[j, 0]
            out[i, j] = run >= bars if bars > 0 else (run > 0 and ts[i] - state[j, 1] >= ns)


# ------------------------------------------------------------------------------------ Python layer

_WINDOW_KINDS = ("sma", "rolling_sum", "volume_average", "ema", "wma", "rsi", "stddev", "zscore", "bollinger",
                 "rolling_max", "rolling_min", "lag", "returns", "rate_of_change", "pct_change", "atr", "vwap", "macd")
STREAMING_KINDS: dict[str, str] = {
    "sma": "running compensated sum, ring of the window", "rolling_sum": "as sma",
    "volume_average": "as sma", "ema": "recursive (duration: ring until seeded)", "wma": "running weighted sums",
    "rsi": "recursive Wilder (duration: ring until seeded)", "stddev": "running shifted moments",
    "zscore": "as stddev", "bollinger": "as stddev", "rolling_max": "monotonic deque", "rolling_min": "monotonic deque",
    "lag": "ring of the window", "returns": "as lag", "rate_of_change": "as lag", "pct_change": "as lag",
    "atr": "recursive Wilder (duration: ring until seeded)", "vwap": "running compensated sums",
    "macd": "recursive EMAs (duration: rings until seeded)", "price": "row", "const": "row",
    "fundamental": "as of the bar's time", "add": "row", "sub": "row", "mul": "row", "div": "row", "min": "row",
    "max": "row", "abs": "row", "neg": "row", "rank": "row", "percentile": "row", "compare": "row",
    "crosses_above": "previous difference", "crosses_below": "previous difference", "all": "row", "any": "row",
    "not": "row", "at_least": "row", "held_for": "run length and start",
}
"""Every data-only node kind and how it streams (constant work per bar; a ring holds at most the window)."""

_RINGS = {"sma": 1, "rolling_sum": 1, "volume_average": 1, "ema": 1, "wma": 1, "rsi": 1, "stddev": 1, "zscore": 1,
          "bollinger": 1, "rolling_max": 2, "rolling_min": 2, "lag": 1, "returns": 1, "rate_of_change": 1,
          "pct_change": 1, "atr": 1, "vwap": 2, "macd": 2}
_N_OUT = {"bollinger": 5, "macd": 3}


def _lower_window(window: Any) -> tuple[int, int]:
    return (int(window), 0) if isinstance(window, int) else (0, parse_duration(window))


class WindowStream:
    """The streaming state of one windowed indicator over ``n_cols`` columns; :meth:`push` advances it over a
    block of rows and returns the indicator's rows (``[k, m, A]`` for MACD and Bollinger).

    ``kind`` is an indicator name of :data:`STREAMING_KINDS`; ``window`` a bar count or duration (MACD:
    ``(fast, slow, signal)``); ``num_std`` for Bollinger.
    """

    def __init__(self, kind: str, window: Any, n_cols: int, *, num_std: float = 2.0) -> None:
        if kind not in _RINGS:
            raise ValueError(f"not a windowed indicator kind: {kind!r}")
        self.kind = kind
        if kind == "macd":
            (fb, fn), (sb, sn), (gb, gn) = (_lower_window(w) for w in window)
            self.params = (fb, sb, gb, fn, sn, gn)
            bars = sb
        else:
            self.params = _lower_window(window)
            bars = self.params[0]
        self.num_std = float(num_std)
        self.fs = np.zeros((n_cols, 8))
        self.ist = np.zeros((n_cols, 8), dtype=np.int64)
        cap = 16
        while cap <= bars + 2:
            cap *= 2
        self.rv = np.zeros((n_cols, _RINGS[kind], cap))
        self.rt = np.zeros((n_cols, cap), dtype=np.int64)

    def _grow(self) -> None:
        cap = self.rt.shape[1]
        new_cap = 2 * cap
        rv = np.zeros(self.rv.shape[:2] + (new_cap,))
        rt = np.zeros((self.rt.shape[0], new_cap), dtype=np.int64)
        for col in range(rt.shape[0]):
            lo, hi = int(self.ist[col, LOW]), int(self.ist[col, N])
            ords = np.arange(max(lo - 1, 0, hi - cap), hi)  # keep one bar before the front (lag's base + 1 probe)
            rv[col][:, ords & (new_cap - 1)] = self.rv[col][:, ords & (cap - 1)]
            rt[col, ords & (new_cap - 1)] = self.rt[col, ords & (cap - 1)]
            if self.kind in ("rolling_max", "rolling_min"):  # ring 1 is the deque, indexed by deque position
                head, size = int(self.ist[col, 4]), int(self.ist[col, 5])
                pos = np.arange(head, head + size)
                rv[col, 1, pos & (new_cap - 1)] = self.rv[col, 1, pos & (cap - 1)]
        self.rv, self.rt = rv, rt

    def push(self, x: np.ndarray, ts: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        """Advance over rows ``x[m, A]`` stamped ``ts[m]`` (ATR: ``x`` = high, ``extra`` = low, close; VWAP:
        ``extra`` = low, close, volume) and return the indicator's values on them."""
        m = x.shape[0]
        kind, (a, b, *rest) = self.kind, self.params
        n_out = _N_OUT.get(kind)
        out = np.empty((n_out, m, x.shape[1]) if n_out else x.shape)
        r = 0
        while True:
            fs, ist, rv, rt = self.fs, self.ist, self.rv, self.rt
            if kind in ("sma", "rolling_sum", "volume_average"):
                r = sum_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, kind != "rolling_sum", out)
            elif kind in ("stddev", "zscore", "bollinger"):
                mode = {"stddev": 0, "zscore": 1, "bollinger": 2}[kind]
                view = out if n_out else out.reshape((1,) + out.shape)
                r = moments_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, mode, self.num_std, view)
            elif kind in ("rolling_max", "rolling_min"):
                r = extreme_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, 1.0 if kind == "rolling_max" else -1.0, out)
            elif kind == "wma":
                r = wma_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, out)
            elif kind == "ema":
                r = ema_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, out)
            elif kind == "rsi":
                r = rsi_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, out)
            elif kind == "atr":
                r = atr_stream_nb(fs, ist, rv, rt, x, extra[0], extra[1], ts, r, a, b, out)
            elif kind == "vwap":
                r = vwap_stream_nb(fs, ist, rv, rt, x, extra[0], extra[1], extra[2], ts, r, a, b, out)
            elif kind == "macd":
                r = macd_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, rest[0], rest[1], rest[2], rest[3], out)
            else:
                r = lag_stream_nb(fs, ist, rv, rt, x, ts, r, a, b, kind != "lag", out)
            if r >= m:
                return out
            self._grow()

    def state(self) -> list[np.ndarray]:
        return [self.fs, self.ist, self.rv, self.rt]

    def set_state(self, arrays: list[np.ndarray]) -> None:
        self.fs, self.ist, self.rv, self.rt = (np.ascontiguousarray(a).copy() for a in arrays)


class StreamingEvaluator:
    """The data-only nodes of a compiled portfolio, advanced over blocks of bars with one streaming state per
    node (see the module docstring); the values equal :class:`~backforge.strategy.compiler._Compiler`'s.

    :meth:`push` takes the block's timestamps and a dict of field rows (``open``, ``high``, ``low``, ``close``,
    ``volume`` and, with quotes, ``bid`` / ``ask`` closes) over the feed's columns ``symbols``; the universe
    is ``assets``. :meth:`value` / :meth:`condition` then give a node's rows on that block.
    """

    def __init__(self, assets: tuple[str, ...], symbols: tuple[str, ...], *, fundamentals: Any = None) -> None:
        self.assets = tuple(assets)
        self.symbols = tuple(symbols)
        self.cols = np.array([self.symbols.index(a) for a in self.assets], dtype=np.int64)
        self.fundamentals = fundamentals
        self._states: dict[str, Any] = {}
        self._block: dict[str, np.ndarray] = {}
        self.fields: dict[str, np.ndarray] = {}
        self.ts = np.zeros(0, dtype=np.int64)

    def push(self, ts: np.ndarray, fields: dict[str, np.ndarray]) -> None:
        """Start a block: every node evaluated after this call is advanced over these rows exactly once."""
        self.ts = ts
        self.fields = fields
        self._block = {}

    # ------------------------------------------------------------------ values
    def field(self, name: str, asset: str | None, path: str) -> np.ndarray:
        f = self.fields
        if name in ("bid", "ask", "mid", "spread"):
            if "bid" not in f:
                from backforge.errors import ConfigError

                raise ConfigError(f"price field {name!r} needs bid/ask quote data; this data has none", path=path)
            bid, ask = f["bid"], f["ask"]
            arr = {"bid": bid, "ask": ask, "mid": (bid + ask) / 2, "spread": ask - bid}[name]
        else:
            arr = f[name]
        if asset is None:
            return np.ascontiguousarray(arr[:, self.cols])
        col = arr[:, self.symbols.index(asset)]
        return np.ascontiguousarray(np.repeat(col[:, None], len(self.assets), axis=1))

    def _cached(self, node: Any, key: str | None, compute) -> np.ndarray:
        from backforge.strategy.compiler import _key

        key = key or _key(node)
        hit = self._block.get(key)
        if hit is None:
            hit = self._block[key] = compute(node, key)
        return hit

    def value(self, node: Any, key: str | None = None) -> np.ndarray:
        """A data-only value node's rows ``[m, A]`` on the current block."""
        return self._cached(node, key, self._value)

    def condition(self, node: Any, key: str | None = None) -> np.ndarray:
        """A data-only condition node's rows (bool ``[m, A]``) on the current block."""
        return self._cached(node, key, self._condition)

    def _window_state(self, key: str, kind: str, window: Any, **kw: Any) -> WindowStream:
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = WindowStream(kind, window, len(self.assets), **kw)
        return state

    def _value(self, node: Any, key: str) -> np.ndarray:
        ts = self.ts
        if isinstance(node, sc.Price):
            return self.field(node.field, node.asset, key)
        if isinstance(node, sc.Const):
            return np.full((len(ts), len(self.assets)), float(node.value))
        if isinstance(node, sc.Fundamental):
            from backforge.data.fundamentals import Fundamentals

            table = self.fundamentals
            if not isinstance(table, Fundamentals):
                table = self.fundamentals = Fundamentals.from_frame(table)
            assets = self.assets if node.asset is None else (node.asset,) * len(self.assets)
            return np.ascontiguousarray(table.as_of(ts, list(assets), node.field), dtype=np.float64)
        if isinstance(node, sc.Windowed):
            x = self.value(node.of)
            return self._window_state(key, node.kind, node.window).push(np.ascontiguousarray(x), ts)
        if isinstance(node, sc.VolumeAverage):
            return self._window_state(key, "volume_average", node.window).push(self.field("volume", node.asset, key), ts)
        if isinstance(node, sc.BarIndicator):
            h, l, c = (self.field(f, node.asset, key) for f in ("high", "low", "close"))
            state = self._window_state(key, node.kind, node.window)
            if node.kind == "atr":
                return state.push(h, ts, l, c)
            return state.push(h, ts, l, c, self.field("volume", node.asset, key))
        if isinstance(node, sc.MACD):
            # one state per (of, fast, slow, signal): the three outputs are three nodes of one indicator
            skey = f"macd:{node.of.model_dump_json()}:{node.fast}:{node.slow}:{node.signal}"
            rows = self._block.get(skey)
            if rows is None:
                rows = self._block[skey] = self._window_state(skey, "macd", (node.fast, node.slow, node.signal)).push(
                    np.ascontiguousarray(self.value(node.of)), ts)
            return np.ascontiguousarray(rows[{"line": 0, "signal": 1, "histogram": 2}[node.output]])
        if isinstance(node, sc.Bollinger):
            skey = f"bollinger:{node.of.model_dump_json()}:{node.window}:{node.num_std!r}"
            rows = self._block.get(skey)
            if rows is None:
                rows = self._block[skey] = self._window_state(skey, "bollinger", node.window, num_std=node.num_std).push(
                    np.ascontiguousarray(self.value(node.of)), ts)
            names = ("upper", "middle", "lower", "width", "percent_b")
            return np.ascontiguousarray(rows[names.index(node.output)])
        if isinstance(node, sc.Arithmetic):
            vals = [self.value(a) for a in node.args]
            return ind.arithmetic(node.kind, vals)
        if isinstance(node, sc.Unary):
            x = self.value(node.of)
            return np.abs(x) if node.kind == "abs" else -x
        if isinstance(node, sc.CrossSection):
            x = np.ascontiguousarray(self.value(node.of))
            return ind.cross_sectional_rank(x) if node.kind == "rank" else ind.cross_sectional_percentile(x)
        raise ValueError(f"{node.kind!r} is not a data-only node")

    def _condition(self, node: Any, key: str) -> np.ndarray:
        if isinstance(node, sc.Compare):
            a = self.value(node.lhs)
            b = self.value(node.rhs)
            with np.errstate(invalid="ignore"):
                if node.op in ("crosses_above", "crosses_below"):
                    prev = self._states.get(key)
                    if prev is None:
                        prev = self._states[key] = np.full(len(self.assets), np.nan)
                    out = np.zeros(a.shape, dtype=np.bool_)
                    crosses_stream_nb(prev, np.ascontiguousarray(a - b), node.op == "crosses_above", out)
                    return out
                return {">": np.greater, "<": np.less, ">=": np.greater_equal, "<=": np.less_equal,
                        "==": np.equal}[node.op](a, b)
        if isinstance(node, sc.Logic):
            parts = [self.condition(c) for c in node.conditions]
            return np.logical_and.reduce(parts) if node.kind == "all" else np.logical_or.reduce(parts)
        if isinstance(node, sc.Not):
            return ~self.condition(node.condition)
        if isinstance(node, sc.AtLeast):
            parts = [self.condition(c).astype(np.int64) for c in node.conditions]
            return np.sum(parts, axis=0) >= node.n
        if isinstance(node, sc.HeldFor):
            inner = np.ascontiguousarray(self.condition(node.condition))
            present = ~np.isnan(self.fields["close"][:, self.cols])
            bars, ns = _lower_window(node.window)
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = np.zeros((len(self.assets), 2), dtype=np.int64)
            out = np.zeros(inner.shape, dtype=np.bool_)
            held_stream_nb(state, inner, np.ascontiguousarray(present), self.ts, bars, ns, out)
            return out
        raise ValueError(f"unsupported condition {node!r}")

    # ------------------------------------------------------------------ snapshots
    def state_arrays(self, prefix: str = "stream.") -> dict[str, np.ndarray]:
        """Every node's streaming state as named arrays (for an engine snapshot)."""
        out: dict[str, np.ndarray] = {}
        for i, (key, state) in enumerate(sorted(self._states.items())):
            if isinstance(state, WindowStream):
                for name, arr in zip(("fs", "ist", "rv", "rt"), state.state()):
                    out[f"{prefix}{i}.{name}"] = arr
            else:
                out[f"{prefix}{i}.memo"] = state
        out[f"{prefix}keys"] = np.frombuffer("\n".join(sorted(self._states)).encode(), dtype=np.uint8)
        return out

    def restore(self, arrays: dict[str, np.ndarray], build, prefix: str = "stream.") -> None:
        """Load :meth:`state_arrays`; ``build()`` evaluates every node once on an empty block (creating their
        states), whose arrays are then replaced by the snapshot's."""
        keys = bytes(arrays[f"{prefix}keys"]).decode().split("\n") if arrays[f"{prefix}keys"].size else []
        build()
        if sorted(self._states) != keys:
            from backforge.errors import DataError

            raise DataError("the snapshot's indicator states do not match the strategy's", field="snapshot")
        for i, key in enumerate(keys):
            state = self._states[key]
            if isinstance(state, WindowStream):
                state.set_state([arrays[f"{prefix}{i}.{name}"] for name in ("fs", "ist", "rv", "rt")])
            else:
                self._states[key] = np.ascontiguousarray(arrays[f"{prefix}{i}.memo"]).copy()

"""Vectorized-mode parameter sweeps: many single-asset signal backtests in one compiled, parallel pass.

A sweep shares work the way a quant would by hand: every distinct indicator is computed once, every
distinct (fast, slow) pair turns into one schedule of entry/exit decisions, and all the stop-loss /
take-profit variants of that pair are simulated from it. Only metrics are kept — one row per
combination, never an equity curve — so a 1,000,000-combination sweep needs a few hundred MB.

Three layers, as everywhere in backforge:

* compiled kernels (``*_nb``) that take and return arrays only: :func:`cross_schedule_nb` (the
  decisions of one indicator pair), :func:`simulate_cross_1d_nb` (one combination, metrics streamed
  bar by bar) and :func:`sweep_cross_nb` (all combinations, ``numba.prange`` over indicator pairs);
* :func:`sweep_signals`, the general entry point: any two families of indicator rows ``[K, T]`` and
  the pairs of rows to cross;
* :func:`sweep_sma_cross`, the SMA-cross sweep of the performance target (fast/slow windows × stops).

Semantics (the slow reference is :func:`backforge.from_signals`)
----------------------------------------------------------------
Each combination is exactly ``from_signals(data, fast > slow, fast < slow, size=size,
size_type="equity_fraction", stop_loss=..., take_profit=..., fee_rate=..., slippage_bps=...,
lot_size=..., cash=...)`` on the one asset, long only, with level signals:

* a decision at bar t's close (entry when flat and ``fast > slow``; exit when long and
  ``fast < slow``; NaN or equal values decide nothing) is a market order filled at bar t+1's open;
* entry size: ``size × equity / (price × (1 + fee_rate))`` at the fill price (open plus slippage),
  floored to a multiple of ``lot_size`` when ``lot_size > 0``; an entry rounding to 0 units is
  rejected and not retried while the entry signal stays on — the next attempt is decided on the next
  bar where ``fast > slow`` switches on again;
* fee = ``fee_rate × notional`` on every fill; ``slippage_bps`` moves market and stop fills against
  the trader, never take-profit (limit) fills;
* the stop-loss and take-profit are one-cancels-other brackets at ``entry_fill × (1 - stop_loss)``
  and ``entry_fill × (1 + take_profit)``, working from the entry's open (they can fill in the entry
  bar). Everything that happens at the open comes first: a gap through a bracket level fills at the
  open, else an exit order due fills there; then the bar's range: the stop when the low reaches it,
  else the take-profit when the high does (both touched: the stop, the worse outcome);
* equity is marked at each close; data with bid/ask quotes buy at the ask and sell at the bid.

Metrics follow :mod:`backforge.results.metrics` (``equity_metrics``, ``trade_metrics``,
``exposure_and_turnover``): per-bar simple returns ``equity[t] / equity[t - 1] - 1`` over the T bars
(T - 1 returns), Sharpe ``mean / std(ddof=1) × sqrt(periods_per_year)`` (0.0 when the std is at most
``DISPERSION_FLOOR``), max drawdown a negative fraction from a running peak that starts at the initial
cash, closed trades only for ``n_trades`` / ``win_rate`` / ``profit_factor``. They are computed on
the fly, without storing curves: return moments per position (sums shifted by the position's first
return) merged into the running count/mean/M2 with the Welford–Chan update, then the flat bars —
whose returns are exactly 0.0 — merged in one step; drawdown from a running peak and trough.
Equity-derived metrics agree with the slow reference to ~1e-14 relative, trade counts exactly.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numba
import numpy as np
import polars as pl
from numba import njit, prange

from backforge.data.market import MarketData
from backforge.engine.config import SimConfig
from backforge.engine.kernels import EPS, round_lot_nb
from backforge.errors import ConfigError, DataError
from backforge.results import metrics
from backforge.results.metrics import DISPERSION_FLOOR, periods_per_year_for, ratio_nb, risk_free_per_period

__all__ = [
    "SWEEP_CONFIG",
    "SWEEP_METRIC_NAMES",
    "sweep_signals",
    "sweep_sma_cross",
    "cross_schedule_nb",
    "simulate_cross_1d_nb",
    "sweep_cross_nb",
]

# Kernels use NumPy's error model: a float division by zero gives inf/NaN instead of a Python
# exception, so numba emits no zero check per division (the inner loop divides every bar).
kernel = njit(cache=True, error_model="numpy")
inline_kernel = njit(cache=True, error_model="numpy", inline="always")

PAIR_CHUNK = 16  # indicator pairs per scheduling chunk of the parallel loop

# ------------------------------------------------------------------------------------ price rows
# Rows of the ``[N_PRICE_ROWS, T]`` price array the kernels read (time contiguous in each row).
BUY_OPEN = 0  # entries fill here (the ask open with quotes, else the open)
SELL_OPEN = 1  # exits fill here (the bid open with quotes, else the open)
SELL_HIGH = 2  # take-profit touch (sell side)
SELL_LOW = 3  # stop-loss touch (sell side)
SELL_CLOSE = 4  # forced liquidation price
CLOSE = 5  # the mark of equity
REACH_LOW = 6  # min(SELL_OPEN, SELL_LOW): a stop at or above it fills in the bar
REACH_HIGH = 7  # max(SELL_OPEN, SELL_HIGH): a take-profit at or below it fills in the bar
N_PRICE_ROWS = 8

# -------------------------------------------------------------------------------- metric rows
SWEEP_METRIC_NAMES: tuple[str, ...] = tuple(
    metrics.EQUITY_METRIC_NAMES[row] for row in (
        metrics.TOTAL_RETURN, metrics.ANNUAL_RETURN, metrics.ANNUAL_VOLATILITY, metrics.SHARPE, metrics.SORTINO,
        metrics.CALMAR, metrics.MAX_DRAWDOWN)
) + ("n_trades", "win_rate", "profit_factor", "exposure_time", "final_equity")
"""Metric columns of a sweep, in the row order of the kernels' output ``[N_METRICS, N]``.

Definitions are those of :func:`backforge.results.metrics.equity_metrics` (``total_return``,
``annual_return``, ``annual_volatility``, ``sharpe``, ``sortino``, ``calmar``, ``max_drawdown``),
:func:`~backforge.results.metrics.trade_metrics` on closed trades (``n_trades``, ``win_rate``,
``profit_factor``) and :func:`~backforge.results.metrics.exposure_and_turnover` (``exposure_time``:
the share of bars that close with a position); ``final_equity`` is the last bar's equity.
"""

# Rows of the kernels' output ``[N_METRICS, N]``: the position of each name above (the sweep keeps 12 of
# the metrics, so its rows are not those of ``equity_metrics_nb``).
ROW_TOTAL_RETURN = SWEEP_METRIC_NAMES.index("total_return")
ROW_ANNUAL_RETURN = SWEEP_METRIC_NAMES.index("annual_return")
ROW_ANNUAL_VOLATILITY = SWEEP_METRIC_NAMES.index("annual_volatility")
ROW_SHARPE = SWEEP_METRIC_NAMES.index("sharpe")
ROW_SORTINO = SWEEP_METRIC_NAMES.index("sortino")
ROW_CALMAR = SWEEP_METRIC_NAMES.index("calmar")
ROW_MAX_DRAWDOWN = SWEEP_METRIC_NAMES.index("max_drawdown")
ROW_N_TRADES = SWEEP_METRIC_NAMES.index("n_trades")
ROW_WIN_RATE = SWEEP_METRIC_NAMES.index("win_rate")
ROW_PROFIT_FACTOR = SWEEP_METRIC_NAMES.index("profit_factor")
ROW_EXPOSURE_TIME = SWEEP_METRIC_NAMES.index("exposure_time")
ROW_FINAL_EQUITY = SWEEP_METRIC_NAMES.index("final_equity")
N_METRICS = len(SWEEP_METRIC_NAMES)


class CrossParams(NamedTuple):
    """Lowered, validated scalar settings of a sweep (every field float64, for the kernels)."""

    cash: float
    size: float
    fee_rate: float
    slippage_bps: float
    lot_size: float
    periods_per_year: float
    risk_free_per_period: float


# ============================================================================================ kernels

@kernel
def cross_schedule_nb(fast: np.ndarray, slow: np.ndarray, next_entry: np.ndarray, next_exit: np.ndarray,
                      next_rise: np.ndarray) -> None:
    """Decision schedule of one indicator pair, ``T`` where there is none: ``next_entry[t]`` is the first
    bar ``>= t`` whose close decides an entry (``fast > slow``), ``next_exit[t]`` the first deciding an
    exit (``fast < slow``) and ``next_rise[t]`` the first where the entry signal switches on (``fast >
    slow`` there but not on the bar before; bar 0 counts when it is on).

    Equivalent to ``[min([u for u in range(t, T) if fast[u] > slow[u]] or [T]) for t in range(T)]``
    (and likewise for the other two); NaN compares false, so warm-up bars decide nothing.
    """
    n_bars = fast.shape[0]
    entry = n_bars
    exit_ = n_bars
    rise = n_bars
    for t in range(n_bars - 1, -1, -1):
        a = fast[t]
        b = slow[t]
        if a > b:
            entry = t
            if t == 0 or not fast[t - 1] > slow[t - 1]:
                rise = t
        elif a < b:
            exit_ = t
        next_entry[t] = entry
        next_exit[t] = exit_
        next_rise[t] = rise


@inline_kernel
def entry_qty_nb(cash: float, price: float, params: CrossParams) -> float:
    """Units bought by a flat account with ``cash`` at ``price`` (the fill price, slippage included);
    0.0 when the order would be rejected.

    The engine's path for an equity-fraction market entry without leverage
    (``desired_qty_nb`` → ``round_lot_nb`` → ``fits_margin_nb``, and ``affordable_qty_nb`` with the
    step-down loop when the rounded size does not fit), with the costs this sweep supports.
    """
    fee_rate = params.fee_rate
    lot = params.lot_size
    want = params.size * cash / (price * (1.0 + fee_rate))
    if want == 0.0 or not np.isfinite(want):
        return 0.0
    qty = round_lot_nb(abs(want), lot)
    fee = fee_rate * qty * price
    if not qty * price <= (cash - fee) * (1.0 + EPS) + EPS:
        room = cash
        unit_cost = price * (1.0 + fee_rate)
        most = round_lot_nb(room / unit_cost, lot) if room > 0.0 and unit_cost > 0.0 else 0.0
        while most > 0.0 and not most * price <= (cash - fee_rate * most * price) * (1.0 + EPS) + EPS:
            most = round_lot_nb(most - (lot if lot > 0.0 else most * 1e-6), lot)
        qty = min(qty, max(most, 0.0))
    if qty <= 0.0:
        return 0.0
    return qty


@inline_kernel
def bracket_fill_nb(open_: float, high: float, low: float, stop: float, take: float,
                    exit_due: bool) -> tuple[float, bool]:
    """Where a long position is closed in a bar: ``(quote, slippage applies)``, the quote NaN when it
    stays open. ``stop`` / ``take`` are the bracket levels (``-inf`` / ``+inf`` when absent).

    The open comes first: a gap through the stop or the take-profit fills there, and otherwise an
    exit order due at this open fills there. Then the bar's range: the stop when the low reaches it,
    else the take-profit when the high does (the stop wins when both are touched), at the level
    clamped to the bar's range. Stop and market fills take slippage, take-profit (limit) fills do not.
    Equivalent to ``fill_orders_nb`` / ``group_choice_nb`` / ``trigger_price_nb`` of
    :mod:`backforge.engine.kernels` for a long position with brackets born at an open.
    """
    if open_ <= stop:
        return open_, True
    if open_ >= take:
        return open_, False
    if exit_due:
        return open_, True
    if low <= stop:
        return min(stop, high), True
    if high >= take:
        return max(take, low), False
    return np.nan, False


@inline_kernel
def track_bar_nb(value: float, r: float, shift: float, rf: float, seg_sum: float, seg_squares: float,
                 downside: float, peak: float, trough: float, max_drawdown: float):
    """Add one bar (equity ``value``, return ``r``) to the streamed statistics; returns the updated
    ``(seg_sum, seg_squares, downside, peak, trough, max_drawdown)``.

    ``seg_sum`` / ``seg_squares`` are the position's sums of ``r - shift`` and its square,
    ``downside`` the sum of ``min(r - rf, 0) ** 2``; ``trough`` is the lowest equity since the running
    ``peak``, and a new peak closes that drawdown: ``max_drawdown = min(trough / peak - 1)`` over the
    peaks, which equals the slow reference ``min(equity / running_max(equity) - 1)`` exactly
    (``x / peak - 1`` is monotonic in ``x``).
    """
    deviation = r - shift
    seg_sum += deviation
    seg_squares += deviation * deviation
    shortfall = min(r - rf, 0.0)
    downside += shortfall * shortfall
    trough = min(trough, value)
    if value >= peak:
        max_drawdown = min(max_drawdown, trough / peak - 1.0)
        peak = value
        trough = value
    return seg_sum, seg_squares, downside, peak, trough, max_drawdown


@inline_kernel
def merge_moments_nb(n: int, mean: float, m2: float, n_part: int, mean_part: float,
                     m2_part: float) -> tuple[int, float, float]:
    """Combine the count, mean and sum of squared deviations of two samples (Chan, Golub & LeVeque).

    Equivalent to computing ``len``, ``mean`` and ``sum((x - mean) ** 2)`` of the concatenated samples.
    """
    total = n + n_part
    if n_part == 0:
        return n, mean, m2
    if n == 0:
        return n_part, mean_part, m2_part
    delta = mean_part - mean
    return total, mean + delta * n_part / total, m2 + m2_part + delta * delta * n * n_part / total


@kernel
def simulate_cross_1d_nb(
    prices: np.ndarray,
    next_entry: np.ndarray,
    next_exit: np.ndarray,
    next_rise: np.ndarray,
    stop_loss: float,
    take_profit: float,
    params: CrossParams,
    out: np.ndarray,
    column: int,
) -> None:
    """Simulate one combination and write its metrics to ``out[:, column]`` (rows: ``SWEEP_METRIC_NAMES``).

    ``prices`` is ``[N_PRICE_ROWS, T]``, ``next_entry`` / ``next_exit`` / ``next_rise`` the pair's schedule
    (:func:`cross_schedule_nb`), ``stop_loss`` / ``take_profit`` fractions of the entry fill price
    (NaN: none). Flat stretches cost O(1) (the schedule gives the next entry decision, and their
    returns are exactly 0.0). In position, a "general step" handles the bars where something can
    happen at the open or inside the bar (the entry bar, an exit due, a bracket within the bar's
    range, a margin call); the "quiet" bars up to the next exit decision run in a tight loop that
    only marks equity at the close and updates the streamed metrics.

    Return moments are accumulated per position as sums shifted by the position's first return
    (short, well-conditioned runs) and merged with :func:`merge_moments_nb` — Welford's update
    applied a position at a time rather than a bar at a time, which keeps the division off the
    per-bar dependency chain; the flat bars' zeros are merged the same way at the end.

    Equivalent to ``from_signals(data, fast > slow, fast < slow, ...)`` followed by
    ``equity_metrics`` / ``trade_metrics`` / ``exposure_and_turnover`` on its equity and trades
    (``tests/research/test_sweep.py`` compares them).
    """
    n_bars = prices.shape[1]
    last = n_bars - 1
    buy_open = prices[BUY_OPEN]
    sell_open = prices[SELL_OPEN]
    sell_high = prices[SELL_HIGH]
    sell_low = prices[SELL_LOW]
    sell_close = prices[SELL_CLOSE]
    close = prices[CLOSE]
    reach_low = prices[REACH_LOW]
    reach_high = prices[REACH_HIGH]
    fee_rate = params.fee_rate
    slip_bps = params.slippage_bps
    rf = params.risk_free_per_period

    cash = params.cash
    start = cash
    prev = cash  # equity at the previous bar's close
    n_moved = 0  # returns of bars in position (the others are exactly 0.0)
    mean = 0.0
    m2 = 0.0
    downside = 0.0
    peak = cash  # running peak of equity, and the lowest equity since it
    trough = cash
    max_drawdown = 0.0
    n_trades = 0
    n_wins = 0
    gross_profit = 0.0
    gross_loss = 0.0
    exposure = 0

    t = 0  # the first bar whose close may decide an entry
    while t < n_bars:
        bar = next_entry[t] + 1
        if bar >= n_bars:
            break
        # ---- the entry market order fills at the open of `bar`
        quote = buy_open[bar]
        price = quote + quote * slip_bps * 1e-4
        qty = entry_qty_nb(cash, price, params)
        if qty <= 0.0:
            # rejected (too small for one lot, or no money): as in the engine, the entry is not
            # retried while the signal stays on, only when it switches on again
            t = next_rise[bar]
            continue
        fee = fee_rate * qty * price
        cash = cash - (qty * price + fee)
        entry_price = price
        entry_share = fee * qty / qty * qty / qty  # the entry fee as the engine attributes it to the trade
        stop = -np.inf
        if np.isfinite(stop_loss):
            level = price * (1.0 - stop_loss)
            if level > 0.0:
                stop = level
        take = np.inf
        if np.isfinite(take_profit):
            level = price * (1.0 + take_profit)
            if level > 0.0:
                take = level
        # ---- the position, bar by bar from the entry bar
        b = bar
        exit_due = False  # an exit order decided at the previous close fills at this open
        seg_n = 0
        shift = 0.0
        seg_sum = 0.0
        seg_squares = 0.0
        while True:
            # -- a bar where something may happen at the open or inside the bar
            exit_quote, exit_slips = bracket_fill_nb(sell_open[b], sell_high[b], sell_low[b], stop, take, exit_due)
            if exit_quote != exit_quote:
                value = cash + qty * close[b]
                if value <= 0.0:  # margin call: liquidated at the close (unreachable with positive prices)
                    exit_quote = sell_close[b]
                    exit_slips = True
            if exit_quote == exit_quote:
                # close the position (the engine's apply_fill_nb for a full exit)
                price = exit_quote - exit_quote * slip_bps * 1e-4 if exit_slips else exit_quote
                fee = fee_rate * qty * price
                pnl = (price - entry_price) * qty - (entry_share + fee * qty / qty)
                n_trades += 1
                n_wins += pnl > 0.0
                gross_profit += max(pnl, 0.0)
                gross_loss += max(-pnl, 0.0)
                cash = cash - (-qty * price + fee)
                qty = 0.0
                value = cash
            else:
                exposure += 1
            r = value / prev - 1.0 if prev > 0.0 else 0.0
            if seg_n == 0:
                shift = r
            seg_n += 1
            seg_sum, seg_squares, downside, peak, trough, max_drawdown = track_bar_nb(
                value, r, shift, rf, seg_sum, seg_squares, downside, peak, trough, max_drawdown)
            prev = value
            if qty == 0.0 or b == last:
                break
            # -- the close of `b` decides; until the next exit decision only the brackets can act
            quiet_end = next_exit[b]
            b += 1
            if quiet_end < b:
                exit_due = True
                continue
            exit_due = False
            if quiet_end > last:
                quiet_end = last
            first = b
            while b <= quiet_end:
                if (reach_low[b] <= stop) | (reach_high[b] >= take):
                    break
                value = cash + qty * close[b]
                if value <= 0.0:
                    break
                r = value / prev - 1.0  # prev > 0: a position survives a bar only with positive equity
                seg_sum, seg_squares, downside, peak, trough, max_drawdown = track_bar_nb(
                    value, r, shift, rf, seg_sum, seg_squares, downside, peak, trough, max_drawdown)
                prev = value
                b += 1
            seg_n += b - first
            exposure += b - first
            if b <= quiet_end:
                continue  # a bracket or a margin call acts in bar b: the general step takes it
            if quiet_end == last:
                break  # the data ends with the position open
            exit_due = True  # the close of quiet_end decided the exit: it fills at the open of b
        seg_mean = seg_sum / seg_n
        n_moved, mean, m2 = merge_moments_nb(n_moved, mean, m2, seg_n, shift + seg_mean,
                                             max(seg_squares - seg_sum * seg_mean, 0.0))
        if qty != 0.0:
            break  # still open at the end of the data
        t = b

    max_drawdown = min(max_drawdown, trough / peak - 1.0)
    end = prev
    n = n_bars - 1
    out[ROW_TOTAL_RETURN, column] = end / start - 1.0
    out[ROW_MAX_DRAWDOWN, column] = max_drawdown
    out[ROW_N_TRADES, column] = n_trades
    out[ROW_WIN_RATE, column] = n_wins / n_trades if n_trades > 0 else 0.0
    out[ROW_PROFIT_FACTOR, column] = ratio_nb(gross_profit, gross_loss, 1.0)
    out[ROW_EXPOSURE_TIME, column] = exposure / n_bars
    out[ROW_FINAL_EQUITY, column] = end
    if n <= 0:
        out[ROW_ANNUAL_RETURN, column] = 0.0
        out[ROW_ANNUAL_VOLATILITY, column] = 0.0
        out[ROW_SHARPE, column] = 0.0
        out[ROW_SORTINO, column] = 0.0
        out[ROW_CALMAR, column] = 0.0
        return
    # the flat bars: n - n_moved returns of exactly 0.0
    n_flat = n - n_moved
    _, mean, m2 = merge_moments_nb(n_moved, mean, m2, n_flat, 0.0, 0.0)
    if rf > 0.0:
        downside += n_flat * rf * rf
    periods = params.periods_per_year
    annualizer = math.sqrt(periods)
    annual = (end / start) ** (periods / n) - 1.0 if end > 0.0 else -1.0
    std = math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
    if std <= DISPERSION_FLOOR:
        std = 0.0
    mean_excess = mean - rf
    out[ROW_ANNUAL_RETURN, column] = annual
    out[ROW_ANNUAL_VOLATILITY, column] = std * annualizer
    out[ROW_SHARPE, column] = mean_excess / std * annualizer if std > 0.0 else 0.0
    deviation = math.sqrt(downside / n)
    if deviation <= DISPERSION_FLOOR:
        out[ROW_SORTINO, column] = np.inf if mean_excess > DISPERSION_FLOOR else 0.0
    else:
        out[ROW_SORTINO, column] = mean_excess * annualizer / deviation
    out[ROW_CALMAR, column] = ratio_nb(annual, abs(max_drawdown), 0.0)


@njit(cache=True, parallel=True, error_model="numpy")
def sweep_cross_nb(
    prices: np.ndarray,
    fast: np.ndarray,
    slow: np.ndarray,
    pair_fast: np.ndarray,
    pair_slow: np.ndarray,
    stop_loss: np.ndarray,
    take_profit: np.ndarray,
    params: CrossParams,
    pair_start: int,
    pair_stop: int,
    out: np.ndarray,
) -> None:
    """Metrics of every combination of pairs ``pair_start..pair_stop - 1`` × ``stop_loss`` × ``take_profit``.

    ``fast`` ``[KF, T]`` and ``slow`` ``[KS, T]`` hold the distinct indicator rows; pair ``p`` crosses
    ``fast[pair_fast[p]]`` with ``slow[pair_slow[p]]``. Combination ``(p, i, j)`` is column
    ``(p * len(stop_loss) + i) * len(take_profit) + j`` of ``out`` ``[N_METRICS, N]``. Pairs run in
    parallel (``prange``); each builds its schedule once (three ``[T]`` scratch arrays) and simulates
    all its stop variants from it, so no ``[N, T]`` array ever exists.

    Equivalent to calling :func:`simulate_cross_1d_nb` for each combination in turn.
    """
    n_bars = prices.shape[1]
    n_stop = stop_loss.shape[0]
    n_take = take_profit.shape[0]
    for p in prange(pair_start, pair_stop):
        next_entry = np.empty(n_bars, dtype=np.int64)
        next_exit = np.empty(n_bars, dtype=np.int64)
        next_rise = np.empty(n_bars, dtype=np.int64)
        cross_schedule_nb(fast[pair_fast[p]], slow[pair_slow[p]], next_entry, next_exit, next_rise)
        base = p * n_stop * n_take
        for i in range(n_stop):
            for j in range(n_take):
                simulate_cross_1d_nb(prices, next_entry, next_exit, next_rise, stop_loss[i], take_profit[j], params,
                                     out, base + i * n_take + j)


# ============================================================================================ dispatch

def _price_rows(data: MarketData, column: int) -> np.ndarray:
    """The ``[N_PRICE_ROWS, T]`` price rows of one asset (bid/ask sides when the data has quotes)."""
    o, h, lo, c = (np.asarray(x[:, column], dtype=np.float64) for x in (data.open, data.high, data.low, data.close))
    if data.has_quotes:
        ask_open = np.asarray(data.ask.open[:, column], dtype=np.float64)
        bid = data.bid
        sell = tuple(np.asarray(x[:, column], dtype=np.float64) for x in (bid.open, bid.high, bid.low, bid.close))
    else:
        ask_open = o
        sell = (o, h, lo, c)
    rows = np.empty((N_PRICE_ROWS, data.n_bars))
    rows[BUY_OPEN] = ask_open
    rows[SELL_OPEN], rows[SELL_HIGH], rows[SELL_LOW], rows[SELL_CLOSE] = sell
    rows[CLOSE] = c
    rows[REACH_LOW] = np.minimum(sell[0], sell[2])
    rows[REACH_HIGH] = np.maximum(sell[0], sell[1])
    if not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=0))[0])
        raise DataError("the swept asset needs finite prices on every bar (open, high, low, close and quotes)",
                        row=bad, asset=data.assets[column])
    return rows


def _single_asset(data: Any, asset: str | None) -> MarketData:
    """The asset's own bars (rows where it does not trade are dropped, as ``MarketData.select`` does)."""
    if not isinstance(data, MarketData):
        raise DataError(f"expected MarketData, got {type(data).__name__}; build one with MarketData.from_frames(...) "
                        "or backforge.data.read_csv(...)")
    if asset is None:
        if data.n_assets != 1:
            raise ConfigError(f"the data has {data.n_assets} assets ({', '.join(data.assets)}); pass asset=... to "
                              "choose the one to sweep", field="asset")
        selected = data
    else:
        selected = data.select([asset])
    if selected.n_bars < 2:
        raise DataError(f"a sweep needs at least 2 bars, the data has {selected.n_bars}")
    return selected


def _number(value: Any, name: str, *, low: float, low_open: bool, high: float = math.inf,
            high_open: bool = True) -> float:
    """A finite float within the given bounds, or a ConfigError naming the field and the rule."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"must be a number, got {value!r}", field=name) from None
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        lower = f"> {low:g}" if low_open else f">= {low:g}"
        upper = "" if high == math.inf else (f" and < {high:g}" if high_open else f" and <= {high:g}")
        raise ConfigError(f"must be a finite number {lower}{upper}, got {value!r}", field=name)
    return number


def _bracket_levels(values: Any, name: str, *, below_one: bool) -> np.ndarray:
    """Distinct-checked stop fractions (NaN or None: no bracket) as float64 ``[S]``."""
    if values is None or isinstance(values, (int, float, np.floating, np.integer)):
        raise ConfigError(f"must be a sequence of fractions (e.g. [nan, 0.02, 0.05]), got {values!r}", field=name)
    levels = []
    for i, v in enumerate(values):
        if v is None:
            levels.append(math.nan)
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"must be a fraction or nan, got {v!r}", field=f"{name}[{i}]") from None
        if math.isnan(x):
            levels.append(x)
            continue
        if not math.isfinite(x) or x <= 0.0 or (below_one and x >= 1.0):
            rule = "a fraction in (0, 1)" if below_one else "a finite fraction > 0"
            raise ConfigError(f"must be {rule} (0.05 = 5 % from the entry fill) or nan for none, got {v!r}",
                              field=f"{name}[{i}]")
        levels.append(x)
    if not levels:
        raise ConfigError("is empty: pass at least one level, or [nan] for no bracket", field=name)
    arr = np.array(levels, dtype=np.float64)
    keys = [("nan" if math.isnan(x) else x) for x in levels]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"has the level {dup} more than once; each combination must be distinct", field=name)
    return arr


SWEEP_CONFIG = SimConfig(lot_size=0.0)
"""The account of a sweep given no ``config``: :class:`~backforge.engine.config.SimConfig`'s defaults
with fractional units."""

_SWEEP_FIELDS = ("cash", "fee_rate", "slippage_bps", "lot_size")


def _sweep_config(config: Any, overrides: dict[str, Any]) -> SimConfig:
    """``config`` (default :data:`SWEEP_CONFIG`) with the given shorthand fields replaced, checked to use
    only what a sweep models."""
    if config is None:
        config = SWEEP_CONFIG
    elif not isinstance(config, SimConfig):
        raise ConfigError(f"must be a SimConfig, got {type(config).__name__}", field="config")
    given = {name: value for name, value in overrides.items() if value is not None}
    for name, value in given.items():
        low_open = name == "cash"
        _number(value, name, low=0.0, low_open=low_open)
    if given:
        from pydantic import ValidationError

        from backforge.engine.config import pydantic_to_config_error

        try:
            config = SimConfig(**{**config.model_dump(), **given})
        except ValidationError as exc:
            raise pydantic_to_config_error(exc) from None
    defaults = SimConfig()
    for name in SimConfig.model_fields:
        if name in _SWEEP_FIELDS or name in ("allow_short", "record_positions"):
            continue  # long only, no history kept: these do not change a sweep
        if getattr(config, name) != getattr(defaults, name):
            raise ConfigError(f"a sweep models cash, fee_rate, slippage_bps and lot_size only; {name} must keep its "
                              f"default ({getattr(defaults, name)!r}), got {getattr(config, name)!r}; use from_signals "
                              "for this account", field=f"config.{name}")
    return config


def _lower_params(data: MarketData, *, config: Any, cash: Any, size: Any, fee_rate: Any, slippage_bps: Any,
                  lot_size: Any, periods_per_year: Any, risk_free: Any) -> CrossParams:
    """Validate the settings and lower them to :class:`CrossParams`."""
    sim = _sweep_config(config, {"cash": cash, "fee_rate": fee_rate, "slippage_bps": slippage_bps,
                                 "lot_size": lot_size})
    asset = data.assets[0]
    cash_ = float(sim.cash)
    size_ = _number(size, "size", low=0.0, low_open=True, high=1.0, high_open=False)
    fee_ = float(sim.per_asset("fee_rate", (asset,))[0])
    slip_ = float(sim.per_asset("slippage_bps", (asset,))[0])
    lot_ = float(sim.per_asset("lot_size", (asset,))[0])
    if periods_per_year is None:
        periods = float(periods_per_year_for(data.timestamps))
    else:
        periods = _number(periods_per_year, "periods_per_year", low=0.0, low_open=True)
    rf = _number(risk_free, "risk_free", low=-1.0, low_open=True)
    return CrossParams(cash_, size_, fee_, slip_, lot_, periods, float(risk_free_per_period(rf, periods)))


def _indicator_rows(values: Any, n_bars: int, name: str) -> np.ndarray:
    """User indicator rows as C-contiguous float64 ``[K, T]`` (a ``[T]`` array is one row)."""
    arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"must be numeric, got dtype {arr.dtype}", field=name)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim == 2 and arr.shape[0] == n_bars and arr.shape[1] != n_bars:
        raise DataError(f"got shape {arr.shape} = [T, K]; pass the transpose (one indicator variant per row, "
                        "time along the row)", field=name)
    if arr.ndim != 2 or arr.shape[1] != n_bars or arr.shape[0] == 0:
        raise DataError(f"must be [K, T] with T = {n_bars} bars of the swept asset (one indicator variant per row, "
                        f"time along the row; with asset=..., the bars of data.select([asset])), got shape "
                        f"{np.shape(values)}", field=name)
    return np.ascontiguousarray(arr)


def _run(prices: np.ndarray, fast: np.ndarray, slow: np.ndarray, pair_fast: np.ndarray, pair_slow: np.ndarray,
         stop_loss: np.ndarray, take_profit: np.ndarray, params: CrossParams, *, progress: bool,
         n_threads: int) -> np.ndarray:
    """Run :func:`sweep_cross_nb` over all pairs on ``n_threads`` threads (in about 50 batches when a
    progress bar is shown). Pairs are handed to threads in chunks of ``PAIR_CHUNK``: their cost varies
    with the number of trades (short windows trade more), so a static half-and-half split would leave
    one core idle at the end."""
    n_pairs = pair_fast.shape[0]
    per_pair = stop_loss.shape[0] * take_profit.shape[0]
    out = np.empty((N_METRICS, n_pairs * per_pair))
    previous_threads = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        with numba.parallel_chunksize(PAIR_CHUNK):
            if not progress:
                sweep_cross_nb(prices, fast, slow, pair_fast, pair_slow, stop_loss, take_profit, params, 0, n_pairs,
                               out)
                return out
            from backforge._cli import progress_bar

            bounds = np.linspace(0, n_pairs, min(n_pairs, 50) + 1).astype(np.int64)
            with progress_bar() as bar:
                task = bar.add_task("sweep combinations", total=n_pairs * per_pair)
                for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                    sweep_cross_nb(prices, fast, slow, pair_fast, pair_slow, stop_loss, take_profit, params, lo, hi,
                                   out)
                    bar.advance(task, (hi - lo) * per_pair)
            return out
    finally:
        numba.set_num_threads(previous_threads)


def _check_threads(n_threads: int | None) -> int:
    """``n_threads`` validated; ``None`` means every core numba may use (``NUMBA_NUM_THREADS``)."""
    if n_threads is None:
        return int(numba.config.NUMBA_NUM_THREADS)
    most = numba.config.NUMBA_NUM_THREADS
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or not 1 <= n_threads <= most:
        raise ConfigError(f"must be an integer in 1..{numba.config.NUMBA_NUM_THREADS} (the cores numba may use), "
                          f"got {n_threads!r}", field="n_threads")
    return int(n_threads)


def _metrics_frame(keys: dict[str, Any], out: np.ndarray) -> pl.DataFrame:
    """Key columns then the metric columns (``n_trades`` as Int64)."""
    columns: dict[str, Any] = dict(keys)
    for row, name in enumerate(SWEEP_METRIC_NAMES):
        columns[name] = out[row].astype(np.int64) if row == ROW_N_TRADES else out[row]
    return pl.DataFrame(columns)


def _level_column(levels: np.ndarray, repeat: int, tile: int, name: str) -> pl.Series:
    """A stop-level key column with nulls where there is no bracket."""
    values = np.tile(np.repeat(levels, repeat), tile)
    return pl.Series(name, values).fill_nan(None)


# ============================================================================================ wrappers

def sweep_signals(
    data: MarketData,
    fast: Any,
    slow: Any,
    *,
    pairs: Any = None,
    stop_loss: Sequence[float | None] = (math.nan,),
    take_profit: Sequence[float | None] = (math.nan,),
    asset: str | None = None,
    config: SimConfig | None = None,
    fee_rate: float | None = None,
    slippage_bps: float | None = None,
    cash: float | None = None,
    lot_size: float | None = None,
    size: float = 1.0,
    periods_per_year: float | None = None,
    risk_free: float = 0.0,
    progress: bool = False,
    n_threads: int | None = None,
) -> pl.DataFrame:
    """Sweep crossings of two families of precomputed indicators (× stop levels) in one parallel pass.

    Row ``i`` of ``fast`` crossed with row ``j`` of ``slow`` is the long-only strategy
    ``from_signals(data, fast[i] > slow[j], fast[i] < slow[j], ...)`` (entry when flat and fast is above
    slow, exit when long and fast is below slow, next-open fills); every pair is combined with every
    ``stop_loss`` and ``take_profit`` level. Only metrics are kept (see :data:`SWEEP_METRIC_NAMES`).

    Parameters
    ----------
    data
        Market data; with several assets, ``asset`` names the one to trade (its own bars are used,
        as ``data.select([asset])`` gives them).
    fast, slow
        float64 ``[K, T]`` indicator rows (one variant per row, time along the row; a ``[T]`` array is
        one row), aligned with the asset's bars; NaN where undefined (warm-up).
    pairs
        int ``[P, 2]`` (fast row, slow row) pairs to cross; ``None`` crosses every row with every row.
    stop_loss, take_profit
        Bracket distances as fractions of the entry fill price (0.05 = 5 %); ``nan`` (or ``None``) is
        "no bracket". Stop-losses must be in (0, 1), take-profits > 0.
    asset
        The asset to trade when ``data`` has several.
    config
        The account and its costs, as for :func:`backforge.from_signals`: a sweep uses ``cash``,
        ``fee_rate``, ``slippage_bps`` and ``lot_size`` (per-asset values are read for the swept
        asset); every other field must keep its default (a sweep has no leverage, spread or fixed
        fees). Without it the account is :data:`SWEEP_CONFIG` (fractional units).
    fee_rate, slippage_bps, cash, lot_size
        Shorthands that override those fields of ``config``: commission as a fraction of notional on
        every fill; slippage in basis points on market and stop fills (never on take-profit fills);
        starting cash; quantity step (0 = fractional units, 1 = whole units).
    size
        Fraction of equity each entry commits, in (0, 1] (there is no leverage in a sweep).
    periods_per_year
        Bars per year for annualizing; ``None`` infers it from the timestamps
        (:func:`backforge.results.metrics.periods_per_year_for`).
    risk_free
        Annual risk-free rate for Sharpe and Sortino (converted per bar).
    progress
        Show a progress bar (the work then runs in about 50 batches).
    n_threads
        Threads to use (default: every core numba may use). Results do not depend on it.

    Returns
    -------
    polars.DataFrame
        One row per combination, pair-major (then stop_loss, then take_profit): ``fast_index``,
        ``slow_index``, ``stop_loss``, ``take_profit`` (null: none), then the metric columns.

    Examples
    --------
    >>> import numpy as np, backforge as bf
    >>> from backforge.strategy.indicators import sma
    >>> data = bf.synth(n_assets=1, years=2, seed=3)
    >>> close = data.close[:, 0]
    >>> fast = np.vstack([sma(close, None, w) for w in (5, 10)])
    >>> slow = np.vstack([sma(close, None, w) for w in (20, 50)])
    >>> table = sweep_signals(data, fast, slow, stop_loss=[float("nan"), 0.05])
    >>> table.height, table.columns[:5]
    (8, ['fast_index', 'slow_index', 'stop_loss', 'take_profit', 'total_return'])
    """
    single = _single_asset(data, asset)
    n_bars = single.n_bars
    fast_rows = _indicator_rows(fast, n_bars, "fast")
    slow_rows = _indicator_rows(slow, n_bars, "slow")
    if pairs is None:
        grid_fast, grid_slow = np.meshgrid(np.arange(fast_rows.shape[0]), np.arange(slow_rows.shape[0]), indexing="ij")
        pair_fast, pair_slow = grid_fast.ravel(), grid_slow.ravel()
    else:
        arr = np.asarray(pairs)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0 or arr.dtype.kind not in "iu":
            raise ConfigError(f"must be a non-empty integer array [P, 2] of (fast row, slow row), got shape "
                              f"{arr.shape} and dtype {arr.dtype}", field="pairs")
        pair_fast, pair_slow = arr[:, 0], arr[:, 1]
        for values, rows, name in ((pair_fast, fast_rows.shape[0], "fast"), (pair_slow, slow_rows.shape[0], "slow")):
            bad = np.flatnonzero((values < 0) | (values >= rows))
            if bad.size:
                raise ConfigError(f"{name} row {values[bad[0]]} is outside 0..{rows - 1}", field=f"pairs[{bad[0]}]")
    stops = _bracket_levels(stop_loss, "stop_loss", below_one=True)
    takes = _bracket_levels(take_profit, "take_profit", below_one=False)
    params = _lower_params(single, config=config, cash=cash, size=size, fee_rate=fee_rate, slippage_bps=slippage_bps,
                           lot_size=lot_size, periods_per_year=periods_per_year, risk_free=risk_free)
    threads = _check_threads(n_threads)
    prices = _price_rows(single, 0)
    pair_fast = np.ascontiguousarray(pair_fast, dtype=np.int64)
    pair_slow = np.ascontiguousarray(pair_slow, dtype=np.int64)
    out = _run(prices, fast_rows, slow_rows, pair_fast, pair_slow, stops, takes, params, progress=progress,
               n_threads=threads)
    per_pair = stops.shape[0] * takes.shape[0]
    keys = {
        "fast_index": np.repeat(pair_fast, per_pair),
        "slow_index": np.repeat(pair_slow, per_pair),
        "stop_loss": _level_column(stops, takes.shape[0], pair_fast.shape[0], "stop_loss"),
        "take_profit": _level_column(takes, 1, pair_fast.shape[0] * stops.shape[0], "take_profit"),
    }
    return _metrics_frame(keys, out)


def _windows(values: Any, name: str, n_bars: int) -> np.ndarray:
    """Distinct positive bar windows no longer than the data, as int64."""
    if values is None or isinstance(values, (int, np.integer, str)):
        raise ConfigError(f"must be a sequence of bar counts (e.g. range(5, 50)), got {values!r}", field=name)
    windows = []
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            else:
                raise ConfigError(f"must be a whole number of bars, got {v!r}", field=f"{name}[{i}]")
        if v < 1:
            raise ConfigError(f"must be >= 1 bar, got {v}", field=f"{name}[{i}]")
        if v > n_bars:
            raise ConfigError(f"window {v} is longer than the data ({n_bars} bars)", field=f"{name}[{i}]")
        windows.append(int(v))
    if not windows:
        raise ConfigError("is empty: pass at least one window", field=name)
    if len(set(windows)) != len(windows):
        dup = next(w for w in windows if windows.count(w) > 1)
        raise ConfigError(f"has the window {dup} more than once; each combination must be distinct", field=name)
    return np.array(windows, dtype=np.int64)


def sweep_sma_cross(
    data: MarketData,
    *,
    fast: Sequence[int],
    slow: Sequence[int],
    stop_loss: Sequence[float | None] = (math.nan,),
    take_profit: Sequence[float | None] = (math.nan,),
    asset: str | None = None,
    config: SimConfig | None = None,
    fee_rate: float | None = None,
    slippage_bps: float | None = None,
    cash: float | None = None,
    lot_size: float | None = None,
    size: float = 1.0,
    periods_per_year: float | None = None,
    risk_free: float = 0.0,
    progress: bool = False,
    n_threads: int | None = None,
) -> pl.DataFrame:
    """Sweep the long-only SMA cross over fast × slow windows (only ``fast < slow``) × stop levels.

    Each distinct SMA of the close is computed once (:func:`backforge.strategy.indicators.sma`); every
    combination is then ``from_signals(data, sma_fast > sma_slow, sma_fast < sma_slow, ...)`` simulated
    in one compiled, parallel pass (:func:`sweep_signals` has the semantics and the options).

    Parameters
    ----------
    data
        Market data (one asset, or ``asset`` to choose one).
    fast, slow
        Windows in bars (distinct, >= 1, at most the number of bars). Pairs with ``fast >= slow`` are
        left out; at least one pair must remain.
    stop_loss, take_profit, asset, config, fee_rate, slippage_bps, cash, lot_size, size
        As in :func:`sweep_signals`. Without ``config`` the account is :data:`SWEEP_CONFIG`
        (fractional units, unlike ``from_signals``' whole units): pass ``lot_size=1`` or
        ``config=SimConfig(...)`` for whole shares.
    periods_per_year, risk_free, progress, n_threads
        As in :func:`sweep_signals`.

    Returns
    -------
    polars.DataFrame
        One row per valid combination, ordered by fast, slow, stop_loss, take_profit (in the order
        given): ``fast``, ``slow``, ``stop_loss``, ``take_profit`` (null: none), then the metric columns
        of :data:`SWEEP_METRIC_NAMES`.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=2, seed=3)
    >>> table = sweep_sma_cross(data, fast=[5, 10, 20], slow=[20, 50], stop_loss=[float("nan"), 0.05],
    ...                         fee_rate=0.001)
    >>> table.height  # (5, 20), (5, 50), (10, 20), (10, 50), (20, 50) × 2 stop levels
    10
    >>> table.select("fast", "slow", "stop_loss").head(3).rows()
    [(5, 20, None), (5, 20, 0.05), (5, 50, None)]
    >>> best = table.sort("sharpe", descending=True).row(0, named=True)
    >>> sorted(best)[:4]
    ['annual_return', 'annual_volatility', 'calmar', 'exposure_time']
    """
    from backforge.strategy.indicators import sma

    single = _single_asset(data, asset)
    n_bars = single.n_bars
    fast_windows = _windows(fast, "fast", n_bars)
    slow_windows = _windows(slow, "slow", n_bars)
    grid_fast, grid_slow = np.meshgrid(np.arange(fast_windows.shape[0]), np.arange(slow_windows.shape[0]),
                                       indexing="ij")
    valid = fast_windows[grid_fast] < slow_windows[grid_slow]
    if not valid.any():
        raise ConfigError(f"no combination has fast < slow: the smallest fast window is {fast_windows.min()} and the "
                          f"largest slow window is {slow_windows.max()}", field="fast")
    pairs = np.column_stack([grid_fast[valid], grid_slow[valid]]).astype(np.int64)
    # validate every other option before the indicators are computed
    _bracket_levels(stop_loss, "stop_loss", below_one=True)
    _bracket_levels(take_profit, "take_profit", below_one=False)
    _lower_params(single, config=config, cash=cash, size=size, fee_rate=fee_rate, slippage_bps=slippage_bps,
                  lot_size=lot_size, periods_per_year=periods_per_year, risk_free=risk_free)
    _check_threads(n_threads)
    close = np.ascontiguousarray(single.close[:, 0], dtype=np.float64)
    fast_rows = np.empty((fast_windows.shape[0], n_bars))
    slow_rows = np.empty((slow_windows.shape[0], n_bars))
    used_fast = np.unique(pairs[:, 0])
    used_slow = np.unique(pairs[:, 1])
    cache: dict[int, np.ndarray] = {}
    for rows, windows, used in ((fast_rows, fast_windows, used_fast), (slow_rows, slow_windows, used_slow)):
        rows[:] = np.nan
        for i in used:
            w = int(windows[i])
            if w not in cache:
                cache[w] = sma(close, single.timestamps, w)
            rows[i] = cache[w]
    table = sweep_signals(
        single, fast_rows, slow_rows, pairs=pairs, stop_loss=stop_loss, take_profit=take_profit, asset=None,
        config=config, fee_rate=fee_rate, slippage_bps=slippage_bps, cash=cash, size=size, lot_size=lot_size,
        periods_per_year=periods_per_year, risk_free=risk_free, progress=progress, n_threads=n_threads,
    )
    return table.with_columns(
        pl.Series("fast_index", fast_windows[table["fast_index"].to_numpy()]),
        pl.Series("slow_index", slow_windows[table["slow_index"].to_numpy()]),
    ).rename({"fast_index": "fast", "slow_index": "slow"})

"""The strategy language on event data (interface (b) of docs/events.md).

A strategy file with ``data: {events: ...}`` runs on the event engine:

1. **evaluation points** — every distinct local timestamp the strategy receives (``every_event``), or a
   time grid (``evaluate: {grid: 1s}``) on the strategy's clock;
2. **event series**, vectorized over the stream in one compiled pass (:func:`event_series_nb`): the
   local book's bid, ask, mid and spread after every row received up to each point, the book imbalance
   over N levels, and cumulative buyer/seller-initiated trade quantity (``trade_flow`` over a duration
   or a number of evaluations is a difference of those cumulative sums);
3. the bar compiler's indicators and conditions (:class:`backforge.strategy.compiler._Compiler`) on those
   points as if they were bars (``close`` = ``mid``, ``volume`` = quantity traded since the previous
   point; integer windows count evaluation points, durations are measured on timestamps);
4. a compiled driver (:func:`language_driver_nb`) that elapses the engine to each point and lowers the
   fired actions to event-engine orders (market IOC or GTC limit, with the configured latencies), with
   the bar engine's ``repeat: false`` rule evaluated on the position and orders as the strategy knows
   them.

The result is the event engine's :class:`~backforge.results.result.Result` with ``signal_events``.

Examples
--------
>>> result = run_event_portfolio({
...     "name": "imbalance", "universe": ["SYNTH"],
...     "data": {"events": {"source": "synthetic_l2", "n_events": 20_000, "seed": 3,
...                         "evaluate": {"grid": "1s"}, "engine": {"entry_latency_ns": 1_000_000}}},
...     "strategies": [
...         {"name": "enter", "condition": {"lhs": {"book_imbalance": {"levels": 3}}, "op": ">", "rhs": 0.3},
...          "action": {"buy": {"allocation": {"units": 0.01}}}},
...         {"name": "leave", "condition": {"lhs": {"book_imbalance": {"levels": 3}}, "op": "<", "rhs": -0.3},
...          "action": {"close": {}}}]})
>>> result.mode, sorted(result.signal_events["action"].unique().to_list())
('events', ['buy', 'close'])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from backforge._jit import frozen, njit
from backforge._time import parse_duration
from backforge.data.events import EventData
from backforge.data.market import MarketData
from backforge.engine.events import api
from backforge.engine.events import core as c
from backforge.errors import ConfigError
from backforge.strategy import schema as sc
from backforge.strategy.compiler import _Compiler, is_pure

__all__ = ["event_series", "evaluation_times", "load_event_data", "compile_event_portfolio", "run_event_portfolio",
           "CompiledEventPortfolio"]

A_BUY, A_SELL, A_CLOSE, A_ALERT = 0, 1, 2, 3
_ACTION_CODES = {"buy": A_BUY, "sell": A_SELL, "close": A_CLOSE, "alert": A_ALERT}
S_UNITS, S_NOTIONAL, S_EQUITY, S_CASH = 0, 1, 2, 3
_SIZE_CODES = {"units": S_UNITS, "notional": S_NOTIONAL, "equity_fraction": S_EQUITY, "cash_fraction": S_CASH}


# ------------------------------------------------------------------------------------------- series

@njit(cache=True, error_model="numpy")
def event_series_nb(local_ts, kind, side, price, qty, tick, lot, window_lo, window, eval_ts, levels,
                    out_bid, out_ask, out_imbalance, out_buy, out_sell, out_volume):
    """The local book and trade flow at each evaluation point, in one pass over the stream.

    At point ``k`` every row with ``local_ts <= eval_ts[k]`` has been applied (the engine's local book,
    :func:`backforge.engine.events.core.apply_book_row_nb`). Slow reference: replay the rows up to each
    point into a dict of levels and read it (``tests/engine/test_events_language.py``).
    """
    bid = np.zeros(window)
    ask = np.zeros(window)
    ints = np.zeros(c.N_INTS, dtype=np.int64)
    ints[c.I_LBB] = -1
    ints[c.I_LBA] = window
    ints[c.I_WLO] = window_lo
    n = local_ts.shape[0]
    i = 0
    buy = 0.0
    sell = 0.0
    for k in range(eval_ts.shape[0]):
        t = eval_ts[k]
        before = buy + sell
        while i < n and local_ts[i] <= t:
            if kind[i] == c.TRADE:
                if side[i] > 0:
                    buy += qty[i]
                else:
                    sell += qty[i]
            else:
                c.apply_book_row_nb(bid, ask, ints, c.I_LBB, c.I_LBA, kind[i], side[i], price[i], qty[i], tick, lot)
            i += 1
        bb = ints[c.I_LBB]
        ba = ints[c.I_LBA]
        out_bid[k] = (bb + window_lo) * tick if bb >= 0 else np.nan
        out_ask[k] = (ba + window_lo) * tick if ba < window else np.nan
        out_buy[k] = buy
        out_sell[k] = sell
        out_volume[k] = buy + sell - before
        for j in range(levels.shape[0]):
            b = 0.0
            a = 0.0
            for u in range(levels[j]):
                if bb - u >= 0:
                    b += bid[bb - u]
                if ba + u < window:
                    a += ask[ba + u]
            if np.isinf(b) or np.isinf(a):  # quotes without sizes
                out_imbalance[j, k] = 0.0 if np.isinf(b) and np.isinf(a) else (1.0 if np.isinf(b) else -1.0)
            else:
                out_imbalance[j, k] = (b - a) / (b + a) if b + a > 0.0 else 0.0


@dataclass(frozen=True)
class EventSeries:
    """The event series at the evaluation points (arrays of equal length)."""

    timestamps: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    buy: np.ndarray  # cumulative buyer-initiated quantity
    sell: np.ndarray
    volume: np.ndarray  # quantity traded since the previous point
    imbalance: dict[int, np.ndarray]

    @property
    def mid(self) -> np.ndarray:
        return (self.bid + self.ask) * 0.5


def evaluation_times(data: EventData, evaluate: Any = "every_event") -> np.ndarray:
    """The strategy's evaluation points: each distinct ``local_ts`` (``"every_event"``; all rows of a
    timestamp are received together), or every ``{grid: duration}`` from the first row's local time
    (rounded up to the grid) to the last.

    >>> from backforge.data.events import synthetic_quotes
    >>> q = synthetic_quotes(n_ticks=5, seed=1)
    >>> len(q), len(evaluation_times(q)), np.diff(evaluation_times(q, {"grid": "100ms"}))[:2].tolist()
    (10, 5, [100000000, 100000000])
    """
    ts = np.asarray(data.local_ts)
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    if evaluate == "every_event":
        last = np.ones(len(ts), dtype=bool)
        last[:-1] = ts[1:] != ts[:-1]
        return np.ascontiguousarray(ts[last])
    grid = evaluate.grid if isinstance(evaluate, sc.EventGrid) else evaluate["grid"]
    step = parse_duration(grid)
    first = -(-int(ts[0]) // step) * step
    count = (int(ts[-1]) - first) // step + 1
    if count > 200_000_000:
        raise ConfigError(f"a {grid} grid gives {count:,} evaluations: choose a coarser grid", path="data.events.evaluate")
    return first + step * np.arange(max(count, 0), dtype=np.int64)


def event_series(data: EventData, eval_ts: np.ndarray, *, levels: tuple[int, ...] = (1,),
                 tick_size: float | None = None) -> EventSeries:
    """Bid, ask, imbalance over ``levels`` and cumulative trade flow at ``eval_ts`` (local book).

    >>> from backforge.data.events import synthetic_l2
    >>> d = synthetic_l2(n_events=2_000, seed=1)
    >>> s = event_series(d, evaluation_times(d, {"grid": "100ms"}), levels=(1, 5))
    >>> bool((s.ask > s.bid).all()), bool((abs(s.imbalance[5]) <= 1).all())
    (True, True)
    """
    tick = float(tick_size or data.tick_size)
    lot = data.lot_size if data.lot_size > 0 else 1e-8
    lo_price, hi_price = data.price_range()
    lo = max(int(np.floor(lo_price / tick)) - 2, 0)
    window = int(np.ceil(hi_price / tick)) + 3 - lo
    k = len(eval_ts)
    out = [np.empty(k) for _ in range(5)]
    imbalance = np.empty((len(levels), k))
    columns = [frozen(a, a.dtype) for a in (data.local_ts, data.kind, data.side, data.price, data.qty)]
    event_series_nb(*columns, tick, lot, lo, max(window, 1), frozen(eval_ts, np.int64), frozen(levels, np.int64),
                    *out[:2], imbalance, *out[2:])
    return EventSeries(np.asarray(eval_ts), out[0], out[1], out[2], out[3], out[4],
                       {int(n): imbalance[j] for j, n in enumerate(levels)})


def trade_flow(series: EventSeries, data: EventData, window: int | str, output: str) -> np.ndarray:
    """Buy/sell quantity received over the last ``window`` evaluations (int) or the duration before each
    point (``(t - window, t]`` on the trades' local timestamps); NaN until the window is covered."""
    ts = series.timestamps
    if isinstance(window, int):
        buy, sell = np.full(len(ts), np.nan), np.full(len(ts), np.nan)
        buy[window:] = series.buy[window:] - series.buy[:-window]
        sell[window:] = series.sell[window:] - series.sell[:-window]
    else:
        span = parse_duration(window)
        trades = np.asarray(data.kind) == c.TRADE
        trade_ts = np.asarray(data.local_ts)[trades]
        trade_qty = np.asarray(data.qty)[trades]
        is_buy = np.asarray(data.side)[trades] > 0
        buys = np.concatenate([[0.0], np.cumsum(np.where(is_buy, trade_qty, 0.0))])
        sells = np.concatenate([[0.0], np.cumsum(np.where(is_buy, 0.0, trade_qty))])
        out = np.searchsorted(trade_ts, ts - span, "right")  # trades at local_ts <= t - span are outside
        covered = ts - span >= ts[0]
        buy = np.where(covered, series.buy - buys[out], np.nan)
        sell = np.where(covered, series.sell - sells[out], np.nan)
    if output == "buy":
        return buy
    if output == "sell":
        return sell
    if output == "total":
        return buy + sell
    with np.errstate(divide="ignore", invalid="ignore"):
        return buy - sell if output == "net" else np.where(buy + sell > 0, (buy - sell) / (buy + sell), np.nan)


# ------------------------------------------------------------------------------------------ compile

class _EventCompiler(_Compiler):
    """The bar compiler on evaluation points, plus the event-only indicators."""

    def __init__(self, portfolio: sc.Portfolio, market: MarketData, series: EventSeries, data: EventData) -> None:
        super().__init__(portfolio, market)
        self.event_series, self.event_data = series, data

    def event_value(self, node: Any, path: str) -> np.ndarray:
        if isinstance(node, sc.BookImbalance):
            values = self.event_series.imbalance[node.levels]
        else:
            self.check_window(node.window, f"{path}.window")
            values = trade_flow(self.event_series, self.event_data, node.window, node.output)
        return np.ascontiguousarray(values.reshape(-1, 1))


def _walk(node: Any):
    yield node
    for name in ("of", "lhs", "rhs", "condition"):
        child = getattr(node, name, None)
        if child is not None:
            yield from _walk(child)
    for name in ("args", "conditions"):
        for child in getattr(node, name, None) or []:
            yield from _walk(child)


def _event_only_levels(portfolio: sc.Portfolio) -> tuple[int, ...]:
    levels = {1}
    for strategy in portfolio.strategies:
        if strategy.condition is not None:
            levels.update(n.levels for n in _walk(strategy.condition) if isinstance(n, sc.BookImbalance))
    return tuple(sorted(levels))


def _check_supported(portfolio: sc.Portfolio) -> None:
    """What the event lowering does not do (yet) is refused at the boundary, with the field's path."""
    if len(portfolio.universe) != 1:
        raise ConfigError(f"an event strategy trades one instrument; the universe lists {len(portfolio.universe)}",
                          path="universe")
    changed = sorted(portfolio.costs.model_fields_set)
    if changed:
        raise ConfigError("costs do not apply on event data: fees are data.events.engine.maker_fee / taker_fee",
                          path=f"costs.{changed[0]}")
    if portfolio.risk is not None:
        raise ConfigError("risk rules are not available on event data yet", path="risk")
    for name in ("start", "end"):
        if getattr(portfolio.data, name) is not None:
            raise ConfigError("cut event data when importing it (backforge events import --start/--end)",
                              path=f"data.{name}")
    for i, s in enumerate(portfolio.strategies):
        where = f"strategies[{i}]"
        if s.risk is not None:
            raise ConfigError("risk rules are not available on event data yet", path=f"{where}.risk")
        if s.condition is not None and not is_pure(s.condition):
            raise ConfigError("position and portfolio state are not available in conditions on event data yet "
                              "(the repeat rule and close actions cover entering once and leaving)",
                              path=f"{where}.condition")
        action = s.action
        if action.kind not in _ACTION_CODES:
            raise ConfigError(f"{action.kind!r} is not available on event data (buy, sell, close, alert)",
                              path=f"{where}.action")
        if isinstance(action, sc.Trade):
            if action.order_type == "stop":
                raise ConfigError("stop orders are not available on event data (market or limit)",
                                  path=f"{where}.action.order_type")
            for name in ("stop_loss", "take_profit", "trailing_stop"):
                if getattr(action, name) is not None:
                    raise ConfigError(f"{name} is not available on event data yet", path=f"{where}.action.{name}")
            if action.time_in_force != "gtc":
                raise ConfigError("on event data orders are GTC (limit) or IOC (market)",
                                  path=f"{where}.action.time_in_force")
            if not isinstance(action.allocation, sc.Allocation) or action.allocation.type not in _SIZE_CODES:
                kind = getattr(action.allocation, "type", "?")
                raise ConfigError(f"allocation {kind!r} is not available on event data (units, notional, "
                                  "equity_fraction, cash_fraction)", path=f"{where}.action.allocation")


@dataclass
class CompiledEventPortfolio:
    """A strategy file lowered to the event engine: evaluation points, fire masks and action codes."""

    portfolio: sc.Portfolio
    data: EventData
    market: MarketData
    eval_ts: np.ndarray
    fire: np.ndarray  # bool [K, S]
    actions: np.ndarray  # f8 [S, 7]: kind, size type, size, order type (0 market, 1 limit), offset, repeat, close fraction


def load_event_data(spec: sc.EventSource, *, base: Any = None, symbol: str | None = None) -> EventData:
    """The event data of a file's ``data.events`` (paths relative to ``base``, the file's folder)."""
    from backforge.data import events as ev

    root = Path(base) if base is not None else Path.cwd()
    feed = parse_duration(spec.feed_latency) if spec.feed_latency else 0
    name = spec.symbol or symbol
    options: dict[str, Any] = {"symbol": name} if name else {}
    if spec.tick_size:
        options["tick_size"] = spec.tick_size
    if spec.source == "synthetic_l2":
        return ev.synthetic_l2(n_events=spec.n_events, seed=spec.seed, **options)
    if spec.source == "synthetic_quotes":
        return ev.synthetic_quotes(n_ticks=max(spec.n_events // 2, 1), seed=spec.seed, feed_latency_ns=feed, **options)
    from backforge.data.paths import resolve_data_path

    path = resolve_data_path(spec.path, base=root, where="data.events.path")
    if spec.source == "store":
        return ev.EventStore(path).load(spec.symbol)
    reader = {"truefx": ev.read_truefx_quotes, "binance_trades": ev.read_binance_trades, "l2_csv": ev.read_l2_csv}
    return reader[spec.source](path, feed_latency_ns=feed, policy=spec.policy, **options)


def compile_event_portfolio(portfolio: sc.Portfolio | dict | str, data: EventData | None = None, *,
                            base: Any = None) -> CompiledEventPortfolio:
    """Validate a strategy file against event data and lower it to the event engine."""
    if not isinstance(portfolio, sc.Portfolio):
        portfolio = sc.load_portfolio(portfolio)
    spec = portfolio.data.events
    if spec is None:
        raise ConfigError("not an event strategy: give data.events (see docs/events.md)", path="data.events")
    _check_supported(portfolio)
    if data is None:
        data = load_event_data(spec, base=base, symbol=portfolio.universe[0])
    if len(data) == 0:
        raise ConfigError("the event data has no rows", path="data.events")
    tick = spec.engine.get("tick_size") or spec.tick_size or data.tick_size
    eval_ts = evaluation_times(data, spec.evaluate)
    series = event_series(data, eval_ts, levels=_event_only_levels(portfolio), tick_size=tick)
    quotes = {field: series.bid for field in ("open", "high", "low", "close")}
    asks = {field: series.ask for field in ("open", "high", "low", "close")}
    market = MarketData.from_arrays(eval_ts, close=series.mid.reshape(-1, 1), volume=series.volume.reshape(-1, 1),
                                    bid={f: v.reshape(-1, 1) for f, v in quotes.items()},
                                    ask={f: v.reshape(-1, 1) for f, v in asks.items()},
                                    assets=[portfolio.universe[0]], validate=False)
    compiler = _EventCompiler(portfolio, market, series, data)
    n = len(portfolio.strategies)
    fire = np.zeros((len(eval_ts), n), dtype=np.bool_)
    actions = np.zeros((n, 7))
    for i, s in enumerate(portfolio.strategies):
        mask = compiler.schedule(s.schedule).copy()
        if s.condition is not None:
            mask &= compiler.condition(s.condition, f"strategies[{i}].condition")[:, 0]
        fire[:, i] = mask
        a = s.action
        actions[i, 0] = _ACTION_CODES[a.kind]
        if isinstance(a, sc.Trade):
            actions[i, 1] = _SIZE_CODES[a.allocation.type]
            actions[i, 2] = a.allocation.value
            actions[i, 3] = 1.0 if a.order_type == "limit" else 0.0
            actions[i, 4] = a.limit_offset
            actions[i, 5] = 1.0 if a.repeat else 0.0
        elif isinstance(a, sc.Close):
            actions[i, 6] = a.fraction
    return CompiledEventPortfolio(portfolio, data, market, eval_ts, fire, actions)


# ------------------------------------------------------------------------------------------- driver

@njit(cache=True, error_model="numpy")
def language_driver_nb(sim, eval_ts, fire, actions, cash, log):
    """Elapse to each evaluation point and act on the strategies that fired there, in file order.

    ``log`` rows: (point, strategy, order record or -1, action); returns the number of rows written.
    Buy/sell sizes use the touch they would trade at (ask for a buy, bid for a sell); limit prices are the
    near touch moved away by ``limit_offset`` (a buy at ``bid * (1 - offset)``, rounded down to a tick).
    """
    n_strategies = actions.shape[0]
    working = np.full(n_strategies, -1, dtype=np.int64)
    next_id = 1
    n_log = 0
    tick = api.tick_size(sim)
    lot = api.lot_size(sim)
    if api.elapse(sim, 0) == 1:
        return 0
    for k in range(eval_ts.shape[0]):
        delay = eval_ts[k] - api.current_timestamp(sim)
        if delay > 0:
            api.elapse(sim, delay)  # 1 at the end of the data: every row up to the point is applied all the same
        for s in range(n_strategies):
            if not fire[k, s]:
                continue
            kind = int(actions[s, 0])
            record = -1
            if kind == A_ALERT:
                pass
            elif kind == A_CLOSE:
                pos = api.position(sim)
                qty = np.floor(abs(pos) * actions[s, 6] / lot + 1e-9) * lot
                if qty <= 0.0 or (working[s] >= 0 and api.order_exists(sim, working[s])):
                    continue
                record = sim.ints[c.I_NORD]
                if pos > 0:
                    code = api.submit_sell_order(sim, next_id, 0.0, qty, api.IOC, api.MARKET)
                else:
                    code = api.submit_buy_order(sim, next_id, 0.0, qty, api.IOC, api.MARKET)
                if code != 0:
                    continue
                working[s] = next_id
                next_id += 1
            else:
                side = 1 if kind == A_BUY else -1
                pos = api.position(sim)
                if actions[s, 5] == 0.0:
                    if pos * side > 0.0 or (working[s] >= 0 and api.order_exists(sim, working[s])):
                        continue
                touch = api.best_ask(sim) if side > 0 else api.best_bid(sim)
                if not np.isfinite(touch):
                    continue
                size_type = int(actions[s, 1])
                size = actions[s, 2]
                if size_type == S_UNITS:
                    qty = size
                elif size_type == S_NOTIONAL:
                    qty = size / touch
                elif size_type == S_EQUITY:
                    qty = size * (cash + api.equity(sim)) / touch
                else:
                    qty = size * (cash + api.balance(sim) - api.fee(sim)) / touch
                qty = np.floor(qty / lot + 1e-9) * lot
                if not (qty > 0.0):
                    continue
                record = sim.ints[c.I_NORD]
                if actions[s, 3] == 1.0:
                    near = api.best_bid(sim) if side > 0 else api.best_ask(sim)
                    if not np.isfinite(near):
                        continue
                    if side > 0:
                        price = np.floor(near * (1.0 - actions[s, 4]) / tick + 1e-9) * tick
                        code = api.submit_buy_order(sim, next_id, price, qty, api.GTC, api.LIMIT)
                    else:
                        price = np.ceil(near * (1.0 + actions[s, 4]) / tick - 1e-9) * tick
                        code = api.submit_sell_order(sim, next_id, price, qty, api.GTC, api.LIMIT)
                elif side > 0:
                    code = api.submit_buy_order(sim, next_id, 0.0, qty, api.IOC, api.MARKET)
                else:
                    code = api.submit_sell_order(sim, next_id, 0.0, qty, api.IOC, api.MARKET)
                if code != 0:
                    continue
                working[s] = next_id
                next_id += 1
            if n_log < log.shape[0]:
                log[n_log, 0] = k
                log[n_log, 1] = s
                log[n_log, 2] = record
                log[n_log, 3] = kind
                n_log += 1
    while api.elapse(sim, 1_000_000_000_000) == 0:  # let the last orders and responses play out
        pass
    return n_log


def run_event_portfolio(portfolio: sc.Portfolio | dict | str, data: EventData | None = None, *, base: Any = None,
                        trade_from_ns: int | None = None, until_ns: int | None = None):
    """Validate, lower and run a strategy file on event data (``data.events``); returns the event
    engine's :class:`~backforge.results.result.Result` with ``signal_events``.

    ``until_ns`` ends the run before the first row the exchange publishes at or after it; ``trade_from_ns``
    fires no action before it: the rows before it still build the book and the indicators (warm-up),
    as a walk-forward window needs (the equity is the starting cash until then)."""
    from backforge.engine.events.run import EventConfig, new_sim, to_result
    from backforge.errors import SimulationError

    if not isinstance(portfolio, sc.Portfolio) and isinstance(portfolio, (str, Path)) and base is None \
            and Path(str(portfolio)).is_file():
        base = Path(str(portfolio)).resolve().parent
    if until_ns is not None:
        if not isinstance(portfolio, sc.Portfolio):
            portfolio = sc.load_portfolio(portfolio)
        if data is None and portfolio.data.events is not None:
            data = load_event_data(portfolio.data.events, base=base, symbol=portfolio.universe[0])
        if data is not None:
            data = data.slice(0, int(np.searchsorted(data.exch_ts, int(until_ns), "left")))
    cp = compile_event_portfolio(portfolio, data, base=base)
    if trade_from_ns is not None:
        cp.fire[cp.eval_ts < int(trade_from_ns)] = False
    spec = cp.portfolio.data.events
    cfg = EventConfig(cash=cp.portfolio.cash, **spec.engine)
    sim = new_sim(cp.data, cfg)
    log = np.zeros((min(max(4 * cfg.order_capacity, 1024), 10_000_000), 4), dtype=np.int64)
    n_log = language_driver_nb(sim, cp.eval_ts, cp.fire, cp.actions, cp.portfolio.cash, log)
    c.finish_nb(sim)
    if sim.ints[c.I_OVERFLOW]:
        raise SimulationError("record capacity exhausted: raise data.events.engine.order_capacity / live_orders",
                              field="order_capacity")
    result = to_result(sim, cp.data, cfg, name=cp.portfolio.name)
    log = log[:n_log]
    names = [s.name for s in cp.portfolio.strategies]
    kinds = {v: key for key, v in _ACTION_CODES.items()}
    points = log[:, 0]
    # the equity grid row each decision falls in (the Result's "bars")
    bars = np.searchsorted(np.asarray(result.data.timestamps), cp.eval_ts[points], "right") - 1
    result.signal_events = pl.DataFrame({
        "timestamp": pl.Series(cp.eval_ts[points]).cast(pl.Datetime("ns", "UTC")),
        "bar": np.maximum(bars, 0),
        "strategy": pl.Series([names[s] for s in log[:, 1]], dtype=pl.String),
        "asset": pl.Series([cp.data.symbol] * n_log, dtype=pl.String),
        "action": pl.Series([kinds[int(a)] for a in log[:, 3]], dtype=pl.String),
        "order_id": log[:, 2],
    })
    result.data_source["evaluate"] = spec.evaluate if isinstance(spec.evaluate, str) else {"grid": spec.evaluate.grid}
    result.data_source["evaluations"] = int(len(cp.eval_ts))
    return result

"""Configure and run the event engine; turn its records into the bar engine's :class:`Result`."""

from __future__ import annotations

from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backforge._jit import frozen
from backforge.data.events import EventData
from backforge.engine.events import core as c
from backforge.engine.records import event_dt, fill_dt, order_dt, trade_dt
from backforge.errors import ConfigError, SimulationError

__all__ = ["EventConfig", "QUEUE_MODELS", "EXCHANGES", "new_sim", "run_events", "to_result", "latency_table"]

QUEUE_MODELS = {
    "risk_averse": (c.Q_RISK_AVERSE, "advances only when trades at our price exceed the queue ahead; "
                                     "cancellations never move us forward (hftbacktest RiskAdverseQueueModel)"),
    "power_prob": (c.Q_POWER, "a decrease is behind us with probability f(back)/(f(back)+f(front)), f(x)=x**n"),
    "power_prob2": (c.Q_POWER2, "probability f(back)/f(back+front), f(x)=x**n"),
    "power_prob3": (c.Q_POWER3, "probability 1-f(front/(front+back)), f(x)=x**n"),
    "log_prob": (c.Q_LOG, "probability f(back)/(f(back)+f(front)), f(x)=log(1+x)"),
    "log_prob2": (c.Q_LOG2, "probability f(back)/f(back+front), f(x)=log(1+x)"),
}
"""Queue-position models: name -> (code, description)."""
EXCHANGES = {
    "no_partial_fill": "an order fills completely or not at all; a crossing order takes its whole size at the best price",
    "partial_fill": "orders fill as far as the queue/book allows; crossing orders walk the book level by level",
}


class EventConfig(BaseModel):
    """Settings of an event-level backtest (frozen; unknown keys are rejected).

    Examples
    --------
    >>> cfg = EventConfig(maker_fee=-0.0001, taker_fee=0.0005, queue_model="power_prob", queue_power=2.0,
    ...                   entry_latency_ns=2_000_000, response_latency_ns=2_000_000)
    >>> cfg.exchange, cfg.sample_every
    ('no_partial_fill', '1s')
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    cash: float = Field(100_000.0, gt=0, description="starting cash")
    tick_size: float | None = Field(None, gt=0, description="price step; default: the data's")
    lot_size: float | None = Field(None, gt=0, description="quantity step; default: the data's (1e-8 when it has none)")
    maker_fee: float = Field(0.0, description="fee on the value of passive fills (negative = rebate)")
    taker_fee: float = Field(0.0, description="fee on the value of aggressive fills")
    queue_model: Literal["risk_averse", "power_prob", "power_prob2", "power_prob3", "log_prob", "log_prob2"] = "risk_averse"
    queue_power: float = Field(3.0, gt=0, description="n of the power probability functions")
    exchange: Literal["no_partial_fill", "partial_fill"] = "no_partial_fill"
    entry_latency_ns: int = Field(0, ge=0, description="constant order entry latency (local -> exchange)")
    response_latency_ns: int = Field(0, ge=0, description="constant response latency (exchange -> local)")
    sample_every: str = Field("1s", description="spacing of the equity grid of the Result")
    order_capacity: int = Field(200_000, gt=0, description="orders that can be recorded")
    live_orders: int = Field(4_096, gt=0, description="orders that can be live (working or awaiting a response) at once")
    market_order_ticks: int = Field(100, gt=0, description="ticks a market order may walk (partial-fill exchange)")
    book_margin_ticks: int = Field(2_000, ge=0, description="book window beyond the data's price range, in ticks")

    @field_validator("sample_every")
    @classmethod
    def _duration(cls, value: str) -> str:
        from backforge._time import parse_duration

        parse_duration(value)
        return value


def latency_table(table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recorded order latencies as ``(req_ts, exch_ts, resp_ts)`` int64 arrays: a structured array or a
    DataFrame with those columns (hftbacktest's ``OrderLatencyRow``), sorted by ``req_ts``."""
    try:
        names = list(table.dtype.names) if hasattr(table, "dtype") and table.dtype.names else list(table.columns)
    except AttributeError:
        raise ConfigError("order_latency must be a structured array or a DataFrame", field="order_latency") from None
    missing = [n for n in ("req_ts", "exch_ts", "resp_ts") if n not in names]
    if missing:
        raise ConfigError(f"order_latency needs columns req_ts, exch_ts, resp_ts; missing {', '.join(missing)}",
                          field="order_latency")
    req, exch, resp = (np.ascontiguousarray(np.asarray(table[n]), dtype=np.int64) for n in ("req_ts", "exch_ts", "resp_ts"))
    if len(req) == 0:
        raise ConfigError("order_latency has no rows", field="order_latency")
    if (np.diff(req) < 0).any():
        row = int(np.flatnonzero(np.diff(req) < 0)[0]) + 1
        raise ConfigError(f"order_latency req_ts must be sorted (row {row} goes back in time)", field="order_latency")
    if (np.diff(exch) < 0).any():
        row = int(np.flatnonzero(np.diff(exch) < 0)[0]) + 1
        raise ConfigError(f"order_latency exch_ts must be sorted (row {row} goes back in time)", field="order_latency")
    return req, exch, resp


def new_sim(data: EventData, config: EventConfig | None = None, *, order_latency: Any = None) -> c.Sim:
    """Allocate the engine state for ``data``: books over the data's price range plus a margin
    (memory = window ticks x 32 bytes, independent of the number of events), order slots, records and
    the equity grid."""
    cfg = config or EventConfig()
    tick = float(cfg.tick_size or data.tick_size)
    lot = float(cfg.lot_size or (data.lot_size if data.lot_size > 0 else 1e-8))
    lo_price, hi_price = data.price_range()
    if hi_price <= 0:
        raise SimulationError("the event stream has no prices", field="events")
    lo = int(np.floor(lo_price / tick)) - cfg.book_margin_ticks
    hi = int(np.ceil(hi_price / tick)) + cfg.book_margin_ticks + 1
    lo = max(lo, 0)
    window = hi - lo
    if window > 20_000_000:
        raise SimulationError(f"the book window would span {window:,} ticks (> 20M); check the tick size "
                              f"({tick}) or split the data", field="tick_size")
    from backforge._time import parse_duration

    sample_ns = parse_duration(cfg.sample_every)
    n = len(data)
    span = int(data.local_ts[-1] - min(data.exch_ts[0], data.local_ts[0])) if n else 0
    n_samples = span // sample_ns + 3
    if n_samples > 50_000_000:
        raise SimulationError(f"{n_samples:,} equity rows: choose a coarser sample_every than {cfg.sample_every}",
                              field="sample_every")
    params = np.zeros(c.N_PARAMS)
    params[c.P_TICK] = tick
    params[c.P_LOT] = lot
    params[c.P_MAKER] = cfg.maker_fee
    params[c.P_TAKER] = cfg.taker_fee
    params[c.P_QUEUE] = QUEUE_MODELS[cfg.queue_model][0]
    params[c.P_QN] = cfg.queue_power
    params[c.P_PARTIAL] = 1.0 if cfg.exchange == "partial_fill" else 0.0
    params[c.P_ENTRY] = cfg.entry_latency_ns
    params[c.P_RESP] = cfg.response_latency_ns
    params[c.P_CASH] = cfg.cash
    params[c.P_SAMPLE_NS] = sample_ns
    params[c.P_MARKET_TICKS] = cfg.market_order_ticks
    if order_latency is not None:
        req, exch, resp = latency_table(order_latency)
        params[c.P_INTP] = 1.0
    else:
        req = exch = resp = np.zeros(1, dtype=np.int64)
    ints = np.zeros(c.N_INTS, dtype=np.int64)
    ints[c.I_XBB] = ints[c.I_LBB] = -1
    ints[c.I_XBA] = ints[c.I_LBA] = window
    ints[c.I_MIN_TO_EXCH] = ints[c.I_MIN_TO_LOCAL] = c.INT_MAX
    ints[c.I_MIN_SELL] = c.INT_MAX
    ints[c.I_MAX_BUY] = -1
    ints[c.I_WLO] = lo
    ints[c.I_W] = window
    ints[c.I_CUR] = c.INT_MAX
    ints[c.I_NEXT_SAMPLE] = c.INT_MAX
    floats = np.zeros(c.N_FLOATS)
    floats[c.F_CASH] = cfg.cash
    floats[c.F_LAST_TRADE] = np.nan
    cap = cfg.order_capacity
    columns = [frozen(col, col.dtype) for col in data.columns()]  # one compiled type for stored and in-memory data
    return c.Sim(
        *columns, params, ints, floats,
        np.zeros(window), np.zeros(window), np.zeros(window), np.zeros(window),
        np.full(window, -1, dtype=np.int64), np.full(window, -1, dtype=np.int64),
        np.zeros(cfg.live_orders, dtype=c.slot_dt),
        np.full(1 << int(np.ceil(np.log2(4 * cfg.live_orders))), c.ID_EMPTY, dtype=np.int64),
        np.zeros(1 << int(np.ceil(np.log2(4 * cfg.live_orders))), dtype=np.int64),
        np.zeros(4 * cfg.live_orders + 16, dtype=c.msg_dt),
        req, exch, resp,
        np.zeros(cap, dtype=order_dt), np.zeros(2 * cap, dtype=fill_dt), np.zeros(cap, dtype=trade_dt),
        np.zeros(6 * cap, dtype=event_dt),
        np.zeros(n_samples, dtype=np.int64), np.full(n_samples, np.nan), np.full(n_samples, np.nan),
        np.zeros(n_samples), np.full(n_samples, np.nan),
    )


def run_events(strategy: Callable[..., Any], data: EventData, config: EventConfig | None = None, *,
               order_latency: Any = None, args: tuple = (), name: str | None = None):
    """Run ``strategy(sim, *args)`` over ``data`` and return a :class:`~backforge.results.result.Result`.

    ``strategy`` is normally a ``@njit`` function driving the loop with :mod:`backforge.engine.events.api`
    (``elapse``, ``wait_next_feed``, ``submit_buy_order``...); a plain Python function works too, only
    slower. ``order_latency`` (``req_ts``, ``exch_ts``, ``resp_ts`` rows) switches from the constant
    latencies of ``config`` to latencies interpolated from those recorded timestamps.

    Examples
    --------
    >>> from numba import njit
    >>> from backforge.data.events import synthetic_l2
    >>> from backforge.engine.events import api
    >>> @njit
    ... def buy_once(sim):
    ...     api.elapse(sim, 1_000_000_000)
    ...     api.submit_buy_order(sim, 1, 0.0, 0.01, api.GTC, api.MARKET)
    ...     while api.elapse(sim, 1_000_000_000) == 0:
    ...         pass
    >>> result = run_events(buy_once, synthetic_l2(n_events=20_000, seed=3),
    ...                     EventConfig(taker_fee=0.0005, entry_latency_ns=1_000_000))
    >>> result.fills["qty"].to_list(), result.mode
    ([0.01], 'events')
    """
    cfg = config or EventConfig()
    sim = new_sim(data, cfg, order_latency=order_latency)
    strategy(sim, *args)
    c.finish_nb(sim)
    if sim.ints[c.I_OVERFLOW]:
        raise SimulationError("record capacity exhausted (orders, fills, messages or live orders): raise "
                              "order_capacity / live_orders in EventConfig", field="order_capacity")
    return to_result(sim, data, cfg, name=name or getattr(strategy, "__name__", "strategy"),
                     interpolated=order_latency is not None)


def to_result(sim: c.Sim, data: EventData, cfg: EventConfig, *, name: str = "strategy", interpolated: bool = False):
    """The engine's records as the bar engine's :class:`Result` (one asset; bars = the equity grid)."""
    from backforge.data.market import MarketData
    from backforge.engine import kernels as k
    from backforge.engine.config import SimConfig
    from backforge.engine.simulator import new_state
    from backforge.results.result import Result

    ints, floats = sim.ints, sim.floats
    h = int(ints[c.I_NSAMP])
    ts = sim.sample_ts[:h].copy()
    mid = sim.mid[:h].copy()
    finite = np.isfinite(mid)
    if not finite.any():
        mid[:] = 1.0
    else:  # forward fill, then back fill the start (before the first quote)
        idx = np.where(finite, np.arange(h), 0)
        np.maximum.accumulate(idx, out=idx)
        mid = mid[idx]
        first = int(np.flatnonzero(finite)[0])
        mid[:first] = mid[first]
    market = MarketData.from_arrays(ts, close=mid.reshape(-1, 1), assets=[data.symbol])
    n_orders, n_fills, n_trades, n_events = (int(ints[slot]) for slot in (c.I_NORD, c.I_NFILL, c.I_NTRADE, c.I_NEVT))
    state = new_state(1, h, cash=cfg.cash, order_capacity=max(n_orders, n_fills, n_trades, n_events // 4 + 1),
                      record_positions=True)
    state.orders[:n_orders] = sim.orders[:n_orders]
    state.fills[:n_fills] = sim.fills[:n_fills]
    state.trades[:n_trades] = sim.trades[:n_trades]
    state.events[:n_events] = sim.events[:n_events]
    state.counters[k.C_ORDERS], state.counters[k.C_FILLS] = n_orders, n_fills
    state.counters[k.C_TRADES], state.counters[k.C_EVENTS] = n_trades, n_events
    state.counters[k.C_BARS] = h
    state.counters[k.C_LAST_TS] = ts[-1] if h else 0
    state.totals[k.T_FEES] = floats[c.F_FEES]
    state.totals[k.T_SLIPPAGE] = floats[c.F_SLIPPAGE]
    state.totals[k.T_TRADED] = floats[c.F_TRADED]
    state.cash[0] = floats[c.F_CASH]
    state.position[0] = floats[c.F_POS]
    state.avg_price[0] = floats[c.F_AVG] if floats[c.F_POS] != 0 else 0.0
    state.mark[0] = mid[-1] if h else np.nan
    state.entry_fees[0] = floats[c.F_ENTRY_FEES] if floats[c.F_POS] != 0 else 0.0
    state.open_bar[0] = ints[c.I_OPEN_SAMPLE] if floats[c.F_POS] != 0 else -1
    state.open_ts[0] = ints[c.I_OPEN_TS]
    state.extreme_high[0], state.extreme_low[0] = floats[c.F_EXT_HI], floats[c.F_EXT_LO]
    position = sim.position[:h]
    equity = sim.cash[:h] + np.where(position != 0, position * mid, 0.0)
    state.equity[:] = equity
    state.cash_history[:] = sim.cash[:h]
    state.gross_exposure[:] = np.abs(position * mid)
    state.net_exposure[:] = position * mid
    state.positions[:, 0] = position
    result = Result(data=market, state=state, sim_config=SimConfig(cash=cfg.cash), signal_config=None, mode="events")
    result.data_source = {
        "kind": "events", "symbol": data.symbol, "events": len(data), "strategy": name,
        "event_config": cfg.model_dump(mode="json"), "order_latency": "interpolated" if interpolated else "constant",
        **({"seed": data.source["seed"]} if "seed" in data.source else {}),
        "source": {key: value for key, value in data.source.items() if key != "seed"},
    }
    return result

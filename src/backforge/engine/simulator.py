"""The Python side of the core: `from_signals`, `simulate`, `OrderProgram` and the one-bar-at-a-time
`Simulator`. This is the one place that converts user inputs to arrays and hands them to the kernels.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from backforge._jit import frozen
from backforge.data.market import MarketData
from backforge.engine import kernels as k
from backforge.engine.accounts import account_groups
from backforge.engine import risk as rk
from backforge.engine.config import SIGNAL_OPTIONS, SIM_OPTIONS, PerAsset, SignalConfig, SimConfig, resolve_options
from backforge.engine.records import (
    Action,
    OrderType,
    SizeType,
    TimeInForce,
    event_dt,
    fill_dt,
    order_dt,
    program_dt,
    trade_dt,
)
from backforge.errors import ConfigError, DataError, SimulationError, did_you_mean

__all__ = ["from_signals", "simulate", "OrderProgram", "Simulator", "frozen_prices", "new_state", "prices_of"]

_SIM_OPTION_NAMES = frozenset(SIM_OPTIONS)
_OPTION_NAMES = frozenset(SIM_OPTIONS) | frozenset(SIGNAL_OPTIONS)


# ------------------------------------------------------------------------------------------ state

def new_state(n_assets: int, n_history: int, *, cash: float, order_capacity: int, record_positions: bool,
              risk: rk.RiskBook | None = None, batch: bool = False) -> k.State:
    """Allocate a fresh account state with room for ``order_capacity`` orders and ``n_history`` bars
    (``risk``: a lowered :class:`~backforge.engine.risk.RiskBook`, copied so reruns start clean;
    ``batch=True``: for a batch loop over all ``n_history`` bars, records and history not cleared,
    see :func:`_state_arrays`)."""
    cap = max(int(order_capacity), 16)
    if risk is None:
        risk = rk.empty_risk_book(n_assets)
    else:
        risk = risk._replace(state=risk.state.copy(), assets=risk.assets.copy(), owner=risk.owner.copy(),
                             events=np.zeros(max(cap, risk.events.shape[0]), dtype=rk.risk_event_dt),
                             n_events=np.zeros(1, dtype=np.int64), on=risk.on.copy())
    return k.State(**_state_arrays((), n_assets, n_history, cash=cash, order_capacity=order_capacity,
                                   record_positions=record_positions, batch=batch), risk=risk)


_FLOAT_PER_ASSET = (("position", 0.0), ("avg_price", 0.0), ("mark", np.nan), ("realized", 0.0), ("entry_fees", 0.0),
                    ("extreme_high", 0.0), ("extreme_low", 0.0), ("last_fill_price", np.nan))
_INT_PER_ASSET = (("open_bar", -1), ("open_ts", 0), ("last_fill_bar", -1), ("last_entry_bar", -1), ("signal_order", -1),
                  ("signal_seen", -1))
_HISTORY = (("equity", np.nan), ("cash_history", np.nan), ("gross_exposure", 0.0), ("net_exposure", 0.0))


def _blocks(lead: tuple[int, ...], shape: tuple[int, ...], fields, dtype, *, fill: bool = True) -> dict[str, np.ndarray]:
    """Same-shaped arrays carved out of one allocation (``block[i]``: each C-contiguous, ``lead + shape``),
    each filled with its value (one broadcast assignment; ``fill=False``: left uninitialized, for arrays
    the caller writes in full): one allocation instead of one per field."""
    block = np.empty((len(fields),) + lead + shape, dtype=dtype)
    if fill:
        block[...] = np.array([value for _, value in fields], dtype=dtype).reshape((-1,) + (1,) * (block.ndim - 1))
    return {name: block[i] for i, (name, _) in enumerate(fields)}


def _state_arrays(lead: tuple[int, ...], n_assets: int, n_history: int, *, cash: Any, order_capacity: int,
                  record_positions: bool, batch: bool = False) -> dict[str, np.ndarray]:
    """The arrays of :class:`~backforge.engine.kernels.State` (all but ``risk``), with a leading shape
    ``lead`` (``(G,)`` for stacked independent accounts, whose starting cash is then ``cash[g]``).

    The per-asset and history arrays of one dtype share an allocation (a from_signals call on daily
    data spends more time allocating than simulating otherwise). The record arrays are zero-filled
    (``np.zeros``: pages the run never reaches are never touched) — except for a batch run
    (``batch=True``: a run over all ``n_history`` bars, which writes every history row and every record
    it counts; nothing reads a record beyond the counters): then they, the history and the positions
    are left uninitialized (``np.empty``: no clearing, and freed memory is reused without page faults)."""
    cap = max(int(order_capacity), 16)
    cash_arr = np.empty(lead + (1,))
    cash_arr[..., 0] = cash
    records = np.empty if batch else np.zeros
    return dict(
        cash=cash_arr,
        counters=np.zeros(lead + (k.N_COUNTERS,), dtype=np.int64),
        totals=np.zeros(lead + (k.N_TOTALS,)),
        **_blocks(lead, (n_assets,), _FLOAT_PER_ASSET, np.float64),
        **_blocks(lead, (n_assets,), _INT_PER_ASSET, np.int64),
        orders=records(lead + (cap,), dtype=order_dt),
        active=records(lead + (cap,), dtype=np.int64),
        fills=records(lead + (cap,), dtype=fill_dt),
        trades=records(lead + (cap,), dtype=trade_dt),
        events=records(lead + (cap * 4,), dtype=event_dt),
        **_blocks(lead, (n_history,), _HISTORY, np.float64, fill=not batch),
        positions=(np.empty if batch and not lead else np.zeros)(lead + ((n_history if record_positions else 0), n_assets)),
    )


def prices_of(data: MarketData) -> k.Prices:
    """The :class:`~backforge.engine.kernels.Prices` record of ``data``: OHLC plus bid and ask OHLC (the
    OHLC arrays again when the data has no quotes: the kernels then apply the configured spread)."""
    ohlc = (data.open, data.high, data.low, data.close)
    bid = tuple(data.bid) if data.bid is not None else ohlc
    ask = tuple(data.ask) if data.ask is not None else ohlc
    return frozen_prices(*ohlc, *bid, *ask)


def frozen_prices(*arrays: np.ndarray) -> k.Prices:
    """A :class:`~backforge.engine.kernels.Prices` record of ``arrays`` made :func:`~backforge._jit.frozen`
    (C-contiguous, read-only views), so the kernels compile once for every data source; an array given
    twice stays one array (the OHLC arrays doubling as quotes are not copied)."""
    seen: dict[int, np.ndarray] = {}
    for a in arrays:
        if id(a) not in seen:
            seen[id(a)] = frozen(a)
    return k.Prices(*(seen[id(a)] for a in arrays))


# --------------------------------------------------------------------------------------- signals

def _signal_array(values: Any, data: MarketData, name: str) -> np.ndarray:
    """Coerce user signals (NumPy, pandas, Polars; [T] for one asset or [T, A]) to bool [T, A]."""
    T, A = data.n_bars, data.n_assets
    if values is None:
        return np.zeros((T, A), dtype=np.bool_)
    columns = None
    if hasattr(values, "columns") and not isinstance(values, np.ndarray):
        columns = [str(c) for c in values.columns]
        module = type(values).__module__
        if module.startswith("polars"):
            drop = [c for c in columns if c.lower() in ("timestamp", "date", "time", "datetime")]
            if drop:
                values = values.drop(drop)
                columns = [c for c in columns if c not in drop]
            arr = values.to_numpy()
        else:
            arr = values.to_numpy()
        if set(columns) == set(data.assets):
            arr = arr[:, [columns.index(a) for a in data.assets]]
        elif A == 1 and len(columns) == 1:
            pass
        else:
            raise DataError(f"signal columns {columns} do not match the assets {list(data.assets)}", field=name)
    else:
        arr = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.shape[0] != T:
        raise DataError(f"signals have {arr.shape[0]} rows but the data has {T} bars; align them to data.timestamps", field=name)
    if arr.shape[1] != A:
        if arr.shape[1] == 1:
            raise DataError(f"signals have 1 column but the data has {A} assets; pass a [T, {A}] array or a frame with one column per asset", field=name)
        raise DataError(f"signals have {arr.shape[1]} columns but the data has {A} assets", field=name)
    if arr.dtype != np.bool_:
        if arr.dtype.kind == "f":
            nan_rows = np.isnan(arr)
            if nan_rows.any():
                arr = np.where(nan_rows, 0.0, arr)
        if arr.dtype.kind not in "biuf":
            raise DataError(f"signals must be boolean, got dtype {arr.dtype}", field=name)
        arr = arr != 0
    return np.ascontiguousarray(arr)


def _column_edges(n_assets: int, *signals: np.ndarray) -> np.ndarray:
    """Each column's False → True transitions (a True first row counts), summed over ``signals``
    (bool ``[T, n_assets]``)."""
    out = np.zeros(n_assets, dtype=np.int64)
    for signal in signals:
        k.rising_edges_nb(signal, out)
    return out


def _lowered(sim_cfg: SimConfig, sig_cfg: SignalConfig, assets: tuple[str, ...],
             has_quotes: bool) -> tuple[k.Params, k.SignalParams]:
    """``sim_cfg.lower(...)`` and ``sig_cfg.lower(...)``, kept for the last configs seen: validated
    options come back as the same (frozen) objects (:func:`~backforge.engine.config.split_options`), so
    a repeated call lowers once. The kernels never write the parameter arrays."""
    key = (id(sim_cfg), id(sig_cfg), assets, has_quotes)
    hit = _LOWERED.get(key)
    if hit is not None and hit[0] is sim_cfg and hit[1] is sig_cfg:
        return hit[2], hit[3]
    params, sp = sim_cfg.lower(assets, has_quotes=has_quotes), sig_cfg.lower(assets)
    if len(_LOWERED) >= 64:
        _LOWERED.clear()
    _LOWERED[key] = (sim_cfg, sig_cfg, params, sp)
    return params, sp


_LOWERED: dict[tuple, tuple] = {}


def _check_data(data: Any) -> MarketData:
    data = MarketData.coerce(data)
    if data.n_bars == 0:
        raise DataError("the data has no bars")
    return data


def _run_with_capacity(run, capacity: int):
    """Run ``run(capacity)`` and retry with twice the capacity while a record array overflows."""
    for _ in range(24):
        state, ok = run(capacity)
        if ok and int(state.risk.n_events[0]) <= state.risk.events.shape[0]:
            return state
        capacity *= 2
    raise SimulationError("record capacity could not be sized; the simulation produced too many orders")


def from_signals(
    data: MarketData,
    entries: Any,
    exits: Any = None,
    short_entries: Any = None,
    short_exits: Any = None,
    *,
    config: SimConfig | None = None,
    cash: float | None = None,
    fee_rate: PerAsset | None = None,
    fee_per_unit: PerAsset | None = None,
    fee_per_order: PerAsset | None = None,
    fee_min: PerAsset | None = None,
    slippage_bps: PerAsset | None = None,
    slippage_range: PerAsset | None = None,
    spread: PerAsset | None = None,
    lot_size: PerAsset | None = None,
    min_qty: PerAsset | None = None,
    borrow_rate: PerAsset | None = None,
    financing_rate: float | None = None,
    leverage: float | None = None,
    maintenance_margin: float | None = None,
    allow_short: bool | None = None,
    allow_partial: bool | None = None,
    record_positions: bool | None = None,
    signal_config: SignalConfig | None = None,
    size: PerAsset | None = None,
    size_type: str | None = None,
    stop_loss: PerAsset | None = None,
    take_profit: PerAsset | None = None,
    trailing_stop: PerAsset | None = None,
    accumulate: bool | None = None,
    time_in_force: str | None = None,
    gtn_bars: int | None = None,
    risk: rk.RiskConfig | Mapping[str, Any] | None = None,
    cash_sharing: bool = True,
    groups: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None = None,
    **unknown: Any,
):
    """Backtest boolean entry/exit signals with market orders filled at the next bar's open.

    A signal on bar t is a decision on bar t's close: its order fills at bar t+1's open (or the first
    later bar where the asset trades).

    Parameters
    ----------
    data
        The market data: :class:`~backforge.data.market.MarketData`, or a pandas / Polars OHLCV frame
        (one asset, or a long frame with a ``symbol`` column; :meth:`MarketData.coerce`).
    entries, exits, short_entries, short_exits
        Boolean ``[T, A]`` arrays (or ``[T]`` for one asset, or DataFrames with one column per asset).
    config
        The account settings as a :class:`~backforge.engine.config.SimConfig`; the keyword options
        ``cash`` … ``record_positions`` below are its fields and override it when given (``None``:
        the config's value, by default SimConfig's default — see its field descriptions).
    cash, fee_rate, fee_per_unit, fee_per_order, fee_min, slippage_bps, slippage_range, spread, lot_size, min_qty, borrow_rate, financing_rate, leverage, maintenance_margin, allow_short, allow_partial, record_positions
        :class:`~backforge.engine.config.SimConfig` fields: starting cash, commissions, slippage,
        spread, lot size and minimum quantity, financing, leverage and margin, shorting, partial
        fills, position history.
    signal_config
        How signals become orders, as a :class:`~backforge.engine.config.SignalConfig`; the options
        ``size`` … ``gtn_bars`` are its fields and override it.
    size, size_type, stop_loss, take_profit, trailing_stop, accumulate, time_in_force, gtn_bars
        :class:`~backforge.engine.config.SignalConfig` fields: order size and its unit, bracket
        distances (fractions of the entry price), adding to positions, time in force.
    cash_sharing
        ``True`` (default): one account trades every asset from one cash balance. ``False``: every
        asset is its own account (vectorbt's ``cash_sharing=False``), all run in one call, in
        parallel across cores; ``cash`` is split evenly between the accounts.
    groups
        Independent accounts of several assets each: ``{name: [assets]}`` (or a list of asset
        lists), every asset in exactly one group; implies ``cash_sharing=False``. Unknown or
        overlapping assets are refused.

    The result of independent accounts is their sum (equity, cash, exposures, every order, fill and
    trade, order ids renumbered); ``result.accounts`` maps each account's name to its own Result,
    identical to ``from_signals`` on its assets alone with its share of the cash.
    risk
        Portfolio risk rules (:class:`~backforge.engine.risk.RiskConfig` or a mapping of its fields).

    Returns
    -------
    Result

    Examples
    --------
    >>> import numpy as np, backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> close = data.close[:, 0]
    >>> fast = np.convolve(close, np.ones(5) / 5)[: len(close)]
    >>> result = bf.from_signals(data, fast > close, fast < close, fee_rate=0.001)
    >>> result.summary()["trades"] > 0
    True
    """
    # every option is a keyword of the signature (help() and editors list them); the given ones, with
    # any unknown name (a did-you-mean error), are validated together
    options = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
    data = _check_data(data)
    risk_cfg = rk.as_risk_config(risk)
    sim_cfg, sig_cfg = resolve_options({**options, **unknown}, config=config, signal_config=signal_config)
    le = _signal_array(entries, data, "entries")
    lx = _signal_array(exits, data, "exits")
    se = _signal_array(short_entries, data, "short_entries")
    sx = _signal_array(short_exits, data, "short_exits")
    if (short_entries is not None) and not sim_cfg.allow_short:
        raise ConfigError("short_entries were given but allow_short is False", field="allow_short")
    params, sp = _lowered(sim_cfg, sig_cfg, data.assets, data.has_quotes)
    prices = prices_of(data)
    book = signal_risk_book(risk_cfg, sig_cfg, data, cash=sim_cfg.cash)
    # Orders come from signal changes: size the records by rising edges and let overflow double them.
    brackets = 1 + sum(x is not None for x in (sig_cfg.stop_loss, sig_cfg.take_profit, sig_cfg.trailing_stop))
    accounts = account_groups(data.assets, groups, bool(cash_sharing))
    if accounts is not None:
        if book is not None:
            raise ConfigError("risk rules need one shared account; drop cash_sharing=False / groups or the risk "
                              "rules", path="risk")
        return _from_signals_accounts(data, accounts, sim_cfg, sig_cfg, params, sp, prices, (le, lx, se, sx), brackets)
    n_edges = int(_column_edges(data.n_assets, *(x for x, given in ((le, entries), (lx, exits), (se, short_entries),
                                                                    (sx, short_exits)) if given is not None)).sum())
    capacity = 2 * n_edges * brackets + 8 * data.n_assets + 64

    def run(cap: int):
        state = new_state(data.n_assets, data.n_bars, cash=sim_cfg.cash, order_capacity=cap,
                          record_positions=sim_cfg.record_positions, risk=book, batch=True)
        ok = k.run_signals_nb(state, params, sp, frozen(data.timestamps, np.int64), prices, le, lx, se, sx)
        return state, ok

    state = _run_with_capacity(run, capacity)
    from backforge.results.result import Result

    result = Result(data=data, state=state, sim_config=sim_cfg, signal_config=sig_cfg, mode="signals")
    result.risk_config = risk_cfg
    return result


def signal_risk_book(risk_cfg: rk.RiskConfig | None, sig_cfg: SignalConfig, data: MarketData, *,
                     cash: float) -> rk.RiskBook | None:
    """Lower ``risk=`` of :func:`from_signals` (rules and the sizing of its entries) for ``data``."""
    if risk_cfg is None or not risk_cfg.active:
        return None
    book = rk.lower_risk(risk_cfg, data.assets, data.timestamps, cash=cash)
    sizing = risk_cfg.sizing
    if sizing is None:
        return book
    from backforge.strategy import indicators as ind

    A = data.n_assets
    if sizing.mode == "risk":
        if sizing.stop_atr is None and sig_cfg.stop_loss is None:
            raise ConfigError("risk sizing needs a stop: give stop_loss (a fraction) or risk.sizing.stop_atr",
                              path="risk.sizing")
        rk.set_sizing(book, 0, "risk", sizing.value, stop_atr=sizing.stop_atr if sizing.stop_atr else np.nan)
        if sizing.stop_atr is not None:
            atr = ind.atr(data.high, data.low, data.close, data.timestamps, sizing.atr_window)
            book = rk.with_series(book, atr)
            book.atr_cols[0] = np.arange(A)
    elif sizing.mode == "volatility_target":
        vol = realized_volatility(data.close, data.timestamps, sizing.window, sizing.periods_per_year)
        rk.set_sizing(book, 0, "volatility_target", sizing.value, size_max=sizing.max)
        book = rk.with_series(book, vol)
        book.cols[0] = np.arange(A)
    elif sizing.mode == "expression":
        from backforge.strategy.compiler import expression_matrix

        rk.set_sizing(book, 0, "expression", np.nan, size_min=sizing.min, size_max=sizing.max)
        book = rk.with_series(book, expression_matrix(sizing.expression, data))
        book.cols[0] = np.arange(A)
    else:
        rk.set_sizing(book, 0, "kelly", sizing.value, size_max=sizing.max, min_trades=sizing.min_trades,
                      fallback=sizing.fallback)
    return book


def realized_volatility(close: np.ndarray, timestamps: np.ndarray, window: int | str,
                        periods_per_year: float | None = None) -> np.ndarray:
    """Annualized volatility of one-bar returns over ``window``: the population standard deviation of
    ``close / previous close - 1`` (each asset's previous bar) times ``sqrt(periods_per_year)``
    (default: the bars per year of the trailing year at each bar,
    :func:`backforge.engine.risk.trailing_periods_per_year` — causal: row ``t`` uses bars up to ``t`` only).

    Examples
    --------
    >>> import numpy as np
    >>> close = np.array([100.0, 101.0, 99.99, 100.9899])
    >>> bool(np.isnan(realized_volatility(close, np.arange(4) * 86_400 * 10**9, 2, 1.0)[1]))
    True
    """
    from backforge.strategy import indicators as ind

    returns = ind.pct_change(np.asarray(close, dtype=np.float64), timestamps, 1)
    if periods_per_year:
        scale = np.sqrt(float(periods_per_year))
    else:
        scale = np.sqrt(rk.trailing_periods_per_year(timestamps))
        if returns.ndim == 2:
            scale = scale[:, None]
    return ind.stddev(returns, timestamps, window) * scale


def _from_signals_accounts(data: MarketData, accounts: list[tuple[str, list[int]]], sim_cfg: SimConfig,
                           sig_cfg: SignalConfig, params: k.Params, sp: k.SignalParams, prices: k.Prices,
                           signals: tuple[np.ndarray, ...], brackets: int):
    """:func:`from_signals` with independent accounts (one compiled, parallel call for all of them)."""
    from backforge.engine.accounts import AccountStates, account_state, merge_account_states, run_signal_accounts_nb
    from backforge.results.result import Result

    order = [i for _, indices in accounts for i in indices]
    if order != list(range(data.n_assets)):
        # the kernel takes each account's assets as a contiguous block of columns
        take = lambda x: np.ascontiguousarray(x[:, order])  # noqa: E731
        prices = frozen_prices(*(take(x) for x in prices))
        signals = tuple(take(x) for x in signals)
        params = params._replace(**{f: getattr(params, f)[order] for f in k.Params._fields
                                    if isinstance(getattr(params, f), np.ndarray)})
        sp = sp._replace(**{f: getattr(sp, f)[order] for f in k.SignalParams._fields
                            if isinstance(getattr(sp, f), np.ndarray)})
    sizes = [len(indices) for _, indices in accounts]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n_accounts = len(accounts)
    risk = rk.empty_risk_book(max(sizes))
    cash = np.full(n_accounts, float(sim_cfg.cash) / n_accounts)
    edges = _column_edges(data.n_assets, *signals)
    capacity = max(2 * int(edges[lo:hi].sum()) * brackets + 8 * (hi - lo) + 64
                   for lo, hi in zip(bounds[:-1], bounds[1:]))
    timestamps = frozen(data.timestamps, np.int64)
    for _ in range(24):
        states = AccountStates(**_state_arrays((n_accounts,), max(sizes), data.n_bars, cash=cash,
                                               order_capacity=capacity, record_positions=sim_cfg.record_positions,
                                               batch=True))
        ok = np.zeros(n_accounts, dtype=np.bool_)
        run_signal_accounts_nb(states, params, sp, cash, bounds, timestamps, prices, *signals, risk, ok)
        if ok.all():
            break
        capacity *= 2
    else:
        raise SimulationError("record capacity could not be sized; the simulation produced too many orders")
    per_account = [account_state(states, g, n, rk.empty_risk_book(n)) for g, n in enumerate(sizes)]
    indices = [indices for _, indices in accounts]
    combined = merge_account_states(states, sizes, indices, data.n_assets, per_account)
    result = Result(data=data, state=combined, sim_config=sim_cfg, signal_config=sig_cfg, mode="signals")
    result.risk_config = None
    result.accounts = _Accounts(data, accounts, per_account, sim_cfg, sig_cfg, cash)
    return result


class _Accounts(Mapping):
    """Each independent account's own Result, by account name (built when first asked for)."""

    def __init__(self, data: MarketData, accounts, states, sim_cfg: SimConfig, sig_cfg: SignalConfig,
                 cash: np.ndarray) -> None:
        self._data = data
        self._names = [name for name, _ in accounts]
        self._indices = {name: indices for name, indices in accounts}
        self._states = dict(zip(self._names, states))
        self._configs = {name: sim_cfg.model_copy(update={"cash": float(c)}) for name, c in zip(self._names, cash)}
        self._sig_cfg = sig_cfg
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str):
        if name not in self._indices:
            raise KeyError(name)
        if name not in self._built:
            from backforge.results.result import Result

            idx = self._indices[name]
            d = self._data
            quotes = lambda q: None if q is None else type(q)(*(x[:, idx] for x in q))  # noqa: E731
            part = MarketData(d.timestamps, d.open[:, idx], d.high[:, idx], d.low[:, idx], d.close[:, idx],
                              d.volume[:, idx], tuple(d.assets[i] for i in idx), quotes(d.bid), quotes(d.ask))
            self._built[name] = Result(data=part, state=self._states[name], sim_config=self._configs[name],
                                       signal_config=self._sig_cfg, mode="signals")
        return self._built[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


# ----------------------------------------------------------------------------------- order program

class OrderProgram:
    """A list of order instructions keyed by decision bar: the input of :func:`simulate`.

    Each ``submit`` returns a reference that ``cancel`` and ``replace`` can use on a later bar.
    Prices are absolute; bracket distances are fractions (``stop_loss=0.05``) or absolute price
    distances (``stop_loss_abs=2.5``).

    Examples
    --------
    >>> program = OrderProgram()
    >>> ref = program.submit(bar=0, asset=0, side="buy", size=10, order_type="limit", limit_price=99.0)
    >>> program.cancel(bar=5, ref=ref)
    1
    >>> len(program)
    2
    """

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def __len__(self) -> int:
        return len(self._rows)

    def submit(
        self,
        *,
        bar: int,
        asset: int,
        side: str | int,
        size: float,
        size_type: str = "units",
        order_type: str = "market",
        limit_price: float | None = None,
        stop_price: float | None = None,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
        stop_loss_abs: float | None = None,
        take_profit_abs: float | None = None,
        trailing_stop_abs: float | None = None,
        time_in_force: str = "gtc",
        gtn_bars: int = 0,
        tag: int = -1,
    ) -> int:
        """Submit an order decided at ``bar`` (it can fill from ``bar + 1``). Returns its reference."""
        side_code = _side_code(side)
        nan = lambda v: np.nan if v is None else float(v)  # noqa: E731
        self._rows.append((
            int(bar), Action.SUBMIT, -1, int(asset), side_code, OrderType.code(order_type), SizeType.code(size_type),
            float(size), nan(limit_price), nan(stop_price), nan(stop_loss), nan(stop_loss_abs), nan(take_profit),
            nan(take_profit_abs), nan(trailing_stop), nan(trailing_stop_abs), TimeInForce.code(time_in_force),
            int(gtn_bars), int(tag),
        ))
        return len(self._rows) - 1

    def cancel(self, *, bar: int, ref: int) -> int:
        """Cancel, at ``bar``, the order created by ``ref``."""
        self._check_ref(ref)
        self._rows.append((int(bar), Action.CANCEL, int(ref), 0, 1, 0, 0, np.nan, np.nan, np.nan, np.nan, np.nan,
                           np.nan, np.nan, np.nan, np.nan, 0, 0, -1))
        return len(self._rows) - 1

    def replace(self, *, bar: int, ref: int, size: float | None = None, limit_price: float | None = None,
                stop_price: float | None = None) -> int:
        """Change, at ``bar``, the size and/or prices of the order created by ``ref``."""
        self._check_ref(ref)
        nan = lambda v: np.nan if v is None else float(v)  # noqa: E731
        self._rows.append((int(bar), Action.REPLACE, int(ref), 0, 1, 0, 0, nan(size), nan(limit_price),
                           nan(stop_price), np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 0, 0, -1))
        return len(self._rows) - 1

    def _check_ref(self, ref: int) -> None:
        if not (0 <= ref < len(self._rows)) or self._rows[ref][1] != Action.SUBMIT:
            raise ConfigError(f"ref {ref} is not a submitted order of this program", field="ref")

    def to_array(self, n_bars: int, n_assets: int) -> np.ndarray:
        """The rows as a ``program_dt`` array sorted by bar (stable: same-bar rows keep their order)."""
        arr = np.array(self._rows, dtype=program_dt) if self._rows else np.zeros(0, dtype=program_dt)
        for i, row in enumerate(arr):
            if not 0 <= row["bar"] < n_bars:
                raise ConfigError(f"bar {row['bar']} is outside the data (0..{n_bars - 1})", field=f"program[{i}].bar")
            if row["action"] == Action.SUBMIT:
                if not 0 <= row["asset"] < n_assets:
                    raise ConfigError(f"asset index {row['asset']} is outside 0..{n_assets - 1}", field=f"program[{i}].asset")
                if not np.isfinite(row["size"]) or (row["size"] < 0 and row["size_type"] not in (SizeType.TARGET_UNITS, SizeType.TARGET_FRACTION)):
                    raise ConfigError(f"size must be a finite number >= 0, got {row['size']}", field=f"program[{i}].size")
            elif row["bar"] < arr[row["ref"]]["bar"]:
                raise ConfigError(f"row {i} acts on bar {row['bar']} before its order is submitted (bar {arr[row['ref']]['bar']})", field=f"program[{i}].bar")
        order = np.argsort(arr["bar"], kind="stable")
        if not np.array_equal(order, np.arange(len(arr))):
            remap = np.empty_like(order)
            remap[order] = np.arange(len(arr))
            arr = arr[order]
            refs = arr["ref"]
            arr["ref"] = np.where(refs >= 0, remap[np.maximum(refs, 0)], -1)
        return arr


def _side_code(side: str | int) -> int:
    if isinstance(side, (int, np.integer)) and int(side) in (1, -1):
        return int(side)
    text = str(side).lower()
    if text in ("buy", "long", "b"):
        return 1
    if text in ("sell", "short", "s"):
        return -1
    raise ConfigError(f"side must be 'buy' or 'sell', got {side!r}", field="side")


def simulate(
    data: MarketData,
    program: OrderProgram,
    *,
    config: SimConfig | None = None,
    cash: float | None = None,
    fee_rate: PerAsset | None = None,
    fee_per_unit: PerAsset | None = None,
    fee_per_order: PerAsset | None = None,
    fee_min: PerAsset | None = None,
    slippage_bps: PerAsset | None = None,
    slippage_range: PerAsset | None = None,
    spread: PerAsset | None = None,
    lot_size: PerAsset | None = None,
    min_qty: PerAsset | None = None,
    borrow_rate: PerAsset | None = None,
    financing_rate: float | None = None,
    leverage: float | None = None,
    maintenance_margin: float | None = None,
    allow_short: bool | None = None,
    allow_partial: bool | None = None,
    record_positions: bool | None = None,
    risk: rk.RiskConfig | Mapping[str, Any] | None = None,
    **unknown: Any,
):
    """Backtest an explicit :class:`OrderProgram` (orders, cancels, replaces keyed by decision bar).

    ``data`` is MarketData or a pandas / Polars OHLCV frame; ``config`` and the keyword options are the
    account settings of :class:`~backforge.engine.config.SimConfig`, as in :func:`from_signals`.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> program = bf.OrderProgram()
    >>> _ = program.submit(bar=0, asset=0, side="buy", size=10)
    >>> bf.simulate(data, program).fills["qty"].to_list()
    [10.0]
    """
    options = {name: value for name, value in locals().items() if name in _SIM_OPTION_NAMES}
    data = _check_data(data)
    risk_cfg = rk.as_risk_config(risk)
    sim_cfg, sig_cfg = resolve_options({**options, **unknown}, config=config)
    if risk_cfg is not None and risk_cfg.sizing is not None:
        raise ConfigError("risk.sizing applies to from_signals entries; a program gives each order's size",
                          path="risk.sizing")
    book = signal_risk_book(risk_cfg, sig_cfg, data, cash=sim_cfg.cash)
    if sig_cfg != SignalConfig():
        raise ConfigError("signal options (size, stop_loss, ...) belong on each program.submit(...) call", field="options")
    program_arr = program.to_array(data.n_bars, data.n_assets)
    params = sim_cfg.lower(data.assets, has_quotes=data.has_quotes)
    prices = prices_of(data)
    capacity = 4 * len(program_arr) + 8 * data.n_assets + 64

    def run(cap: int):
        state = new_state(data.n_assets, data.n_bars, cash=sim_cfg.cash, order_capacity=cap,
                          record_positions=sim_cfg.record_positions, risk=book)
        ref_ids = np.full(len(program_arr), -1, dtype=np.int64)
        ok = k.run_program_nb(state, params, program_arr, ref_ids, frozen(data.timestamps, np.int64), prices)
        return state, ok

    state = _run_with_capacity(run, capacity)
    from backforge.results.result import Result

    result = Result(data=data, state=state, sim_config=sim_cfg, signal_config=None, mode="program")
    result.risk_config = risk_cfg
    return result


# ------------------------------------------------------------------------------ the bar-by-bar driver

class Simulator:
    """Drive the compiled core one bar at a time — the driver paper and live trading use.

    Feeding a backtest's bars through :meth:`on_bar` and its signals through :meth:`signals` gives
    bit-identical orders, fills and equity to :func:`from_signals` (the same kernels run).

    Examples
    --------
    >>> import numpy as np
    >>> sim = Simulator(["X"], cash=1000)
    >>> sim.on_bar(0, open=[10.0], high=[10.5], low=[9.5], close=[10.0])
    >>> oid = sim.submit("X", "buy", 5)
    >>> sim.on_bar(60_000_000_000, open=[10.2], high=[10.4], low=[10.0], close=[10.3])
    >>> float(sim.position("X")), round(float(sim.cash), 2)
    (5.0, 949.0)
    """

    def __init__(
        self,
        assets: Sequence[str],
        *,
        has_quotes: bool = False,
        capacity: int = 256,
        config: SimConfig | None = None,
        cash: float | None = None,
        fee_rate: PerAsset | None = None,
        fee_per_unit: PerAsset | None = None,
        fee_per_order: PerAsset | None = None,
        fee_min: PerAsset | None = None,
        slippage_bps: PerAsset | None = None,
        slippage_range: PerAsset | None = None,
        spread: PerAsset | None = None,
        lot_size: PerAsset | None = None,
        min_qty: PerAsset | None = None,
        borrow_rate: PerAsset | None = None,
        financing_rate: float | None = None,
        leverage: float | None = None,
        maintenance_margin: float | None = None,
        allow_short: bool | None = None,
        allow_partial: bool | None = None,
        record_positions: bool | None = None,
        signal_config: SignalConfig | None = None,
        size: PerAsset | None = None,
        size_type: str | None = None,
        stop_loss: PerAsset | None = None,
        take_profit: PerAsset | None = None,
        trailing_stop: PerAsset | None = None,
        accumulate: bool | None = None,
        time_in_force: str | None = None,
        gtn_bars: int | None = None,
        risk: rk.RiskConfig | Mapping[str, Any] | None = None,
        **unknown: Any,
    ) -> None:
        """``config`` / ``signal_config`` and the keyword options are those of :func:`from_signals`."""
        options = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
        self.assets = tuple(str(a) for a in assets)
        if not self.assets:
            raise ConfigError("at least one asset is required", field="assets")
        self.risk_config = rk.as_risk_config(risk)
        self._calendar = self.risk_config is not None and (self.risk_config.trading_window is not None
                                                           or self.risk_config.session != rk.Session())
        self.sim_config, self.signal_config = resolve_options({**options, **unknown}, config=config,
                                                              signal_config=signal_config)
        self._params = self.sim_config.lower(self.assets, has_quotes=has_quotes)
        self._signal_params = self.signal_config.lower(self.assets)
        book = None
        if self.risk_config is not None and self.risk_config.active:
            if self.risk_config.sizing is not None:
                raise ConfigError("risk.sizing needs the whole history; size the orders you submit instead",
                                  path="risk.sizing")
            # no precomputed session days or windows: the kernels fall back to UTC days (see risk_update_nb)
            book = rk.lower_risk(self.risk_config, self.assets, np.zeros(0, dtype=np.int64), cash=self.sim_config.cash)
            if self._calendar:  # a session day and the trading window of every bar, written as it comes
                book = book._replace(day=np.zeros(1024, dtype=np.int64), window=np.ones((1024, 1), dtype=np.uint8))
        self._state = new_state(len(self.assets), 1024, cash=self.sim_config.cash, order_capacity=capacity,
                                record_positions=self.sim_config.record_positions, risk=book)
        self._timestamps = np.zeros(1024, dtype=np.int64)
        self._bars: dict[str, list[np.ndarray]] = {f: [] for f in ("open", "high", "low", "close", "volume")}
        self._quotes: dict[str, list[np.ndarray]] = {}
        self._t = -1

    # -- capacity management (Python side only; the kernels never allocate)
    def _ensure_room(self) -> None:
        s = self._state
        A = len(self.assets)
        need = 8 * A + 3 * int(s.counters[k.C_ACTIVE]) + 16
        grow: dict[str, np.ndarray] = {}
        if s.orders.shape[0] - s.counters[k.C_ORDERS] < need or s.fills.shape[0] - s.counters[k.C_FILLS] < need \
                or s.trades.shape[0] - s.counters[k.C_TRADES] < need or s.events.shape[0] - s.counters[k.C_EVENTS] < 4 * need:
            for name in ("orders", "active", "fills", "trades", "events"):
                old = getattr(s, name)
                new = np.zeros(max(2 * old.shape[0], old.shape[0] + 4 * need), dtype=old.dtype)
                new[: old.shape[0]] = old
                grow[name] = new
        if self._t + 1 >= s.equity.shape[0]:
            for name in ("equity", "cash_history", "gross_exposure", "net_exposure"):
                old = getattr(s, name)
                new = np.full(2 * old.shape[0], np.nan if name in ("equity", "cash_history") else 0.0)
                new[: old.shape[0]] = old
                grow[name] = new
            if s.positions.shape[0]:
                new = np.zeros((2 * s.positions.shape[0], A))
                new[: s.positions.shape[0]] = s.positions
                grow["positions"] = new
            ts = np.zeros(2 * self._timestamps.shape[0], dtype=np.int64)
            ts[: self._timestamps.shape[0]] = self._timestamps
            self._timestamps = ts
        book = s.risk
        if book.on[0] != 0 and book.events.shape[0] - book.n_events[0] < 4 * need:
            events = np.zeros(2 * book.events.shape[0] + 4 * need, dtype=rk.risk_event_dt)
            events[: book.events.shape[0]] = book.events
            book = grow["risk"] = book._replace(events=events)
        if self._calendar and self._t + 1 >= book.day.shape[0]:
            day = np.zeros(2 * book.day.shape[0], dtype=np.int64)
            day[: book.day.shape[0]] = book.day
            window = np.ones((2 * book.window.shape[0], book.window.shape[1]), dtype=np.uint8)
            window[: book.window.shape[0]] = book.window
            grow["risk"] = book._replace(day=day, window=window)
        if grow:
            self._state = s._replace(**grow)

    def _row(self, values: Any, name: str) -> np.ndarray:
        row = np.asarray(values, dtype=np.float64).reshape(-1)
        if row.shape[0] != len(self.assets):
            raise DataError(f"expected {len(self.assets)} values (one per asset), got {row.shape[0]}", field=name)
        return np.ascontiguousarray(row)

    def on_bar(self, timestamp: Any, *, open: Any, high: Any, low: Any, close: Any, volume: Any = None,
               bid: dict[str, Any] | None = None, ask: dict[str, Any] | None = None) -> None:
        """Process one bar (rows of one value per asset; NaN where an asset has no bar)."""
        from backforge._time import to_ns

        ts = int(timestamp) if isinstance(timestamp, (int, np.integer)) else int(to_ns([timestamp])[0])
        if self._t >= 0 and ts <= self._timestamps[self._t]:
            raise DataError(f"timestamp {ts} is not after the previous bar's {self._timestamps[self._t]}", field="timestamp")
        rows = [self._row(v, n) for v, n in ((open, "open"), (high, "high"), (low, "low"), (close, "close"))]
        if self._params.has_quotes:
            if bid is None or ask is None:
                raise DataError("this simulator was created with has_quotes=True: pass bid and ask rows", field="bid")
            quote_rows = [self._row(q[f], f"{side}.{f}") for side, q in (("bid", bid), ("ask", ask)) for f in ("open", "high", "low", "close")]
        else:
            quote_rows = rows + rows
        self._ensure_room()
        self._t += 1
        self._timestamps[self._t] = ts
        if self._calendar:  # the batch lowering's session day and trading window, for this bar
            book, cfg, stamp = self._state.risk, self.risk_config, np.array([ts], dtype=np.int64)
            book.day[self._t] = rk.session_keys(stamp, cfg.session)[0]
            book.window[self._t, 0] = rk.window_mask(stamp, cfg.trading_window)[0] if cfg.trading_window else 1
        for name, row in zip(("open", "high", "low", "close"), rows):
            self._bars[name].append(row)
        self._bars["volume"].append(self._row(volume, "volume") if volume is not None else np.full(len(self.assets), np.nan))
        if self._params.has_quotes:
            for i, side in enumerate(("bid", "ask")):
                for j, f in enumerate(("open", "high", "low", "close")):
                    self._quotes.setdefault(f"{side}_{f}", []).append(quote_rows[4 * i + j])
        k.process_bar_nb(self._state, self._params, self._t, ts, frozen_prices(*rows, *quote_rows))

    def _require_bar(self) -> None:
        if self._t < 0:
            raise SimulationError("no bar processed yet: call on_bar(...) before deciding")

    def signals(self, long_entries: Any = None, long_exits: Any = None, short_entries: Any = None,
                short_exits: Any = None) -> None:
        """Decide on the last processed bar with boolean rows (one per asset), like :func:`from_signals`."""
        self._require_bar()
        zero = np.zeros(len(self.assets), dtype=np.bool_)
        conv = lambda v: zero if v is None else np.ascontiguousarray(np.asarray(v, dtype=np.bool_).reshape(-1))  # noqa: E731
        k.decide_signals_nb(self._state, self._signal_params, self._t, int(self._timestamps[self._t]),
                            self._bars["close"][-1], conv(long_entries), conv(long_exits), conv(short_entries), conv(short_exits))

    def submit(self, asset: str, side: str, size: float, *, size_type: str = "units", order_type: str = "market",
               limit_price: float | None = None, stop_price: float | None = None, stop_loss: float | None = None,
               take_profit: float | None = None, trailing_stop: float | None = None, time_in_force: str = "gtc",
               gtn_bars: int = 0) -> int:
        """Submit an order decided on the last processed bar; returns its id (-1 when a risk rule blocks
        an entry: see ``result().risk_events``)."""
        self._require_bar()
        nan = lambda v: np.nan if v is None else float(v)  # noqa: E731
        a = self._asset(asset)
        st = SizeType.code(size_type)
        size = float(size)
        sl_abs = np.nan
        if self._state.risk.on[0] != 0:
            if st != SizeType.POSITION_FRACTION:
                # the same entry checks as the backtest (halts, limits, multipliers): -1 when blocked
                st, size, sl_abs = k.risk_entry_order_nb(self._state, 0, a, self._t, int(self._timestamps[self._t]),
                                                         st, size, nan(stop_loss), np.nan)
                if st < 0:
                    return -1
            rk.risk_count_order_nb(self._state.risk, 0)
        return int(k.submit_order_nb(
            self._state, self._t, int(self._timestamps[self._t]), a, _side_code(side), OrderType.code(order_type), st,
            size, nan(limit_price), nan(stop_price), nan(stop_loss), sl_abs, nan(take_profit), np.nan,
            nan(trailing_stop), np.nan, TimeInForce.code(time_in_force), int(gtn_bars),
            k.EXIT if st == SizeType.POSITION_FRACTION else k.ENTRY, -1, -1, 0, -1, k.R_USER,
        ))

    def halt(self, reason: str = "manual") -> None:
        """Halt new entries now (a kill switch): only :meth:`resume` lifts it."""
        self._require_bar()
        rk.halt(self._state.risk, bar=self._t, timestamp=int(self._timestamps[self._t]), reason=reason)

    def resume(self) -> bool:
        """Lift a halt; drawdown is measured from the current equity from now on. False when not halted."""
        self._require_bar()
        return rk.resume(self._state.risk, bar=self._t, timestamp=int(self._timestamps[self._t]), equity=self.equity)

    @property
    def halted(self) -> bool:
        """True while new entries are halted."""
        return bool(self._state.risk.state[0]["halt"] != 0)

    def cancel(self, order_id: int) -> bool:
        """Cancel a working order; False when it is not working."""
        self._require_bar()
        return bool(k.cancel_order_nb(self._state, int(order_id), self._t, int(self._timestamps[self._t]), k.R_USER))

    def replace(self, order_id: int, *, size: float | None = None, limit_price: float | None = None,
                stop_price: float | None = None) -> bool:
        """Change a working order's size and/or prices; False when it is not working."""
        self._require_bar()
        nan = lambda v: np.nan if v is None else float(v)  # noqa: E731
        return bool(k.replace_order_nb(self._state, int(order_id), self._t, int(self._timestamps[self._t]),
                                       nan(size), nan(limit_price), nan(stop_price)))

    def _asset(self, asset: str | int) -> int:
        if isinstance(asset, (int, np.integer)):
            if not 0 <= int(asset) < len(self.assets):
                raise ConfigError(f"asset index {asset} is outside 0..{len(self.assets) - 1}", field="asset")
            return int(asset)
        if asset not in self.assets:
            raise ConfigError(f"unknown asset {asset!r}{did_you_mean(str(asset), self.assets)}", field="asset", asset=str(asset))
        return self.assets.index(asset)

    def position(self, asset: str | int) -> float:
        """Signed position in units."""
        return float(self._state.position[self._asset(asset)])

    @property
    def cash(self) -> float:
        """Cash balance."""
        return float(self._state.cash[0])

    @property
    def equity(self) -> float:
        """Equity marked at the last processed close."""
        return float(k.equity_nb(self._state))

    def result(self):
        """A :class:`~backforge.results.result.Result` of everything processed so far."""
        self._require_bar()
        from backforge.results.result import Result

        n = self._t + 1
        quotes = None
        if self._params.has_quotes:
            from backforge.data.market import Quotes

            stack = lambda name: np.vstack(self._quotes[name])  # noqa: E731
            quotes = {side: Quotes(*(stack(f"{side}_{f}") for f in ("open", "high", "low", "close"))) for side in ("bid", "ask")}
        data = MarketData(
            self._timestamps[:n].copy(), *(np.vstack(self._bars[f]) for f in ("open", "high", "low", "close", "volume")),
            self.assets, quotes["bid"] if quotes else None, quotes["ask"] if quotes else None,
        )
        s = self._state
        state = s._replace(
            equity=s.equity[:n].copy(), cash_history=s.cash_history[:n].copy(), gross_exposure=s.gross_exposure[:n].copy(),
            net_exposure=s.net_exposure[:n].copy(), positions=s.positions[:n].copy() if s.positions.shape[0] else s.positions,
        )
        return Result(data=data, state=state, sim_config=self.sim_config, signal_config=self.signal_config, mode="live")

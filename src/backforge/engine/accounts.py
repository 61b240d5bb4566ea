"""Independent accounts in one call: each group of assets trades with its own cash, in parallel.

``from_signals(..., cash_sharing=False)`` runs every asset as its own account, ``groups=...`` every
group of assets (vectorbt's ``cash_sharing=False`` / ``group_by``). The accounts are the engine's usual
:class:`~backforge.engine.kernels.State` records stacked along a leading account axis
(:class:`AccountStates`); :func:`run_signal_accounts_nb` hands each account its slice — views of the
state, of the per-asset parameters, prices and signals, nothing copied — to
:func:`~backforge.engine.kernels.run_signals_nb`, the same batch loop a shared-cash run uses, with
``numba.prange`` spreading the accounts over the cores. An account's orders, fills and equity are
therefore exactly those of ``from_signals`` on its assets alone with its cash.

The combined result (:func:`merge_states`) is the sum of the accounts: equity, cash and exposures add
up bar by bar; orders, fills, trades and events are concatenated (order ids renumbered, asset indices
mapped back to the data's), records sorted by bar. A run's result holds it as a :class:`MergedState`, which
merges each field when it is first read.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from numba import prange

from backforge._jit import njit
from backforge.engine import kernels as k
from backforge.engine import risk as rk
from backforge.errors import ConfigError, did_you_mean

__all__ = ["AccountStates", "MergedState", "account_groups", "run_signal_accounts_nb", "merge_states",
           "merge_account_states", "account_state"]


class AccountStates(NamedTuple):
    """:class:`~backforge.engine.kernels.State` fields with a leading account axis ``[G, ...]``; per-asset
    fields are ``[G, n_max]`` (an account with fewer assets uses the first columns)."""

    cash: np.ndarray
    counters: np.ndarray
    totals: np.ndarray
    position: np.ndarray
    avg_price: np.ndarray
    mark: np.ndarray
    realized: np.ndarray
    entry_fees: np.ndarray
    open_bar: np.ndarray
    open_ts: np.ndarray
    extreme_high: np.ndarray
    extreme_low: np.ndarray
    last_fill_bar: np.ndarray
    last_fill_price: np.ndarray
    last_entry_bar: np.ndarray
    signal_order: np.ndarray
    signal_seen: np.ndarray
    orders: np.ndarray
    active: np.ndarray
    fills: np.ndarray
    trades: np.ndarray
    events: np.ndarray
    equity: np.ndarray
    cash_history: np.ndarray
    gross_exposure: np.ndarray
    net_exposure: np.ndarray
    positions: np.ndarray


@njit(cache=True)
def account_nb(states: AccountStates, g: int, n: int, risk: rk.RiskBook) -> k.State:
    """Account ``g``'s state as views of the stacked arrays (its ``n`` assets in the first columns; ``risk``:
    an empty risk book, shared — no rule runs in independent accounts)."""
    return k.State(
        states.cash[g], states.counters[g], states.totals[g], states.position[g, :n], states.avg_price[g, :n],
        states.mark[g, :n], states.realized[g, :n], states.entry_fees[g, :n], states.open_bar[g, :n],
        states.open_ts[g, :n], states.extreme_high[g, :n], states.extreme_low[g, :n], states.last_fill_bar[g, :n],
        states.last_fill_price[g, :n], states.last_entry_bar[g, :n], states.signal_order[g, :n],
        states.signal_seen[g, :n], states.orders[g], states.active[g], states.fills[g], states.trades[g],
        states.events[g], states.equity[g], states.cash_history[g], states.gross_exposure[g], states.net_exposure[g],
        states.positions[g, :, :n], risk,
    )


@njit(cache=True, parallel=True)
def run_signal_accounts_nb(states: AccountStates, params: k.Params, sp: k.SignalParams, cash, bounds, timestamps,
                           prices: k.Prices, long_entries, long_exits, short_entries, short_exits, risk, ok) -> None:
    """Backtest signals in independent accounts: account ``g`` trades assets ``bounds[g]..bounds[g + 1] - 1``
    with starting cash ``cash[g]``; ``ok[g]`` is False when its records overflowed.

    Equivalent to calling :func:`~backforge.engine.kernels.run_signals_nb` once per account on the
    account's columns (the accounts run in parallel).
    """
    for g in prange(bounds.shape[0] - 1):
        lo = bounds[g]
        hi = bounds[g + 1]
        state = account_nb(states, g, hi - lo, risk)
        account_params = k.Params(
            cash[g], params.leverage, params.maintenance_margin, params.financing_rate, params.has_financing,
            params.allow_partial, params.allow_short, params.has_quotes, params.record_positions,
            params.fee_rate[lo:hi], params.fee_per_unit[lo:hi], params.fee_per_order[lo:hi], params.fee_min[lo:hi],
            params.slippage_bps[lo:hi], params.slippage_range[lo:hi], params.spread[lo:hi], params.lot_size[lo:hi],
            params.min_qty[lo:hi], params.borrow_rate[lo:hi],
        )
        account_sp = k.SignalParams(sp.size[lo:hi], sp.size_type, sp.sl_pct[lo:hi], sp.tp_pct[lo:hi],
                                    sp.trail_pct[lo:hi], sp.accumulate, sp.tif, sp.gtn_bars)
        account_prices = k.Prices(
            prices.open[:, lo:hi], prices.high[:, lo:hi], prices.low[:, lo:hi], prices.close[:, lo:hi],
            prices.bid_open[:, lo:hi], prices.bid_high[:, lo:hi], prices.bid_low[:, lo:hi], prices.bid_close[:, lo:hi],
            prices.ask_open[:, lo:hi], prices.ask_high[:, lo:hi], prices.ask_low[:, lo:hi], prices.ask_close[:, lo:hi],
        )
        ok[g] = k.run_signals_nb(state, account_params, account_sp, timestamps, account_prices,
                                 long_entries[:, lo:hi], long_exits[:, lo:hi], short_entries[:, lo:hi],
                                 short_exits[:, lo:hi])


# ----------------------------------------------------------------------------------------- python side

def account_groups(assets: tuple[str, ...], groups: Any, cash_sharing: bool) -> list[tuple[str, list[int]]] | None:
    """The accounts of a run as ``(name, asset indices)``, or None for one shared account.

    ``cash_sharing=False`` without groups: one account per asset. ``groups``: a mapping ``{name:
    [assets]}`` or a sequence of asset lists; every asset in exactly one group.

    Examples
    --------
    >>> account_groups(("A", "B", "C"), {"ab": ["A", "B"], "c": ["C"]}, False)
    [('ab', [0, 1]), ('c', [2])]
    >>> account_groups(("A", "B"), None, False)
    [('A', [0]), ('B', [1])]
    """
    if groups is None:
        return None if cash_sharing else [(a, [i]) for i, a in enumerate(assets)]
    if isinstance(groups, Mapping):
        items = [(str(name), members) for name, members in groups.items()]
    elif isinstance(groups, Sequence) and not isinstance(groups, (str, bytes)):
        items = [(str(i), members) for i, members in enumerate(groups)]
    else:
        raise ConfigError(f"must map group names to lists of assets, got {type(groups).__name__}", field="groups")
    if not items:
        raise ConfigError("is empty: name at least one group of assets", field="groups")
    owner: dict[str, str] = {}
    out = []
    for name, members in items:
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ConfigError(f"must be a non-empty list of assets, got {members!r}", field=f"groups.{name}")
        indices = []
        for member in members:
            asset = str(member)
            if asset not in assets:
                hint = did_you_mean(asset, assets) or f"; assets are {', '.join(assets)}"
                raise ConfigError(f"unknown asset {asset!r}{hint}", field=f"groups.{name}", asset=asset)
            if asset in owner:
                where = "twice in this group" if owner[asset] == name else f"in groups {owner[asset]!r} and {name!r}"
                raise ConfigError(f"asset {asset!r} is {where}; groups must not overlap (an asset trades in one "
                                  "account)", field=f"groups.{name}", asset=asset)
            owner[asset] = name
            indices.append(assets.index(asset))
        out.append((name, indices))
    missing = [a for a in assets if a not in owner]
    if missing:
        raise ConfigError(f"asset {missing[0]!r} is in no group; put every asset of the data in one group (or select "
                          "the assets to trade first)", field="groups", asset=missing[0])
    return out


def account_state(states: AccountStates, g: int, n: int, risk: rk.RiskBook) -> k.State:
    """Account ``g``'s :class:`~backforge.engine.kernels.State` as NumPy views (its ``n`` assets)."""
    fields: dict[str, Any] = {"risk": risk}
    for name, value in zip(AccountStates._fields, states):
        part = value[g]
        if name == "positions":
            part = part[:, :n]
        elif value.ndim == 2 and name in _PER_ASSET:
            part = part[:n]
        fields[name] = part
    return k.State(**fields)


_PER_ASSET = frozenset((
    "position", "avg_price", "mark", "realized", "entry_fees", "open_bar", "open_ts", "extreme_high", "extreme_low",
    "last_fill_bar", "last_fill_price", "last_entry_bar", "signal_order", "signal_seen",
))


def merge_states(accounts: list[k.State], indices: list[list[int]], n_assets: int) -> k.State:
    """One State for the whole run: the accounts' sums and records (ids renumbered, assets mapped back)."""
    first = accounts[0]
    n_history = first.equity.shape[0]
    per_asset: dict[str, np.ndarray] = {}
    for name in _PER_ASSET:
        sample = getattr(first, name)
        merged = np.empty(n_assets, dtype=sample.dtype)
        for state, idx in zip(accounts, indices):
            merged[idx] = getattr(state, name)
        per_asset[name] = merged
    offsets = np.cumsum([0] + [int(s.counters[k.C_ORDERS]) for s in accounts])
    orders, active, fills, trades, events = [], [], [], [], []
    for state, idx, offset in zip(accounts, indices, offsets):
        lookup = np.asarray(idx, dtype=np.int64)
        part = state.orders[: state.counters[k.C_ORDERS]].copy()
        part["id"] += offset
        for name in ("parent_id", "oco_group"):
            part[name] = np.where(part[name] >= 0, part[name] + offset, part[name])
        part["asset"] = lookup[part["asset"]]
        orders.append(part)
        active.append(state.active[: state.counters[k.C_ACTIVE]] + offset)
        part = state.fills[: state.counters[k.C_FILLS]].copy()
        part["order_id"] += offset
        part["asset"] = lookup[part["asset"]]
        fills.append(part)
        part = state.trades[: state.counters[k.C_TRADES]].copy()
        part["asset"] = lookup[part["asset"]]
        trades.append(part)
        part = state.events[: state.counters[k.C_EVENTS]].copy()
        part["order_id"] += offset
        events.append(part)
        signal_order = state.signal_order
        per_asset["signal_order"][idx] = np.where(signal_order >= 0, signal_order + offset, signal_order)

    def by(records: list[np.ndarray], key: str) -> np.ndarray:
        joined = np.concatenate(records)
        return joined[np.argsort(joined[key], kind="stable")]

    counters = np.zeros(k.N_COUNTERS, dtype=np.int64)
    for state in accounts:
        counters += state.counters
    counters[k.C_BARS] = first.counters[k.C_BARS]
    counters[k.C_LAST_TS] = first.counters[k.C_LAST_TS]
    counters[k.C_OVERFLOW] = 0
    positions = np.zeros((first.positions.shape[0], n_assets))
    if positions.shape[0]:
        for state, idx in zip(accounts, indices):
            positions[:, idx] = state.positions
    total = lambda name: np.sum([getattr(s, name) for s in accounts], axis=0)  # noqa: E731
    return k.State(
        cash=total("cash"), counters=counters, totals=total("totals"), **per_asset,
        orders=np.concatenate(orders), active=np.concatenate(active), fills=by(fills, "bar"),
        trades=by(trades, "exit_bar"), events=by(events, "bar"),
        equity=total("equity") if n_history else first.equity.copy(), cash_history=total("cash_history"),
        gross_exposure=total("gross_exposure"), net_exposure=total("net_exposure"), positions=positions,
        risk=rk.empty_risk_book(n_assets),
    )


@njit(cache=True)
def _sorted_by_nb(keys, counts) -> bool:
    """True when every account's first ``counts[g]`` keys are non-decreasing."""
    for g in range(keys.shape[0]):
        for i in range(1, counts[g]):
            if keys[g, i] < keys[g, i - 1]:
                return False
    return True


@njit(cache=True)
def _merge_by_nb(src, keys, counts, out, account) -> None:
    """``out``: the accounts' records (``src[g, :counts[g]]``, each sorted by ``keys``) merged by key, ties
    in account order — the stable sort of their concatenation, in one pass; ``account[j]``: the account
    of ``out[j]``."""
    n_accounts = keys.shape[0]
    pos = np.zeros(n_accounts, dtype=np.int64)
    for j in range(out.shape[0]):
        best = -1
        best_key = 0
        for g in range(n_accounts):
            if pos[g] < counts[g] and (best < 0 or keys[g, pos[g]] < best_key):
                best = g
                best_key = keys[g, pos[g]]
        out[j] = src[best, pos[best]]
        account[j] = best
        pos[best] += 1


def merge_account_states(states: AccountStates, sizes: list[int], indices: list[list[int]], n_assets: int,
                         per_account: list[k.State]) -> k.State | MergedState:
    """:func:`merge_states` of stacked accounts (``per_account[g]``: :func:`account_state` of ``states``): a
    :class:`MergedState`, whose fields equal :func:`merge_states`' field for field and are each merged when
    first read. Falls back to :func:`merge_states` should an account's records not be in bar order."""
    counters = states.counters
    if not all(_sorted_by_nb(keys, counters[:, slot]) for keys, slot in (
            (states.fills["bar"], k.C_FILLS), (states.trades["exit_bar"], k.C_TRADES),
            (states.events["bar"], k.C_EVENTS))):
        return merge_states(per_account, indices, n_assets)
    return MergedState(states, sizes, indices, n_assets, per_account)


class MergedState:
    """The combined :class:`~backforge.engine.kernels.State` of stacked accounts, merged field by field: the
    counters, cash, totals and per-asset fields at once (a few numbers per asset); each record table, each
    history sum and the positions when first read. A 7-account 10-year minute run holds ~280 MB of merged
    records and histories that a user reading its equity and trades never needs: they are not made.
    :meth:`state` is the whole :class:`~backforge.engine.kernels.State` (every field merged), for code that
    passes it on. Every field equals :func:`merge_states`' byte for byte (test)."""

    _HISTORIES = ("equity", "cash_history", "gross_exposure", "net_exposure")
    _TABLES = {"fills": ("bar", k.C_FILLS), "trades": ("exit_bar", k.C_TRADES), "events": ("bar", k.C_EVENTS)}

    def __init__(self, states: AccountStates, sizes: list[int], indices: list[list[int]], n_assets: int,
                 per_account: list[k.State]) -> None:
        counters = states.counters
        n_accounts = len(sizes)
        lookup = np.zeros((n_accounts, max(sizes)), dtype=np.int64)
        for g, idx in enumerate(indices):
            lookup[g, : len(idx)] = idx
        offsets = np.zeros(n_accounts, dtype=np.int64)
        np.cumsum(counters[:-1, k.C_ORDERS], out=offsets[1:])
        self._stacked, self._n_assets, self._per_account = states, n_assets, per_account
        self._indices, self._lookup, self._offsets = indices, lookup, offsets
        columns = np.concatenate([np.asarray(idx, dtype=np.int64) for idx in indices])
        account = np.repeat(np.arange(n_accounts), sizes)
        local = np.concatenate([np.arange(n) for n in sizes])
        for name in _PER_ASSET:
            stacked = getattr(states, name)
            merged = np.empty(n_assets, dtype=stacked.dtype)
            merged[columns] = stacked[account, local]
            setattr(self, name, merged)
        signal_order = self.signal_order
        signal_order[columns] = np.where(signal_order[columns] >= 0, signal_order[columns] + offsets[account],
                                         signal_order[columns])
        total = counters.sum(axis=0)
        total[k.C_BARS] = counters[0, k.C_BARS]
        total[k.C_LAST_TS] = counters[0, k.C_LAST_TS]
        total[k.C_OVERFLOW] = 0
        self.counters = total
        self.cash = states.cash.sum(axis=0)
        self.totals = states.totals.sum(axis=0)
        self.risk = rk.empty_risk_book(n_assets)

    def __getattr__(self, name: str) -> Any:
        """A field not merged yet (merged ones are instance attributes, found before this is called)."""
        if name.startswith("_") or name not in k.State._fields:
            raise AttributeError(name)
        states = self._stacked
        first = self._per_account[0]
        if name in ("orders", "active"):
            self._merge_orders()
        elif name == "equity":
            self.equity = states.equity.sum(axis=0) if first.equity.shape[0] else first.equity.copy()
        elif name in self._HISTORIES:
            setattr(self, name, getattr(states, name).sum(axis=0))
        elif name == "positions":
            positions = np.zeros((first.positions.shape[0], self._n_assets))
            if positions.shape[0]:
                for state, idx in zip(self._per_account, self._indices):
                    positions[:, idx] = state.positions
            self.positions = positions
        else:  # fills, trades, events: each account's table is in bar order; merged by bar, ties in account order
            key, slot = self._TABLES[name]
            src, counts = getattr(states, name), states.counters[:, slot]
            out = np.empty(int(counts.sum()), dtype=src.dtype)
            account = np.empty(out.shape[0], dtype=np.int64)
            _merge_by_nb(src, src[key], counts, out, account)
            if name != "trades":
                out["order_id"] += self._offsets[account]
            if name != "events":
                out["asset"] = self._lookup[account, out["asset"]]
            setattr(self, name, out)
        return self.__dict__[name]

    def _merge_orders(self) -> None:
        """Orders and the working list concatenated in account order: ids renumbered, assets mapped back."""
        states = self._stacked
        counters = states.counters
        orders = np.empty(int(counters[:, k.C_ORDERS].sum()), dtype=states.orders.dtype)
        active = np.empty(int(counters[:, k.C_ACTIVE].sum()), dtype=np.int64)
        j = m = 0
        for g, offset in enumerate(self._offsets):
            n, n_active = int(counters[g, k.C_ORDERS]), int(counters[g, k.C_ACTIVE])
            part = orders[j:j + n]
            part[...] = states.orders[g, :n]
            part["id"] += offset
            for field in ("parent_id", "oco_group"):
                linked = part[field]
                linked[linked >= 0] += offset
            part["asset"] = self._lookup[g][part["asset"]]
            active[m:m + n_active] = states.active[g, :n_active] + offset
            j, m = j + n, m + n_active
        self.orders, self.active = orders, active

    def state(self) -> k.State:
        """Every field merged, as one :class:`~backforge.engine.kernels.State`."""
        return k.State(**{name: getattr(self, name) for name in k.State._fields})

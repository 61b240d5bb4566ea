"""Engine-state plumbing shared by the strategy step and the paper broker: growing the preallocated
record arrays between bars (the kernels never allocate), snapshots to/from plain arrays, the order record
as a dict for transport, and the client ids of engine-made bracket children."""

from __future__ import annotations

import numpy as np

from backforge.engine import kernels as k
from backforge.engine.records import OrderRole
from backforge.engine.risk import RiskBook
from backforge.engine.simulator import new_state

_NESTED = {"risk": RiskBook}
"""State fields that are themselves named tuples of arrays (snapshotted field by field)."""

__all__ = ["grow_state", "state_arrays", "state_from_arrays", "order_fields", "child_client_id", "fresh_state",
           "ENGINE_ORDER_FIELDS"]

ENGINE_ORDER_FIELDS = ("asset", "side", "order_type", "size_type", "size", "limit_price", "stop_price", "sl_pct",
                       "sl_abs", "tp_pct", "tp_abs", "trail_pct", "trail_abs", "tif", "gtn_bars", "role", "reverse",
                       "tag", "reason")
_HISTORY = ("equity", "cash_history", "gross_exposure", "net_exposure")


def fresh_state(n_assets: int, *, cash: float, record_positions: bool) -> k.State:
    return new_state(n_assets, 1024, cash=cash, order_capacity=256, record_positions=record_positions)


def grow_state(state: k.State, t: int) -> k.State:
    """``state`` with room for one more bar at index ``t`` and for the orders/fills a bar can create
    (the same rule as :class:`backforge.Simulator`); returns the same object when nothing had to grow."""
    n_assets = state.position.shape[0]
    need = 8 * n_assets + 3 * int(state.counters[k.C_ACTIVE]) + 16
    grow: dict[str, np.ndarray] = {}
    if (state.orders.shape[0] - state.counters[k.C_ORDERS] < need or state.fills.shape[0] - state.counters[k.C_FILLS] < need
            or state.trades.shape[0] - state.counters[k.C_TRADES] < need
            or state.events.shape[0] - state.counters[k.C_EVENTS] < 4 * need):
        for name in ("orders", "active", "fills", "trades", "events"):
            old = getattr(state, name)
            new = np.zeros(max(2 * old.shape[0], old.shape[0] + 4 * need), dtype=old.dtype)
            new[: old.shape[0]] = old
            grow[name] = new
    if t >= state.equity.shape[0]:
        size = max(2 * state.equity.shape[0], t + 1)
        for name in _HISTORY:
            old = getattr(state, name)
            new = np.full(size, np.nan if name in ("equity", "cash_history") else 0.0)
            new[: old.shape[0]] = old
            grow[name] = new
        if state.positions.shape[0]:
            new = np.zeros((size, n_assets))
            new[: state.positions.shape[0]] = state.positions
            grow["positions"] = new
    return state._replace(**grow) if grow else state


_USED = {"orders": k.C_ORDERS, "fills": k.C_FILLS, "trades": k.C_TRADES, "events": k.C_EVENTS}


def state_arrays(state: k.State, prefix: str = "state.", *, bars: int | None = None) -> dict[str, np.ndarray]:
    """The state as named arrays (for a snapshot): record arrays cut to their used rows and, with ``bars``,
    the per-bar history to its first ``bars`` rows (:func:`grow_state` makes room again after a restore)."""
    out = {}
    for name, value in zip(k.State._fields, state):
        if isinstance(value, tuple):  # a nested book of arrays (the risk layer's RiskBook): one entry per field
            for sub, array in zip(value._fields, value):
                out[f"{prefix}{name}.{sub}"] = np.asarray(array)
            continue
        if name in _USED:
            value = value[: int(state.counters[_USED[name]])]
        elif bars is not None and (name in _HISTORY or (name == "positions" and value.shape[0])):
            value = value[:bars]
        out[prefix + name] = np.asarray(value)
    return out


def state_from_arrays(arrays: dict[str, np.ndarray], prefix: str = "state.") -> k.State:
    """Inverse of :func:`state_arrays` (contiguous, writable copies)."""
    def field(name: str):
        if name in _NESTED:
            book = _NESTED[name]
            return book(*(np.ascontiguousarray(arrays[f"{prefix}{name}.{sub}"]).copy() for sub in book._fields))
        return np.ascontiguousarray(arrays[prefix + name]).copy()

    return k.State(*(field(name) for name in k.State._fields))


def order_fields(order) -> dict:
    """An engine order record's fields needed to recreate it (``OrderRequest.engine_order``), JSON-safe."""
    out = {}
    for name in ENGINE_ORDER_FIELDS:
        value = order[name].item()
        out[name] = None if isinstance(value, float) and value != value else value
    return out


_ROLE_NAMES = {OrderRole.STOP_LOSS: "sl", OrderRole.TAKE_PROFIT: "tp", OrderRole.TRAILING_STOP: "trail",
               OrderRole.LIQUIDATION: "liq", OrderRole.END_OF_DATA: "eod"}


def child_client_id(parent_cid: str, role: int, n: int) -> str:
    """The client id of the ``n``-th engine-made child (stop-loss, take-profit, trailing stop) of an order:
    the runner's model and the paper broker name them alike, so their fills can be matched.

    >>> child_client_id("s-10-0-0", OrderRole.STOP_LOSS, 0)
    's-10-0-0:sl0'
    """
    return f"{parent_cid}:{_ROLE_NAMES.get(int(role), 'r' + str(int(role)))}{n}"

"""Record dtypes and integer codes: the contract between the compiled core and Python.

Kernels see small integer codes; Python turns them into names and descriptions with the tables here
(``ORDER_TYPE.name(2) == "stop"``). Records are aligned numpy structured dtypes written by the core into
preallocated arrays (the hftbacktest / vectorbt pattern).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "order_dt", "fill_dt", "trade_dt", "event_dt", "program_dt",
    "Side", "OrderType", "SizeType", "TimeInForce", "OrderStatus", "OrderRole", "EventKind", "Reason",
    "Action", "CodeTable",
]


class CodeTable:
    """A numba-friendly enum: integer constants as class attributes plus name/description lookups.

    Examples
    --------
    >>> OrderType.LIMIT, OrderType.name(OrderType.LIMIT)
    (1, 'limit')
    >>> OrderType.code("stop_limit")
    3
    """

    _descriptions: dict[int, tuple[str, str]] = {}

    @classmethod
    def name(cls, code: int) -> str:
        return cls._descriptions[int(code)][0]

    @classmethod
    def describe(cls, code: int) -> str:
        return cls._descriptions[int(code)][1]

    @classmethod
    def names(cls) -> list[str]:
        return [name for name, _ in cls._descriptions.values()]

    @classmethod
    def code(cls, name: str) -> int:
        key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
        for code, (known, _) in cls._descriptions.items():
            if known == key:
                return code
        from backforge.errors import ConfigError, did_you_mean

        hint = did_you_mean(key, cls.names())

        raise ConfigError(f"unknown {cls.__name__} {name!r}{hint} (choose from {', '.join(cls.names())})", field=cls.__name__)


class Side(CodeTable):
    BUY = 1
    SELL = -1
    _descriptions = {1: ("buy", "buy / go long / cover"), -1: ("sell", "sell / go short / exit long")}


class OrderType(CodeTable):
    MARKET = 0
    LIMIT = 1
    STOP = 2
    STOP_LIMIT = 3
    _descriptions = {
        0: ("market", "fills at the next bar's open"),
        1: ("limit", "fills at the limit or better when the bar's range reaches it; at the open when the bar gaps through"),
        2: ("stop", "becomes a market order when the bar's range reaches the stop; fills at the stop, or at the open on a gap"),
        3: ("stop_limit", "becomes a limit order when the bar's range reaches the stop"),
    }


class SizeType(CodeTable):
    UNITS = 0
    NOTIONAL = 1
    EQUITY_FRACTION = 2
    CASH_FRACTION = 3
    TARGET_UNITS = 4
    TARGET_FRACTION = 5
    POSITION_FRACTION = 6
    _descriptions = {
        0: ("units", "a number of units (shares, coins, currency units)"),
        1: ("notional", "a value in account currency, converted at the fill price"),
        2: ("equity_fraction", "a fraction of account equity at the fill, converted at the fill price"),
        3: ("cash_fraction", "a fraction of available buying power (cash when unlevered) at the fill"),
        4: ("target_units", "trade to reach this signed position in units"),
        5: ("target_fraction", "trade to reach this signed position value as a fraction of equity"),
        6: ("position_fraction", "close this fraction of the current position (1.0 closes it all)"),
    }


class TimeInForce(CodeTable):
    GTC = 0
    DAY = 1
    GTN = 2
    GTX = 3
    IOC = 4
    FOK = 5
    _descriptions = {
        0: ("gtc", "good till cancelled"),
        1: ("day", "valid until the end of the UTC calendar day of the first bar it could fill on"),
        2: ("gtn", "good for N bars after the decision bar"),
        3: ("gtx", "post-only (event engine): expires instead of taking liquidity when it would cross"),
        4: ("ioc", "immediate or cancel (event engine): fills what it can on arrival, the rest expires"),
        5: ("fok", "fill or kill (event engine): fills completely on arrival or expires"),
    }


class OrderStatus(CodeTable):
    PENDING = 0
    FILLED = 1
    CANCELLED = 2
    REJECTED = 3
    EXPIRED = 4
    TRIGGERED = 5
    _descriptions = {
        0: ("pending", "working, waiting for a fill"),
        1: ("filled", "filled"),
        2: ("cancelled", "cancelled"),
        3: ("rejected", "rejected"),
        4: ("expired", "expired by its time in force"),
        5: ("triggered", "stop-limit whose stop was reached: now a working limit order"),
    }


class OrderRole(CodeTable):
    ENTRY = 0
    EXIT = 1
    STOP_LOSS = 2
    TAKE_PROFIT = 3
    TRAILING_STOP = 4
    LIQUIDATION = 5
    END_OF_DATA = 6
    _descriptions = {
        0: ("entry", "opens or adds to a position"),
        1: ("exit", "reduces or closes a position"),
        2: ("stop_loss", "bracket stop-loss attached to an entry"),
        3: ("take_profit", "bracket take-profit attached to an entry"),
        4: ("trailing_stop", "bracket trailing stop attached to an entry"),
        5: ("liquidation", "forced liquidation after a margin call"),
        6: ("end_of_data", "position still open at the end of the data"),
    }


class EventKind(CodeTable):
    SUBMITTED = 0
    FILLED = 1
    CANCELLED = 2
    REJECTED = 3
    EXPIRED = 4
    TRIGGERED = 5
    REPLACED = 6
    REDUCED = 7
    _descriptions = {
        0: ("submitted", "accepted into the order book"),
        1: ("filled", "executed"),
        2: ("cancelled", "cancelled"),
        3: ("rejected", "refused; see the reason"),
        4: ("expired", "time in force elapsed"),
        5: ("triggered", "stop level reached"),
        6: ("replaced", "price or size changed"),
        7: ("reduced", "filled for less than requested; see the reason"),
    }


class Reason(CodeTable):
    NONE = 0
    SIGNAL = 1
    USER = 2
    INSUFFICIENT_FUNDS = 3
    ZERO_SIZE = 4
    BELOW_MIN_QTY = 5
    INVALID_PRICE = 6
    OCO = 7
    POSITION_CLOSED = 8
    TIME_IN_FORCE = 9
    MARGIN_CALL = 10
    SHORT_NOT_ALLOWED = 11
    NO_POSITION = 12
    REPLACED = 13
    SUPERSEDED = 14
    BRACKET = 15
    UNKNOWN_ORDER = 16
    RISK = 17
    POST_ONLY = 18
    NO_LIQUIDITY = 19
    LATENCY_REJECT = 20
    _descriptions = {
        0: ("none", ""),
        1: ("signal", "strategy signal"),
        2: ("user", "requested by the user"),
        3: ("insufficient_funds", "not enough cash / buying power for the order and its fees"),
        4: ("zero_size", "the order resolves to zero units"),
        5: ("below_min_qty", "the quantity is below the asset's minimum or lot size"),
        6: ("invalid_price", "a limit/stop price is missing, not finite or <= 0"),
        7: ("oco", "another order of its one-cancels-other group filled"),
        8: ("position_closed", "the position the order protected is closed"),
        9: ("time_in_force", "its time in force elapsed"),
        10: ("margin_call", "equity fell below the maintenance margin"),
        11: ("short_not_allowed", "short selling is disabled"),
        12: ("no_position", "there is no position to close"),
        13: ("replaced", "replaced by the user"),
        14: ("superseded", "a newer signal for the same asset replaced it"),
        15: ("bracket", "attached to an entry as a bracket order"),
        16: ("unknown_order", "cancel/replace of an order that is not working"),
        17: ("risk", "a risk rule (see the run's risk events)"),
        18: ("post_only", "a post-only (GTX) order would have crossed the book"),
        19: ("no_liquidity", "an IOC/FOK/market order found no (or not enough) liquidity on arrival"),
        20: ("latency_reject", "rejected before reaching the exchange (negative recorded order latency)"),
    }


class Action(CodeTable):
    SUBMIT = 0
    CANCEL = 1
    REPLACE = 2
    _descriptions = {
        0: ("submit", "submit a new order"),
        1: ("cancel", "cancel a working order"),
        2: ("replace", "change a working order's size or prices"),
    }


order_dt = np.dtype(
    [
        ("id", np.int64),
        ("asset", np.int64),
        ("side", np.int64),
        ("order_type", np.int64),
        ("size_type", np.int64),
        ("size", np.float64),
        ("limit_price", np.float64),
        ("stop_price", np.float64),
        ("sl_pct", np.float64),
        ("sl_abs", np.float64),
        ("tp_pct", np.float64),
        ("tp_abs", np.float64),
        ("trail_pct", np.float64),
        ("trail_abs", np.float64),
        ("trail_level", np.float64),
        ("tif", np.int64),
        ("gtn_bars", np.int64),
        ("expire_day", np.int64),
        ("created_bar", np.int64),
        ("created_ts", np.int64),
        ("status", np.int64),
        ("reason", np.int64),
        ("role", np.int64),
        ("parent_id", np.int64),
        ("oco_group", np.int64),
        ("reverse", np.int64),
        ("born_intrabar", np.int64),
        ("fill_bar", np.int64),
        ("fill_ts", np.int64),
        ("fill_price", np.float64),
        ("filled_qty", np.float64),
        ("fee", np.float64),
        ("tag", np.int64),
    ],
    align=True,
)
"""Every order ever submitted, by id. ``filled_qty`` is signed (+ bought, − sold)."""

fill_dt = np.dtype(
    [
        ("order_id", np.int64),
        ("bar", np.int64),
        ("ts", np.int64),
        ("asset", np.int64),
        ("qty", np.float64),
        ("price", np.float64),
        ("quote_price", np.float64),
        ("slippage", np.float64),
        ("fee", np.float64),
        ("role", np.int64),
        ("position_after", np.float64),
        ("cash_after", np.float64),
    ],
    align=True,
)
"""Executions. ``quote_price`` is the price the fill rules chose on the bar (inside the traded side's
[low, high]); ``price`` adds slippage (``price = quote_price ± slippage``); ``qty`` is signed."""

trade_dt = np.dtype(
    [
        ("asset", np.int64),
        ("direction", np.int64),
        ("qty", np.float64),
        ("entry_bar", np.int64),
        ("entry_ts", np.int64),
        ("entry_price", np.float64),
        ("exit_bar", np.int64),
        ("exit_ts", np.int64),
        ("exit_price", np.float64),
        ("fees", np.float64),
        ("pnl", np.float64),
        ("ret", np.float64),
        ("mae", np.float64),
        ("mfe", np.float64),
        ("exit_role", np.int64),
        ("is_open", np.int64),
    ],
    align=True,
)
"""Closed trades, one per reducing fill (the exit-trade convention): the closed quantity, the position's
average entry price, its share of entry fees plus the exit fee, P&L net of fees, and the maximum adverse
and favourable excursion of the position while it was open (fractions of the entry price)."""

event_dt = np.dtype(
    [
        ("order_id", np.int64),
        ("bar", np.int64),
        ("ts", np.int64),
        ("kind", np.int64),
        ("reason", np.int64),
        ("price", np.float64),
        ("qty", np.float64),
    ],
    align=True,
)
"""The order log: every state change of every order, with its reason."""

program_dt = np.dtype(
    [
        ("bar", np.int64),
        ("action", np.int64),
        ("ref", np.int64),
        ("asset", np.int64),
        ("side", np.int64),
        ("order_type", np.int64),
        ("size_type", np.int64),
        ("size", np.float64),
        ("limit_price", np.float64),
        ("stop_price", np.float64),
        ("sl_pct", np.float64),
        ("sl_abs", np.float64),
        ("tp_pct", np.float64),
        ("tp_abs", np.float64),
        ("trail_pct", np.float64),
        ("trail_abs", np.float64),
        ("tif", np.int64),
        ("gtn_bars", np.int64),
        ("tag", np.int64),
    ],
    align=True,
)
"""One instruction of an order program: at decision bar ``bar`` submit an order, or cancel / replace the
order created by program row ``ref``."""

"""The risk rules as data: their validated description, record layouts and lowering — no compiled code.

:class:`RiskConfig` (the ``risk:`` section of a strategy file, or ``risk=`` of
:func:`backforge.from_signals`), the code tables and record dtypes the kernels of
:mod:`backforge.engine.risk` read, and :func:`lower_risk`, which turns a config into those records for
a universe and its timestamps. Everything here is NumPy and pydantic only, so a strategy file can be
loaded and checked (``backforge validate``) without loading numba; :mod:`backforge.engine.risk`
re-exports every name.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backforge.engine.records import CodeTable
from backforge.errors import ConfigError, did_you_mean

NS_PER_DAY = 86_400_000_000_000
C_OVERFLOW = 6  # kernels.C_OVERFLOW (kept equal by a test; this module must not import the kernels)


# ------------------------------------------------------------------------------------------ codes

class RiskRule(CodeTable):
    NONE = 0
    MAX_DRAWDOWN = 1
    DAILY_LOSS = 2
    ORDERS_PER_DAY = 3
    TRADING_WINDOW = 4
    COOLDOWN = 5
    MAX_POSITIONS = 6
    MAX_WEIGHT = 7
    MAX_GROSS = 8
    MAX_NET = 9
    MAX_QTY = 10
    MAX_NOTIONAL = 11
    MIN_QTY = 12
    MIN_NOTIONAL = 13
    DRAWDOWN_SCALING = 14
    LOSING_STREAK = 15
    MANUAL = 16
    KELLY = 17
    NO_SIZE = 18
    _descriptions = {
        0: ("none", ""),
        1: ("max_drawdown", "drawdown from the equity peak reached the limit: entries halted"),
        2: ("daily_loss_limit", "the loss since the start of the day reached the limit: entries blocked until the next day"),
        3: ("max_orders_per_day", "the number of orders today reached the limit"),
        4: ("trading_window", "outside the trading window"),
        5: ("cooldown", "the asset stopped out recently"),
        6: ("max_positions", "the number of open positions reached the limit"),
        7: ("max_weight", "the position would exceed its maximum weight"),
        8: ("max_gross", "gross exposure would exceed its limit"),
        9: ("max_net", "net exposure would exceed its limit"),
        10: ("max_qty", "the position would exceed its maximum quantity"),
        11: ("max_notional", "the position would exceed its maximum notional"),
        12: ("min_qty", "the order is below the minimum quantity"),
        13: ("min_notional", "the order is below the minimum notional"),
        14: ("drawdown_scaling", "size scaled down by the drawdown multiplier"),
        15: ("losing_streak", "size scaled down after a losing streak"),
        16: ("manual", "halted by hand"),
        17: ("kelly", "the Kelly fraction of the strategy's closed trades is zero"),
        18: ("sizing", "the sizing indicator has no value at the decision bar"),
    }


class RiskEventKind(CodeTable):
    BLOCKED = 0
    REDUCED = 1
    HALTED = 2
    RESUMED = 3
    SCALED = 4
    _descriptions = {
        0: ("blocked", "an entry was not sent"),
        1: ("reduced", "an order was filled for less than asked"),
        2: ("halted", "trading halted"),
        3: ("resumed", "trading resumed"),
        4: ("scaled", "an entry was sent at a reduced size"),
    }


class ResumeMode(CodeTable):
    MANUAL = 0
    NEXT_DAY = 1
    RECOVERED = 2
    _descriptions = {
        0: ("manual", "only a manual resume lifts the halt (the live runner's mode)"),
        1: ("next_day", "resume at the first bar of the next session day, measuring drawdown from there"),
        2: ("recovered", "resume when the drawdown recovers to resume_drawdown"),
    }


class Sizing(CodeTable):
    NONE = 0
    RISK = 1
    VOLATILITY = 2
    EXPRESSION = 3
    KELLY = 4
    _descriptions = {
        0: ("none", "the allocation as written"),
        1: ("risk", "quantity = equity × risk ÷ stop distance"),
        2: ("volatility_target", "weight = target volatility ÷ realised volatility, capped"),
        3: ("expression", "weight = an indicator expression, clamped"),
        4: ("kelly", "weight = capped Kelly fraction of the strategy's own closed trades"),
    }



# module-level ints (frozen into compiled code as constants; numba cannot read class attributes)
EV_BLOCKED, EV_REDUCED, EV_HALTED, EV_RESUMED, EV_SCALED = 0, 1, 2, 3, 4
RESUME_MANUAL, RESUME_NEXT_DAY, RESUME_RECOVERED = 0, 1, 2
SZ_NONE, SZ_RISK, SZ_VOLATILITY, SZ_EXPRESSION, SZ_KELLY = 0, 1, 2, 3, 4
RULE_KELLY, RULE_NO_SIZE = 17, 18

# ----------------------------------------------------------------------------------------- records

risk_rules_dt = np.dtype([
    ("enabled", np.int64),           # any entry rule or multiplier in this row
    ("max_gross", np.float64),       # NaN: none (fractions of equity)
    ("max_net", np.float64),
    ("max_positions", np.int64),     # -1: none
    ("max_drawdown", np.float64),
    ("flatten", np.int64),
    ("resume", np.int64),
    ("resume_drawdown", np.float64),
    ("daily_loss", np.float64),
    ("max_orders", np.int64),
    ("has_window", np.int64),
    ("dd_start", np.float64),
    ("dd_end", np.float64),
    ("streak_losses", np.int64),     # 0: none
    ("streak_multiplier", np.float64),
    ("cooldown_bars", np.int64),
    ("cooldown_ns", np.int64),
    ("sizing", np.int64),
    ("size_value", np.float64),      # risk fraction / target volatility / Kelly multiple
    ("size_min", np.float64),
    ("size_max", np.float64),
    ("kelly_min_trades", np.int64),
    ("kelly_fallback", np.float64),
    ("stop_atr", np.float64),        # from_signals: stop distance as an ATR multiple
], align=True)
"""One row of rules: row 0 the portfolio, row ``1 + s`` strategy ``s``."""

risk_asset_dt = np.dtype([
    ("max_weight", np.float64),
    ("max_qty", np.float64),
    ("max_notional", np.float64),
    ("min_qty", np.float64),
    ("min_notional", np.float64),
    ("cooldown_bar", np.int64),      # entries blocked while bar < this
    ("cooldown_ts", np.int64),       # ... or while ts < this
    ("block_bar", np.int64),         # last bar an entry of this asset was blocked (event de-duplication)
    ("block_rule", np.int64),
], align=True)
"""Per row and asset: caps and the cooldown clock."""

risk_state_dt = np.dtype([
    ("peak", np.float64),
    ("day_key", np.int64),
    ("day_start", np.float64),
    ("orders_today", np.int64),
    ("streak", np.int64),
    ("wins", np.int64),
    ("losses", np.int64),
    ("sum_win", np.float64),
    ("sum_loss", np.float64),
    ("halt", np.int64),              # RiskRule code of the halt, 0 = trading
    ("halt_bar", np.int64),
    ("halt_ts", np.int64),
    ("halt_value", np.float64),
    ("manual", np.int64),            # 1: only risk_resume_nb lifts the halt
    ("day_block", np.int64),         # RiskRule.DAILY_LOSS while blocked for the day
    ("day_block_value", np.float64),
    ("prev_equity", np.float64),
    ("seen_fills", np.int64),
    ("seen_trades", np.int64),
], align=True)
"""Per row: the mutable risk state a live runner snapshots and restores."""

risk_event_dt = np.dtype([
    ("bar", np.int64),
    ("ts", np.int64),
    ("row", np.int64),               # 0 portfolio, 1 + s strategy s
    ("asset", np.int64),             # -1: the portfolio
    ("order_id", np.int64),          # -1: no order was sent
    ("kind", np.int64),
    ("rule", np.int64),
    ("value", np.float64),           # the measured value (drawdown, count, weight...)
    ("limit", np.float64),           # the rule's limit
    ("requested", np.float64),       # size asked for (its unit is the order's)
    ("allowed", np.float64),         # size sent / filled
], align=True)
"""Every order a rule shrank, delayed or blocked, and every halt and resume."""


class RiskBook(NamedTuple):
    """Rules and state of the risk layer, carried inside the engine ``State`` (plain arrays: snapshot
    them with ``.copy()``, restore by assignment)."""

    on: np.ndarray        # i8[1]: 1 when any rule is configured
    rules: np.ndarray     # risk_rules_dt[R]
    assets: np.ndarray    # risk_asset_dt[R, A]
    state: np.ndarray     # risk_state_dt[R]
    day: np.ndarray       # i8[H] session-day key of each bar
    window: np.ndarray    # u1[H, R] 1 where entries are allowed by the trading window
    series: np.ndarray    # f8[H, N] sizing indicators (volatility, expression, ATR) by bar
    cols: np.ndarray      # i8[R, A] column of series with the sizing value (-1 none)
    atr_cols: np.ndarray  # i8[R, A] column of series with the ATR of a from_signals ATR stop (-1 none)
    owner: np.ndarray     # i8[A] strategy (order tag) that opened the position in each asset
    events: np.ndarray    # risk_event_dt[capacity]
    n_events: np.ndarray  # i8[1]


def empty_risk_book(n_assets: int) -> RiskBook:
    """The book of a run without risk rules (every kernel returns at its first check): a fresh copy of
    a template built once per asset count."""
    template = _EMPTY_BOOKS.get(n_assets)
    if template is None:
        template = _EMPTY_BOOKS[n_assets] = _new_empty_risk_book(n_assets)
    return RiskBook(*(_copy(x) for x in template))


def _copy(x: np.ndarray) -> np.ndarray:
    """``x.copy()`` of a C-contiguous array, as bytes (NumPy copies a structured array field by field:
    microseconds for one row)."""
    if x.dtype.names is None or x.size == 0:
        return x.copy()
    return x.view(np.uint8).copy().view(x.dtype)


_EMPTY_BOOKS: dict[int, RiskBook] = {}


def _new_empty_risk_book(n_assets: int) -> RiskBook:
    rules = np.zeros(1, dtype=risk_rules_dt)
    _default_rules(rules[0])
    assets = np.zeros((1, n_assets), dtype=risk_asset_dt)
    _default_assets(assets)
    state = np.zeros(1, dtype=risk_state_dt)
    return RiskBook(np.zeros(1, dtype=np.int64), rules, assets, state, np.zeros(0, dtype=np.int64),
                    np.ones((0, 1), dtype=np.uint8), np.zeros((0, 1)), np.full((1, n_assets), -1, dtype=np.int64),
                    np.full((1, n_assets), -1, dtype=np.int64), np.full(n_assets, -1, dtype=np.int64),
                    np.zeros(0, dtype=risk_event_dt), np.zeros(1, dtype=np.int64))


def _default_rules(row) -> None:
    for name in ("max_gross", "max_net", "max_drawdown", "resume_drawdown", "daily_loss", "dd_start", "dd_end",
                 "size_value", "size_min", "size_max", "kelly_fallback", "stop_atr"):
        row[name] = np.nan
    row["max_positions"] = -1
    row["max_orders"] = -1
    row["streak_multiplier"] = 1.0
    row["resume"] = ResumeMode.NEXT_DAY


def _default_assets(assets: np.ndarray) -> None:
    for name in ("max_weight", "max_qty", "max_notional", "min_qty", "min_notional"):
        assets[name] = np.nan
    assets["cooldown_bar"] = -1
    assets["cooldown_ts"] = np.iinfo(np.int64).min
    assets["block_bar"] = -2
    assets["block_rule"] = 0


# ------------------------------------------------------------------------------------------ config

class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _parse_clock(text: str) -> int:
    """'09:30' / '9:30:15' → seconds after midnight; ValueError for anything else."""
    parts = str(text).strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"a time of day is written HH:MM (24-hour), got {text!r}")
    h, m = int(parts[0]), int(parts[1])
    s = int(parts[2]) if len(parts) == 3 else 0
    if not (0 <= h <= 24 and 0 <= m < 60 and 0 <= s < 60) or (h == 24 and (m or s)):
        raise ValueError("not a time of day (HH:MM from 00:00 to 24:00)")
    return h * 3600 + m * 60 + s


def _check_zone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        hint = did_you_mean(str(name), sorted(available_timezones())) if isinstance(name, str) else ""
        raise ValueError(f"unknown time zone {name!r}{hint} (an IANA name such as 'America/New_York' or 'UTC')") from None
    return str(name)


class TradingWindow(_Frozen):
    """Entries only between ``start`` and ``end`` (local times of ``timezone``; a window that ends before
    it starts spans midnight). Exits are always allowed."""

    start: str
    end: str
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        _parse_clock(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)

    @model_validator(mode="after")
    def _not_empty(self) -> "TradingWindow":
        if _parse_clock(self.start) == _parse_clock(self.end):
            raise ValueError(f"the window from {self.start} to {self.end} is empty")
        return self


class Session(_Frozen):
    """Where a trading day starts for the daily loss limit and the order count: a local time of day in
    a time zone (``{start: '17:00', timezone: 'America/New_York'}`` is the FX day). Default: UTC midnight."""

    start: str = "00:00"
    timezone: str = "UTC"

    @field_validator("start")
    @classmethod
    def _clock(cls, value: str) -> str:
        _parse_clock(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _check_zone(value)


class DrawdownScaling(_Frozen):
    """Size × 1 up to a drawdown of ``start``, falling linearly to × 0 at ``end`` and beyond."""

    start: float = Field(ge=0, lt=1, allow_inf_nan=False)
    end: float = Field(gt=0, le=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> "DrawdownScaling":
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be below end ({self.end})")
        return self


class LosingStreak(_Frozen):
    """After ``losses`` consecutive losing trades, size × ``multiplier`` until a winning trade."""

    losses: int = Field(ge=1)
    multiplier: float = Field(ge=0, le=1, allow_inf_nan=False)


class RiskSizing(_Frozen):
    """Sizing of :func:`backforge.from_signals` entries (strategy files put it on the allocation).

    ``mode``: ``risk`` — quantity = equity × ``value`` ÷ stop distance (the stop_loss fraction of the
    decision bar's close, or ``stop_atr`` × ATR(``atr_window``), placed as the stop-loss bracket);
    ``volatility_target`` — weight = ``value`` ÷ annualized volatility of returns over ``window``,
    capped at ``max`` (annualized with ``periods_per_year``, or by default with the bars per year of the
    trailing year at the decision bar, :func:`trailing_periods_per_year`: causal); ``kelly`` — ``value`` × Kelly fraction of the closed trades so far, capped at
    ``max``, ``fallback`` before ``min_trades`` trades; ``expression`` — weight = the value at the decision
    bar of ``expression``, an indicator expression of the strategy language (e.g.
    ``{"div": [0.02, {"stddev": {"window": 20}}]}``), clamped to [``min``, ``max``]; no entry while it has
    no value (``value`` is not used).
    """

    mode: Literal["risk", "volatility_target", "kelly", "expression"]
    value: float = Field(1.0, gt=0, allow_inf_nan=False)
    expression: Any = None
    min: float = Field(0.0, ge=0, allow_inf_nan=False)
    stop_atr: float | None = Field(None, gt=0, allow_inf_nan=False)
    atr_window: Union[int, str] = 14
    window: Union[int, str] = 20
    max: float = Field(1.0, gt=0, allow_inf_nan=False)
    min_trades: int = Field(20, ge=1)
    fallback: float = Field(0.0, ge=0, allow_inf_nan=False)
    periods_per_year: float | None = Field(None, gt=0, allow_inf_nan=False)

    @field_validator("window", "atr_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        from backforge.strategy.schema import _check_window

        return _check_window(value)

    @model_validator(mode="after")
    def _mode_fields(self) -> "RiskSizing":
        given = "value" in self.model_fields_set
        if self.mode != "expression" and not given:
            raise ValueError(f"{self.mode} sizing needs a value")
        if self.mode == "risk" and self.value >= 1:
            raise ValueError(f"the risk per trade is a fraction of equity below 1 (0.01 = 1 %), got {self.value!r}")
        if self.mode == "expression":
            if self.expression is None:
                raise ValueError("expression sizing needs an expression (an indicator of the strategy language)")
            if self.min > self.max:
                raise ValueError(f"min ({self.min}) is above max ({self.max})")
        elif self.expression is not None:
            raise ValueError(f"expression applies to mode 'expression', not {self.mode!r}")
        return self


PerAsset = Union[float, dict[str, float]]


class RiskConfig(_Frozen):
    """Portfolio risk rules (fractions of equity; 0.2 = 20 %).

    Examples
    --------
    >>> RiskConfig(max_drawdown=0.25, resume="manual").resume
    'manual'
    >>> try:
    ...     as_risk_config({"max_drawdown": 1.0})
    ... except ConfigError as err:
    ...     print(err)
    risk.max_drawdown: must be a fraction between 0 and 1 (0.2 = 20 %), got 1.0
    """

    max_weight: PerAsset | None = Field(None, description="largest position value per asset, fraction of equity (at the fill)")
    max_gross: float | None = Field(None, description="largest gross exposure (sum of |position values|), multiple of equity")
    max_net: float | None = Field(None, description="largest |net exposure|, multiple of equity")
    max_positions: int | None = Field(None, ge=1, description="most assets with an open position (or a working entry) at once")
    max_drawdown: float | None = Field(None, description="halt new entries when equity falls this far below its peak")
    flatten_on_halt: bool = Field(False, description="also close every position the halt covers when the drawdown halt fires (a strategy's halt: the positions it opened)")
    resume: Literal["manual", "next_day", "recovered"] = Field("next_day", description="how a drawdown halt is lifted")
    resume_drawdown: float | None = Field(None, description="with resume: recovered, resume once the drawdown is back to this (default half the limit)")
    daily_loss_limit: float | None = Field(None, description="block entries for the rest of the day once the day's loss reaches this fraction")
    session: Session = Field(default_factory=Session, description="when a day starts (daily loss, orders per day, next-day resume)")
    max_orders_per_day: int | None = Field(None, ge=1, description="most orders a day sent by decisions; exits are never blocked")
    trading_window: TradingWindow | None = None
    drawdown_scaling: DrawdownScaling | None = None
    losing_streak: LosingStreak | None = None
    cooldown: Union[int, str, None] = Field(None, description="after a stop-out, no new entry in that asset for this many bars or this long ('2d')")
    min_qty: PerAsset | None = Field(None, description="smallest opening quantity of an order")
    max_qty: PerAsset | None = Field(None, description="largest |position| in units")
    min_notional: PerAsset | None = Field(None, description="smallest opening notional of an order")
    max_notional: PerAsset | None = Field(None, description="largest |position value| in account currency")
    sizing: RiskSizing | None = Field(None, description="from_signals only: how entries are sized")

    @field_validator("max_weight", "min_qty", "max_qty", "min_notional", "max_notional")
    @classmethod
    def _positive(cls, value: PerAsset | None) -> PerAsset | None:
        if value is None:
            return value
        for v in (value.values() if isinstance(value, dict) else [value]):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"must be a finite number >= 0, got {v!r}")
        return value

    @field_validator("max_gross", "max_net")
    @classmethod
    def _multiple(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"must be a finite multiple of equity > 0, got {value!r}")
        return value

    @field_validator("max_drawdown", "daily_loss_limit", "resume_drawdown")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and 0 < value < 1):
            raise ValueError(f"must be a fraction between 0 and 1 (0.2 = 20 %), got {value!r}")
        return value

    @field_validator("cooldown")
    @classmethod
    def _window(cls, value: Any) -> Any:
        if value is None:
            return value
        from backforge.strategy.schema import _check_window

        return _check_window(value)

    @model_validator(mode="after")
    def _consistent(self) -> "RiskConfig":
        for lo, hi in (("min_qty", "max_qty"), ("min_notional", "max_notional")):
            low, high = getattr(self, lo), getattr(self, hi)
            if low is None or high is None:
                continue
            names = set(low) | set(high) if isinstance(low, dict) and isinstance(high, dict) else \
                (set(low) if isinstance(low, dict) else set(high) if isinstance(high, dict) else {None})
            for name in names:
                lv = low.get(name, 0.0) if isinstance(low, dict) else low
                hv = high.get(name, math.inf) if isinstance(high, dict) else high
                if lv > hv:
                    where = f" for {name}" if name else ""
                    raise ValueError(f"{lo} ({lv}) is above {hi} ({hv}){where}")
        if self.flatten_on_halt and self.resume == "recovered":
            raise ValueError("a flattened account cannot recover its drawdown: with flatten_on_halt use "
                             "resume: next_day or manual")
        if self.resume_drawdown is not None:
            if self.max_drawdown is None:
                raise ValueError("resume_drawdown needs max_drawdown")
            if self.resume_drawdown >= self.max_drawdown:
                raise ValueError(f"resume_drawdown ({self.resume_drawdown}) must be below max_drawdown ({self.max_drawdown})")
        return self

    @property
    def active(self) -> bool:
        """True when any rule is set."""
        return self != RiskConfig()


def risk_config_error(exc: ValidationError, *, prefix: str = "risk") -> ConfigError:
    """The first problem of a RiskConfig validation as a ConfigError with the exact path."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "union[", "float", "int", "str", "dict["))]
    path = ".".join([prefix, *loc]) if prefix else ".".join(loc)
    if err["type"] == "extra_forbidden":
        name = str(err["loc"][-1])
        owner = RiskConfig
        return ConfigError(f"unknown risk option {name!r}{did_you_mean(name, list(owner.model_fields))}",
                           path=".".join(path.split(".")[:-1]) or None)
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    scalar = isinstance(value, (str, int, float, bool)) or value is None
    named = "got" in msg or (isinstance(value, str) and repr(value) in msg)  # the message shows the value
    return ConfigError(f"{msg}, got {value!r}" if not named and scalar else msg, path=path)


def as_risk_config(value: Any, *, prefix: str = "risk") -> RiskConfig | None:
    """``None``, a :class:`RiskConfig` or a mapping → a validated RiskConfig (ConfigError on bad input)."""
    if value is None or isinstance(value, RiskConfig):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"risk must be a RiskConfig or a mapping, got {type(value).__name__}", path=prefix)
    try:
        return RiskConfig(**value)
    except ValidationError as exc:
        raise risk_config_error(exc, prefix=prefix) from None


# ------------------------------------------------------------------------------------ session masks

def session_keys(timestamps: np.ndarray, session: Session | None = None) -> np.ndarray:
    """The trading-day number of every timestamp: days since 1970 in the session's time zone, a day
    starting at ``session.start`` (UTC midnight by default).

    Examples
    --------
    >>> ts = np.array([0, 23 * 3600 * 10**9, 25 * 3600 * 10**9], dtype=np.int64)
    >>> session_keys(ts).tolist()
    [0, 0, 1]
    >>> session_keys(ts, Session(start="22:00")).tolist()  # the day turns at 22:00 UTC
    [-1, 0, 0]
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    session = session or Session()
    offset = _utc_offsets(ts, session.timezone)
    local = ts + offset - _parse_clock(session.start) * 1_000_000_000
    return np.floor_divide(local, NS_PER_DAY).astype(np.int64)


def _utc_offsets(ts: np.ndarray, zone: str) -> np.ndarray:
    """UTC offset (ns) of each timestamp in ``zone`` (daylight saving time respected)."""
    if zone == "UTC" or len(ts) == 0:
        return np.zeros(len(ts), dtype=np.int64)
    import pandas as pd

    idx = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).tz_convert(zone)
    local = idx.tz_localize(None).as_unit("ns").asi8
    return (local - ts).astype(np.int64)


def window_mask(timestamps: np.ndarray, window: TradingWindow | None) -> np.ndarray:
    """1 where a timestamp's local time of day is inside the trading window ([start, end)).

    Examples
    --------
    >>> hour = 3600 * 10**9
    >>> ts = np.array([8, 9, 15, 16], dtype=np.int64) * hour
    >>> window_mask(ts, TradingWindow(start="09:00", end="16:00")).tolist()
    [0, 1, 1, 0]
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if window is None:
        return np.ones(len(ts), dtype=np.uint8)
    local = ts + _utc_offsets(ts, window.timezone)
    seconds = np.mod(local, NS_PER_DAY) // 1_000_000_000
    lo, hi = _parse_clock(window.start), _parse_clock(window.end)
    inside = (seconds >= lo) & (seconds < hi) if lo < hi else (seconds >= lo) | (seconds < hi)
    return inside.astype(np.uint8)


# ---------------------------------------------------------------------------------------- lowering

def _per_asset(value: PerAsset | None, assets: tuple[str, ...], path: str) -> np.ndarray:
    if value is None:
        return np.full(len(assets), np.nan)
    if not isinstance(value, dict):
        return np.full(len(assets), float(value))
    unknown = sorted(set(value) - set(assets))
    if unknown:
        raise ConfigError(f"unknown asset {unknown[0]!r}{did_you_mean(unknown[0], assets)}", path=f"{path}.{unknown[0]}")
    return np.array([float(value.get(a, np.nan)) for a in assets])


def _fill_row(rules, assets_row, cfg: RiskConfig | None, assets: tuple[str, ...], path: str) -> bool:
    """Write one RiskConfig into a rules row and its asset row; True when any entry rule is set."""
    if cfg is None:
        return False
    from backforge._time import parse_duration

    rules["max_gross"] = cfg.max_gross if cfg.max_gross is not None else np.nan
    rules["max_net"] = cfg.max_net if cfg.max_net is not None else np.nan
    rules["max_positions"] = cfg.max_positions if cfg.max_positions is not None else -1
    rules["max_drawdown"] = cfg.max_drawdown if cfg.max_drawdown is not None else np.nan
    rules["flatten"] = int(cfg.flatten_on_halt)
    rules["resume"] = ResumeMode.code(cfg.resume)
    if cfg.max_drawdown is not None:
        rules["resume_drawdown"] = cfg.resume_drawdown if cfg.resume_drawdown is not None else cfg.max_drawdown / 2
    rules["daily_loss"] = cfg.daily_loss_limit if cfg.daily_loss_limit is not None else np.nan
    rules["max_orders"] = cfg.max_orders_per_day if cfg.max_orders_per_day is not None else -1
    rules["has_window"] = int(cfg.trading_window is not None)
    if cfg.drawdown_scaling is not None:
        rules["dd_start"] = cfg.drawdown_scaling.start
        rules["dd_end"] = cfg.drawdown_scaling.end
    if cfg.losing_streak is not None:
        rules["streak_losses"] = cfg.losing_streak.losses
        rules["streak_multiplier"] = cfg.losing_streak.multiplier
    if cfg.cooldown is not None:
        if isinstance(cfg.cooldown, int):
            rules["cooldown_bars"] = cfg.cooldown
        else:
            rules["cooldown_ns"] = parse_duration(cfg.cooldown)
    assets_row["max_weight"] = _per_asset(cfg.max_weight, assets, f"{path}.max_weight")
    for name in ("max_qty", "max_notional", "min_qty", "min_notional"):
        assets_row[name] = _per_asset(getattr(cfg, name), assets, f"{path}.{name}")
    rules["enabled"] = 1
    return True


def lower_risk(portfolio_risk: RiskConfig | None, assets: tuple[str, ...], timestamps: np.ndarray, *,
               strategy_risks: list[RiskConfig | None] | None = None, cash: float = 0.0,
               capacity: int = 256) -> RiskBook:
    """Lower the portfolio rules (row 0) and each strategy's rules (rows ``1 + s``) for a run over
    ``timestamps``; the sizing rows and series are filled in by the caller (see ``set_sizing``).

    Examples
    --------
    >>> ts = np.arange(3, dtype=np.int64) * 86_400 * 10**9
    >>> book = lower_risk(RiskConfig(max_drawdown=0.2), ("A",), ts, cash=100.0)
    >>> int(book.on[0]), float(book.rules[0]["max_drawdown"]), book.day.tolist()
    (1, 0.2, [0, 1, 2])
    """
    strategy_risks = list(strategy_risks or [])
    n_rows = 1 + len(strategy_risks)
    n_assets = len(assets)
    rules = np.zeros(n_rows, dtype=risk_rules_dt)
    for r in range(n_rows):
        _default_rules(rules[r])
    asset_rows = np.zeros((n_rows, n_assets), dtype=risk_asset_dt)
    _default_assets(asset_rows)
    any_rule = _fill_row(rules[0], asset_rows[0], portfolio_risk, assets, "risk")
    for s, cfg in enumerate(strategy_risks):
        any_rule |= _fill_row(rules[1 + s], asset_rows[1 + s], cfg, assets, f"strategies[{s}].risk")
    ts = np.asarray(timestamps, dtype=np.int64)
    session = portfolio_risk.session if portfolio_risk is not None else None
    window = np.ones((len(ts), n_rows), dtype=np.uint8)
    for r, cfg in enumerate([portfolio_risk, *strategy_risks]):
        if cfg is not None and cfg.trading_window is not None:
            window[:, r] = window_mask(ts, cfg.trading_window)
    state = np.zeros(n_rows, dtype=risk_state_dt)
    state["peak"] = cash
    state["day_start"] = cash
    state["prev_equity"] = cash
    state["day_key"] = np.iinfo(np.int64).min
    return RiskBook(
        np.array([int(any_rule)], dtype=np.int64), rules, asset_rows, state, session_keys(ts, session), window,
        np.zeros((len(ts), 0)), np.full((n_rows, n_assets), -1, dtype=np.int64),
        np.full((n_rows, n_assets), -1, dtype=np.int64), np.full(n_assets, -1, dtype=np.int64),
        np.zeros(max(int(capacity), 16), dtype=risk_event_dt), np.zeros(1, dtype=np.int64),
    )


FILL_CAPS = ("max_weight", "max_gross", "max_net", "min_qty", "max_qty", "min_notional", "max_notional")
"""The rules checked at the fill (:func:`risk_cap_nb`): what a venue that fills like the engine applies."""


def _caps_only(cfg: RiskConfig | None) -> RiskConfig | None:
    if cfg is None:
        return None
    caps = {name: getattr(cfg, name) for name in FILL_CAPS if getattr(cfg, name) is not None}
    return RiskConfig(**caps) if caps else None


def lower_fill_caps(portfolio_risk: RiskConfig | None, assets: tuple[str, ...], *,
                    strategy_risks: list[RiskConfig | None] | None = None) -> RiskBook | None:
    """Only the fill-time caps (:data:`FILL_CAPS`) of the portfolio's and each strategy's rules, lowered
    for ``assets`` — the book of a paper venue that fills with the engine's kernels, so that a cap cuts a
    fill there exactly as in the backtest. Halts, limits and multipliers stay with the strategy (they
    decide orders; the venue only fills them). None when no cap is set.

    Examples
    --------
    >>> book = lower_fill_caps(RiskConfig(max_weight=0.25, max_drawdown=0.2), ("A", "B"))
    >>> book.assets[0]["max_weight"].tolist(), bool(np.isnan(book.rules[0]["max_drawdown"]))
    ([0.25, 0.25], True)
    >>> lower_fill_caps(RiskConfig(max_drawdown=0.2), ("A",)) is None
    True
    """
    rows = [_caps_only(portfolio_risk), *(_caps_only(r) for r in strategy_risks or [])]
    if all(r is None for r in rows):
        return None
    return lower_risk(rows[0], tuple(assets), np.zeros(0, dtype=np.int64), strategy_risks=rows[1:])


def set_sizing(book: RiskBook, row: int, mode: str, value: float, *, size_min: float = np.nan,
               size_max: float = np.nan, min_trades: int = 0, fallback: float = np.nan,
               stop_atr: float = np.nan) -> None:
    """Record the sizing mode of rules row ``row`` (the series columns are set in ``book.cols``)."""
    rules = book.rules[row]
    rules["sizing"] = Sizing.code(mode)
    rules["size_value"] = value
    rules["size_min"] = size_min
    rules["size_max"] = size_max
    rules["kelly_min_trades"] = min_trades
    rules["kelly_fallback"] = fallback
    rules["stop_atr"] = stop_atr
    book.on[0] = 1


def with_series(book: RiskBook, series: np.ndarray) -> RiskBook:
    """The book with its sizing-indicator matrix ``[H, N]`` replaced."""
    return book._replace(series=np.ascontiguousarray(series, dtype=np.float64))


# ------------------------------------------------------------------------------ causal annualization

YEAR_NS = int(365.25 * NS_PER_DAY)


def trailing_periods_per_year(timestamps: np.ndarray) -> np.ndarray:
    """Bars per year at every bar, counted causally over the trailing year: at bar ``t`` with ``j`` the
    first bar stamped after ``ts[t] - 365.25 days``, ``(t - j) / ((ts[t] - ts[j]) / 365.25 days)`` (NaN
    at the first bar). Only bars up to ``t`` are used, so truncating the data after ``t`` changes
    nothing up to ``t``; once the data spans a year the value no longer depends on where it starts
    (before that the bars so far are counted). Sessions, weekends and gaps count as they occur.

    The annualization of volatility-target sizing (give ``periods_per_year`` to fix it instead).

    Examples
    --------
    >>> day = 86_400 * 10**9
    >>> ts = np.array([0, 1, 2, 3, 6, 7], dtype=np.int64) * day  # a weekend between bars 3 and 4
    >>> np.round(trailing_periods_per_year(ts), 2).tolist()
    [nan, 365.25, 365.25, 365.25, 243.5, 260.89]
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    if len(ts) == 0:
        return np.zeros(0)
    j = np.searchsorted(ts, ts - YEAR_NS, side="right")
    idx = np.arange(len(ts))
    span = (ts - ts[j]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (idx - j) * float(YEAR_NS) / span
    out[span <= 0.0] = np.nan
    return out



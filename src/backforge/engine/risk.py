"""Risk rules inside the compiled loop: sizing multipliers, limits, halts — the live circuit breakers.

Three layers, like the rest of the engine:

* :class:`RiskConfig` — a frozen, validated description of the rules (the ``risk:`` section of a
  strategy file at portfolio level and per strategy, or ``risk=`` of :func:`backforge.from_signals` /
  :func:`backforge.simulate`). Every bad value is a :class:`~backforge.errors.ConfigError` naming the
  exact path, raised at validation, before any data is loaded.
* :func:`lower_risk` — the rules lowered to record arrays (``risk_rules_dt`` per row, ``risk_asset_dt``
  per row and asset) plus the per-bar session keys and trading-window masks computed on the Python side
  from the data's timestamps (time-zone arithmetic never happens in compiled code). Row 0 holds the
  portfolio rules; row ``1 + s`` the rules of strategy ``s``.
* kernels — :func:`risk_entry_nb` (may this entry go out, and at what size: halts, daily loss, orders
  per day, trading windows, cooldowns, open-position count, the drawdown and losing-streak
  multipliers), :func:`risk_size_nb` (risk at the stop, volatility target, expression, capped Kelly),
  :func:`risk_cap_nb` (caps that must hold at the fill: weight per asset, gross and net exposure,
  quantity and notional per asset) and :func:`risk_update_nb` (after every bar: equity peak, session
  day, closed trades → losing streak, Kelly statistics and cooldowns, drawdown halts and their resume).

The whole mutable state is one plain :class:`RiskBook` of record arrays, so a live runner can snapshot
it (``book.state.copy()``) and restore it, and :func:`risk_halt_nb` / :func:`risk_resume_nb` halt and
resume by hand. Every order a rule shrinks, delays or blocks leaves a ``risk_event_dt`` record naming the
rule and the values; :func:`describe_risk_event` renders it ("blocked: drawdown 21.3 % ≥ max_drawdown
20 %").

Examples
--------
>>> cfg = RiskConfig(max_drawdown=0.2, losing_streak={"losses": 3, "multiplier": 0.5})
>>> cfg.max_drawdown, cfg.losing_streak.multiplier
(0.2, 0.5)
>>> round(drawdown_multiplier(0.15, 0.1, 0.2), 12)
0.5
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backforge._jit import njit
from backforge.errors import ConfigError, did_you_mean

__all__ = [
    "RiskConfig", "TradingWindow", "Session", "DrawdownScaling", "LosingStreak", "RiskSizing", "RiskBook",
    "RiskRule", "RiskEventKind", "ResumeMode", "Sizing", "lower_risk", "empty_risk_book", "risk_events_frame",
    "describe_risk_event", "drawdown_multiplier", "kelly_fraction", "risk_rules_dt", "risk_state_dt",
    "risk_asset_dt", "risk_event_dt", "halt", "resume", "session_keys", "window_mask", "trailing_periods_per_year", "lower_fill_caps", "FILL_CAPS",
]

from backforge.engine.records import CodeTable

kernel = njit(_nrt=False)
inline_kernel = njit(_nrt=False, inline="always")

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


# ------------------------------------------------------------------------------------ pure helpers

@inline_kernel
def drawdown_multiplier(drawdown: float, start: float, end: float) -> float:
    """1 up to ``start``, linear down to 0 at ``end``, 0 beyond (``drawdown`` >= 0, a fraction).

    Examples
    --------
    >>> drawdown_multiplier(0.05, 0.1, 0.2), drawdown_multiplier(0.25, 0.1, 0.2)
    (1.0, 0.0)
    """
    if not (drawdown > start):
        return 1.0
    if drawdown >= end:
        return 0.0
    return (end - drawdown) / (end - start)


@inline_kernel
def kelly_fraction(wins: int, losses: int, sum_win: float, sum_loss: float) -> float:
    """Kelly fraction ``W - (1 - W) / R`` of closed trades (W win rate, R average win ÷ average loss,
    from trade returns); 1 with no loss yet, 0 with no win, never below 0.

    Examples
    --------
    >>> round(kelly_fraction(6, 4, 6 * 0.10, 4 * 0.05), 12)  # W = 0.6, R = 2 → 0.6 - 0.4 / 2
    0.4
    """
    n = wins + losses
    if n == 0 or wins == 0:
        return 0.0
    if losses == 0 or sum_loss <= 0.0:
        return 1.0
    w = wins / n
    ratio = (sum_win / wins) / (sum_loss / losses)
    f = w - (1.0 - w) / ratio
    return f if f > 0.0 else 0.0


# ------------------------------------------------------------------------------------------ kernels

@kernel
def record_risk_event_nb(risk: RiskBook, t: int, ts: int, row: int, asset: int, order_id: int, kind: int, rule: int,
                         value: float, limit: float, requested: float, allowed: float) -> None:
    """Append one risk event (flags the engine overflow when the array is full: the run is retried)."""
    n = risk.n_events[0]
    if n >= risk.events.shape[0]:
        risk.n_events[0] = n + 1  # counted: the Python side sees the overflow and retries larger
        return
    ev = risk.events[n]
    ev["bar"] = t
    ev["ts"] = ts
    ev["row"] = row
    ev["asset"] = asset
    ev["order_id"] = order_id
    ev["kind"] = kind
    ev["rule"] = rule
    ev["value"] = value
    ev["limit"] = limit
    ev["requested"] = requested
    ev["allowed"] = allowed
    risk.n_events[0] = n + 1


@inline_kernel
def risk_overflowed_nb(risk: RiskBook) -> bool:
    """True when more events happened than the event array holds."""
    return risk.n_events[0] > risk.events.shape[0]


@kernel
def _block_nb(risk: RiskBook, t: int, ts: int, row: int, a: int, rule: int, value: float, limit: float,
              requested: float) -> float:
    """Record a blocked entry (once per run of consecutive blocked bars of one rule) and return -1."""
    if a >= 0:
        cell = risk.assets[row, a]
        repeat = cell["block_rule"] == rule and cell["block_bar"] >= t - 1
        cell["block_rule"] = rule
        cell["block_bar"] = t
        if repeat:
            return -1.0
    record_risk_event_nb(risk, t, ts, row, a, -1, EV_BLOCKED, rule, value, limit, requested, 0.0)
    return -1.0


@inline_kernel
def _open_positions_nb(risk: RiskBook, position, orders, active, n_active: int, row: int, a: int) -> int:
    """Assets (other than ``a``) with a position, or flat with a working entry; for a strategy row only
    those the strategy opened or placed."""
    count = 0
    for b in range(position.shape[0]):
        if b == a:
            continue
        if position[b] != 0.0:
            if row == 0 or risk.owner[b] == row - 1:
                count += 1
            continue
        for i in range(n_active):
            order = orders[active[i]]
            if order["asset"] == b and order["role"] == 0 and (order["status"] == 0 or order["status"] == 5) \
                    and (row == 0 or order["tag"] == row - 1):
                count += 1
                break
    return count


@kernel
def risk_entry_nb(risk: RiskBook, position, orders, active, n_active: int, equity: float, row: int, a: int, t: int,
                  ts: int, size: float) -> float:
    """May an entry of rules row ``row`` (0 for signals; the portfolio row always applies too) in asset
    ``a`` go out after bar ``t``, and at what size? Returns ``size`` times the drawdown and losing-streak
    multipliers, or -1 when a rule blocks it (a ``risk_event_dt`` record names the rule and values).

    Equivalent slow reference: the checks of ``tests/engine/test_risk.py::reference_entry``.
    """
    multiplier = 1.0
    for pass_ in range(2):
        r = 0 if pass_ == 0 else row
        if pass_ == 1 and row == 0:
            break
        rules = risk.rules[r]
        if rules["enabled"] == 0:
            continue
        st = risk.state[r]
        if st["halt"] != 0:
            return _block_nb(risk, t, ts, r, a, st["halt"], st["halt_value"],
                             rules["max_drawdown"] if st["halt"] == 1 else np.nan, size)
        if st["day_block"] != 0:
            return _block_nb(risk, t, ts, r, a, 2, st["day_block_value"], rules["daily_loss"], size)
        if rules["max_orders"] >= 0 and st["orders_today"] >= rules["max_orders"]:
            return _block_nb(risk, t, ts, r, a, 3, float(st["orders_today"]), float(rules["max_orders"]), size)
        if rules["has_window"] != 0 and t < risk.window.shape[0] and risk.window[t, r] == 0:
            return _block_nb(risk, t, ts, r, a, 4, np.nan, np.nan, size)
        cell = risk.assets[r, a]
        if t < cell["cooldown_bar"] or ts < cell["cooldown_ts"]:
            return _block_nb(risk, t, ts, r, a, 5, np.nan, np.nan, size)
        if rules["max_positions"] >= 0 and position[a] == 0.0:
            count = _open_positions_nb(risk, position, orders, active, n_active, r, a)
            if count >= rules["max_positions"]:
                return _block_nb(risk, t, ts, r, a, 6, float(count), float(rules["max_positions"]), size)
        if np.isfinite(rules["dd_start"]):
            peak = st["peak"]
            dd = 1.0 - equity / peak if peak > 0.0 else 0.0
            m = drawdown_multiplier(dd, rules["dd_start"], rules["dd_end"])
            if m < 1.0:
                if m <= 0.0:
                    return _block_nb(risk, t, ts, r, a, 14, dd, rules["dd_end"], size)
                record_risk_event_nb(risk, t, ts, r, a, -1, EV_SCALED, 14, dd, rules["dd_start"], size,
                                     size * multiplier * m)
                multiplier *= m
        if rules["streak_losses"] > 0 and st["streak"] >= rules["streak_losses"]:
            m = rules["streak_multiplier"]
            if m <= 0.0:
                return _block_nb(risk, t, ts, r, a, 15, float(st["streak"]), float(rules["streak_losses"]), size)
            record_risk_event_nb(risk, t, ts, r, a, -1, EV_SCALED, 15, float(st["streak"]),
                                 float(rules["streak_losses"]), size, size * multiplier * m)
            multiplier *= m
    risk.assets[0, a]["block_rule"] = 0
    risk.assets[row, a]["block_rule"] = 0
    return size * multiplier


@kernel
def risk_count_order_nb(risk: RiskBook, row: int) -> None:
    """Count one decision order toward today's limit of the portfolio row and of ``row``."""
    risk.state[0]["orders_today"] += 1
    if row > 0:
        risk.state[row]["orders_today"] += 1


@kernel
def risk_size_nb(risk: RiskBook, row: int, a: int, t: int, equity: float, close: float, sl_pct: float,
                 sl_abs: float):
    """The (size type, size) of an entry of rules row ``row`` under its sizing mode, from data of the
    decision bar ``t`` only. Returns size type -1 when the rule has no size (NaN indicator, Kelly 0):
    the caller then sends nothing. Size types are the engine's: 0 units, 2 equity fraction.

    * risk: units = equity × risk ÷ distance, distance = ``sl_abs`` when finite, else ``close × sl_pct``;
    * volatility target: equity fraction = min(max, target ÷ volatility);
    * expression: equity fraction = clamp(value, min, max);
    * Kelly: equity fraction = min(max, multiple × Kelly fraction), ``fallback`` before ``min_trades``.
    """
    rules = risk.rules[row]
    mode = rules["sizing"]
    if mode == SZ_RISK:
        distance = sl_abs if np.isfinite(sl_abs) else close * sl_pct
        if not (distance > 0.0) or not (equity > 0.0):
            return -1, 0.0
        return 0, equity * rules["size_value"] / distance
    if mode == SZ_VOLATILITY or mode == SZ_EXPRESSION:
        col = risk.cols[row, a]
        value = risk.series[t, col] if col >= 0 and t < risk.series.shape[0] else np.nan
        if mode == SZ_VOLATILITY:
            if not (value > 0.0):
                return -1, 0.0
            weight = min(rules["size_value"] / value, rules["size_max"])
        else:
            if np.isnan(value):
                return -1, 0.0
            weight = min(max(value, rules["size_min"]), rules["size_max"])
        if not (weight > 0.0):
            return -1, 0.0
        return 2, weight
    if mode == SZ_KELLY:
        st = risk.state[row]
        if st["wins"] + st["losses"] < rules["kelly_min_trades"]:
            weight = rules["kelly_fallback"]
        else:
            weight = min(rules["size_value"] * kelly_fraction(st["wins"], st["losses"], st["sum_win"], st["sum_loss"]),
                         rules["size_max"])
        if not (weight > 0.0):
            return -1, 0.0
        return 2, weight
    return -2, 0.0


@inline_kernel
def cap_needs_equity_nb(risk: RiskBook, tag: int, a: int) -> bool:
    """True when the fill-time caps of the order's rows need equity and exposure (weight, gross, net)."""
    for pass_ in range(2):
        r = 0 if pass_ == 0 else tag + 1
        if pass_ == 1 and (tag < 0 or tag + 1 >= risk.rules.shape[0]):
            break
        if risk.rules[r]["enabled"] == 0:
            continue
        if np.isfinite(risk.assets[r, a]["max_weight"]) or np.isfinite(risk.rules[r]["max_gross"]) \
                or np.isfinite(risk.rules[r]["max_net"]):
            return True
    return False


@kernel
def risk_cap_nb(risk: RiskBook, tag: int, a: int, t: int, ts: int, oid: int, base: float, opening: float,
                side: int, price: float, equity: float, gross_other: float, net_other: float) -> float:
    """The largest opening quantity (>= 0) an entry may fill: ``base`` is the signed position after the
    order's closing part, ``gross_other``/``net_other`` the exposure of the other assets, all valued at
    the fill. Caps: max_weight, max_qty, max_notional per asset, max_gross, max_net. Below min_qty /
    min_notional the opening part is refused (0). Every cut leaves a risk event."""
    allowed = opening
    rule = 0
    value = np.nan
    limit = np.nan
    for pass_ in range(2):
        r = 0 if pass_ == 0 else tag + 1
        if pass_ == 1 and (tag < 0 or tag + 1 >= risk.rules.shape[0]):
            break
        cell = risk.assets[r, a]
        rules = risk.rules[r]
        if rules["enabled"] == 0:
            continue
        room = np.inf
        cap_rule = 0
        cap_limit = np.nan
        if np.isfinite(cell["max_weight"]) and equity > 0.0:
            q = cell["max_weight"] * equity / price - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 7, cell["max_weight"]
        if np.isfinite(cell["max_qty"]):
            q = cell["max_qty"] - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 10, cell["max_qty"]
        if np.isfinite(cell["max_notional"]):
            q = cell["max_notional"] / price - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 11, cell["max_notional"]
        if np.isfinite(rules["max_gross"]) and equity > 0.0:
            q = (rules["max_gross"] * equity - gross_other) / price - abs(base)
            if q < room:
                room, cap_rule, cap_limit = q, 8, rules["max_gross"]
        if np.isfinite(rules["max_net"]) and equity > 0.0:
            # |net_other + (base + side q) price| <= max_net equity
            q = ((rules["max_net"] * equity - side * net_other) / price - side * base)
            if q < room:
                room, cap_rule, cap_limit = q, 9, rules["max_net"]
        if room < 0.0:
            room = 0.0
        if room < allowed:
            allowed = room
            rule = cap_rule
            limit = cap_limit
        if allowed > 0.0:
            if np.isfinite(cell["min_qty"]) and allowed < cell["min_qty"]:
                rule, limit, allowed = 12, cell["min_qty"], 0.0
            elif np.isfinite(cell["min_notional"]) and allowed * price < cell["min_notional"]:
                rule, limit, allowed = 13, cell["min_notional"], 0.0
    if rule != 0:
        if rule == 7:
            value = (abs(base) + opening) * price / equity
        elif rule == 8:
            value = (gross_other + (abs(base) + opening) * price) / equity
        elif rule == 9:
            value = abs(net_other + (base + side * opening) * price) / equity
        elif rule == 10 or rule == 12:
            value = abs(base) + opening if rule == 10 else opening
        else:
            value = (abs(base) + opening) * price if rule == 11 else opening * price
        record_risk_event_nb(risk, t, ts, 0 if tag < 0 or tag + 1 >= risk.rules.shape[0] else tag + 1, a, oid,
                             EV_REDUCED if allowed > 0.0 else EV_BLOCKED, rule, value, limit,
                             opening, allowed)
    return allowed


@kernel
def risk_halt_nb(risk: RiskBook, row: int, rule: int, t: int, ts: int, value: float, manual: bool) -> None:
    """Halt new entries of rules row ``row`` (0: everything) with a reason code; ``manual``: only
    :func:`risk_resume_nb` lifts it."""
    st = risk.state[row]
    if st["halt"] != 0:
        return
    st["halt"] = rule
    st["halt_bar"] = t
    st["halt_ts"] = ts
    st["halt_value"] = value
    st["manual"] = 1 if manual else 0
    limit = risk.rules[row]["max_drawdown"] if rule == 1 else np.nan
    record_risk_event_nb(risk, t, ts, row, -1, -1, EV_HALTED, rule, value, limit, np.nan, np.nan)


@kernel
def risk_resume_nb(risk: RiskBook, row: int, t: int, ts: int, equity: float) -> bool:
    """Lift the halt of ``row`` (drawdown is measured from ``equity`` from now on). False when not halted."""
    st = risk.state[row]
    if st["halt"] == 0:
        return False
    rule = st["halt"]
    st["halt"] = 0
    st["manual"] = 0
    if rule == 1 and risk.rules[row]["resume"] != RESUME_RECOVERED:
        st["peak"] = equity
    dd = 0.0
    record_risk_event_nb(risk, t, ts, row, -1, -1, EV_RESUMED, rule, dd, np.nan, np.nan, np.nan)
    return True


@kernel
def _on_trade_nb(risk: RiskBook, r: int, pnl: float, ret: float) -> None:
    st = risk.state[r]
    if pnl < 0.0:
        st["streak"] += 1
        st["losses"] += 1
        st["sum_loss"] += -ret
    elif pnl > 0.0:
        st["streak"] = 0
        st["wins"] += 1
        st["sum_win"] += ret


@inline_kernel
def risk_update_nb(risk: RiskBook, fills, n_fills: int, orders, trades, n_trades: int, t: int, ts: int,
                   equity: float) -> bool:
    """Update the risk state after bar ``t`` closed at ``equity``: new session day (day-start equity,
    order count, daily block, next-day resume), closed trades (losing streak, Kelly statistics, position
    owner, cooldown after a stop-out), the equity peak, drawdown halts and recovered resumes, the daily
    loss limit. Returns True when a halt fired at this bar in any row: the caller then cancels the working
    entries the halt covers (:func:`risk_halts_order_nb`) and closes the positions of rules that flatten
    (:func:`risk_flattens_nb`)."""
    n_rows = risk.rules.shape[0]
    # ---- session day
    day = risk.day[t] if t < risk.day.shape[0] else ts // NS_PER_DAY
    for r in range(n_rows):
        if risk.rules[r]["enabled"] == 0:  # a row without rules (sizing only): nothing reads its day or peak
            continue
        st = risk.state[r]
        if st["day_key"] != day:
            first = st["day_key"] == np.iinfo(np.int64).min
            st["day_key"] = day
            st["day_start"] = st["prev_equity"]
            st["orders_today"] = 0
            if st["day_block"] != 0 and not first:
                st["day_block"] = 0
                record_risk_event_nb(risk, t, ts, r, -1, -1, EV_RESUMED, 2, np.nan, np.nan, np.nan, np.nan)
            if st["halt"] == 1 and st["manual"] == 0 and risk.rules[r]["resume"] == RESUME_NEXT_DAY and not first:
                risk_resume_nb(risk, r, t, ts, st["prev_equity"])
    # ---- fills and the trades they closed (a call only on bars with new fills: this function is inlined into
    # every bar step, where a call costs more than the loops above and below)
    if n_fills > risk.state[0]["seen_fills"]:
        _risk_fills_nb(risk, fills, n_fills, orders, trades, n_trades, t, ts)
    # ---- peak, halts, daily loss
    fired = False
    for r in range(n_rows):
        rules = risk.rules[r]
        if rules["enabled"] == 0:
            continue
        st = risk.state[r]
        if equity > st["peak"]:
            st["peak"] = equity
        dd = 1.0 - equity / st["peak"] if st["peak"] > 0.0 else 0.0
        if np.isfinite(rules["max_drawdown"]):
            if st["halt"] == 0 and dd >= rules["max_drawdown"]:
                risk_halt_nb(risk, r, 1, t, ts, dd, rules["resume"] == RESUME_MANUAL)
                fired = True
            elif st["halt"] == 1 and st["manual"] == 0 and rules["resume"] == RESUME_RECOVERED \
                    and dd <= rules["resume_drawdown"]:
                risk_resume_nb(risk, r, t, ts, equity)
        if np.isfinite(rules["daily_loss"]) and st["day_block"] == 0 and st["day_start"] > 0.0:
            loss = 1.0 - equity / st["day_start"]
            if loss >= rules["daily_loss"]:
                st["day_block"] = 2
                st["day_block_value"] = loss
                record_risk_event_nb(risk, t, ts, r, -1, -1, EV_HALTED, 2, loss, rules["daily_loss"],
                                     np.nan, np.nan)
        st["prev_equity"] = equity
    return fired


@kernel
def _risk_fills_nb(risk: RiskBook, fills, n_fills: int, orders, trades, n_trades: int, t: int, ts: int) -> None:
    """The fills since the last bar and the trades they closed: losing streak, Kelly statistics, position owner,
    cooldown after a stop-out (part of :func:`risk_update_nb`)."""
    n_rows = risk.rules.shape[0]
    st0 = risk.state[0]
    k = st0["seen_trades"]
    for i in range(st0["seen_fills"], n_fills):
        fill = fills[i]
        a = fill["asset"]
        qty = fill["qty"]
        after = fill["position_after"]
        before = after - qty
        tag = orders[fill["order_id"]]["tag"]
        if before != 0.0 and before * qty < 0.0 and k < n_trades:
            tr = trades[k]
            k += 1
            owner = risk.owner[a]
            _on_trade_nb(risk, 0, tr["pnl"], tr["ret"])
            if owner >= 0 and owner + 1 < n_rows:
                _on_trade_nb(risk, owner + 1, tr["pnl"], tr["ret"])
            role = tr["exit_role"]
            if role == 2 or role == 4:  # stop-loss / trailing stop: cooldown
                for r in range(n_rows):
                    if r > 0 and owner + 1 != r:
                        continue
                    rules = risk.rules[r]
                    cell = risk.assets[r, a]
                    if rules["cooldown_bars"] > 0:
                        cell["cooldown_bar"] = t + rules["cooldown_bars"] + 1
                    if rules["cooldown_ns"] > 0:
                        cell["cooldown_ts"] = ts + rules["cooldown_ns"]
        if after != 0.0 and (before == 0.0 or before * after < 0.0 or abs(after) > abs(before)):
            if before == 0.0 or before * after < 0.0:
                risk.owner[a] = tag
    st0["seen_fills"] = n_fills
    st0["seen_trades"] = k


@inline_kernel
def _halted_at_nb(risk: RiskBook, row: int, t: int) -> bool:
    st = risk.state[row]
    return st["halt"] != 0 and st["halt_bar"] == t


@inline_kernel
def risk_halts_order_nb(risk: RiskBook, tag: int, t: int) -> bool:
    """True when a halt that fired at bar ``t`` covers a working entry of order tag ``tag``: the portfolio
    row's halt covers every entry, strategy ``s``'s halt (row ``1 + s``) the entries that strategy placed."""
    if _halted_at_nb(risk, 0, t):
        return True
    return tag >= 0 and tag + 1 < risk.rules.shape[0] and _halted_at_nb(risk, tag + 1, t)


@inline_kernel
def risk_flattens_nb(risk: RiskBook, a: int, t: int) -> bool:
    """True when a drawdown halt with ``flatten_on_halt`` fired at bar ``t`` over the position in asset
    ``a``: the portfolio row's flattens every position, strategy ``s``'s the positions it opened."""
    if _halted_at_nb(risk, 0, t) and risk.rules[0]["flatten"] != 0 and risk.state[0]["halt"] == 1:
        return True
    r = risk.owner[a] + 1
    return 0 < r < risk.rules.shape[0] and _halted_at_nb(risk, r, t) and risk.rules[r]["flatten"] != 0 \
        and risk.state[r]["halt"] == 1


# ------------------------------------------------------------------------------ Python-side helpers

def halt(book: RiskBook, *, bar: int, timestamp: int, reason: str = "manual", value: float = float("nan"),
         row: int = 0) -> None:
    """Halt entries by hand (the live runner's kill switch); only :func:`resume` lifts it.

    Examples
    --------
    >>> book = lower_risk(RiskConfig(max_drawdown=0.2), ("A",), np.zeros(1, dtype=np.int64), cash=1.0)
    >>> halt(book, bar=0, timestamp=0)
    >>> int(book.state[0]["halt"]), int(book.state[0]["manual"])
    (16, 1)
    """
    book.on[0] = 1
    book.rules[row]["enabled"] = 1
    risk_halt_nb(book, row, RiskRule.code(reason), int(bar), int(timestamp), float(value), True)


def resume(book: RiskBook, *, bar: int, timestamp: int, equity: float, row: int = 0) -> bool:
    """Lift a halt by hand; drawdown is measured from ``equity`` from then on. False when not halted."""
    return bool(risk_resume_nb(book, row, int(bar), int(timestamp), float(equity)))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %".replace(".0 %", " %")


def describe_risk_event(kind: int, rule: int, value: float, limit: float, requested: float, allowed: float) -> str:
    """One line saying what a rule did and why.

    Examples
    --------
    >>> describe_risk_event(RiskEventKind.BLOCKED, RiskRule.MAX_DRAWDOWN, 0.213, 0.2, 10.0, 0.0)
    'blocked: drawdown 21.3 % ≥ max_drawdown 20 %'
    >>> describe_risk_event(RiskEventKind.REDUCED, RiskRule.MAX_WEIGHT, 0.3, 0.25, 30.0, 25.0)
    'reduced 30 → 25: weight 30 % > max_weight 25 %'
    """
    verb = RiskEventKind.name(kind)
    name = RiskRule.name(rule)
    if rule == RiskRule.MAX_DRAWDOWN:
        why = f"drawdown {_pct(value)} ≥ max_drawdown {_pct(limit)}" if math.isfinite(limit) else f"drawdown {_pct(value)}"
    elif rule == RiskRule.DAILY_LOSS:
        why = f"loss today {_pct(value)} ≥ daily_loss_limit {_pct(limit)}" if math.isfinite(value) else "new day"
    elif rule == RiskRule.ORDERS_PER_DAY:
        why = f"{int(value)} orders today ≥ max_orders_per_day {int(limit)}"
    elif rule == RiskRule.MAX_POSITIONS:
        why = f"{int(value)} open positions ≥ max_positions {int(limit)}"
    elif rule == RiskRule.DRAWDOWN_SCALING:
        why = f"drawdown {_pct(value)} > {_pct(limit)}" if kind == RiskEventKind.SCALED else \
            f"drawdown {_pct(value)} ≥ drawdown_scaling.end {_pct(limit)}"
    elif rule == RiskRule.LOSING_STREAK:
        why = f"{int(value)} losing trades in a row ≥ {int(limit)}"
    elif rule in (RiskRule.MAX_WEIGHT, RiskRule.MAX_GROSS, RiskRule.MAX_NET):
        label = {7: "weight", 8: "gross exposure", 9: "net exposure"}[rule]
        why = f"{label} {_pct(value)} > {name} {_pct(limit)}"
    elif rule in (RiskRule.MAX_QTY, RiskRule.MAX_NOTIONAL):
        why = f"{'position' if rule == 10 else 'notional'} {value:g} > {name} {limit:g}"
    elif rule in (RiskRule.MIN_QTY, RiskRule.MIN_NOTIONAL):
        why = f"{'quantity' if rule == 12 else 'notional'} {value:g} < {name} {limit:g}"
    else:
        why = RiskRule.describe(rule)
    if kind == RiskEventKind.REDUCED or kind == RiskEventKind.SCALED:
        return f"{verb} {requested:.6g} → {allowed:.6g}: {why}"
    if kind == RiskEventKind.RESUMED:
        return f"resumed after {name}" if rule != RiskRule.DAILY_LOSS else "resumed: new day (daily_loss_limit)"
    if kind == RiskEventKind.HALTED:
        return f"halted: {why}"
    return f"{verb}: {why}"


def risk_events_frame(book: RiskBook, timestamps_offset_bar: int = 0, *, assets: tuple[str, ...] = (),
                      strategies: tuple[str, ...] = ()):
    """The risk events of a run as a Polars DataFrame with a ``message`` column."""
    import polars as pl

    n = min(int(book.n_events[0]), book.events.shape[0])
    ev = book.events[:n]
    rows = ev["row"]
    return pl.DataFrame({
        "timestamp": pl.Series(ev["ts"]).cast(pl.Datetime("ns", "UTC")),
        "bar": ev["bar"] + timestamps_offset_bar,
        "scope": pl.Series([
            "portfolio" if r == 0 else (strategies[r - 1] if r - 1 < len(strategies) else f"strategy {r - 1}")
            for r in rows], dtype=pl.String),
        "asset": pl.Series([assets[a] if 0 <= a < len(assets) else None for a in ev["asset"]], dtype=pl.String),
        "order_id": ev["order_id"],
        "event": pl.Series([RiskEventKind.name(k) for k in ev["kind"]], dtype=pl.String),
        "rule": pl.Series([RiskRule.name(r) for r in ev["rule"]], dtype=pl.String),
        "value": ev["value"],
        "limit": ev["limit"],
        "requested": ev["requested"],
        "allowed": ev["allowed"],
        "message": pl.Series([describe_risk_event(*x) for x in zip(ev["kind"], ev["rule"], ev["value"], ev["limit"],
                                                                    ev["requested"], ev["allowed"])], dtype=pl.String),
    })

"""The strategy language: a portfolio of strategies, each a condition and an action over indicators.

Strategy = Condition + Action. An *indicator* is anything that yields a number per asset per time
(prices, moving averages, fundamentals, position state, arithmetic of those); a *condition* is any
true/false statement over indicators; an *action* buys, sells, closes, rebalances or raises an alert.

Every node is a frozen pydantic model tagged by ``kind``; the JSON Schema of :class:`Portfolio` is what
an LLM is given. Shorthands are accepted when loading (and dumped in the canonical long form):

* a number is a constant: ``30`` → ``{"kind": "const", "value": 30}``;
* a price field name is a price: ``"close"`` → ``{"kind": "price", "field": "close"}``;
* a one-key mapping names the kind: ``{"sma": {"window": 20}}`` → ``{"kind": "sma", "window": 20}``;
* ``{"all": [...]}``, ``{"any": [...]}``, ``{"not": {...}}`` for logic; a mapping with ``lhs``, ``op``
  and ``rhs`` is a comparison; ``{"equity_fraction": 0.5}`` is an allocation.

Windows are a bar count (``20``) or a duration (``"30d"``, ``"4h"``, ``"15min"``) measured on timestamps.
``asset: null`` on an indicator means *the asset the strategy is evaluating* (strategies are evaluated
for every asset of their scope); name an asset to pin it (``{"kind": "price", "asset": "SPY"}``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, field_validator,
                      model_validator)

from backforge._time import parse_duration
from backforge.engine.risk_rules import RiskConfig
from backforge.errors import ConfigError, did_you_mean

__all__ = [
    "Portfolio", "Strategy", "Indicator", "Condition", "Action", "load_portfolio", "dump_portfolio",
    "portfolio_json_schema", "INDICATOR_KINDS", "CONDITION_KINDS", "ACTION_KINDS", "STATE_KINDS",
]


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _not_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not a boolean ({str(value).lower()})")
    return value


Real = Annotated[float, BeforeValidator(_not_boolean)]
"""A finite number, never a boolean (``fee_rate: true`` is not a 100 % fee). Numeric text is read as a
number: YAML 1.1 reads ``1e-4`` (no dot) as text."""
Whole = Annotated[int, BeforeValidator(_not_boolean)]
"""A whole number, never a boolean."""


def _check_window(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError("a window is a bar count or a duration like '30d', got a boolean")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"a bar-count window must be a finite whole number, got {value}")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"a bar-count window must be a whole number, got {value}")
        if int(value) <= 0:
            raise ValueError(f"must be > 0, got {int(value)}")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _check_window(int(text))
        try:
            parse_duration(text)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return text
    raise ValueError(f"a window is a bar count (20) or a duration ('30d', '4h', '15min'), got {value!r}")


Window = Annotated[Union[int, str], BeforeValidator(_check_window)]

PRICE_FIELDS = ("open", "high", "low", "close", "volume", "bid", "ask", "mid", "spread")
STATE_KINDS = (
    "position_qty", "position_weight", "unrealized_pnl_pct", "last_order_price", "bars_since_order",
    "days_since_order", "bars_since_entry", "days_since_entry", "portfolio_value", "drawdown",
)

# ------------------------------------------------------------------------------------------ indicators


class Price(Node):
    """A price field of an asset (bid/ask/mid/spread need quote data)."""

    kind: Literal["price"] = "price"
    field: Literal["open", "high", "low", "close", "volume", "bid", "ask", "mid", "spread"] = "close"
    asset: str | None = None


class Const(Node):
    """A constant number."""

    kind: Literal["const"] = "const"
    value: Real = Field(allow_inf_nan=False)


class Fundamental(Node):
    """A point-in-time fundamental or custom data field, as of its publication time."""

    kind: Literal["fundamental"] = "fundamental"
    field: str
    asset: str | None = None


def _close() -> "Price":
    return Price()


class Windowed(Node):
    """A rolling indicator of ``of`` (default: the close) over ``window`` bars or a duration."""

    kind: Literal["sma", "ema", "wma", "stddev", "zscore", "rolling_max", "rolling_min", "returns",
                  "rate_of_change", "lag", "pct_change", "rsi"]
    window: Window
    of: "Indicator" = Field(default_factory=_close)


class VolumeAverage(Node):
    """Average volume over a window."""

    kind: Literal["volume_average"] = "volume_average"
    window: Window
    asset: str | None = None


class BarIndicator(Node):
    """An indicator of the bar's high, low, close (and volume): ATR, VWAP."""

    kind: Literal["atr", "vwap"]
    window: Window = 14
    asset: str | None = None


class MACD(Node):
    """MACD line, signal or histogram of ``of``."""

    kind: Literal["macd"] = "macd"
    fast: Window = 12
    slow: Window = 26
    signal: Window = 9
    output: Literal["line", "signal", "histogram"] = "line"
    of: "Indicator" = Field(default_factory=_close)

    @model_validator(mode="after")
    def _fast_below_slow(self) -> "MACD":
        if isinstance(self.fast, int) and isinstance(self.slow, int) and self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
        return self


class Bollinger(Node):
    """A Bollinger band (population standard deviation) of ``of``."""

    kind: Literal["bollinger"] = "bollinger"
    window: Window = 20
    num_std: Real = Field(2.0, gt=0)
    output: Literal["upper", "middle", "lower", "width", "percent_b"] = "upper"
    of: "Indicator" = Field(default_factory=_close)


class State(Node):
    """Portfolio or position state, evaluated inside the simulation loop.

    ``days_since_*`` are calendar days (fractional) measured on timestamps; ``*_since_*`` is infinite
    before the first order/entry; ``drawdown`` is equity over its running peak minus one (<= 0);
    ``unrealized_pnl_pct`` and ``position_weight`` are fractions.
    """

    kind: Literal["position_qty", "position_weight", "unrealized_pnl_pct", "last_order_price", "bars_since_order",
                  "days_since_order", "bars_since_entry", "days_since_entry", "portfolio_value", "drawdown"]
    asset: str | None = None


class Arithmetic(Node):
    """``add``, ``sub``, ``mul``, ``div``, ``min`` or ``max`` of two or more indicators (left to right)."""

    kind: Literal["add", "sub", "mul", "div", "min", "max"]
    args: list["Indicator"] = Field(min_length=2)


class Unary(Node):
    """Absolute value or negation."""

    kind: Literal["abs", "neg"]
    of: "Indicator"


class CrossSection(Node):
    """Rank (1 = smallest, ties averaged) or percentile (0..1) of ``of`` across the universe at each time."""

    kind: Literal["rank", "percentile"]
    of: "Indicator"


class BookImbalance(Node):
    """(bid size - ask size) / (bid size + ask size) over the ``levels`` price levels (ticks) nearest each
    touch of the local book, in [-1, 1] (0 when both are empty). Event data only (``data.events``)."""

    kind: Literal["book_imbalance"] = "book_imbalance"
    levels: Whole = Field(1, ge=1, le=10_000)


class TradeFlow(Node):
    """Traded quantity the strategy received over the last ``window`` (a duration, or a number of
    evaluations): ``net`` = buyer- minus seller-initiated, ``buy``, ``sell``, ``total``, or ``imbalance`` =
    net / total (NaN without trades). Event data only (``data.events``)."""

    kind: Literal["trade_flow"] = "trade_flow"
    window: Window
    output: Literal["net", "buy", "sell", "total", "imbalance"] = "net"


Indicator = Annotated[
    Union[Price, Const, Fundamental, Windowed, VolumeAverage, BarIndicator, MACD, Bollinger, State, Arithmetic,
          Unary, CrossSection, BookImbalance, TradeFlow],
    Field(discriminator="kind"),
]

# ------------------------------------------------------------------------------------------ conditions


class Compare(Node):
    """``lhs op rhs``; ``crosses_above`` is true on the bar where ``lhs - rhs`` turns from <= 0 to > 0."""

    kind: Literal["compare"] = "compare"
    lhs: Indicator
    op: Literal[">", "<", ">=", "<=", "==", "crosses_above", "crosses_below"]
    rhs: Indicator


class Logic(Node):
    """All / any of the conditions."""

    kind: Literal["all", "any"]
    conditions: list["Condition"] = Field(min_length=1)


class Not(Node):
    """Negation of a condition."""

    kind: Literal["not"] = "not"
    condition: "Condition"


class AtLeast(Node):
    """At least ``n`` of the conditions are true (the seed's ``Multi``)."""

    kind: Literal["at_least"] = "at_least"
    n: Whole = Field(ge=1)
    conditions: list["Condition"] = Field(min_length=1)

    @model_validator(mode="after")
    def _n_fits(self) -> "AtLeast":
        if self.n > len(self.conditions):
            raise ValueError(f"n ({self.n}) is larger than the number of conditions ({len(self.conditions)})")
        return self


class HeldFor(Node):
    """The condition has been true on every bar of the last ``window`` (bars, or a duration)."""

    kind: Literal["held_for"] = "held_for"
    condition: "Condition"
    window: Window


Condition = Annotated[Union[Compare, Logic, Not, AtLeast, HeldFor], Field(discriminator="kind")]

# --------------------------------------------------------------------------------------------- actions


class Allocation(Node):
    """How much to trade: a fraction of equity or of available cash, a number of units, a notional, or
    ``risk`` — the fraction of equity lost if the action's ``stop_loss`` is hit: quantity = equity ×
    risk ÷ stop distance (the distance is the stop's ``percent`` of the decision bar's close, its
    ``fixed`` distance, or its ``atr`` multiple of the ATR at the decision bar; the stop-loss order is
    placed with the entry)."""

    type: Literal["equity_fraction", "cash_fraction", "units", "notional", "risk"] = "equity_fraction"
    value: Real = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _risk_fraction(self) -> "Allocation":
        if self.type == "risk" and not self.value < 1:
            raise ValueError(f"risk is a fraction of equity below 1 (0.01 = 1 %), got {self.value}")
        return self


class VolatilityTarget(Node):
    """Weight = ``target`` annual volatility ÷ the asset's realised volatility over ``window`` (bars or a
    duration; the population standard deviation of one-bar returns × √bars per year), capped at ``max``
    (a fraction of equity). Bars per year: ``periods_per_year`` when given, else counted causally over the
    trailing year of each decision bar (:func:`backforge.engine.risk.trailing_periods_per_year`; before
    the data spans a year, over the bars so far) — never from later bars."""

    type: Literal["volatility_target"] = "volatility_target"
    target: Real = Field(gt=0, allow_inf_nan=False)
    window: Window = 20
    max: Real = Field(1.0, gt=0, allow_inf_nan=False)
    periods_per_year: Real | None = Field(None, gt=0, allow_inf_nan=False)


class ExpressionAllocation(Node):
    """Weight = the value of a market-data ``expression`` at the decision bar, clamped to [``min``, ``max``]
    (fractions of equity); no trade while it has no value."""

    type: Literal["expression"] = "expression"
    expression: "Indicator"
    min: Real = Field(0.0, ge=0, allow_inf_nan=False)
    max: Real = Field(1.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounds(self) -> "ExpressionAllocation":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class KellyAllocation(Node):
    """Weight = ``fraction`` × the Kelly fraction ``W - (1 - W) / R`` of this strategy's own closed trades
    so far (W win rate, R average win ÷ average loss), capped at ``max``; ``fallback`` until
    ``min_trades`` trades have closed."""

    type: Literal["kelly"] = "kelly"
    fraction: Real = Field(0.5, gt=0, le=1, allow_inf_nan=False)
    max: Real = Field(0.25, gt=0, allow_inf_nan=False)
    min_trades: Whole = Field(20, ge=1)
    fallback: Real = Field(0.0, ge=0, allow_inf_nan=False)


AllocationSpec = Annotated[Union[Allocation, VolatilityTarget, ExpressionAllocation, KellyAllocation],
                           Field(discriminator="type")]


class Distance(Node):
    """A stop/target distance from the entry price: exactly one of ``percent`` (fraction), ``fixed``
    (price units) or ``atr`` (multiple of the ATR over ``atr_window`` at the decision bar)."""

    percent: Real | None = Field(None, gt=0)
    fixed: Real | None = Field(None, gt=0)
    atr: Real | None = Field(None, gt=0)
    atr_window: Window = 14

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distance":
        given = [name for name in ("percent", "fixed", "atr") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of percent, fixed or atr (got {given or 'none'})")
        return self


class Trade(Node):
    """Buy (go/add long) or sell (reduce long / go short) an allocation of each asset in scope.

    With ``repeat: false`` (default) the action does not fire while the asset already holds a position
    in that direction or while an order it placed is still working — so "buy when X" enters once.
    ``limit_offset``/``stop_offset`` place limit/stop orders at the decision bar's close moved by that
    fraction (a buy limit below the close, a buy stop above it).
    """

    kind: Literal["buy", "sell"]
    allocation: AllocationSpec = Field(default_factory=lambda: Allocation(value=1.0))
    order_type: Literal["market", "limit", "stop"] = "market"
    limit_offset: Real = Field(0.0, ge=0)
    stop_offset: Real = Field(0.0, ge=0)
    time_in_force: Literal["gtc", "day", "gtn"] = "gtc"
    gtn_bars: Whole = Field(0, ge=0)
    stop_loss: Distance | None = None
    take_profit: Distance | None = None
    trailing_stop: Distance | None = None
    repeat: StrictBool = False

    @model_validator(mode="after")
    def _risk_needs_stop(self) -> "Trade":
        if isinstance(self.allocation, Allocation) and self.allocation.type == "risk" and self.stop_loss is None:
            raise ValueError("a risk allocation sizes the trade by its stop: give stop_loss (percent, fixed or atr)")
        return self


class Close(Node):
    """Close ``fraction`` of the position in each asset in scope."""

    kind: Literal["close"] = "close"
    fraction: Real = Field(1.0, gt=0, le=1)


class Rebalance(Node):
    """Trade the universe to target weights.

    ``weights``: ``"equal"``, fixed ``{asset: weight}``, or ``{"proportional": indicator}`` (weights
    proportional to a non-negative indicator). ``filter`` keeps the assets where it is true; ``sort_by``
    with ``top``/``bottom`` keeps the N highest/lowest; weights are scaled to ``gross`` (1 = fully
    invested), capped at ``max_weight`` with the excess spread over the others; trades smaller than
    ``min_trade`` (fraction of equity) are skipped. Sells are submitted before buys.
    ``filter``, ``sort_by`` and proportional weights are data indicators (no position state).
    """

    kind: Literal["rebalance"] = "rebalance"
    weights: Union[Literal["equal"], dict[str, Real], "Proportional"] = "equal"
    filter: "Condition | None" = None
    sort_by: "Indicator | None" = None
    top: Whole | None = Field(None, ge=1)
    bottom: Whole | None = Field(None, ge=1)
    max_weight: Real = Field(1.0, gt=0, le=1)
    min_trade: Real = Field(0.0, ge=0, lt=1)
    gross: Real = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _selection(self) -> "Rebalance":
        if self.top is not None and self.bottom is not None:
            raise ValueError("give top or bottom, not both")
        if (self.top is not None or self.bottom is not None) and self.sort_by is None:
            raise ValueError("top/bottom need sort_by")
        if isinstance(self.weights, dict):
            for asset, w in self.weights.items():
                if not (w >= 0):
                    raise ValueError(f"weight of {asset} must be >= 0, got {w}")
        return self


class Proportional(Node):
    """Weights proportional to an indicator (negative values count as zero)."""

    proportional: "Indicator"


class Alert(Node):
    """Record a signal event and do nothing else."""

    kind: Literal["alert"] = "alert"
    message: str = ""


Action = Annotated[Union[Trade, Close, Rebalance, Alert], Field(discriminator="kind")]

# ------------------------------------------------------------------------------------------ strategies


class EveryN(Node):
    every_n_bars: Whole = Field(ge=1)


Schedule = Union[Literal["every_bar", "daily", "weekly", "month_start", "month_end"], EveryN]


class Strategy(Node):
    """A condition and an action, evaluated on a schedule for every asset of ``assets`` (default: the
    universe). Without a condition the action fires on every scheduled evaluation."""

    name: str = Field(min_length=1)
    assets: list[str] | None = None
    schedule: Schedule = "every_bar"
    condition: Condition | None = None
    action: Action
    risk: RiskConfig | None = None


class Costs(Node):
    """Costs and account limits (fractions; see :class:`backforge.SimConfig` for each field)."""

    fee_rate: Real | dict[str, Real] = 0.0
    fee_per_unit: Real | dict[str, Real] = 0.0
    fee_per_order: Real | dict[str, Real] = 0.0
    fee_min: Real | dict[str, Real] = 0.0
    slippage_bps: Real | dict[str, Real] = 0.0
    slippage_range: Real | dict[str, Real] = 0.0
    spread: Real | dict[str, Real] = 0.0
    lot_size: Real | dict[str, Real] = 1.0
    min_qty: Real | dict[str, Real] = 0.0
    borrow_rate: Real | dict[str, Real] = 0.0
    financing_rate: Real = 0.0
    leverage: Real = 1.0
    maintenance_margin: Real = 0.0
    allow_short: StrictBool = True


class BidAskFiles(Node):
    """Separate bid and ask bar files of one asset."""

    bid: str
    ask: str


MAX_SYNTHETIC_YEARS = 200
"""Longest synthetic history (from 2015, timestamps in int64 nanoseconds end in 2262)."""
MAX_SEED = 2**63 - 1
"""Largest seed accepted (seeds are non-negative and fit an int64)."""


class EventGrid(Node):
    """Evaluate the strategies on a time grid: every ``grid`` (a duration) of the strategy's clock."""

    grid: str

    @field_validator("grid")
    @classmethod
    def _grid_is_duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value


class EventSource(Node):
    """Event data (trades, quotes, L2 depth) for the event engine (``backforge events run``; see
    docs/events.md): a seeded synthetic market, an event catalog (``store``, ``path`` = its root) or a
    file (``truefx`` quotes, ``binance_trades``, ``l2_csv``), path relative to the strategy file.
    ``evaluate``: on every event timestamp the strategy receives, or on a time grid. ``engine``: the
    event engine's settings (:class:`backforge.engine.events.EventConfig` fields except ``cash``)."""

    source: Literal["synthetic_l2", "synthetic_quotes", "store", "truefx", "binance_trades", "l2_csv"] = "synthetic_l2"
    path: str | None = None
    symbol: str | None = None
    n_events: Whole = Field(100_000, ge=10, le=500_000_000)
    seed: Whole = Field(0, ge=0, le=MAX_SEED)
    tick_size: Real | None = Field(None, gt=0)
    feed_latency: str | None = Field(None, description="feed latency of files without a local clock (a duration)")
    policy: Literal["error", "drop"] = "error"
    evaluate: Union[Literal["every_event"], EventGrid] = "every_event"
    engine: dict[str, Any] = Field(default_factory=dict)

    @field_validator("feed_latency")
    @classmethod
    def _latency_is_duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> "EventSource":
        if self.source in ("store", "truefx", "binance_trades", "l2_csv") and not self.path:
            raise ValueError(f"source {self.source!r} needs a path")
        if self.source == "store" and not self.symbol:
            raise ValueError("source 'store' needs the symbol of the stored stream")
        if "cash" in self.engine:
            raise ConfigError("the account's cash is the file's cash, not an engine setting", path="data.events.engine.cash")
        from backforge.engine.events.run import EventConfig  # lazily: the engine is not needed to read files

        try:
            EventConfig(**self.engine)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(part) for part in err["loc"])
            raise ConfigError(err["msg"], path=f"data.events.engine.{where}" if where else "data.events.engine") from None
        return self


class DataSpec(Node):
    """Where `backforge run` gets data when ``--data`` is not given: ``synthetic`` (default, one series
    per universe asset), or files per asset (CSV/Parquet, or bid and ask bar files), paths relative to
    the strategy file. ``start``/``end`` bound the backtest; earlier bars warm indicators up."""

    source: Literal["synthetic", "files"] = "synthetic"
    paths: dict[str, Union[str, BidAskFiles]] = Field(default_factory=dict)
    format: str = "auto"
    policy: Literal["error", "drop", "repair"] = Field(
        "error", description="bad rows in the files: refuse them (error), drop them, or repair what can be repaired")
    years: Real = Field(10.0, gt=0, le=MAX_SYNTHETIC_YEARS)
    bar: str = "1d"
    seed: Whole = Field(7, ge=0, le=MAX_SEED)
    start: str | None = None
    end: str | None = None
    events: EventSource | None = Field(None, description="event data: the file runs on the event engine")

    @field_validator("bar")
    @classmethod
    def _bar_is_duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("start", "end")
    @classmethod
    def _is_time(cls, value: str | None) -> str | None:
        if value is not None:
            from backforge._time import to_ns

            try:
                valid = int(to_ns([value])[0]) != -(2**63)  # NaT ("", "NaT") is not a time
            except (ValueError, TypeError, OverflowError):
                valid = False
            if not valid:
                raise ValueError("not a date/time (write e.g. 2020-03-16 or 2020-03-16T14:30)")
        return value


class Portfolio(Node):
    """A named universe, an account, and strategies evaluated in order on every bar."""

    name: str = Field(min_length=1)
    description: str = ""
    universe: list[str] = Field(min_length=1)
    cash: Real = Field(100_000.0, gt=0)
    costs: Costs = Field(default_factory=Costs)
    strategies: list[Strategy] = Field(min_length=1)
    data: DataSpec = Field(default_factory=DataSpec)
    risk: RiskConfig | None = None

    @field_validator("universe")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen = set()
        for name in value:
            if name in seen:
                raise ValueError(f"asset {name!r} is listed twice")
            seen.add(name)
        return value

    @model_validator(mode="after")
    def _assets_in_universe(self) -> "Portfolio":
        universe = set(self.universe)
        for i, strategy in enumerate(self.strategies):
            for asset in strategy.assets or []:
                if asset not in universe:
                    raise ValueError(f"strategies[{i}].assets: {asset!r} is not in the universe{did_you_mean(asset, self.universe)}")
        for prefix, risk in [("risk", self.risk)] + [(f"strategies[{i}].risk", s.risk) for i, s in enumerate(self.strategies)]:
            if risk is None:
                continue
            # a ConfigError (not a ValueError) leaves pydantic as it is, with its exact path
            if risk.sizing is not None:
                raise ConfigError("in a strategy file, sizing is the action's allocation "
                                  "(risk, volatility_target, expression, kelly)", path=f"{prefix}.sizing")
            for name in ("max_weight", "min_qty", "max_qty", "min_notional", "max_notional"):
                value = getattr(risk, name)
                for asset in value if isinstance(value, dict) else []:
                    if asset not in universe:
                        raise ConfigError(f"{asset!r} is not in the universe{did_you_mean(asset, self.universe)}",
                                          path=f"{prefix}.{name}.{asset}")
        for name, value in self.costs:  # a per-asset cost must name an asset of the universe (checked at validate)
            for asset in value if isinstance(value, dict) else []:
                if asset not in universe:
                    raise ConfigError(f"{asset!r} is not in the universe{did_you_mean(asset, self.universe)}",
                                      path=f"costs.{name}.{asset}")
        return self


for _model in (Windowed, MACD, Bollinger, Arithmetic, Unary, CrossSection, Compare, Logic, Not, AtLeast, HeldFor,
               Rebalance, Proportional, ExpressionAllocation, Trade, Strategy, Portfolio):
    _model.model_rebuild()

INDICATOR_KINDS = tuple(sorted({k for m in (Price, Const, Fundamental, Windowed, VolumeAverage, BarIndicator, MACD,
                                            Bollinger, State, Arithmetic, Unary, CrossSection, BookImbalance, TradeFlow)
                                for k in m.model_fields["kind"].annotation.__args__}))
CONDITION_KINDS = ("compare", "all", "any", "not", "at_least", "held_for")
ACTION_KINDS = ("buy", "sell", "close", "rebalance", "alert")

# ------------------------------------------------------------------------------------------ shorthands

_INDICATOR_SET = set(INDICATOR_KINDS)
_CONDITION_SET = set(CONDITION_KINDS)
_ACTION_SET = set(ACTION_KINDS)
_ALLOCATION_TYPES = ("equity_fraction", "cash_fraction", "units", "notional", "risk")
_ALLOCATION_MODES = ("volatility_target", "expression", "kelly")


def _expand(value: Any, role: str) -> Any:
    """Rewrite shorthands into canonical nodes, recursively. ``role`` is what the slot expects."""
    if role == "indicator":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return {"kind": "const", "value": value}
        if isinstance(value, str):
            return {"kind": "price", "field": value.strip().lower()} if value.strip().lower() in PRICE_FIELDS else {"kind": value.strip().lower()}
    if not isinstance(value, dict):
        return value
    value = dict(value)
    if "kind" not in value:
        if role == "condition" and {"lhs", "op", "rhs"} <= set(value):
            value["kind"] = "compare"
        elif role == "allocation" and len(value) == 1 and next(iter(value)) in _ALLOCATION_TYPES:
            key = next(iter(value))
            return {"type": key, "value": value[key]}
        elif role == "allocation" and len(value) == 1 and next(iter(value)) in _ALLOCATION_MODES \
                and isinstance(next(iter(value.values())), dict):
            key, inner = next(iter(value.items()))
            value = {"type": key, **inner}
        elif role == "allocation":
            value.setdefault("type", "equity_fraction")
        elif len(value) == 1:
            key, inner = next(iter(value.items()))
            key_l = str(key).lower()
            known = {"indicator": _INDICATOR_SET, "condition": _CONDITION_SET, "action": _ACTION_SET}.get(role, set())
            if key_l in known:
                if key_l in ("all", "any") and isinstance(inner, list):
                    value = {"kind": key_l, "conditions": inner}
                elif key_l == "not" and isinstance(inner, dict):
                    value = {"kind": "not", "condition": inner}
                elif isinstance(inner, dict):
                    value = {"kind": key_l, **inner}
                elif inner is None:
                    value = {"kind": key_l}
                elif key_l == "const":
                    value = {"kind": "const", "value": inner}
                elif key_l in ("add", "sub", "mul", "div", "min", "max") and isinstance(inner, list):
                    value = {"kind": key_l, "args": inner}
            elif role in ("indicator", "condition", "action") and isinstance(inner, dict):
                value = {"kind": key_l, **inner}  # an unknown kind: let validation name it and suggest
    elif isinstance(value["kind"], str):
        value["kind"] = value["kind"].strip().lower()
    kind = value.get("kind")
    # recurse into the children whose role is known
    for key in ("of", "lhs", "rhs", "sort_by"):
        if key in value:
            value[key] = _expand(value[key], "indicator")
    if "args" in value and isinstance(value["args"], list):
        value["args"] = [_expand(a, "indicator") for a in value["args"]]
    if "conditions" in value and isinstance(value["conditions"], list):
        value["conditions"] = [_expand(c, "condition") for c in value["conditions"]]
    if "condition" in value:
        value["condition"] = _expand(value["condition"], "condition")
    if "filter" in value:
        value["filter"] = _expand(value["filter"], "condition")
    if "action" in value:
        value["action"] = _expand(value["action"], "action")
    if "allocation" in value:
        value["allocation"] = _expand(value["allocation"], "allocation")
    if role == "allocation" and "expression" in value:
        value["expression"] = _expand(value["expression"], "indicator")
    if kind == "rebalance" and isinstance(value.get("weights"), dict) and "proportional" in value["weights"]:
        value["weights"] = {"proportional": _expand(value["weights"]["proportional"], "indicator")}
    if "strategies" in value and isinstance(value["strategies"], list):
        value["strategies"] = [_expand(s, "strategy") for s in value["strategies"]]
    return value


# ------------------------------------------------------------------------------------------- loading

def _format_loc(loc: tuple) -> str:
    """('strategies', 1, 'condition', 'all', 'conditions', 0, 'compare', 'rhs', 'sma', 'window') →
    'strategies[1].condition.conditions[0].rhs.window' (discriminator tags dropped)."""
    tags = set(INDICATOR_KINDS) | set(CONDITION_KINDS) | set(ACTION_KINDS) | {"function-after[_check_window(), union[int,str]]"}
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            if parts:
                parts[-1] += f"[{item}]"
            else:
                parts.append(f"[{item}]")
            continue
        text = str(item)
        previous = loc[i - 1] if i else None
        if i >= 2 and loc[i - 2] == "allocation" and previous in _ALLOCATION_TYPES + _ALLOCATION_MODES:
            parts.append(text)  # a field of an allocation ('max', 'min'), not an indicator tag
            continue
        if text in tags and not (text == "atr" and previous in ("stop_loss", "take_profit", "trailing_stop")):
            continue  # a union tag pydantic inserts after a field name or list index
        if previous == "allocation" and text in _ALLOCATION_TYPES + _ALLOCATION_MODES:
            continue
        if text.startswith(("function-", "union[", "literal[", "str", "int", "float", "dict[", "list[", "Proportional", "EveryN")) and i:
            continue
        parts.append(text)
    return ".".join(parts)


def validation_error_to_config(exc: ValidationError, *, source: str | None = None) -> ConfigError:
    """The first validation problem as a :class:`ConfigError` with its exact config path and a fix."""
    errors = exc.errors()
    # prefer the most specific error (the deepest location), skipping the noise of union branches
    err = max(errors, key=lambda e: len(e["loc"]))
    for wanted in ("union_tag_invalid", "extra_forbidden", "missing"):  # a typo'd field shows as both of the last two
        found = [e for e in errors if e["type"] == wanted]
        if found:
            err = found[0]
            break
    path = _format_loc(tuple(err["loc"]))
    kind = err["type"]
    if kind == "union_tag_invalid":
        tag = err["ctx"]["tag"]
        expected = [t.strip().strip("'") for t in str(err["ctx"]["expected_tags"]).split(",")]
        message = f"unknown kind {tag!r}{did_you_mean(tag, expected)} (one of: {', '.join(expected)})"
    elif kind == "extra_forbidden":
        name = str(err["loc"][-1])
        missing = [str(e["loc"][-1]) for e in errors if e["type"] == "missing" and tuple(e["loc"][:-1]) == tuple(err["loc"][:-1])]
        if not missing and str(err["loc"][-2] if len(err["loc"]) > 1 else "") == "risk":
            missing = list(RiskConfig.model_fields)
        message = f"unknown field {name!r}{did_you_mean(name, missing)}"
        path = _format_loc(tuple(err["loc"][:-1])) or None
    elif kind == "missing":
        message = f"missing required field {str(err['loc'][-1])!r}"
        path = _format_loc(tuple(err["loc"][:-1])) or None
    elif kind == "union_tag_not_found":
        message = "this node needs a 'kind' (e.g. 'sma', 'compare', 'buy')"
    elif kind == "literal_error":
        expected = [x.strip().strip("'") for x in str(err.get("ctx", {}).get("expected", "")).replace(" or ", ",").split(",") if x.strip()]
        message = f"{err['msg']}, got {err.get('input')!r}{did_you_mean(str(err.get('input')), expected)}"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        scalar = isinstance(value, (str, int, float, bool)) or value is None
        message = f"{msg}, got {value!r}" if "got" not in msg and scalar else msg
    full_path = f"{source}: {path}" if source and path else (source or path)
    code = "BF-CONFIG-UNKNOWN-OPTION" if kind in ("extra_forbidden", "union_tag_invalid") else "BF-CONFIG-INVALID"
    return ConfigError(message, path=full_path or None, code=code)


MAX_STRATEGY_BYTES = 4 * 1024 * 1024
"""Largest strategy file or text read (a hand-written strategy is a few KB)."""
MAX_NESTING = 64
"""Deepest nesting of mappings and lists in a strategy document (real ones stay under 20)."""
MAX_NODES = 200_000
"""Most values a strategy document may hold once its YAML aliases are expanded (a 1 KB alias bomb
would otherwise expand to billions)."""


def _read_strategy_bytes(path: Path, label: str) -> str:
    """The text of a regular file of at most :data:`MAX_STRATEGY_BYTES`; devices, FIFOs and sockets are
    refused without reading them (opening is non-blocking, so a FIFO with no writer cannot hang)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError("strategy file not found", path=label) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a strategy file", path=label) from None
    except OSError as exc:
        raise ConfigError(f"cannot open the strategy file: {exc.strerror}", path=label) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError("is a folder, not a strategy file", path=label)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("not a regular file (a device, FIFO or socket); give a YAML or JSON strategy file",
                              path=label)
        if info.st_size > MAX_STRATEGY_BYTES:
            raise ConfigError(f"the file is {info.st_size:,} bytes; a strategy file may have at most "
                              f"{MAX_STRATEGY_BYTES:,}", path=label)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_STRATEGY_BYTES + 1)
    if len(data) > MAX_STRATEGY_BYTES:  # grew while being read
        raise ConfigError(f"the file is larger than {MAX_STRATEGY_BYTES:,} bytes, the most a strategy file may have",
                          path=label)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not a text file (cannot decode it as UTF-8)", path=label) from None


def _yaml_classes():
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc, valid-type]
        """Safe YAML that refuses duplicate keys (the second would silently win)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                first_line: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        hash(key)
                    except TypeError:
                        continue  # the base class reports unhashable keys
                    line = key_node.start_mark.line + 1
                    if key in first_line:
                        raise ConfigError(f"duplicate key {key!r} at line {line} (first given at line "
                                          f"{first_line[key]})")
                    first_line[key] = line
            return super().construct_mapping(node, deep=deep)

    return yaml, base, StrictLoader


def _check_structure(text: str, label: str | None) -> None:
    """Refuse documents nested deeper than :data:`MAX_NESTING` from the token stream alone (the scanner
    is iterative, so a 5,000-deep document cannot exhaust the stack before it is refused)."""
    yaml, base, _ = _yaml_classes()
    opening = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
               yaml.FlowSequenceStartToken)
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    for token in yaml.scan(text, Loader=base):
        if isinstance(token, opening):
            depth += 1
            if depth > MAX_NESTING:
                line = token.start_mark.line + 1 if token.start_mark else "?"
                raise ConfigError(f"nested more than {MAX_NESTING} levels deep (at line {line}); a strategy is "
                                  "never that deep", path=label)
        elif isinstance(token, closing):
            depth -= 1


def _expanded_size(root: Any, limit: int) -> int:
    """Number of nodes of a composed YAML graph with every alias expanded, counted without expanding
    (each shared node is counted once per reference); stops as soon as ``limit`` is passed."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            active.discard(key)
            sizes[key] = min(1 + sum(sizes[id(child)] for child in children), limit + 1)
            continue
        if key in active:
            raise ConfigError("a YAML alias refers to the node that contains it (a recursive document)")
        active.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in active:
                raise ConfigError("a YAML alias refers to the node that contains it (a recursive document)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def parse_strategy_text(text: str, label: str | None = None) -> Any:
    r"""Parse YAML/JSON strategy text with hostile input bounded before any object is built: its size,
    its nesting depth, the size it expands to through aliases, and duplicate keys.

    Examples
    --------
    >>> parse_strategy_text("name: x\nuniverse: [A]")
    {'name': 'x', 'universe': ['A']}
    >>> parse_strategy_text("name: x\nname: y")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: duplicate key 'name' at line 2 (first given at line 1)
    """
    if len(text) > MAX_STRATEGY_BYTES:
        raise ConfigError(f"the strategy text has {len(text):,} characters; at most {MAX_STRATEGY_BYTES:,} are read",
                          path=label)
    yaml, _, strict_loader = _yaml_classes()
    try:
        _check_structure(text, label)
        loader = strict_loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            size = _expanded_size(node, MAX_NODES)
            if size > MAX_NODES:
                raise ConfigError(f"the document expands to more than {MAX_NODES:,} values through YAML aliases "
                                  "(an alias bomb?); write the values out or use fewer aliases", path=label)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML/JSON{where}: {getattr(exc, 'problem', None) or exc}", path=label) from None
    except ConfigError as exc:
        if label and not exc.path:
            exc.path = label
        raise exc from None
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise ConfigError(f"nested too deeply (more than {MAX_NESTING} levels)", path=label) from None


def _check_depth(raw: Any, label: str | None) -> None:
    """The nesting bound for documents given as Python objects (iteratively)."""
    stack = [(raw, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ConfigError(f"nested more than {MAX_NESTING} levels deep; a strategy is never that deep", path=label)
        seen += 1
        if seen > MAX_NODES:
            raise ConfigError(f"the document holds more than {MAX_NODES:,} values", path=label)
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((value, depth + 1) for value in node)


def read_config(source: str | Path | dict) -> tuple[dict, str | None]:
    """Parse a strategy file, YAML/JSON text or dict into a raw mapping (parameters unresolved).

    Returns the mapping and the file name (None for text/dicts) for error messages. Only regular
    files are read; size, nesting depth, alias expansion and duplicate keys are checked before the
    document is built (see :func:`parse_strategy_text`).
    """
    label = None
    if isinstance(source, dict):
        _check_depth(source, None)
        return source, None
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and len(source) < 4096
                                    and (source.endswith((".yaml", ".yml", ".json")) or _is_file(source))):
        path = Path(source)
        label = str(path)
        text = _read_strategy_bytes(path, label)
    else:
        text = str(source)
    raw = parse_strategy_text(text, label)
    if not isinstance(raw, dict):
        raise ConfigError(f"a strategy file must be a mapping with name, universe and strategies; got {type(raw).__name__}", path=label)
    return raw, label


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte...
        return False


def _has_parameters(node: Any) -> bool:
    if isinstance(node, dict):
        return "param" in node or "constraints" in node or any(_has_parameters(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_parameters(v) for v in node)
    return False


def load_portfolio(source: str | Path | dict, *, parameters: dict[str, Any] | None = None) -> Portfolio:
    """Load and validate a portfolio from a YAML/JSON file, a YAML/JSON string, or a dict.

    Examples
    --------
    >>> p = load_portfolio({"name": "x", "universe": ["AAPL"], "strategies": [
    ...     {"name": "trend", "condition": {"lhs": {"sma": {"window": 20}}, "op": "crosses_above",
    ...                                     "rhs": {"sma": {"window": 50}}},
    ...      "action": {"buy": {"allocation": {"equity_fraction": 0.5}}}}]})
    >>> p.strategies[0].condition.lhs.kind, p.strategies[0].action.allocation.value
    ('sma', 0.5)

    ``parameters`` gives values to the config's declared parameters (``{param: fast, range: [...]}``
    nodes); the others take their defaults.
    """
    raw, label = read_config(source)
    if _has_parameters(raw):
        from backforge.research.params import ParameterSpace

        try:
            raw = ParameterSpace.from_config(raw).instantiate(parameters or {})
        except ConfigError as exc:
            if label and exc.path:
                exc.path = f"{label}: {exc.path}"
            raise exc from None
    elif parameters:
        raise ConfigError("this strategy declares no parameters", path=label)
    try:
        return Portfolio.model_validate(_expand(raw, "portfolio"))
    except ValidationError as exc:
        raise validation_error_to_config(exc, source=label) from None
    except ConfigError as exc:
        if label:
            exc.path = f"{label}: {exc.path}" if exc.path else label
            exc.args = (str(exc),)
        raise exc from None


def dump_portfolio(portfolio: Portfolio, *, format: Literal["yaml", "json"] = "yaml") -> str:
    """Serialize to canonical YAML or JSON (``load_portfolio(dump_portfolio(p)) == p``).

    Examples
    --------
    >>> p = load_portfolio({"name": "x", "universe": ["A"], "strategies": [{"name": "s", "action": {"kind": "alert"}}]})
    >>> load_portfolio(dump_portfolio(p)) == p
    True
    """
    import json

    import yaml

    data = portfolio.model_dump(mode="json", exclude_defaults=False)
    if format == "json":
        # characters as themselves (an escaped non-BMP character is a surrogate pair, which the YAML reader keeps
        # split), except those a YAML reader refuses raw, escaped as \\uXXXX (they can only be inside strings)
        return _YAML_UNREADABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, indent=2, ensure_ascii=False))
    return yaml.dump(data, Dumper=_yaml_dumper(), sort_keys=False, allow_unicode=True)


# what a YAML reader refuses raw (C0 controls but tab/LF/CR, DEL, C1 controls, surrogates, U+FFFE, U+FFFF) or
# reads as a line break inside a quoted scalar (NEL, U+2028, U+2029)
_YAML_UNREADABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _yaml_dumper():
    """A safe YAML dumper that double-quotes strings holding a character YAML reads as a line break (NEL,
    U+2028, U+2029): unquoted, PyYAML folds them into a space; double-quoted, they are escaped."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper, value: str):
        style = '"' if any(ch in value for ch in "\x85\u2028\u2029") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def portfolio_json_schema() -> dict:
    """The JSON Schema of a strategy file (given to LLMs that write strategies)."""
    return Portfolio.model_json_schema()

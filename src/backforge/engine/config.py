"""Validated, frozen simulation settings and their lowering to the compiled ``Params`` record.

Costs and limits may be one number for every asset or a mapping ``{asset: value}`` (assets not named
take the field's default). Fractions everywhere (0.001 = 0.1 %), except fields whose
name carries the unit (``slippage_bps``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Mapping, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backforge.engine.kernels import Params, SignalParams
from backforge.engine.records import SizeType, TimeInForce
from backforge.errors import ConfigError, did_you_mean

__all__ = ["SimConfig", "SignalConfig", "split_options", "resolve_options", "pydantic_to_config_error", "SIM_OPTIONS",
           "SIGNAL_OPTIONS"]

PerAsset = Union[float, dict[str, float]]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class SimConfig(_Frozen):
    """Account, cost, sizing-granularity and margin settings of a simulation.

    Examples
    --------
    >>> cfg = SimConfig(cash=10_000, fee_rate=0.001, lot_size={"EURUSD": 1000})
    >>> cfg.cash, cfg.fee_rate
    (10000.0, 0.001)
    """

    cash: float = Field(100_000.0, gt=0, allow_inf_nan=False, description="starting cash in account currency")
    fee_rate: PerAsset = Field(0.0, description="commission as a fraction of notional (0.001 = 0.1 %)")
    fee_per_unit: PerAsset = Field(0.0, description="commission per unit traded")
    fee_per_order: PerAsset = Field(0.0, description="fixed commission per fill")
    fee_min: PerAsset = Field(0.0, description="minimum commission per fill")
    slippage_bps: PerAsset = Field(0.0, description="slippage in basis points of price (market, stop, liquidation fills)")
    slippage_range: PerAsset = Field(0.0, description="slippage as a fraction of the bar's high-low range")
    spread: PerAsset = Field(0.0, description="full bid/ask spread in price units, used when the data has no quotes")
    lot_size: PerAsset = Field(1.0, description="quantity step: 1 = whole units, 0 = fractional, 1000 = FX micro lot, 0.001 = crypto step")
    min_qty: PerAsset = Field(0.0, description="smallest quantity an opening fill may have")
    borrow_rate: PerAsset = Field(0.0, description="annual borrow cost of short positions, fraction of their value")
    financing_rate: float = Field(0.0, ge=0, description="annual interest on borrowed cash (negative cash balance)")
    leverage: float = Field(1.0, gt=0, description="maximum gross exposure as a multiple of equity")
    maintenance_margin: float = Field(0.0, ge=0, lt=1, description="liquidate when equity < this fraction of gross exposure")
    allow_short: bool = Field(True, description="allow short positions")
    allow_partial: bool = Field(True, description="reduce an unaffordable order to what is affordable instead of rejecting it")
    record_positions: bool = Field(True, description="keep the [T, A] position history")

    @field_validator(
        "fee_rate", "fee_per_unit", "fee_per_order", "fee_min", "slippage_bps", "slippage_range", "spread",
        "lot_size", "min_qty", "borrow_rate",
    )
    @classmethod
    def _non_negative(cls, value: PerAsset) -> PerAsset:
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"must be a finite number >= 0, got {v}")
        return value

    def per_asset(self, name: str, assets: tuple[str, ...]) -> np.ndarray:
        """The field ``name`` as a float64 array over ``assets`` (unknown asset names are an error)."""
        value = getattr(self, name)
        default = type(self).model_fields[name].default
        if not isinstance(value, dict):
            return np.full(len(assets), float(value))
        unknown = sorted(set(value) - set(assets))
        if unknown:
            hint = did_you_mean(unknown[0], assets) or f"; assets are {', '.join(assets)}"
            raise ConfigError(f"unknown asset {unknown[0]!r}{hint}", field=name, asset=unknown[0])
        return np.array([float(value.get(a, default)) for a in assets])

    def lower(self, assets: tuple[str, ...], *, has_quotes: bool) -> Params:
        """Compile to the ``Params`` record the kernels take (the per-asset arrays are rows of one
        ``[10, A]`` allocation)."""
        block = np.empty((len(_PER_ASSET_FIELDS), len(assets)))
        for i, name in enumerate(_PER_ASSET_FIELDS):
            value = getattr(self, name)
            block[i] = self.per_asset(name, assets) if isinstance(value, dict) else float(value)
        rows = dict(zip(_PER_ASSET_FIELDS, block))
        return Params(
            float(self.cash), float(self.leverage), float(self.maintenance_margin), float(self.financing_rate),
            bool(self.financing_rate > 0 or bool(np.any(rows["borrow_rate"] > 0))), bool(self.allow_partial),
            bool(self.allow_short), bool(has_quotes), bool(self.record_positions), **rows,
        )


_PER_ASSET_FIELDS = ("fee_rate", "fee_per_unit", "fee_per_order", "fee_min", "slippage_bps", "slippage_range", "spread",
                     "lot_size", "min_qty", "borrow_rate")


class SignalConfig(_Frozen):
    """How :func:`backforge.from_signals` turns signals into orders.

    ``stop_loss``, ``take_profit`` and ``trailing_stop`` are fractions of the entry fill price
    (0.05 = 5 % away) attached to every entry as one-cancels-other bracket orders.

    Examples
    --------
    >>> SignalConfig(size=0.5, stop_loss=0.02).size_type
    'equity_fraction'
    """

    size: PerAsset = Field(1.0, description="order size, in the unit of size_type")
    size_type: Literal["units", "notional", "equity_fraction", "cash_fraction"] = "equity_fraction"
    stop_loss: PerAsset | None = Field(None, description="stop-loss distance as a fraction of the entry price")
    take_profit: PerAsset | None = Field(None, description="take-profit distance as a fraction of the entry price")
    trailing_stop: PerAsset | None = Field(None, description="trailing-stop distance as a fraction of the best price since entry")
    accumulate: bool = Field(False, description="add to a position on repeated entry signals")
    time_in_force: Literal["gtc", "day", "gtn"] = "gtc"
    gtn_bars: int = Field(0, ge=0, description="bars an order stays valid with time_in_force='gtn'")

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value: PerAsset) -> PerAsset:
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"must be a finite number > 0, got {v}")
        return value

    @field_validator("stop_loss", "take_profit", "trailing_stop")
    @classmethod
    def _fraction(cls, value: PerAsset | None) -> PerAsset | None:
        if value is None:
            return value
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"must be a fraction > 0 (0.05 = 5 %), got {v}")
        return value

    @field_validator("stop_loss", "trailing_stop")
    @classmethod
    def _below_one(cls, value: PerAsset | None) -> PerAsset | None:
        values = [] if value is None else (value.values() if isinstance(value, dict) else [value])
        for v in values:
            if v >= 1:
                raise ValueError(f"must be below 1 (a stop 100 % away is at a price of zero), got {v}")
        return value

    def lower(self, assets: tuple[str, ...]) -> SignalParams:
        """Compile to the ``SignalParams`` record the kernels take."""

        def arr(name: str, default: float) -> np.ndarray:
            value = getattr(self, name)
            if value is None:
                return np.full(len(assets), default)
            if isinstance(value, dict):
                unknown = sorted(set(value) - set(assets))
                if unknown:
                    raise ConfigError(f"unknown asset {unknown[0]!r}; assets are {', '.join(assets)}", field=name, asset=unknown[0])
                return np.array([float(value.get(a, default)) for a in assets])
            return np.full(len(assets), float(value))

        return SignalParams(
            arr("size", 1.0), SizeType.code(self.size_type), arr("stop_loss", np.nan), arr("take_profit", np.nan),
            arr("trailing_stop", np.nan), bool(self.accumulate), TimeInForce.code(self.time_in_force), int(self.gtn_bars),
        )


def pydantic_to_config_error(exc: ValidationError, *, prefix: str = "") -> ConfigError:
    """Turn the first pydantic error into a :class:`ConfigError` naming the field, the rule and the value."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    path = f"{prefix}{loc}" if loc else prefix or None
    if err["type"] == "extra_forbidden":
        known = list(SimConfig.model_fields) + list(SignalConfig.model_fields)
        name = str(err["loc"][-1])
        hint = did_you_mean(name, known)
        return ConfigError(f"unknown option {name!r}{hint}", field=path, code="BF-CONFIG-UNKNOWN-OPTION")
    value = err.get("input")
    return ConfigError(f"{err['msg']}, got {value!r}", field=path, code="BF-CONFIG-INVALID")


def split_options(options: Mapping[str, Any]) -> tuple[SimConfig, SignalConfig]:
    """Split keyword options between :class:`SimConfig` and :class:`SignalConfig` and validate both.

    Examples
    --------
    >>> sim, sig = split_options({"cash": 1000, "stop_loss": 0.05})
    >>> sim.cash, sig.stop_loss
    (1000.0, 0.05)
    """
    try:
        key = tuple(sorted((name, type(value), value) for name, value in options.items()))  # 1 and True differ
        hash(key)
    except TypeError:  # a per-asset mapping: validated every time
        return _split_options(options)
    cached = _VALIDATED.get(key)
    if cached is None:
        cached = _split_options(options)
        if len(_VALIDATED) >= 256:
            _VALIDATED.clear()
        _VALIDATED[key] = cached
    return cached


# Validated configs by their (hashable) options: the models are frozen, so a repeated call — a parameter
# search, a benchmark, the live runner — validates once. Only valid options are stored (errors raise).
_VALIDATED: dict[tuple, tuple[SimConfig, SignalConfig]] = {}


def _split_options(options: Mapping[str, Any]) -> tuple[SimConfig, SignalConfig]:
    sim_fields = set(SimConfig.model_fields)
    sig_fields = set(SignalConfig.model_fields)
    sim_kwargs = {k: v for k, v in options.items() if k in sim_fields}
    sig_kwargs = {k: v for k, v in options.items() if k in sig_fields}
    unknown = [k for k in options if k not in sim_fields and k not in sig_fields]
    try:
        if unknown:
            SimConfig(**{unknown[0]: options[unknown[0]]})
        return SimConfig(**sim_kwargs), SignalConfig(**sig_kwargs)
    except ValidationError as exc:
        raise pydantic_to_config_error(exc) from None


SIM_OPTIONS: tuple[str, ...] = tuple(SimConfig.model_fields)
"""The keyword options of :class:`SimConfig` (the options ``from_signals``, ``simulate`` and
``Simulator`` list in their signatures)."""
SIGNAL_OPTIONS: tuple[str, ...] = tuple(SignalConfig.model_fields)
"""The keyword options of :class:`SignalConfig`."""


def resolve_options(options: Mapping[str, Any], *, config: Any = None,
                    signal_config: Any = None) -> tuple[SimConfig, SignalConfig]:
    """Validate keyword options on top of optional base configs: a field given as an option (not None)
    replaces the base config's value; unknown names get the did-you-mean error of :func:`split_options`.

    Examples
    --------
    >>> sim, sig = resolve_options({"fee_rate": 0.001}, config=SimConfig(cash=5000))
    >>> sim.cash, sim.fee_rate, sig.size
    (5000.0, 0.001, 1.0)
    """
    given = {name: value for name, value in options.items() if value is not None}
    base: dict[str, Any] = {}
    for value, kind, name in ((config, SimConfig, "config"), (signal_config, SignalConfig, "signal_config")):
        if value is None:
            continue
        if not isinstance(value, kind):
            raise ConfigError(f"must be a {kind.__name__}, got {type(value).__name__}", field=name)
        base.update(value.model_dump())
    if not base:
        return split_options(given)
    unknown = [k for k in given if k not in SIM_OPTIONS and k not in SIGNAL_OPTIONS]
    if unknown:
        return split_options(given)  # raises the did-you-mean error
    return split_options({**base, **given})


def config_hash(*models: BaseModel, extra: Mapping[str, Any] | None = None) -> str:
    """A short stable hash of configs (and extra JSON-able data): the run id."""
    payload = [m.model_dump(mode="json") for m in models]
    if extra:
        payload.append(dict(extra))
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

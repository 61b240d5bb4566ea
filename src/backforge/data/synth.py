"""Deterministic synthetic market data: the built-in default data of demos and benchmarks.

Prices follow a geometric Brownian motion per asset (with a per-asset drift and volatility drawn from
the seed). Bars are laid on a calendar: equities trade 252 weekdays a year, 6.5 hours a day
(14:30–21:00 UTC), crypto trades around the clock. The same arguments always give bit-identical data.

* :func:`gbm` draws all assets from one random stream (fast for a handful of assets).
* :func:`synthetic_market` / :func:`synthetic_series` draw each asset from its own stream
  (``SeedSequence(seed, spawn_key=(i,))``), so asset *i* is the same whatever the number of assets and
  can be generated one at a time (100 assets × 10 years of minutes fit in little memory), and add
  optional Poisson jumps and volatility regimes shared by all assets.
* :func:`synthetic_fundamentals` gives matching quarterly fundamentals, published with a lag after
  each quarter end — the point-in-time table of :mod:`backforge.data.fundamentals`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from backforge._time import NS_PER, parse_duration
from backforge.data.market import MarketData
from backforge.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["gbm", "default_assets", "synthetic_market", "synthetic_series", "synthetic_fundamentals", "bar_count"]

_SESSION_OPEN_NS = (14 * 60 + 30) * NS_PER["min"]
_SESSION_NS = 390 * NS_PER["min"]
_START_NS = 1_420_156_800_000_000_000  # 2015-01-02 00:00 UTC, a Friday
_NAMES = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA")
_MAX_NS = 9_223_372_036_854_775_807  # the last instant of int64 nanoseconds: 2262-04-11
# float64-sized arrays alive at the peak of one generation, per bar and asset (timestamps, OHLCV, draws, temporaries)
_GBM_ARRAYS = 9
_SERIES_ARRAYS = 14


def default_assets(n_assets: int) -> tuple[str, ...]:
    """Asset names for synthetic data: the Magnificent 7 tickers first, then ``SYN007``, ``SYN008``, ...

    Examples
    --------
    >>> default_assets(3)
    ('AAPL', 'MSFT', 'GOOG')
    """
    names = list(_NAMES[:n_assets])
    names += [f"SYN{i:03d}" for i in range(len(names), n_assets)]
    return tuple(names)


def bar_count(years: float, bar: str | int, calendar: str = "equities") -> int:
    """Number of bars :func:`gbm` and :func:`synthetic_series` generate, computed without allocating anything.

    Raises :class:`ConfigError` when ``years`` is not a positive finite number or the data would run past
    2262-04-11 (the end of 64-bit nanosecond timestamps).

    Examples
    --------
    >>> bar_count(10, "1min"), bar_count(1, "1d"), bar_count(1, "1h", calendar="crypto")
    (982800, 252, 8760)
    >>> bar_count(1e9, "1d")
    Traceback (most recent call last):
    ...
    backforge.errors.ConfigError: field years: 1e+09 years from 2015 run past 2262-04-11, the last date 64-bit nanosecond timestamps can hold; use at most 254 years
    """
    import math

    if not (isinstance(years, (int, float)) and math.isfinite(years) and years > 0):
        raise ConfigError(f"years must be a positive finite number, got {years!r}", field="years")
    bar_ns = parse_duration(bar) if isinstance(bar, str) else int(bar)
    if calendar == "crypto":
        span_ns = years * 365 * NS_PER["d"]
        n = int(round(span_ns / bar_ns))
    elif calendar == "equities":
        n_days = int(round(years * 252)) if years * 252 < 2**62 else 2**62
        span_ns = (n_days * 7 / 5 + 7) * NS_PER["d"]
        n = n_days if bar_ns >= NS_PER["d"] else n_days * max(1, _SESSION_NS // bar_ns)
    else:
        raise ConfigError(f"unknown calendar {calendar!r}; use 'equities' or 'crypto'", field="calendar")
    if _START_NS + span_ns >= _MAX_NS:
        most = int((_MAX_NS - _START_NS) / NS_PER["d"] / (365 if calendar == "crypto" else 252 * 7 / 5)) - 1
        raise ConfigError(f"{years:g} years from 2015 run past 2262-04-11, the last date 64-bit nanosecond timestamps "
                          f"can hold; use at most {most} years", field="years")
    return n


def _check_seed(seed: int) -> None:
    """numpy seeds are non-negative integers; say so instead of letting numpy raise ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}", field="seed")


def _check_size(years: float, bar: str, calendar: str, n_assets: int, arrays: int) -> None:
    """Refuse, before any allocation, data that would not fit in the memory available now."""
    from backforge._resources import require_memory

    n = bar_count(years, bar, calendar)
    require_memory(float(n) * n_assets * 8 * arrays,
                   what=f"{years:g} years of {bar} bars × {n_assets} asset{'s' if n_assets != 1 else ''} ({n * n_assets:,} bars)",
                   hint="use fewer years or assets, or a longer bar", field="years")


def _calendar(n_years: float, bar_ns: int, calendar: str) -> np.ndarray:
    if calendar == "crypto":
        n = int(round(n_years * 365 * NS_PER["d"] / bar_ns))
        return _START_NS + np.arange(n, dtype=np.int64) * bar_ns
    if calendar != "equities":
        raise ConfigError(f"unknown calendar {calendar!r}; use 'equities' or 'crypto'", field="calendar")
    n_days = int(round(n_years * 252))
    # weekdays from the start date (no holidays: 252 sessions a year is the convention, not a calendar)
    days = np.arange(int(n_days * 7 / 5) + 7, dtype=np.int64)
    weekday = (days + 4) % 7  # 2015-01-02 is a Friday (weekday 4)
    days = days[weekday < 5][:n_days]
    day_ns = _START_NS + days * NS_PER["d"]
    if bar_ns >= NS_PER["d"]:
        return day_ns + 21 * NS_PER["h"]  # daily bars stamped at the 21:00 UTC close
    per_day = _SESSION_NS // bar_ns
    if per_day < 1:
        raise ConfigError(f"bar {bar_ns} ns is longer than the 6.5 h session", field="bar")
    intraday = _SESSION_OPEN_NS + (np.arange(1, per_day + 1, dtype=np.int64) * bar_ns)  # stamped at bar close
    return (day_ns[:, None] + intraday[None, :]).ravel()


def gbm(
    n_assets: int = 7,
    years: float = 10.0,
    *,
    bar: str = "1d",
    seed: int = 7,
    calendar: str = "equities",
    start_price: float = 100.0,
    annual_drift: tuple[float, float] = (-0.05, 0.20),
    annual_volatility: tuple[float, float] = (0.15, 0.45),
    assets: tuple[str, ...] | None = None,
) -> MarketData:
    """Seeded geometric-Brownian-motion OHLCV bars for ``n_assets`` over ``years``.

    Each asset gets a drift and volatility drawn uniformly from the given ranges. Within a bar the
    open is the previous close moved by a small gap, the close follows the GBM step, and high/low
    extend beyond the open/close by a half-normal amount scaled to the bar's volatility, so the
    OHLC relations always hold. Volume is log-normal. Timestamps mark each bar's close.

    ``years=10, bar="1min", n_assets=7`` gives the 6,879,600-bar benchmark workload
    (252 days × 390 minutes × 10 years × 7 assets).

    Examples
    --------
    >>> md = gbm(2, 1, bar="1d", seed=1)
    >>> md.n_bars, md.n_assets
    (252, 2)
    >>> bool((gbm(2, 1, seed=1).close == md.close).all())
    True
    """
    if n_assets < 1:
        raise ConfigError(f"n_assets must be >= 1, got {n_assets}", field="n_assets")
    if not years > 0:
        raise ConfigError(f"years must be > 0, got {years}", field="years")
    _check_seed(seed)
    _check_size(years, bar, calendar, n_assets, _GBM_ARRAYS)
    bar_ns = parse_duration(bar)
    ts = _calendar(years, bar_ns, calendar)
    n_bars = len(ts)
    if n_bars < 2:
        raise ConfigError(f"{years} years of {bar} bars gives {n_bars} bars; need at least 2", field="years")
    bars_per_year = n_bars / years
    rng = np.random.default_rng(seed)
    drift = rng.uniform(*annual_drift, size=n_assets)
    vol = rng.uniform(*annual_volatility, size=n_assets)
    step_vol = vol / np.sqrt(bars_per_year)
    step_drift = drift / bars_per_year - 0.5 * step_vol**2

    shape = (n_bars, n_assets)
    log_ret = rng.standard_normal(shape)
    log_ret *= step_vol
    log_ret += step_drift
    gap = rng.standard_normal(shape)
    gap *= 0.1 * step_vol
    log_close = np.cumsum(log_ret, axis=0)
    log_close += np.log(start_price)
    close = np.exp(log_close)
    del log_close
    open_ = np.empty(shape)
    open_[0] = start_price
    open_[1:] = close[:-1]
    np.exp(gap, out=gap)
    open_ *= gap
    del gap
    wick = np.abs(rng.standard_normal(shape))
    wick *= 0.5 * step_vol
    np.exp(wick, out=wick)
    high = np.maximum(open_, close)
    high *= wick
    wick2 = np.abs(rng.standard_normal(shape))
    wick2 *= 0.5 * step_vol
    np.exp(-wick2, out=wick2)
    low = np.minimum(open_, close)
    low *= wick2
    del wick, wick2
    volume = np.floor(rng.lognormal(mean=10.0, sigma=0.5, size=shape))
    names = assets if assets is not None else default_assets(n_assets)
    if len(names) != n_assets:
        raise ConfigError(f"{len(names)} asset names for {n_assets} assets", field="assets")
    return MarketData(ts, open_, high, low, close, volume, tuple(names))


# ---------------------------------------------------------------------- per-asset streams, jumps, regimes

_REGIME_STREAM = 1 << 30
_FUNDAMENTAL_STREAM = (1 << 30) + 1


def synthetic_series(
    index: int,
    years: float = 10.0,
    *,
    bar: str = "1d",
    seed: int = 7,
    calendar: str = "equities",
    start_price: float = 100.0,
    annual_drift: tuple[float, float] = (-0.05, 0.20),
    annual_volatility: tuple[float, float] = (0.15, 0.45),
    jump_intensity: float = 0.0,
    jump_mean: float = -0.01,
    jump_volatility: float = 0.04,
    volatility_regimes: tuple[float, ...] = (),
    regime_duration: str = "90d",
    name: str | None = None,
) -> MarketData:
    """One synthetic asset (number ``index``) drawn from its own random stream.

    The log return of a bar is ``drift - sigma_t**2 / 2 + sigma_t * z``, with ``sigma_t`` the asset's
    volatility times the current regime multiplier, plus, with ``jump_intensity`` jumps a year on
    average, a normal jump of mean ``jump_mean`` and deviation ``jump_volatility`` (log return).
    ``volatility_regimes`` lists multipliers (e.g. ``(1.0, 2.5)``); the market switches between them
    after exponentially distributed spells of mean ``regime_duration`` — the same path for every asset.
    Without jumps and regimes the path does not depend on those parameters' values.

    Examples
    --------
    >>> a = synthetic_series(0, 1, seed=3)
    >>> b = synthetic_market(3, 1, seed=3)
    >>> bool((a.close[:, 0] == b.close[:, 0]).all()), a.assets
    (True, ('AAPL',))
    """
    if index < 0:
        raise ConfigError(f"index must be >= 0, got {index}", field="index")
    if not years > 0:
        raise ConfigError(f"years must be > 0, got {years}", field="years")
    if jump_intensity < 0:
        raise ConfigError(f"jump_intensity must be >= 0 jumps a year, got {jump_intensity}", field="jump_intensity")
    if any(not m > 0 for m in volatility_regimes):
        raise ConfigError(f"volatility regime multipliers must be > 0, got {volatility_regimes}", field="volatility_regimes")
    _check_seed(seed)
    _check_size(years, bar, calendar, 1, _SERIES_ARRAYS)
    bar_ns = parse_duration(bar)
    ts = _calendar(years, bar_ns, calendar)
    n = len(ts)
    if n < 2:
        raise ConfigError(f"{years} years of {bar} bars gives {n} bars; need at least 2", field="years")
    bars_per_year = n / years
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    drift = rng.uniform(*annual_drift)
    vol = rng.uniform(*annual_volatility)
    step_vol = np.full(n, vol / np.sqrt(bars_per_year))
    if volatility_regimes:
        step_vol *= _regime_path(n, bars_per_year, seed=seed, multipliers=volatility_regimes, duration=regime_duration)
    z = rng.standard_normal(n)
    gap = rng.standard_normal(n)
    wick_up = np.abs(rng.standard_normal(n))
    wick_down = np.abs(rng.standard_normal(n))
    volume = np.floor(rng.lognormal(mean=10.0, sigma=0.5, size=n))
    log_ret = drift / bars_per_year - 0.5 * step_vol**2 + step_vol * z
    if jump_intensity > 0:
        jump_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))
        hits = jump_rng.random(n) < jump_intensity / bars_per_year
        sizes = jump_rng.normal(jump_mean, jump_volatility, n)
        log_ret += np.where(hits, sizes, 0.0)
    close = np.exp(np.log(start_price) + np.cumsum(log_ret))
    open_ = np.empty(n)
    open_[0] = start_price
    open_[1:] = close[:-1]
    open_ *= np.exp(0.1 * step_vol * gap)
    high = np.maximum(open_, close) * np.exp(0.5 * step_vol * wick_up)
    low = np.minimum(open_, close) * np.exp(-0.5 * step_vol * wick_down)
    label = name if name is not None else _asset_name(index)
    col = lambda a: a.reshape(-1, 1)  # noqa: E731
    return MarketData(ts, col(open_), col(high), col(low), col(close), col(volume), (label,))


def synthetic_market(
    n_assets: int = 7,
    years: float = 10.0,
    *,
    bar: str = "1d",
    seed: int = 7,
    calendar: str = "equities",
    jump_intensity: float = 0.0,
    jump_mean: float = -0.01,
    jump_volatility: float = 0.04,
    volatility_regimes: tuple[float, ...] = (),
    regime_duration: str = "90d",
    assets: tuple[str, ...] | None = None,
) -> MarketData:
    """``n_assets`` assets of :func:`synthetic_series` side by side (GBM with optional jumps and regimes).

    Examples
    --------
    >>> md = synthetic_market(2, 1, bar="1d", seed=7, jump_intensity=4, volatility_regimes=(1.0, 3.0))
    >>> md.n_bars, md.assets
    (252, ('AAPL', 'MSFT'))
    >>> synthetic_market(2, 1, seed=7).fingerprint() == synthetic_market(2, 1, seed=7).fingerprint()
    True
    """
    if n_assets < 1:
        raise ConfigError(f"n_assets must be >= 1, got {n_assets}", field="n_assets")
    names = assets if assets is not None else default_assets(n_assets)
    if len(names) != n_assets:
        raise ConfigError(f"{len(names)} asset names for {n_assets} assets", field="assets")
    _check_size(years, bar, calendar, n_assets, 6 + _SERIES_ARRAYS)  # the stacked result plus one asset in flight
    parts = [synthetic_series(i, years, bar=bar, seed=seed, calendar=calendar, jump_intensity=jump_intensity,
                              jump_mean=jump_mean, jump_volatility=jump_volatility, volatility_regimes=volatility_regimes,
                              regime_duration=regime_duration, name=names[i]) for i in range(n_assets)]
    stack = lambda f: np.ascontiguousarray(np.concatenate([getattr(p, f) for p in parts], axis=1))  # noqa: E731
    return MarketData(parts[0].timestamps, stack("open"), stack("high"), stack("low"), stack("close"), stack("volume"), tuple(names))


def synthetic_fundamentals(
    assets: int | tuple[str, ...] = 7,
    years: float = 10.0,
    *,
    seed: int = 7,
    start: str = "2015-01-01",
    lag_days: tuple[int, int] = (20, 50),
) -> "pl.DataFrame":
    """Quarterly fundamentals for synthetic assets, as a point-in-time table.

    For each asset and quarter ending after ``start`` (and before ``start + years``), revenue follows a
    growth random walk, net income a margin random walk, shares outstanding drift slowly; ``eps`` and
    ``book_value_per_share`` follow. Each quarter is published ``lag_days`` (uniform) after its end, at
    21:30 UTC — after the US close, so a daily bar stamped at 21:00 that day does not see it.

    Returns
    -------
    polars.DataFrame
        Columns ``symbol, field, published_at (ns UTC), value, period_end``.

    Examples
    --------
    >>> f = synthetic_fundamentals(2, 1, seed=1)
    >>> sorted(f["field"].unique().to_list())
    ['book_value_per_share', 'eps', 'net_income', 'revenue', 'shares_outstanding']
    >>> bool((f["published_at"] > f["period_end"]).all())
    True
    """
    import pandas as pd
    import polars as pl

    _check_seed(seed)
    names = default_assets(assets) if isinstance(assets, int) else tuple(assets)
    begin = pd.Timestamp(start)
    ends = pd.date_range(begin, begin + pd.DateOffset(months=int(round(years * 12))), freq="QE")
    if len(ends) == 0:
        raise ConfigError(f"no quarter ends in {years} years from {start}", field="years")
    rows: dict[str, list] = {"symbol": [], "field": [], "published_at": [], "value": [], "period_end": []}
    end_ns = ends.as_unit("ns").asi8
    q = len(ends)
    for i, name in enumerate(names):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_FUNDAMENTAL_STREAM, i)))
        revenue = rng.lognormal(np.log(5e9), 1.0) * np.exp(np.cumsum(rng.normal(0.02, 0.05, q)))
        margin = np.clip(rng.uniform(0.05, 0.25) + np.cumsum(rng.normal(0.0, 0.01, q)), -0.3, 0.6)
        net_income = revenue * margin
        shares = rng.uniform(2e8, 5e9) * np.exp(np.cumsum(rng.normal(-0.002, 0.005, q)))
        book = np.maximum(revenue * rng.uniform(0.5, 2.0) / shares * np.exp(np.cumsum(rng.normal(0.01, 0.02, q))), 0.01)
        lags = rng.integers(lag_days[0], lag_days[1] + 1, q)
        published = end_ns + lags * NS_PER["d"] + (21 * 60 + 30) * NS_PER["min"]
        for field, values in (("revenue", revenue), ("net_income", net_income), ("shares_outstanding", shares),
                              ("eps", net_income / shares), ("book_value_per_share", book)):
            rows["symbol"] += [name] * q
            rows["field"] += [field] * q
            rows["published_at"] += published.tolist()
            rows["value"] += values.tolist()
            rows["period_end"] += end_ns.tolist()
    frame = pl.DataFrame(rows)
    return frame.with_columns(pl.col("published_at").cast(pl.Datetime("ns", "UTC")), pl.col("period_end").cast(pl.Datetime("ns", "UTC")))


def _asset_name(index: int) -> str:
    return _NAMES[index] if index < len(_NAMES) else f"SYN{index:03d}"


def _regime_path(n: int, bars_per_year: float, *, seed: int, multipliers: tuple[float, ...], duration: str) -> np.ndarray:
    """Volatility multiplier of every bar: spells of exponential length, states drawn from ``multipliers``."""
    mean_bars = max(1.0, parse_duration(duration) / NS_PER["d"] / 365.25 * bars_per_year)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_REGIME_STREAM,)))
    out = np.empty(n)
    pos, state = 0, 0
    k = len(multipliers)
    while pos < n:
        length = max(1, int(round(rng.exponential(mean_bars))))
        out[pos:pos + length] = multipliers[state]
        pos += length
        if k > 1:
            state = (state + 1 + int(rng.integers(0, k - 1))) % k
    return out

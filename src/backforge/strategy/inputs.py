"""A strategy file against its data, without compiling it: the data it runs on and every mistake the data reveals.

:func:`load_data` reads what a file's ``data`` spec names (or the files given instead). :func:`check_portfolio`
finds what only the data can reveal — assets the data lacks, windows longer than the data, quote fields
without quotes, fundamentals without a table, position state where only market data fits, nested windows
whose warm-ups leave nothing — in the order and with the messages of
:func:`backforge.strategy.compiler.compile_portfolio`, without computing a single indicator. Each data-only
node is reduced to its *validity mask*: where it has a value, from the data's own gaps and each window's
warm-up (the conventions of ``docs/indicators.md``: a bar window of ``n`` hides the first ``n - 1`` or
``n`` existing bars of its input, a duration ``D`` every bar stamped before ``t_first + D``). That is all the
window checks need, and the compiler makes the same checks with the same masks (:class:`Masks`), so the
two cannot disagree. NumPy and pydantic only: ``backforge validate`` runs this without loading numba.

Examples
--------
>>> from backforge.strategy.schema import load_portfolio
>>> p = load_portfolio({"name": "x", "universe": ["AAA"], "strategies": [{"name": "s", "condition": {
...     "lhs": {"sma": {"window": 200, "of": {"sma": {"window": 200}}}}, "op": ">", "rhs": 0},
...     "action": {"buy": {}}}], "data": {"years": 1}})
>>> check_portfolio(p, load_data(p))
Traceback (most recent call last):
...
backforge.errors.ConfigError: strategies[0].condition.lhs.window: window of 200 bars is longer than its input's 53 valid bars (the inner indicator's warm-up leaves 53 of 252)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from backforge._time import lower_macd_windows, lower_window, parse_duration, to_ns
from backforge.data.market import MarketData
from backforge.errors import ConfigError, DataError, did_you_mean
from backforge.strategy import schema as sc

__all__ = ["load_data", "check_portfolio", "CheckedPortfolio", "Masks", "is_pure", "is_pinned", "node_key",
           "scalar_ns", "require_market_data", "WARMUP"]

WARMUP = {"sma": -1, "ema": -1, "wma": -1, "stddev": -1, "zscore": -1, "rolling_max": -1, "rolling_min": -1,
          "returns": 0, "rate_of_change": 0, "lag": 0, "pct_change": 0, "rsi": 0, "atr": 0, "vwap": -1,
          "volume_average": -1, "bollinger": -1}
"""Existing bars of its input a bar window of ``n`` leaves without a value: ``n + WARMUP[kind]`` (TA-Lib's
lookbacks; ``docs/indicators.md``). MACD hides ``slow + signal - 2``."""


_KEYS: dict[int, tuple[Any, str]] = {}


def node_key(node: Any) -> str:
    """A canonical identity of a node (its JSON), memoized: the same node is keyed once per compile."""
    hit = _KEYS.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    key = node.model_dump_json()
    if len(_KEYS) > 4096:
        _KEYS.clear()
    _KEYS[id(node)] = (node, key)
    return key


def is_pure(node: Any) -> bool:
    """True when a node depends on market data only (no position/portfolio state)."""
    if isinstance(node, sc.State):
        return False
    for name in ("of", "lhs", "rhs", "condition"):
        child = getattr(node, name, None)
        if child is not None and not is_pure(child):
            return False
    for name in ("args", "conditions"):
        for child in getattr(node, name, None) or []:
            if not is_pure(child):
                return False
    return True


def is_pinned(node: Any) -> bool:
    """True when every market-data leaf of a node names its asset (so it means the same for any scope)."""
    if isinstance(node, (sc.Price, sc.Fundamental, sc.VolumeAverage, sc.BarIndicator)):
        return node.asset is not None
    if isinstance(node, sc.CrossSection):
        return False
    if isinstance(node, sc.State):
        return node.asset is not None or node.kind in ("portfolio_value", "drawdown")
    children = [getattr(node, n) for n in ("of", "lhs", "rhs", "condition") if getattr(node, n, None) is not None]
    children += list(getattr(node, "args", None) or []) + list(getattr(node, "conditions", None) or [])
    return all(is_pinned(c) for c in children)


_MARKET_ONLY = {"weights": "proportional weights must be a market-data indicator",
                "filter": "a rebalance filter must use market data only",
                "sort_by": "sort_by must be a market-data indicator",
                "allocation": "an allocation expression must use market data only (no position state)"}


def require_market_data(node: Any, path: str, what: str) -> None:
    """Rebalance weights, filters and sort keys and allocation expressions are computed before the loop: market
    data only (``what``: one of ``weights``, ``filter``, ``sort_by``, ``allocation``)."""
    if not is_pure(node):
        raise ConfigError(_MARKET_ONLY[what], path=path)


def scalar_ns(value: Any, field: str = "start") -> int:
    """A time given as a string, datetime or int ns, as int ns; a clear error for anything else."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    try:
        ns = int(to_ns([value])[0])
    except (ValueError, TypeError, OverflowError):
        ns = None
    if ns is None or ns == np.iinfo(np.int64).min:  # NaT: an empty string, "NaT", None...
        raise ConfigError(f"not a date/time: {value!r}; write e.g. 2020-03-16 or 2020-03-16T14:30", field=field)
    return ns


# ---------------------------------------------------------------------------------------- masks

def _bars_mask(valid: np.ndarray, hidden: int) -> np.ndarray:
    """Where an indicator that hides the first ``hidden`` existing bars of its input has a value."""
    if hidden <= 0:
        return valid
    return valid & (np.cumsum(valid, axis=0, dtype=np.int64) > hidden)


def _duration_mask(valid: np.ndarray, ts: np.ndarray, window_ns: int) -> np.ndarray:
    """Where a duration window of ``window_ns`` over an input valid at ``valid`` is covered by its history
    (``t - D >= t_first``, ``t_first`` the input's first valid bar)."""
    present = valid.any(axis=0)
    first = np.where(present, ts[np.argmax(valid, axis=0)], np.iinfo(np.int64).max)
    reach = ts - window_ns  # no overflow: timestamps are within a few centuries of 1970, window_ns <= 2**62
    return valid & (reach[:, None] >= first[None, :])


def _window_mask(valid: np.ndarray, ts: np.ndarray, window: int | str, hidden_extra: int) -> np.ndarray:
    if isinstance(window, int):
        return _bars_mask(valid, window + hidden_extra)
    return _duration_mask(valid, ts, parse_duration(window))


class Masks:
    """The validity masks (bool ``[T, A]``, column j = universe asset j) of a portfolio's data-only nodes on
    ``data``, with every check that needs the data. Shared by :func:`check_portfolio` and the compiler."""

    def __init__(self, portfolio: sc.Portfolio, data: MarketData, fundamentals: Any = None, *,
                 values: Any = None) -> None:
        """``values(node, path)``: the ``[T, A]`` values of a fundamental or an event-only indicator (book
        imbalance, trade flow) that the caller computes anyway (the compiler's); without it fundamentals are read
        from the table here and event-only indicators are an error."""
        self.data = data
        self.values = values
        self.assets = tuple(portfolio.universe)
        missing = [a for a in self.assets if a not in data.assets]
        if missing:
            raise ConfigError(f"asset {missing[0]!r} of the universe is not in the data"
                              f"{did_you_mean(missing[0], data.assets)} (data has {', '.join(data.assets[:12])})",
                              path="universe")
        self.cols = [data.assets.index(a) for a in self.assets]
        self.ts = data.timestamps
        self.fundamentals = fundamentals
        self._longest: int | None = None  # bars of the asset with the most bars
        self._masks: dict[str, np.ndarray] = {}
        self._conditions: set[str] = set()

    # ------------------------------------------------------------------ checks the compiler shares
    def check_window(self, window: int | str, path: str) -> None:
        """A window longer than the data (bars: the asset with the most bars; durations: the data's span)."""
        if isinstance(window, int):
            if self._longest is None:
                self._longest = int(np.max(np.sum(~np.isnan(self.data.close[:, self.cols]), axis=0)))
            if window > self._longest:
                raise ConfigError(f"window of {window} bars is longer than the data ({self._longest} bars)", path=path)
        else:
            span = int(self.ts[-1] - self.ts[0]) if len(self.ts) > 1 else 0
            if parse_duration(window) > span:
                raise ConfigError(f"window {window!r} is longer than the data's span", path=path)

    def check_input(self, window: int | str, of: Any, path: str, of_path: str) -> None:
        """A bar window longer than its input's valid values (nested windows add their warm-ups up: sma(200) of
        sma(200) on 252 bars has no value) is an error at the window, not an indicator that never fires."""
        if not isinstance(window, int):
            return
        mask = self.value(of, of_path)
        if mask.size == 0:
            return
        valid = int(np.max(np.sum(mask, axis=0)))
        longest = self._longest if self._longest is not None else valid
        if window > valid and valid < longest:
            raise ConfigError(f"window of {window} bars is longer than its input's {valid} valid bars "
                              f"(the inner indicator's warm-up leaves {valid} of {longest})", path=path)

    def price_field(self, name: str, asset: str | None, path: str) -> np.ndarray:
        """The ``[T, data assets]`` array of a price field (quotes checked)."""
        d = self.data
        if name in ("bid", "ask", "mid", "spread"):
            if not d.has_quotes:
                raise ConfigError(f"price field {name!r} needs bid/ask quote data; this data has none", path=path)
            bid, ask = d.bid.close, d.ask.close
            return {"bid": bid, "ask": ask, "mid": (bid + ask) / 2, "spread": ask - bid}[name]
        return getattr(d, name)

    def column_of(self, asset: str | None, path: str) -> int | None:
        """The data column of a pinned asset (None: each universe asset's own)."""
        if asset is None:
            return None
        if asset not in self.data.assets:
            raise ConfigError(f"unknown asset {asset!r}{did_you_mean(asset, self.data.assets)}", path=path)
        return self.data.assets.index(asset)

    def fundamentals_table(self, node: sc.Fundamental, path: str):
        """The fundamentals table (as :class:`~backforge.data.fundamentals.Fundamentals`) holding ``node.field``."""
        table = self.fundamentals
        if table is None:
            raise ConfigError(f"fundamental field {node.field!r} needs fundamental data; pass fundamentals "
                              "(a table of symbol, field, published_at, value)", path=path)
        from backforge.data.fundamentals import Fundamentals

        if not isinstance(table, Fundamentals):
            table = self.fundamentals = Fundamentals.from_frame(table)
        if node.field not in table.fields:
            raise ConfigError(f"no fundamental field {node.field!r}{did_you_mean(node.field, table.fields)} "
                              f"(fields: {', '.join(table.fields[:20])})", path=f"{path}.field")
        return table

    def fundamental_values(self, node: sc.Fundamental, path: str) -> np.ndarray:
        """``[T, A]`` values of a fundamental field as of each bar (column j: universe asset j, or the pinned asset)."""
        table = self.fundamentals_table(node, path)
        assets = self.assets if node.asset is None else (node.asset,) * len(self.assets)
        return np.ascontiguousarray(table.as_of(self.ts, list(assets), node.field), dtype=np.float64)

    def universe_asset(self, asset: str, path: str) -> int:
        if asset not in self.assets:
            raise ConfigError(f"asset {asset!r} is not in the universe{did_you_mean(asset, self.assets)}", path=path)
        return self.assets.index(asset)

    # ------------------------------------------------------------------ masks
    def _present(self, name: str, asset: str | None, path: str) -> np.ndarray:
        arr = self.price_field(name, asset, path)
        col = self.column_of(asset, path)
        if col is None:
            return ~np.isnan(arr[:, self.cols])
        return np.repeat(~np.isnan(arr[:, col])[:, None], len(self.assets), axis=1)

    def value(self, node: Any, path: str) -> np.ndarray:
        """The validity mask of a data-only indicator (cached by node), after its checks."""
        key = node_key(node)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = self._value(node, path)
        return mask

    def _value(self, node: Any, path: str) -> np.ndarray:
        ts = self.ts
        if isinstance(node, sc.Price):
            return self._present(node.field, node.asset, path)
        if isinstance(node, sc.Const):
            return np.ones((len(ts), len(self.assets)), dtype=bool)
        if isinstance(node, sc.Fundamental):
            return ~np.isnan(self.values(node, path) if self.values is not None else self.fundamental_values(node, path))
        if isinstance(node, sc.Windowed):
            self.check_window(node.window, f"{path}.window")
            inner = self.value(node.of, f"{path}.of")
            self.check_input(node.window, node.of, f"{path}.window", f"{path}.of")
            lower_window(node.window, "window", min_bars=2 if node.kind == "rsi" else 1)
            return _window_mask(inner, ts, node.window, WARMUP[node.kind])
        if isinstance(node, sc.VolumeAverage):
            self.check_window(node.window, f"{path}.window")
            return _window_mask(self._present("volume", node.asset, path), ts, node.window, WARMUP["volume_average"])
        if isinstance(node, sc.BarIndicator):
            self.check_window(node.window, f"{path}.window")
            fields = ("high", "low", "close") + (("volume",) if node.kind == "vwap" else ())
            bars = np.logical_and.reduce([self._present(f, node.asset, path) for f in fields])
            return _window_mask(bars, ts, node.window, WARMUP[node.kind])
        if isinstance(node, sc.MACD):
            self.check_window(node.slow, f"{path}.slow")
            inner = self.value(node.of, f"{path}.of")
            _, (slow_bars, slow_ns), (signal_bars, signal_ns) = lower_macd_windows(node.fast, node.slow, node.signal)
            if slow_bars:
                return _bars_mask(inner, slow_bars + signal_bars - 2)
            line = _duration_mask(inner, ts, slow_ns)  # the line starts at the first complete slow window
            return _duration_mask(line, ts, signal_ns)  # and shows once the signal is seeded from it
        if isinstance(node, sc.Bollinger):
            self.check_window(node.window, f"{path}.window")
            return _window_mask(self.value(node.of, f"{path}.of"), ts, node.window, WARMUP["bollinger"])
        if isinstance(node, sc.Arithmetic):
            return np.logical_and.reduce([self.value(a, f"{path}.args[{i}]") for i, a in enumerate(node.args)])
        if isinstance(node, (sc.Unary, sc.CrossSection)):
            return self.value(node.of, f"{path}.of")
        if isinstance(node, (sc.BookImbalance, sc.TradeFlow)):
            if self.values is None:
                self.no_event_data(node, path)
            return ~np.isnan(self.values(node, path))
        self.not_market_data(node, path)

    @staticmethod
    def no_event_data(node: Any, path: str) -> NoReturn:
        raise ConfigError(f"{node.kind!r} needs event data: give data.events and run the file with "
                          "`backforge events run`", path=path)

    @staticmethod
    def not_market_data(node: Any, path: str) -> NoReturn:
        raise ConfigError(f"{node.kind!r} depends on position state and cannot be used here", path=path)

    def condition(self, node: Any, path: str) -> None:
        """The checks of a data-only condition (cached by node)."""
        key = node_key(node)
        if key in self._conditions:
            return
        if isinstance(node, sc.Compare):
            self.value(node.lhs, f"{path}.lhs")
            self.value(node.rhs, f"{path}.rhs")
        elif isinstance(node, (sc.Logic, sc.AtLeast)):
            for i, c in enumerate(node.conditions):
                self.condition(c, f"{path}.conditions[{i}]")
        elif isinstance(node, sc.Not):
            self.condition(node.condition, f"{path}.condition")
        elif isinstance(node, sc.HeldFor):
            self.check_window(node.window, f"{path}.window")
            self.condition(node.condition, f"{path}.condition")
        else:
            self.not_a_condition(node, path)
        self._conditions.add(key)

    # ------------------------------------------------------------------ programs (the compiler's lowering rules)
    # The compiler's emit_value / emit_condition walk a node as these do and call the same rule checks.
    @staticmethod
    def check_scope(node: Any, j: int, path: str, *, condition: bool = False) -> None:
        """A market-data node evaluated once for the portfolio (``j`` = -1: a rebalance) must name its assets."""
        if j >= 0 or is_pinned(node):
            return
        if condition:
            raise ConfigError("a rebalance condition is evaluated once for the portfolio: pin every price "
                              "indicator in it to an asset ('asset: SPY') or use portfolio state", path=path)
        raise ConfigError("evaluated once for the portfolio: pin this indicator to an asset ('asset: SPY')", path=path)

    def state_asset(self, node: sc.State, j: int, path: str) -> int:
        """The universe asset a state indicator reads for asset ``j`` (-1: the portfolio's, where it has one)."""
        asset = j if node.asset is None else self.universe_asset(node.asset, path)
        if asset < 0 and node.kind not in ("portfolio_value", "drawdown"):
            raise ConfigError(f"{node.kind!r} needs an asset here (name one with 'asset')", path=path)
        return asset

    @staticmethod
    def not_a_program_value(node: Any, path: str) -> NoReturn:
        raise ConfigError(f"{node.kind!r} of a position-state indicator is not supported; apply it to market data",
                          path=path)

    @staticmethod
    def not_a_condition(node: Any, path: str) -> NoReturn:
        raise ConfigError(f"unsupported condition {node!r}", path=path)

    def program_value(self, node: Any, j: int, path: str) -> None:
        """A value as the compiled program evaluates it for universe asset ``j`` (-1: once for the portfolio)."""
        if is_pure(node):
            if not isinstance(node, sc.Const):
                self.check_scope(node, j, path)
                self.value(node, path)
        elif isinstance(node, sc.State):
            self.state_asset(node, j, path)
        elif isinstance(node, sc.Arithmetic):
            for i, arg in enumerate(node.args):
                self.program_value(arg, j, f"{path}.args[{i}]")
        elif isinstance(node, sc.Unary):
            self.program_value(node.of, j, f"{path}.of")
        else:
            self.not_a_program_value(node, path)

    def program_condition(self, node: Any, j: int, path: str) -> None:
        """A condition as the compiled program evaluates it for universe asset ``j`` (-1: once for the portfolio)."""
        if is_pure(node):
            self.check_scope(node, j, path, condition=True)
            self.condition(node, path)
        elif isinstance(node, sc.Compare):
            self.program_value(node.lhs, j, f"{path}.lhs")
            self.program_value(node.rhs, j, f"{path}.rhs")
        elif isinstance(node, (sc.Logic, sc.AtLeast)):
            for i, c in enumerate(node.conditions):
                self.program_condition(c, j, f"{path}.conditions[{i}]")
        elif isinstance(node, (sc.Not, sc.HeldFor)):
            self.program_condition(node.condition, j, f"{path}.condition")
        else:
            self.not_a_condition(node, path)


# ---------------------------------------------------------------------------------------- the whole file

@dataclass(frozen=True)
class CheckedPortfolio:
    """What :func:`check_portfolio` found: a file the data can run."""

    name: str
    n_strategies: int
    n_assets: int
    n_bars: int
    n_indicators: int  # distinct data-only indicators and conditions
    seconds: float


def check_portfolio(portfolio: sc.Portfolio, data: MarketData, *, start: Any = None, end: Any = None,
                    fundamentals: Any = None) -> CheckedPortfolio:
    """Every error :func:`~backforge.strategy.compiler.compile_portfolio` would raise on ``data``, in its
    order and words, without computing an indicator (see the module docstring)."""
    started = time.perf_counter()
    if end is not None:
        data = data.slice(None, scalar_ns(end, "end"))
    if tuple(portfolio.universe) != data.assets and set(portfolio.universe) <= set(data.assets):
        data = data.select(portfolio.universe)
    m = Masks(portfolio, data, fundamentals)
    if data.n_bars < 2:
        raise DataError("the data has fewer than 2 bars in the requested period")
    for s, strat in enumerate(portfolio.strategies):
        path = f"strategies[{s}]"
        action = strat.action
        scope = [m.assets.index(a) for a in (strat.assets or m.assets)]
        if isinstance(action, sc.Rebalance):
            apath = f"{path}.action"
            if isinstance(action.weights, dict):
                for asset in action.weights:
                    m.universe_asset(asset, f"{apath}.weights.{asset}")
            elif action.weights != "equal":
                require_market_data(action.weights.proportional, f"{apath}.weights", "weights")
                m.value(action.weights.proportional, f"{apath}.weights.proportional")
            if action.filter is not None:
                require_market_data(action.filter, f"{apath}.filter", "filter")
                m.condition(action.filter, f"{apath}.filter")
            if action.sort_by is not None:
                require_market_data(action.sort_by, f"{apath}.sort_by", "sort_by")
                m.value(action.sort_by, f"{apath}.sort_by")
            scope = [-1]
        for j in scope:
            if strat.condition is not None:
                m.program_condition(strat.condition, j, f"{path}.condition")
            if isinstance(action, sc.Trade):
                for name in ("stop_loss", "take_profit", "trailing_stop"):
                    dist = getattr(action, name)
                    if dist is not None and dist.atr is not None:
                        m.check_window(dist.atr_window, f"{path}.action.{name}.atr_window")
                        m.value(sc.BarIndicator(kind="atr", window=dist.atr_window), f"{path}.action.{name}")
    lo = 0 if start is None else int(np.searchsorted(data.timestamps, scalar_ns(start)))
    if lo >= data.n_bars - 1:
        raise ConfigError(f"start {start!r} leaves fewer than 2 bars to trade", path="start")
    check_risk(m, portfolio)
    return CheckedPortfolio(portfolio.name, len(portfolio.strategies), len(m.assets), data.n_bars,
                            len(m._masks) + len(m._conditions), time.perf_counter() - started)


def sized_strategies(portfolio: sc.Portfolio) -> list[bool]:
    """Which strategies size their orders by a risk rule (risk at the stop, volatility, expression, Kelly)."""
    sizings = [getattr(s.action, "allocation", None) for s in portfolio.strategies]
    return [a is not None and not (isinstance(a, sc.Allocation) and a.type != "risk") for a in sizings]


def check_risk(m: Masks, portfolio: sc.Portfolio) -> None:
    """The checks of lowering the portfolio's and its strategies' risk rules and risk-based sizing."""
    from backforge.engine.risk_rules import lower_risk

    sized = sized_strategies(portfolio)
    strategy_risks = [s.risk for s in portfolio.strategies]
    if not any(sized) and all(r is None or not r.active for r in [portfolio.risk, *strategy_risks]):
        return
    lower_risk(portfolio.risk, m.assets, m.ts, strategy_risks=strategy_risks, cash=portfolio.cash)
    for s, strat in enumerate(portfolio.strategies):
        alloc = getattr(strat.action, "allocation", None)
        if not sized[s]:
            continue
        path = f"strategies[{s}].action.allocation"
        if isinstance(alloc, sc.VolatilityTarget):
            m.check_window(alloc.window, f"{path}.window")
        elif isinstance(alloc, sc.ExpressionAllocation):
            require_market_data(alloc.expression, f"{path}.expression", "allocation")
            m.value(alloc.expression, f"{path}.expression")


def load_data(portfolio: sc.Portfolio, *, base: Any = None, override: Any = None) -> MarketData:
    """The market data a portfolio runs on: ``override`` (a file path or MarketData), else its ``data``
    spec: files relative to ``base`` (the strategy file's folder) or seeded synthetic data.

    Examples
    --------
    >>> p = sc.load_portfolio({"name": "x", "universe": ["AAA", "BBB"], "strategies": [
    ...     {"name": "s", "action": {"kind": "alert"}}], "data": {"years": 1}})
    >>> load_data(p).assets
    ('AAA', 'BBB')
    """
    from pathlib import Path

    from backforge.data.synth import gbm

    if isinstance(override, MarketData):
        return override
    spec = portfolio.data
    root = Path(base) if base is not None else Path.cwd()
    if override is not None:
        from backforge.data.importers import read_csv

        paths = [Path(p) for p in (override if isinstance(override, (list, tuple)) else [override])]
        frames = {}
        for path in paths:
            md = read_csv(path)
            for name in md.assets:
                frames[name] = md.select([name]).to_polars().drop("symbol")
        return MarketData.from_frames(frames)
    if spec.events is not None:
        raise ConfigError("this file runs on event data (data.events): run it with `backforge events run`",
                          path="data.events")
    if spec.source == "synthetic":
        calendar = "equities"
        return gbm(len(portfolio.universe), spec.years, bar=spec.bar, seed=spec.seed, calendar=calendar,
                   assets=tuple(portfolio.universe))
    from backforge.data.importers import frame_to_market, read_bid_ask, read_file
    from backforge.data.paths import resolve_data_path
    from backforge.data.quality import apply_policy

    frames = {}
    quotes = False
    for asset in portfolio.universe:
        entry = spec.paths.get(asset)
        if entry is None:
            raise ConfigError(f"no file given for asset {asset!r}", path=f"data.paths.{asset}")
        where = f"data.paths.{asset}"
        if isinstance(entry, sc.BidAskFiles):
            fd = read_bid_ask(resolve_data_path(entry.bid, base=root, where=where + ".bid"),
                              resolve_data_path(entry.ask, base=root, where=where + ".ask"))
            quotes = True
        else:
            fd = read_file(resolve_data_path(entry, base=root, where=where), format=spec.format)
        frames[asset], _ = apply_policy(fd, policy=spec.policy, symbol=asset)
    return frame_to_market(frames, kind="quote_bars" if quotes else "bars")

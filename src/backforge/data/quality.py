"""Data-quality checks and the import policies that act on them.

:func:`check` finds, for bars, quote bars, quote ticks and trade ticks:

==========================  ========  =====================================================================
code                        severity  meaning
==========================  ========  =====================================================================
``out_of_order``            error     a timestamp earlier than one before it
``duplicate_timestamp``     error     a bar timestamp seen before (bars and quote bars)
``duplicate_trade``         error     a trade id seen before (trades with ids)
``nan_price``               error     a price that is missing (NaN/empty) or infinite
``nonpositive_price``       error     a price that is zero or negative
``one_sided_quote``         error     a bid without an ask or the reverse
``high_below_low``          error     high < low
``ohlc_outside_range``      error     open or close outside [low, high]
``crossed_quote``           error     bid above ask
``negative_volume``         error     volume < 0 or infinite
``price_spike``             warning   a one-bar move of more than ``spike_threshold`` robust sigmas (and more
                                      than ``spike_min_move``) that reverts
``gap``                     info      a time step longer than ``gap_factor`` × the median step
==========================  ========  =====================================================================

:func:`apply_policy` then either raises on the first error (``policy="error"``, the default), drops
the affected rows (``"drop"``) or repairs what can be repaired (``"repair"``: sort out-of-order rows,
swap high and low, widen high/low to contain open and close, blank negative volumes; rows that cannot
be repaired — missing or non-positive prices, crossed or one-sided quotes, duplicates after the first —
are dropped). It always returns a :class:`QualityReport` that says what it did and to how many rows.
Warnings and infos never change the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from backforge._time import NS_PER, format_duration, format_ns
from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from backforge.data.importers import FileData

__all__ = ["Issue", "Action", "QualityReport", "check", "apply_policy", "POLICIES", "ISSUE_CODES"]

POLICIES = ("error", "drop", "repair")
Policy = Literal["error", "drop", "repair"]

ISSUE_CODES: dict[str, tuple[str, str]] = {
    "out_of_order": ("error", "rows with an out-of-order timestamp"),
    "duplicate_timestamp": ("error", "rows with a duplicate timestamp"),
    "duplicate_trade": ("error", "rows with a duplicate trade id"),
    "nan_price": ("error", "rows with a missing or infinite price"),
    "nonpositive_price": ("error", "rows with a zero or negative price"),
    "one_sided_quote": ("error", "rows with a bid but no ask, or an ask but no bid"),
    "high_below_low": ("error", "rows with high below low"),
    "ohlc_outside_range": ("error", "rows with open or close outside [low, high]"),
    "crossed_quote": ("error", "rows with the bid above the ask"),
    "negative_volume": ("error", "rows with a negative or infinite volume"),
    "price_spike": ("warning", "price spikes (one-bar moves that revert)"),
    "gap": ("info", "gaps in time"),
}
_PRICE_COLUMNS = {
    "bars": ("open", "high", "low", "close"),
    "quote_bars": ("bid_open", "bid_high", "bid_low", "bid_close", "ask_open", "ask_high", "ask_low", "ask_close"),
    "quotes": ("bid", "ask"),
    "trades": ("price",),
}


@dataclass(frozen=True)
class Issue:
    """One kind of problem found in the data.

    Attributes
    ----------
    code
        Machine-readable code (see :data:`ISSUE_CODES`).
    severity
        ``"error"`` (blocks import under ``policy="error"``), ``"warning"`` or ``"info"``.
    rows
        Number of rows affected (for gaps: number of gaps).
    first_row
        Zero-based index of the first affected row in the data as given.
    field
        The column concerned, when there is one.
    message
        A readable description with an example.

    Examples
    --------
    >>> Issue("gap", "info", 2, 10, None, "2 gaps longer than 3min").severity
    'info'
    """

    code: str
    severity: str
    rows: int
    first_row: int | None
    field: str | None
    message: str


@dataclass(frozen=True)
class Action:
    """What a policy did about one issue: ``"dropped"``, ``"repaired"`` or ``"sorted"`` ``rows`` rows.

    Examples
    --------
    >>> str(Action("high_below_low", "repaired", 3, "swapped high and low"))
    'high_below_low: repaired 3 rows (swapped high and low)'
    """

    code: str
    action: str
    rows: int
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.code}: {self.action} {self.rows:,} row{'s' if self.rows != 1 else ''}{detail}"


@dataclass(frozen=True)
class QualityReport:
    """Result of a quality check, and of the policy applied to it.

    Examples
    --------
    >>> import polars as pl
    >>> frame = pl.DataFrame({"timestamp": [0, 60_000_000_000], "open": [1.0, 1.0], "high": [1.0, 1.2],
    ...                       "low": [1.0, 0.9], "close": [1.0, 1.1], "volume": [1.0, 2.0]})
    >>> report = check(frame, kind="bars")
    >>> report.ok, report.rows
    (True, 2)
    """

    kind: str
    rows: int
    issues: tuple[Issue, ...] = ()
    actions: tuple[Action, ...] = ()
    policy: str | None = None
    rows_out: int | None = None
    symbol: str | None = None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no error-severity issue was found (warnings and infos do not count)."""
        return not any(i.severity == "error" for i in self.issues)

    @property
    def errors(self) -> tuple[Issue, ...]:
        """The error-severity issues."""
        return tuple(i for i in self.issues if i.severity == "error")

    def summary(self) -> str:
        """A few readable lines: what was found and what the policy did.

        Examples
        --------
        >>> QualityReport("bars", 10).summary()
        '10 rows checked: no issues'
        """
        head = f"{self.rows:,} rows checked"
        if not self.issues:
            lines = [f"{head}: no issues"]
        else:
            lines = [f"{head}:"] + [f"  {i.severity}: {i.message}" for i in self.issues]
        if self.policy is not None and self.policy != "error":
            if self.actions:
                lines.append(f"policy {self.policy!r}:")
                lines += [f"  {a}" for a in self.actions]
                lines.append(f"  {self.rows:,} rows in, {self.rows_out:,} rows kept")
            elif self.errors:
                lines.append(f"policy {self.policy!r}: nothing to change")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with each catalog version).

        Examples
        --------
        >>> QualityReport("bars", 3).to_dict()["rows"]
        3
        """
        return {
            "kind": self.kind, "rows": self.rows, "rows_out": self.rows_out, "policy": self.policy,
            "issues": [i.__dict__ for i in self.issues], "actions": [a.__dict__ for a in self.actions],
        }


# ====================================================================== checks

def check(
    data: "pl.DataFrame | FileData",
    *,
    kind: str | None = None,
    gap_factor: float = 3.0,
    min_gap: str | None = None,
    spike_threshold: float = 12.0,
    spike_min_move: float = 0.005,
) -> QualityReport:
    """Find quality problems in normalized data (see the module docstring for the list).

    Parameters
    ----------
    data
        A :class:`~backforge.data.importers.FileData` or a normalized Polars frame (then give ``kind``).
    kind
        ``"bars"``, ``"quote_bars"``, ``"quotes"`` or ``"trades"``.
    gap_factor
        A step longer than ``gap_factor`` × the median step is a gap.
    min_gap
        Shortest step reported as a gap (default: none for bars, ``"5min"`` for ticks).
    spike_threshold
        Size of a spike in robust standard deviations of one-step log returns (median absolute
        deviation × 1.4826).
    spike_min_move
        Smallest relative move (0.005 = 0.5 %) counted as a spike, so that bid-ask bounce in trade
        ticks is not reported.

    Returns
    -------
    QualityReport
        Issues found; ``rows`` is the number of rows checked. Row indices are zero-based positions in
        ``data``; with a FileData the messages name file lines.

    Examples
    --------
    >>> import polars as pl
    >>> frame = pl.DataFrame({"timestamp": [0, 0], "bid": [1.0, 1.2], "ask": [1.1, 1.1], "volume": [1.0, 1.0]})
    >>> [i.code for i in check(frame, kind="quotes").issues]
    ['crossed_quote']
    """
    frame, kind, fd = _unpack(data, kind)
    found = _detect(frame, kind, fd=fd, gap_factor=gap_factor, min_gap=min_gap, spike_threshold=spike_threshold, spike_min_move=spike_min_move)
    return QualityReport(kind, frame.height, tuple(f.issue for f in found), path=fd.path if fd else None)


def apply_policy(
    data: "pl.DataFrame | FileData",
    *,
    policy: str = "error",
    kind: str | None = None,
    symbol: str | None = None,
    gap_factor: float = 3.0,
    min_gap: str | None = None,
    spike_threshold: float = 12.0,
    spike_min_move: float = 0.005,
) -> tuple["pl.DataFrame", QualityReport]:
    """Check ``data`` and apply ``policy``: raise, drop bad rows, or repair them.

    Parameters
    ----------
    data
        A :class:`~backforge.data.importers.FileData` or a normalized Polars frame (then give ``kind``).
    policy
        ``"error"`` raises :class:`~backforge.errors.DataError` for the first error-severity issue,
        naming the file line, column and how many rows are affected; ``"drop"`` removes affected rows;
        ``"repair"`` fixes what can be fixed and drops the rest.
    kind, gap_factor, min_gap, spike_threshold, spike_min_move
        As in :func:`check`.
    symbol
        Named in error messages.

    Returns
    -------
    (frame, report)
        The cleaned frame, sorted by time, and the report of issues and actions.

    Examples
    --------
    >>> import polars as pl
    >>> frame = pl.DataFrame({"timestamp": [0, 2, 1], "open": [1.0, 1.0, 1.0], "high": [1.0, 0.9, 1.0],
    ...                       "low": [1.0, 1.1, 1.0], "close": [1.0, 1.0, 1.0], "volume": [1.0, 1.0, 1.0]})
    >>> clean, report = apply_policy(frame, kind="bars", policy="repair")
    >>> clean["timestamp"].to_list(), [str(a) for a in report.actions]
    ([0, 1, 2], ['out_of_order: sorted 1 row', 'high_below_low: repaired 1 row (swapped high and low)'])
    """
    import polars as pl

    if policy not in POLICIES:
        raise DataError(f"unknown policy {policy!r}; use 'error', 'drop' or 'repair'", field="policy")
    frame, kind, fd = _unpack(data, kind)
    options = dict(gap_factor=gap_factor, min_gap=min_gap, spike_threshold=spike_threshold, spike_min_move=spike_min_move)
    found = _detect(frame, kind, fd=fd, **options)
    path = fd.path if fd is not None else None
    errors = [f for f in found if f.issue.severity == "error"]
    if errors and policy == "error":
        first = min(errors, key=lambda f: (f.issue.first_row if f.issue.first_row is not None else 0))
        issue = first.issue
        line = fd.line_of(issue.first_row) if fd is not None and issue.first_row is not None else issue.first_row
        others = f" (and {len(errors) - 1} other kind{'s' if len(errors) > 2 else ''} of problem)" if len(errors) > 1 else ""
        raise DataError(f"{issue.message}{others}; fix the data or use policy 'drop' or 'repair'",
                        path=path, row=line, field=issue.field, asset=symbol)

    actions: list[Action] = []
    n_in = frame.height
    if errors:
        frame, actions = _fix(frame, kind, {f.issue.code: f for f in errors}, policy)
        remaining = [f for f in _detect(frame, kind, fd=None, **options) if f.issue.severity == "error"]
        if remaining:  # cannot happen with the fixes above; guard against silent corruption
            raise DataError(f"policy {policy!r} left problems: {remaining[0].issue.message}", path=path, asset=symbol)
    if frame.height == 0:
        raise DataError(f"no rows left after policy {policy!r} ({n_in:,} rows had problems)", path=path, asset=symbol)
    if not frame["timestamp"].is_sorted():
        frame = frame.sort("timestamp", maintain_order=True)
    frame = frame.with_columns(pl.col("timestamp").set_sorted())
    report = QualityReport(kind, n_in, tuple(f.issue for f in found), tuple(actions), policy, frame.height, symbol, path)
    return frame, report


# ====================================================================== detection

@dataclass(frozen=True)
class _Found:
    issue: Issue
    mask: np.ndarray | None  # rows affected (None for reports without row masks)


def _unpack(data: Any, kind: str | None) -> tuple["pl.DataFrame", str, "FileData | None"]:
    from backforge.data.importers import FileData

    if isinstance(data, FileData):
        return data.frame, kind or data.kind, data
    if kind is None:
        raise DataError("kind is required for a plain frame: 'bars', 'quote_bars', 'quotes' or 'trades'", field="kind")
    if kind not in _PRICE_COLUMNS:
        raise DataError(f"unknown kind {kind!r}; use 'bars', 'quote_bars', 'quotes' or 'trades'", field="kind")
    if "timestamp" not in data.columns:
        raise DataError(f"no timestamp column; columns are {data.columns}", field="timestamp")
    return data, kind, None


def _ts_ns(frame: "pl.DataFrame") -> np.ndarray:
    import polars as pl

    col = frame["timestamp"]
    if col.dtype == pl.Int64:
        return col.to_numpy()
    return col.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()


def _f64(frame: "pl.DataFrame", name: str) -> np.ndarray:
    return frame[name].to_numpy().astype(np.float64, copy=False)


def _fmt_ts(ns: int) -> str:
    return format_ns(ns, offset=False)


def _issue(code: str, mask: np.ndarray, where: str, *, fd: "FileData | None", field: str | None = None, count: int | None = None) -> _Found:
    severity, what = ISSUE_CODES[code]
    rows = int(mask.sum()) if count is None else count
    first = int(np.argmax(mask))
    loc = f"line {fd.line_of(first)}" if fd is not None and fd.header_lines is not None and "+" not in fd.path else f"row {first}"
    return _Found(Issue(code, severity, rows, first, field, f"{rows:,} {what}, first at {loc}: {where}"), mask)


def _detect(frame: "pl.DataFrame", kind: str, *, fd: "FileData | None", gap_factor: float, min_gap: str | None,
            spike_threshold: float, spike_min_move: float) -> list[_Found]:
    out: list[_Found] = []
    n = frame.height
    if n == 0:
        return out
    ts = _ts_ns(frame)

    # --- time order and duplicates
    prev_max = np.maximum.accumulate(ts)
    ooo = np.zeros(n, dtype=bool)
    ooo[1:] = ts[1:] < prev_max[:-1]
    if ooo.any():
        r = int(np.argmax(ooo))
        out.append(_issue("out_of_order", ooo, f"{_fmt_ts(ts[r])} after {_fmt_ts(prev_max[r - 1])}", fd=fd, field="timestamp"))
    if kind in ("bars", "quote_bars"):
        dup = ~frame["timestamp"].is_first_distinct().to_numpy()
        if dup.any():
            r = int(np.argmax(dup))
            first_seen = int(np.flatnonzero(ts[:r] == ts[r])[0])
            same = frame.row(first_seen)[1:] == frame.row(r)[1:]
            out.append(_issue("duplicate_timestamp", dup, f"{_fmt_ts(ts[r])} repeats row {first_seen}"
                              + (" with the same values" if same else " with different values"), fd=fd, field="timestamp"))
    if kind == "trades" and "trade_id" in frame.columns:
        dup = ~frame["trade_id"].is_first_distinct().to_numpy()
        if dup.any():
            r = int(np.argmax(dup))
            out.append(_issue("duplicate_trade", dup, f"trade id {frame['trade_id'][r]}", fd=fd, field="trade_id"))

    # --- prices
    cols = _PRICE_COLUMNS[kind]
    prices = {c: _f64(frame, c) for c in cols}
    nan_rows = np.zeros(n, dtype=bool)
    nonpos_rows = np.zeros(n, dtype=bool)
    nan_field = nonpos_field = None
    one_sided = np.zeros(n, dtype=bool)
    if kind in ("quotes", "quote_bars"):
        bid_c, ask_c = ("bid", "ask") if kind == "quotes" else ("bid_close", "ask_close")
        bid_nan, ask_nan = np.isnan(prices[bid_c]), np.isnan(prices[ask_c])
        one_sided = bid_nan ^ ask_nan
        if one_sided.any():
            r = int(np.argmax(one_sided))
            out.append(_issue("one_sided_quote", one_sided, f"{'ask' if ask_nan[r] else 'bid'} missing at {_fmt_ts(ts[r])}",
                              fd=fd, field=ask_c if ask_nan[r] else bid_c))
    for c in cols:
        v = prices[c]
        bad_nan = ~np.isfinite(v) & ~one_sided
        with np.errstate(invalid="ignore"):
            bad_pos = v <= 0
        if bad_nan.any() and nan_field is None:
            nan_field = c
        if bad_pos.any() and nonpos_field is None:
            nonpos_field = c
        nan_rows |= bad_nan
        nonpos_rows |= bad_pos
    if nan_rows.any():
        r = int(np.argmax(nan_rows))
        c = next(c for c in cols if not np.isfinite(prices[c][r]))
        out.append(_issue("nan_price", nan_rows, f"{c} is {prices[c][r]} at {_fmt_ts(ts[r])}", fd=fd, field=c))
    if nonpos_rows.any():
        r = int(np.argmax(nonpos_rows))
        c = next(c for c in cols if prices[c][r] <= 0)
        out.append(_issue("nonpositive_price", nonpos_rows, f"{c} is {prices[c][r]} at {_fmt_ts(ts[r])}", fd=fd, field=c))
    valid = ~(nan_rows | nonpos_rows | one_sided)

    # --- OHLC consistency
    sides = [""] if kind == "bars" else (["bid_", "ask_"] if kind == "quote_bars" else [])
    hl = np.zeros(n, dtype=bool)
    outside = np.zeros(n, dtype=bool)
    hl_field = out_field = None
    for s in sides:
        o, h, l, c = (prices[f"{s}{f}"] for f in ("open", "high", "low", "close"))
        with np.errstate(invalid="ignore"):
            bad_hl = valid & (h < l)
            tol_h, tol_l = h * (1 + 1e-12), l * (1 - 1e-12)
            bad_out = valid & ~bad_hl & ((o > tol_h) | (c > tol_h) | (o < tol_l) | (c < tol_l))
        if bad_hl.any() and hl_field is None:
            hl_field = f"{s}high"
        if bad_out.any() and out_field is None:
            r = int(np.argmax(bad_out))
            out_field = f"{s}open" if (o[r] > tol_h[r] or o[r] < tol_l[r]) else f"{s}close"
        hl |= bad_hl
        outside |= bad_out
    if hl.any():
        r = int(np.argmax(hl))
        s = hl_field[:-4] if hl_field else ""
        out.append(_issue("high_below_low", hl, f"high {prices[s + 'high'][r]} < low {prices[s + 'low'][r]} at {_fmt_ts(ts[r])}", fd=fd, field=hl_field))
    if outside.any():
        r = int(np.argmax(outside))
        s = out_field.split("_")[0] + "_" if out_field and "_" in out_field else ""
        out.append(_issue("ohlc_outside_range", outside,
                          f"open {prices[s + 'open'][r]}, close {prices[s + 'close'][r]} vs low {prices[s + 'low'][r]}, "
                          f"high {prices[s + 'high'][r]} at {_fmt_ts(ts[r])}", fd=fd, field=out_field))

    # --- crossed quotes
    if kind in ("quotes", "quote_bars"):
        bid_c, ask_c = ("bid", "ask") if kind == "quotes" else ("bid_close", "ask_close")
        with np.errstate(invalid="ignore"):
            crossed = valid & (prices[bid_c] > prices[ask_c])
        if crossed.any():
            r = int(np.argmax(crossed))
            out.append(_issue("crossed_quote", crossed, f"bid {prices[bid_c][r]} > ask {prices[ask_c][r]} at {_fmt_ts(ts[r])}", fd=fd, field=bid_c))

    # --- volume
    vol_col = "size" if kind == "trades" else "volume"
    if vol_col in frame.columns:
        vol = _f64(frame, vol_col)
        with np.errstate(invalid="ignore"):
            bad_vol = (vol < 0) | np.isinf(vol)
        if bad_vol.any():
            r = int(np.argmax(bad_vol))
            out.append(_issue("negative_volume", bad_vol, f"{vol_col} is {vol[r]} at {_fmt_ts(ts[r])}", fd=fd, field=vol_col))

    # --- warnings and infos on the valid rows in time order
    order_ok = not ooo.any()
    idx = np.flatnonzero(valid)
    if not order_ok:
        idx = idx[np.argsort(ts[idx], kind="stable")]
    series = _reference_price(prices, kind)[idx]
    spike = _spikes(series, spike_threshold, spike_min_move)
    if spike.any():
        mask = np.zeros(n, dtype=bool)
        mask[idx[spike]] = True
        r = int(idx[spike][0])
        pos = int(np.flatnonzero(spike)[0])
        out.append(_issue("price_spike", mask, f"{series[pos - 1]:g} -> {series[pos]:g} -> {series[pos + 1]:g} at {_fmt_ts(ts[r])}", fd=fd))
    gaps = _gaps(ts[idx], kind, gap_factor, min_gap)
    if gaps is not None:
        starts, threshold, intraday = gaps
        mask = np.zeros(n, dtype=bool)
        mask[idx[starts + 1]] = True
        steps = ts[idx[starts + 1]] - ts[idx[starts]]
        k = int(np.argmax(steps))
        where = (f"largest {format_duration(int(steps[k]))} from {_fmt_ts(ts[idx[starts[k]]])} to {_fmt_ts(ts[idx[starts[k] + 1]])}; "
                 f"threshold {format_duration(threshold)}")
        if intraday is not None:
            where += f"; {intraday:,} within a UTC day, the rest across days (sessions, weekends)"
        found = _issue("gap", mask, where, fd=fd, count=len(starts))
        issue = found.issue
        out.append(_Found(Issue(issue.code, issue.severity, issue.rows, issue.first_row, None,
                                issue.message.replace("gaps in time", "gaps in time longer than the threshold")), mask))
    return out


def _reference_price(prices: dict[str, np.ndarray], kind: str) -> np.ndarray:
    if kind == "bars":
        return prices["close"]
    if kind == "quote_bars":
        return (prices["bid_close"] + prices["ask_close"]) / 2
    if kind == "quotes":
        return (prices["bid"] + prices["ask"]) / 2
    return prices["price"]


def _spikes(price: np.ndarray, threshold: float, min_move: float) -> np.ndarray:
    """Points whose move in and move out are both > threshold robust sigmas, in opposite directions."""
    out = np.zeros(len(price), dtype=bool)
    if len(price) < 4:
        return out
    r = np.diff(np.log(price))
    moved = _sample(r[r != 0])  # a robust scale needs no more than a large even sample
    if moved.size < 3:
        return out
    mad = np.median(np.abs(moved - np.median(moved))) * 1.4826
    sigma = mad if mad > 0 else float(np.std(moved))
    if not sigma > 0:
        return out
    big = np.abs(r) > max(threshold * sigma, np.log1p(min_move))
    r_in, r_out = r[:-1], r[1:]
    spike = big[:-1] & big[1:] & (np.sign(r_in) != np.sign(r_out))
    spike &= np.minimum(np.abs(r_in), np.abs(r_out)) >= 0.5 * np.maximum(np.abs(r_in), np.abs(r_out))
    out[1:-1] = spike
    return out


def _sample(values: np.ndarray, size: int = 200_000) -> np.ndarray:
    """An evenly spaced sample of at most ``size`` values (deterministic), for medians of long series."""
    if len(values) <= size:
        return values
    return values[np.linspace(0, len(values) - 1, size).astype(np.int64)]


def _gaps(ts: np.ndarray, kind: str, gap_factor: float, min_gap: str | None) -> tuple[np.ndarray, int, int | None] | None:
    from backforge._time import parse_duration

    if len(ts) < 3:
        return None
    steps = np.diff(ts)
    positive = _sample(steps[steps > 0])
    if positive.size == 0:
        return None
    median = int(np.median(positive))
    floor = parse_duration(min_gap) if min_gap else (5 * NS_PER["min"] if kind in ("quotes", "trades") else 0)
    threshold = max(int(gap_factor * median), floor)
    starts = np.flatnonzero(steps > threshold)
    if starts.size == 0:
        return None
    intraday = None
    if median < NS_PER["d"]:
        day = NS_PER["d"]
        intraday = int(np.sum(ts[starts] // day == ts[starts + 1] // day))
    return starts, threshold, intraday


# ====================================================================== policies

def _fix(frame: "pl.DataFrame", kind: str, errors: dict[str, _Found], policy: str) -> tuple["pl.DataFrame", list[Action]]:
    import polars as pl

    actions: list[Action] = []
    repair = policy == "repair"
    n = frame.height
    drop = np.zeros(n, dtype=bool)

    # rows that cannot be repaired under either policy
    for code, detail in (("nan_price", "missing prices cannot be repaired" if repair else ""),
                         ("nonpositive_price", "non-positive prices cannot be repaired" if repair else ""),
                         ("one_sided_quote", "a quote needs both sides" if repair else ""),
                         ("crossed_quote", "crossed quotes cannot be repaired" if repair else "")):
        if code in errors:
            mask = errors[code].mask
            assert mask is not None
            new = mask & ~drop
            drop |= mask
            actions.append(Action(code, "dropped", int(new.sum()), detail))
    for code in ("high_below_low", "ohlc_outside_range", "negative_volume"):
        if code in errors and not repair:
            mask = errors[code].mask
            assert mask is not None
            new = mask & ~drop
            drop |= mask
            actions.append(Action(code, "dropped", int(new.sum())))
    if not repair and "out_of_order" in errors:
        mask = errors["out_of_order"].mask
        assert mask is not None
        new = mask & ~drop
        drop |= mask
        actions.append(Action("out_of_order", "dropped", int(new.sum()), "rows earlier than a row before them"))

    if repair:
        exprs = []
        if "high_below_low" in errors or "ohlc_outside_range" in errors:
            for s in ([""] if kind == "bars" else ["bid_", "ask_"]):
                o, h, l, c = (pl.col(f"{s}{f}") for f in ("open", "high", "low", "close"))
                swapped_h = pl.when(h < l).then(l).otherwise(h)
                swapped_l = pl.when(h < l).then(h).otherwise(l)
                exprs += [pl.max_horizontal(o, swapped_h, c).alias(f"{s}high"), pl.min_horizontal(o, swapped_l, c).alias(f"{s}low")]
            frame = frame.with_columns(exprs)
            for code, detail in (("high_below_low", "swapped high and low"), ("ohlc_outside_range", "widened high/low to contain open and close")):
                if code in errors:
                    mask = errors[code].mask
                    assert mask is not None
                    actions.append(Action(code, "repaired", int((mask & ~drop).sum()), detail))
        if "negative_volume" in errors:
            col = "size" if kind == "trades" else "volume"
            mask = errors["negative_volume"].mask
            assert mask is not None
            frame = frame.with_columns(pl.when(pl.Series(mask)).then(float("nan")).otherwise(pl.col(col)).alias(col))
            actions.append(Action("negative_volume", "repaired", int((mask & ~drop).sum()), f"{col} set to NaN (unknown)"))

    frame = frame.with_row_index("_row").filter(pl.Series(~drop))
    if repair and "out_of_order" in errors:
        mask = errors["out_of_order"].mask
        assert mask is not None
        frame = frame.sort("timestamp", maintain_order=True)
        actions.append(Action("out_of_order", "sorted", int((mask & ~drop).sum())))
    dup_key = "trade_id" if "duplicate_trade" in errors else "timestamp"
    if "duplicate_timestamp" in errors or "duplicate_trade" in errors:
        before = frame.height
        frame = frame.unique(subset=dup_key, keep="first", maintain_order=True)
        code = "duplicate_trade" if dup_key == "trade_id" else "duplicate_timestamp"
        actions.append(Action(code, "dropped", before - frame.height, "kept the first of each"))
    actions.sort(key=lambda a: list(ISSUE_CODES).index(a.code))
    return frame.drop("_row"), [a for a in actions if a.rows > 0]

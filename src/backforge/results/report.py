"""The HTML tear sheet: one self-contained file with interactive Plotly charts, KPI cards and
sortable tables, built from a :class:`~backforge.results.result.Result` or a saved run.

Sections: KPI cards; equity against a benchmark (linear/log); underwater drawdown; monthly-returns
heatmap; yearly returns; return distribution with VaR and CVaR marked; rolling Sharpe and volatility;
exposure over time; per-asset prices with entries, exits and stop levels; the metrics table; the
trades (sortable, filterable, paged); the drawdown periods; the strategy config and the signal-event
audit.

Size and speed: plotly.js is embedded once (about 4.8 MB), figures are JSON with binary-encoded
arrays, and every time series is downsampled by :func:`minmax_indices` (the minimum and maximum of
each of ``max_points`` buckets are kept, so spikes and the extremes survive). Trade markers and table
rows are capped (the largest winners and losers are kept) with a note saying so. A 7-asset × 10-year
minute run (6.9 M bars) gives a file of about 7.5 MB (``BENCHMARKS.md``, section ``bench_report``).
Charts are drawn one after the other, so the first ones show while the rest render. Nothing is
loaded from the network when the file is opened.

Examples
--------
>>> import backforge as bf
>>> data = bf.synth(n_assets=2, years=1, seed=3)
>>> html = report_html(bf.from_signals(data, data.close > data.open, data.close < data.open))
>>> html.count('class="chart"') >= 9
True
"""

from __future__ import annotations

import functools
import html as html_lib
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from backforge._time import median_bar_ns
from backforge.errors import BackforgeError, ConfigError, DataError

__all__ = [
    "CHART_IDS", "HEADLINE_METRICS", "METRIC_DISPLAY", "METRIC_GROUPS", "format_metric", "minmax_indices",
    "minmax_indices_nb", "report_figure", "report_html", "write_report",
]

NS_PER_DAY = 86_400_000_000_000
DEFAULT_POINTS = 2_000
_MC_PATHS = 500
_MC_MAX_TRADES = 50_000

HEATMAP_MAX_PARAMETERS = 6
"""Parameters a search's heatmap section offers (every pair of them, precomputed)."""

CHART_IDS = ("chart-equity", "chart-underwater", "chart-monthly", "chart-yearly", "chart-distribution",
             "chart-rolling-sharpe", "chart-rolling-volatility", "chart-exposure", "chart-montecarlo")
"""Ids of the charts every report has; per-asset price charts add ``chart-price-<n>``."""

_COLORS = {"strategy": "#2563eb", "benchmark": "#94a3b8", "pos": "#059669", "neg": "#dc2626",
           "net": "#7c3aed", "gross": "#2563eb", "warn": "#d97706", "ink": "#374151"}
_FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'


# ============================================================================================ kernels
@njit(cache=True)
def minmax_indices_nb(values: np.ndarray, n_buckets: int) -> np.ndarray:
    """Sorted indices of a min/max-preserving sample of ``values`` over ``n_buckets`` equal buckets.

    Bucket ``b`` covers indices ``[b * n // n_buckets, (b + 1) * n // n_buckets)``; from each, the
    index of its (first) minimum and of its (first) maximum are kept, plus the first and the last
    index of the series. NaN values are skipped (a bucket of NaN only contributes nothing).
    Equivalent to ``np.unique(np.r_[0, lo + np.nanargmin(v[lo:hi]), lo + np.nanargmax(v[lo:hi]) ...,
    n - 1])`` over the buckets (the slow reference in the tests).
    """
    n = values.shape[0]
    out = np.empty(2 * n_buckets + 2, dtype=np.int64)
    out[0] = 0
    count = 1
    for bucket in range(n_buckets):
        lo = bucket * n // n_buckets
        hi = (bucket + 1) * n // n_buckets
        low_index = -1
        high_index = -1
        low_value = np.inf
        high_value = -np.inf
        for i in range(lo, hi):
            value = values[i]
            if value < low_value or (low_index < 0 and value == low_value):
                low_value = value
                low_index = i
            if value > high_value or (high_index < 0 and value == high_value):
                high_value = value
                high_index = i
        if low_index < 0:
            continue
        first = min(low_index, high_index)
        second = max(low_index, high_index)
        if first > out[count - 1]:
            out[count] = first
            count += 1
        if second > out[count - 1]:
            out[count] = second
            count += 1
    if n - 1 > out[count - 1]:
        out[count] = n - 1
        count += 1
    return out[:count].copy()


def minmax_indices(values: np.ndarray, buckets: int = DEFAULT_POINTS) -> np.ndarray:
    """Indices to plot a long series with at most ``2 * buckets + 2`` points, keeping every extreme.

    The series is cut into ``buckets`` buckets of equal length; the minimum and the maximum of each
    are kept (in time order), plus the first and last points. The global minimum and maximum always
    survive, and so does every spike wider than a bucket's share of the chart. Series of at most
    ``2 * buckets + 2`` points are returned whole. See :func:`minmax_indices_nb`.

    Parameters
    ----------
    values
        float64 ``[T]``; NaN values are never chosen as a bucket's extreme.
    buckets
        Number of buckets, >= 1.

    Returns
    -------
    numpy.ndarray
        int64 sorted unique indices into ``values``.

    Examples
    --------
    >>> v = np.sin(np.linspace(0, 20, 100_000))
    >>> idx = minmax_indices(v, 50)
    >>> len(idx) <= 102, bool(v[idx].max() == v.max()), bool(v[idx].min() == v.min())
    (True, True, True)
    """
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(f"values must be 1-D, got shape {array.shape}", field="values")
    if isinstance(buckets, bool) or not isinstance(buckets, (int, np.integer)) or buckets < 1:
        raise ConfigError(f"buckets must be a whole number >= 1, got {buckets!r}", field="max_points")
    if array.shape[0] <= 2 * int(buckets) + 2:
        return np.arange(array.shape[0], dtype=np.int64)
    return minmax_indices_nb(array, int(buckets))



METRIC_DISPLAY: dict[str, tuple[str, str, int]] = {
    # key: (label, kind for display, direction: +1 higher is better, -1 lower is better, 0 neither)
    "total_return": ("Total return", "pct", 1), "annual_return": ("Annual return", "pct", 1),
    "cagr": ("CAGR", "pct", 1), "best_period": ("Best period", "pct", 0), "worst_period": ("Worst period", "pct", 1),
    "final_equity": ("Final equity", "money", 1), "initial_cash": ("Initial cash", "money", 0),
    "annual_volatility": ("Annual volatility", "pct", -1), "max_drawdown": ("Max drawdown", "pct", 1),
    "max_drawdown_duration": ("Max drawdown duration", "bars", -1),
    "avg_drawdown_duration": ("Avg drawdown duration", "bars", -1), "ulcer_index": ("Ulcer index", "pct", -1),
    "var_historical": ("VaR 95% (historical)", "pct", 1), "cvar_historical": ("CVaR 95% (historical)", "pct", 1),
    "var_parametric": ("VaR 95% (normal)", "pct", 1), "cvar_parametric": ("CVaR 95% (normal)", "pct", 1),
    "skew": ("Skew", "ratio", 0), "kurtosis": ("Excess kurtosis", "ratio", 0),
    "sharpe": ("Sharpe", "ratio", 1), "sortino": ("Sortino", "ratio", 1), "calmar": ("Calmar", "ratio", 1),
    "omega": ("Omega", "ratio", 1), "recovery_factor": ("Recovery factor", "ratio", 1),
    "tail_ratio": ("Tail ratio", "ratio", 1), "gain_pain_ratio": ("Gain/pain ratio", "ratio", 1),
    "alpha": ("Alpha (annual)", "pct", 1), "beta": ("Beta", "ratio", 0),
    "information_ratio": ("Information ratio", "ratio", 1), "tracking_error": ("Tracking error", "pct", 0),
    "n_trades": ("Closed trades", "int", 0), "win_rate": ("Win rate", "pct", 1),
    "profit_factor": ("Profit factor", "ratio", 1), "expectancy": ("Expectancy", "money", 1),
    "expectancy_pct": ("Expectancy (return)", "pct", 1), "avg_win": ("Average win", "pct", 1),
    "avg_loss": ("Average loss", "pct", 1), "payoff_ratio": ("Payoff ratio", "ratio", 1),
    "kelly": ("Kelly fraction", "ratio", 1), "sqn": ("SQN", "ratio", 1),
    "best_trade": ("Best trade", "pct", 0), "worst_trade": ("Worst trade", "pct", 1),
    "avg_trade_duration_ns": ("Average holding time", "duration", 0),
    "max_trade_duration_ns": ("Longest holding time", "duration", 0),
    "longest_win_streak": ("Longest win streak", "int", 0), "longest_loss_streak": ("Longest loss streak", "int", -1),
    "exposure_time": ("Time in market", "pct", 0), "avg_gross_leverage": ("Average gross leverage", "ratio", 0),
    "turnover": ("Turnover (total)", "ratio", 0), "annual_turnover": ("Turnover (annual)", "ratio", 0),
    "fees": ("Fees", "money", -1), "financing": ("Financing", "money", -1), "slippage": ("Slippage", "money", -1),
    "orders": ("Orders", "int", 0), "fills": ("Fills", "int", 0), "open_positions": ("Open positions at end", "int", 0),
    "periods_per_year": ("Bars per year", "float", 0), "years": ("Years", "ratio", 0), "bars": ("Bars", "int", 0),
    "assets": ("Assets", "int", 0),
}
"""How each metric key is shown: label, display kind (``pct``, ``ratio``, ``money``, ``int``, ``bars``,
``duration``, ``float``) and which direction is better (for highlighting in ``backforge compare``)."""

METRIC_GROUPS: list[tuple[str, list[str]]] = [
    ("Returns", ["total_return", "annual_return", "cagr", "best_period", "worst_period", "final_equity", "initial_cash"]),
    ("Risk", ["annual_volatility", "max_drawdown", "max_drawdown_duration", "avg_drawdown_duration", "ulcer_index",
              "var_historical", "cvar_historical", "var_parametric", "cvar_parametric", "skew", "kurtosis"]),
    ("Risk-adjusted", ["sharpe", "sortino", "calmar", "omega", "recovery_factor", "tail_ratio", "gain_pain_ratio",
                       "alpha", "beta", "information_ratio", "tracking_error"]),
    ("Trades (closed)", ["n_trades", "win_rate", "profit_factor", "expectancy", "expectancy_pct", "avg_win", "avg_loss",
                         "payoff_ratio", "kelly", "sqn", "best_trade", "worst_trade", "avg_trade_duration_ns",
                         "max_trade_duration_ns", "longest_win_streak", "longest_loss_streak"]),
    ("Exposure and costs", ["exposure_time", "avg_gross_leverage", "turnover", "annual_turnover", "fees", "financing",
                            "slippage", "orders", "fills", "open_positions", "periods_per_year", "years"]),
]
"""Sections of the report's metrics table."""

HEADLINE_METRICS: tuple[str, ...] = (
    "total_return", "cagr", "annual_volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration", "alpha", "beta", "n_trades", "win_rate", "profit_factor", "expectancy",
    "exposure_time", "annual_turnover", "fees", "final_equity",
)
"""Metrics ``backforge compare`` shows without ``--all``."""


def format_metric(key: str, value: Any) -> str:
    """Display text of a metric value, by its kind in :data:`METRIC_DISPLAY`.

    Examples
    --------
    >>> format_metric("sharpe", 1.23456), format_metric("max_drawdown", -0.1234), format_metric("profit_factor", float("inf"))
    ('1.23', '-12.34%', '∞')
    """
    kind = METRIC_DISPLAY.get(key, (key, "float", 0))[1]
    return _fmt(value, kind)

# ============================================================================================ helpers
def _esc(value: Any) -> str:
    return html_lib.escape(str(value), quote=True)


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return {"dtype": "f8", "bdata": _b64(np.ascontiguousarray(value, dtype="<f8"))}
        if value.dtype.kind in "iub":
            return _finite_list(value.astype(np.float64))
        return [None if v is None else str(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return _finite(float(value))
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _b64(array: np.ndarray) -> str:
    import base64

    return base64.b64encode(array.tobytes()).decode("ascii")


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _finite_list(values: Any, digits: int | None = None) -> list[float | None]:
    out = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        if not math.isfinite(v):
            out.append(None)
        else:
            out.append(round(v, digits) if digits is not None else v)
    return out


def _times(ns: np.ndarray, *, intraday: bool) -> list[str]:
    """Timestamps as Plotly date strings (UTC): ``2020-01-02`` or ``2020-01-02 14:31:00``."""
    stamps = np.asarray(ns, dtype=np.int64).astype("datetime64[ns]")
    if intraday:
        return [text.replace("T", " ") for text in np.datetime_as_string(stamps, unit="s").tolist()]
    return np.datetime_as_string(stamps, unit="D").tolist()


def _duration_text(ns: float) -> str:
    seconds = float(ns) / 1e9
    if not math.isfinite(seconds):
        return "–"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest / 60
    if days >= 1:
        return f"{int(days):,}d {int(hours)}h" if int(hours) else f"{int(days):,}d"
    if hours >= 1:
        return f"{int(hours)}h {int(minutes)}m"
    if minutes >= 1:
        return f"{minutes:.0f} min"
    return f"{seconds:.0f} s"


def _fmt(value: Any, kind: str) -> str:
    """Display text of one metric value (``kind``: pct, ratio, money, int, bars, duration, float)."""
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "bars":
        return f"{value:,.0f} bars"
    if kind == "duration":
        return _duration_text(value)
    if kind == "ratio":
        return f"{value:,.2f}"
    return f"{value:,.4g}"


def _sign_class(value: Any) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return "pos" if value > 0 else "neg" if value < 0 else ""
    return ""


def _layout(height: int, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 64, "r": 24, "t": 36, "b": 44},
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
        "font": {"family": _FONT, "size": 12, "color": "#374151"},
        "xaxis": {"gridcolor": "#eef0f3", "linecolor": "#d1d5db", "zeroline": False, "automargin": True},
        "yaxis": {"gridcolor": "#eef0f3", "linecolor": "#d1d5db", "zerolinecolor": "#cbd5e1", "automargin": True},
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "bgcolor": "rgba(0,0,0,0)"},
        "hovermode": "x unified",
        "hoverlabel": {"font": {"family": _FONT, "size": 12}},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _message_layout(height: int, text: str) -> dict[str, Any]:
    return _layout(height, xaxis={"visible": False}, yaxis={"visible": False}, hovermode=False,
                   annotations=[{"text": text, "showarrow": False, "xref": "paper", "yref": "paper",
                                 "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#6b7280"}}])


# ============================================================================================ report
class _Report:
    """Builds one report; every section is a method returning HTML."""

    def __init__(self, run: Any, *, benchmark: Any, risk_free: float, calendar: str | float, title: str | None,
                 max_points: int, max_assets: int, max_rows: int, max_markers: int,
                 run_folder: str | Path | None = None) -> None:
        from backforge.results import metrics as mx

        for name, value, low in (("max_points", max_points, 1), ("max_assets", max_assets, 0),
                                 ("max_rows", max_rows, 2), ("max_markers", max_markers, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}", field=name)
        self.run = run
        folder = run_folder if run_folder is not None else getattr(run, "path", None)
        self.run_folder = Path(folder) if folder is not None else None
        self.max_points, self.max_assets, self.max_rows, self.max_markers = max_points, max_assets, max_rows, max_markers
        self.risk_free, self.calendar = risk_free, calendar
        self.config = run.config_document() or {}
        self.meta = run.metadata_document() or {}
        self.ts = np.asarray(run.timestamps_ns, dtype=np.int64)
        self.ts_curve, self.curve = run._curve()
        # intraday bars: the median spacing (of a long sample, enough to tell) is under a day
        self.intraday = bool(len(self.ts) > 1 and median_bar_ns(self.ts[:100_001]) < NS_PER_DAY)
        self.metrics = run.metrics(benchmark=benchmark, risk_free=risk_free, calendar=calendar)
        resolved = run.benchmark_equity(benchmark)
        self.bench_name = resolved[0] if resolved else None
        self.bench_curve = np.r_[float(run.initial_cash), resolved[1]] if resolved else None
        self.bench_metrics = run.benchmark_metrics(benchmark, risk_free, calendar) if resolved else None
        self.drawdowns = run.drawdowns
        self.strategy = self.config.get("strategy") or {}
        self.title = title or self.strategy.get("name") or getattr(run, "name", None) or "Backtest report"
        self.charts: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.downsampled = False
        # calendar-period curve: daily for intraday bars, the bars themselves otherwise
        if self.intraday:
            days = self.ts_curve // NS_PER_DAY
            keep = np.unique(np.r_[0, np.flatnonzero(np.r_[days[1:] != days[:-1], True])])
        else:
            keep = np.arange(len(self.ts_curve))
        self.period_keep = keep
        self.period_name = "daily" if self.intraday else "per-bar"
        self.period_ts = self.ts_curve[keep]
        self.period_ppy = (mx.periods_per_year_for(self.period_ts[1:], calendar) if self.intraday
                           else float(self.metrics["periods_per_year"]))

    # ------------------------------------------------------------------ plumbing
    def _chart(self, chart_id: str, spec: dict[str, Any], height: int) -> str:
        self.charts[chart_id] = spec
        return f'<div class="chart" id="{chart_id}" style="height:{height}px"></div>'

    def _sample(self, ts: np.ndarray, values: np.ndarray) -> tuple[list[str], np.ndarray]:
        idx = minmax_indices(values, self.max_points)
        if len(idx) < len(values):
            self.downsampled = True
        return _times(ts[idx], intraday=self.intraday), np.asarray(values, dtype=np.float64)[idx]

    def _table(self, table_id: str, columns: list[tuple], rows: list[list], *, page: int = 50,
               sort: tuple[int, int] | None = None) -> str:
        self.tables[table_id] = {"columns": columns, "rows": rows, "page": page, "sort": sort}
        return f'<div class="bf-table" data-src="{table_id}"></div>'

    # ------------------------------------------------------------------ sections
    def header(self) -> str:
        m = self.metrics
        bits = [f"{m['start'][:10]} → {m['end'][:10]}", f"{m['bars']:,} bars × {m['assets']} assets"]
        if self.meta.get("bar"):
            bits.append(f"{self.meta['bar']} bars")
        bits.append(f"mode: {self.config.get('mode', '–')}")
        if self.bench_name:
            bits.append(f"benchmark: {self.bench_name}")
        if getattr(self.run, "name", None) and self.run.name != self.title:
            bits.append(f"run: {self.run.name}")
        meta = "".join(f"<span>{_esc(bit)}</span>" for bit in bits)
        return (f'<header class="top"><div class="wrap"><div class="brand">backforge · tear sheet</div>'
                f"<h1>{_esc(self.title)}</h1><div class=\"meta\">{meta}</div></div></header>")

    def nav(self) -> str:
        links = [("overview", "Overview"), ("performance", "Performance"), ("returns", "Returns"), ("risk", "Risk"),
                 ("exposure", "Exposure"), ("montecarlo", "Monte Carlo"),
                 *([("parameters", "Parameters")] if "chart-parameters" in self.charts else []), ("assets", "Assets"), ("metrics", "Metrics"), ("trades", "Trades"),
                 ("drawdowns", "Drawdowns"), ("config", "Config"), ("audit", "Signal audit")]
        inner = "".join(f'<a href="#{key}">{label}</a>' for key, label in links)
        return f'<nav class="toc"><div class="wrap">{inner}</div></nav>'

    def kpis(self) -> str:
        m, b = self.metrics, self.bench_metrics or {}

        def card(label: str, value: Any, kind: str, *, sub: str = "", colour: bool = False) -> str:
            css = f" {_sign_class(value)}" if colour else ""
            sub_html = f'<div class="sub">{_esc(sub)}</div>' if sub else ""
            return (f'<div class="kpi"><div class="label">{_esc(label)}</div>'
                    f'<div class="value{css}">{_esc(_fmt(value, kind))}</div>{sub_html}</div>')

        def bench(key: str, kind: str) -> str:
            return f"benchmark {_fmt(b[key], kind)}" if key in b else ""

        cards = [
            card("Total return", m["total_return"], "pct", sub=bench("total_return", "pct"), colour=True),
            card("CAGR", m["cagr"], "pct", sub=bench("cagr", "pct"), colour=True),
            card("Sharpe", m["sharpe"], "ratio", sub=bench("sharpe", "ratio"), colour=True),
            card("Sortino", m["sortino"], "ratio", sub=bench("sortino", "ratio")),
            card("Max drawdown", m["max_drawdown"], "pct", sub=bench("max_drawdown", "pct"), colour=True),
            card("Volatility (ann.)", m["annual_volatility"], "pct", sub=bench("annual_volatility", "pct")),
            card("Final equity", m["final_equity"], "money", sub=f"from {_fmt(m['initial_cash'], 'money')}"),
            card("Closed trades", m["n_trades"], "int", sub=f"win rate {_fmt(m['win_rate'], 'pct')}"),
            card("Profit factor", m["profit_factor"], "ratio", sub=f"payoff {_fmt(m['payoff_ratio'], 'ratio')}"),
            card("Calmar", m["calmar"], "ratio"),
            card("Exposure time", m["exposure_time"], "pct", sub=f"avg leverage {_fmt(m['avg_gross_leverage'], 'ratio')}"),
            card("Fees paid", m.get("fees"), "money", sub=f"slippage {_fmt(m.get('slippage'), 'money')}"),
        ]
        return f'<div class="kpis" id="overview">{"".join(cards)}</div>'

    def performance(self) -> str:
        x, y = self._sample(self.ts_curve, self.curve)
        data = [{"type": "scatter", "mode": "lines", "name": "Strategy", "x": x, "y": y,
                 "line": {"color": _COLORS["strategy"], "width": 1.7}, "hovertemplate": "%{y:,.2f}"}]
        if self.bench_curve is not None:
            bx, by = self._sample(self.ts_curve, self.bench_curve)
            data.append({"type": "scatter", "mode": "lines", "name": self.bench_name, "x": bx, "y": by,
                         "line": {"color": _COLORS["benchmark"], "width": 1.3}, "hovertemplate": "%{y:,.2f}"})
        shapes = []
        for row in self.drawdowns.head(3).iter_rows(named=True):
            end = row["recovery"] or datetime.fromtimestamp(self.ts[-1] / 1e9, tz=timezone.utc)
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": str(row["start"])[:19],
                           "x1": str(end)[:19], "y0": 0, "y1": 1, "fillcolor": "rgba(220,38,38,0.06)",
                           "line": {"width": 0}, "layer": "below"})
        halts = self._halts()
        for start, end, label in halts:
            shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": start, "x1": end, "y0": 0, "y1": 1,
                           "fillcolor": "rgba(234,88,12,0.10)", "line": {"width": 0}, "layer": "below"})
        if halts:
            data.append({"type": "scatter", "mode": "markers", "name": "Risk halt", "x": [h[0] for h in halts],
                         "y": [self._equity_at(h[0]) for h in halts], "text": [h[2] for h in halts],
                         "marker": {"symbol": "x", "size": 10, "color": _COLORS["warn"]},
                         "hovertemplate": "%{text}<extra></extra>"})
        buttons = [{"label": "Linear", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
                   {"label": "Log", "method": "relayout", "args": [{"yaxis.type": "log"}]}]
        layout = _layout(440, yaxis={"title": {"text": "equity"}, "tickformat": ",.0f"}, shapes=shapes,
                         legend={"x": 1.0, "xanchor": "right"}, margin={"t": 64},
                         updatemenus=[{"type": "buttons", "direction": "right", "x": 0.0, "xanchor": "left",
                                       "y": 1.0, "yanchor": "bottom", "pad": {"b": 4}, "buttons": buttons,
                                       "showactive": True, "bgcolor": "#f8fafc", "bordercolor": "#e5e7eb",
                                       "font": {"size": 11}}])
        equity = self._chart("chart-equity", {"data": data, "layout": layout}, 440)
        underwater = self.curve / np.maximum.accumulate(self.curve) - 1.0
        ux, uy = self._sample(self.ts_curve, underwater)
        under = {"data": [{"type": "scatter", "mode": "lines", "name": "Drawdown", "x": ux, "y": uy,
                           "fill": "tozeroy", "line": {"color": _COLORS["neg"], "width": 1},
                           "fillcolor": "rgba(220,38,38,0.18)", "hovertemplate": "%{y:.2%}"}],
                 "layout": _layout(260, yaxis={"tickformat": ".0%", "title": {"text": "drawdown"}}, showlegend=False)}
        note = ("The three deepest drawdowns are shaded. " if len(self.drawdowns.head(3)) else "") + \
            (f"Risk halts ✕ ({len(halts)}) are shaded orange until trading resumed. " if halts else "") + \
            "Use the Linear/Log buttons to switch the scale; drag to zoom, double-click to reset."
        return (f'<section class="card" id="performance"><h2>Equity and drawdown</h2><p class="note">{_esc(note)}</p>'
                f'{equity}<h3>Underwater (drawdown from the running peak)</h3>'
                f'{self._chart("chart-underwater", under, 260)}</section>')

    def _halts(self) -> list[tuple[str, str, str]]:
        """(start, end, message) of every risk halt of the run (end: its resume or the last bar)."""
        events = getattr(self.run, "risk_events", None)
        if events is None or events.height == 0:
            return []
        last = str(datetime.fromtimestamp(self.ts[-1] / 1e9, tz=timezone.utc))[:19]
        out: list[tuple[str, str, str]] = []
        open_: dict[tuple[str, str], int] = {}
        for row in events.filter(events["event"].is_in(["halted", "resumed"])).iter_rows(named=True):
            key = (row["scope"], row["rule"])
            when = str(row["timestamp"])[:19]
            if row["event"] == "halted":
                open_[key] = len(out)
                out.append((when, last, f"{row['scope']}: {row['message']}"))
            elif key in open_:
                start, _, text = out[open_.pop(key)]
                out[out.index((start, last, text))] = (start, when, text)
        return out

    def _equity_at(self, when: str) -> float | None:
        ns = int(np.datetime64(when, "ns").astype(np.int64))
        i = int(np.searchsorted(np.asarray(self.ts, dtype=np.int64), ns, side="right")) - 1
        return _finite(float(self.run.equity_values[max(i, 0)]))

    def returns_section(self) -> str:
        from backforge.results.metrics import monthly_table, period_returns

        table = monthly_table(self.ts_curve, self.curve)
        months = [c for c in table.columns if c not in ("year", "total")]
        years = [str(y) for y in table["year"].to_list()]
        z = [[None if v is None else round(100.0 * v, 4) for v in table.select(months).row(i)] for i in range(table.height)]
        height = max(220, 70 + 30 * len(years))
        heat = {"data": [{"type": "heatmap", "x": months, "y": years, "z": z, "zmid": 0,
                          "colorscale": [[0, "#b91c1c"], [0.5, "#f8fafc"], [1, "#047857"]],
                          "texttemplate": "%{z:.1f}", "textfont": {"size": 11}, "xgap": 2, "ygap": 2,
                          "hovertemplate": "%{y} %{x}: %{z:.2f}%<extra></extra>",
                          "colorbar": {"title": {"text": "%"}, "thickness": 12}}],
                "layout": _layout(height, yaxis={"autorange": "reversed", "type": "category", "gridcolor": "#fff"},
                                  xaxis={"side": "top", "gridcolor": "#fff"}, hovermode="closest",
                                  margin={"t": 56, "b": 16})}
        yearly = period_returns(self.ts_curve, self.curve, "year")
        bars = [{"type": "bar", "name": "Strategy", "x": [str(y) for y in yearly["year"].to_list()],
                 "y": _finite_list(yearly["return"].to_numpy()), "marker": {"color": _COLORS["strategy"]},
                 "hovertemplate": "%{y:.2%}"}]
        if self.bench_curve is not None:
            bench_yearly = period_returns(self.ts_curve, self.bench_curve, "year")
            bars.append({"type": "bar", "name": self.bench_name, "x": [str(y) for y in bench_yearly["year"].to_list()],
                         "y": _finite_list(bench_yearly["return"].to_numpy()), "marker": {"color": _COLORS["benchmark"]},
                         "hovertemplate": "%{y:.2%}"})
        yearly_spec = {"data": bars, "layout": _layout(320, barmode="group", yaxis={"tickformat": ".0%"},
                                                        xaxis={"type": "category"})}
        return (f'<section class="card" id="returns"><h2>Returns by calendar period</h2>'
                f'<p class="note">Monthly returns in percent (UTC calendar months, compounded); an empty cell '
                f'is a month without data.</p>{self._chart("chart-monthly", heat, height)}'
                f'<div class="grid2"><div><h3>Yearly returns</h3>{self._chart("chart-yearly", yearly_spec, 320)}</div>'
                f'<div><h3>Return distribution ({self.period_name})</h3>{self.distribution()}</div></div></section>')

    def distribution(self) -> str:
        from backforge.results.metrics import equity_metrics, returns_from_equity

        period_curve = self.curve[self.period_keep]
        returns = returns_from_equity(period_curve)
        if returns.size < 2 or np.all(returns == returns[0]):
            spec = {"data": [], "layout": _message_layout(320, "not enough variation in returns for a distribution")}
            return self._chart("chart-distribution", spec, 320)
        stats = equity_metrics(period_curve, periods_per_year=self.period_ppy)
        var, cvar = float(stats["var_historical"]), float(stats["cvar_historical"])
        low, high = np.quantile(returns, [0.001, 0.999])
        if not high > low:
            low, high = float(returns.min()), float(returns.max())
        edges = np.linspace(low, high, 61)
        counts, _ = np.histogram(np.clip(returns, low, high), bins=edges)
        centers = (edges[:-1] + edges[1:]) / 2
        colors = [_COLORS["neg"] if c <= var else "#93c5fd" for c in centers]
        shapes, notes = [], []
        for value, label, dash in ((var, "VaR 95%", "dash"), (cvar, "CVaR 95%", "dot")):
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": value, "x1": value, "y0": 0, "y1": 1,
                           "line": {"color": _COLORS["neg"], "width": 1.5, "dash": dash}})
            notes.append({"x": value, "y": 1, "xref": "x", "yref": "paper", "text": f"{label} {value:.2%}",
                          "showarrow": False, "xanchor": "right" if label.startswith("C") else "left",
                          "yanchor": "bottom", "font": {"size": 11, "color": _COLORS["neg"]}})
        spec = {"data": [{"type": "bar", "x": centers, "y": counts.astype(np.float64), "marker": {"color": colors},
                          "hovertemplate": "%{x:.2%}: %{y:,} periods<extra></extra>", "name": "returns"}],
                "layout": _layout(320, bargap=0.04, xaxis={"tickformat": ".1%"}, yaxis={"title": {"text": "count"}},
                                  shapes=shapes, annotations=notes, showlegend=False, hovermode="closest",
                                  margin={"t": 40})}
        return self._chart("chart-distribution", spec, 320)

    def risk_section(self) -> str:
        from backforge.results.metrics import returns_from_equity, rolling_sharpe, rolling_volatility

        returns = returns_from_equity(self.curve[self.period_keep])
        window = 126 if returns.size >= 252 else max(2, returns.size // 4)
        unit = "days" if self.intraday else "bars"
        charts = []
        for chart_id, label, fmt in (("chart-rolling-sharpe", "Rolling Sharpe", ".2f"),
                                     ("chart-rolling-volatility", "Rolling volatility (annualized)", ".0%")):
            if returns.size < 4:
                spec = {"data": [], "layout": _message_layout(300, "not enough data for a rolling window")}
            else:
                if chart_id.endswith("sharpe"):
                    values = rolling_sharpe(returns, window, self.period_ppy, risk_free=self.risk_free)
                    color = _COLORS["strategy"]
                else:
                    values = rolling_volatility(returns, window, self.period_ppy)
                    color = _COLORS["warn"]
                x, y = self._sample(self.period_ts[1:], values)
                spec = {"data": [{"type": "scatter", "mode": "lines", "x": x, "y": y, "name": label,
                                  "line": {"color": color, "width": 1.4}, "hovertemplate": f"%{{y:{fmt}}}"}],
                        "layout": _layout(300, yaxis={"tickformat": fmt}, showlegend=False)}
            charts.append(f"<div><h3>{_esc(label)}</h3>{self._chart(chart_id, spec, 300)}</div>")
        note = (f"Windows of {window} {unit} of {self.period_name} returns, annualized with "
                f"{self.period_ppy:,.0f} periods per year.")
        return (f'<section class="card" id="risk"><h2>Rolling risk</h2><p class="note">{_esc(note)}</p>'
                f'<div class="grid2">{"".join(charts)}</div></section>')

    def exposure_section(self) -> str:
        gross, net = self.run._exposure_values()
        equity = np.asarray(self.run.equity_values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            gross_frac = np.where(equity > 0, np.asarray(gross) / equity, 0.0)
            net_frac = np.where(equity > 0, np.asarray(net) / equity, 0.0)
        data = []
        for name, values, color, dash in (("gross", gross_frac, _COLORS["gross"], "solid"),
                                          ("net", net_frac, _COLORS["net"], "dot")):
            x, y = self._sample(self.ts, values)
            data.append({"type": "scatter", "mode": "lines", "name": f"{name} exposure", "x": x, "y": y,
                         "line": {"color": color, "width": 1.3, "dash": dash}, "hovertemplate": "%{y:.1%}"})
        spec = {"data": data, "layout": _layout(280, yaxis={"tickformat": ".0%", "title": {"text": "of equity"}})}
        m = self.metrics
        note = (f"Market value of open positions as a fraction of equity, at each bar's close. Time in the market "
                f"{_fmt(m['exposure_time'], 'pct')}, average gross leverage {_fmt(m['avg_gross_leverage'], 'ratio')}, "
                f"turnover {_fmt(m['annual_turnover'], 'ratio')}× a year.")
        return (f'<section class="card" id="exposure"><h2>Exposure over time</h2><p class="note">{_esc(note)}</p>'
                f'{self._chart("chart-exposure", spec, 280)}</section>')

    def _monte_carlo(self) -> tuple[Any, dict[str, Any], str] | None:
        """(bands, summary, how) of the run's saved study (``backforge montecarlo``), else a quick bootstrap of
        its closed trades (500 paths, seed 0), else None."""
        from backforge.results.montecarlo_io import load_monte_carlo

        folder = getattr(self.run, "path", None)
        saved = load_monte_carlo(folder) if folder is not None else None
        if saved is not None:
            s = saved["summary"]
            return saved["bands"], s, (f"saved study: {s.get('n_simulations', '?'):,} paths, {s.get('method')}, "
                                       f"seed {s.get('seed')}")
        trades = self.run.trades.filter(~pl.col("is_open")).height if "is_open" in self.run.trades.columns else 0
        if not 5 <= trades <= _MC_MAX_TRADES:
            return None
        from backforge.research.montecarlo import monte_carlo

        try:
            mc = monte_carlo(self.run, method="bootstrap", n_simulations=_MC_PATHS, seed=0)
        except BackforgeError:
            return None
        s = mc.summary()
        s["probability_of_loss"] = float(np.mean(mc.final_equity < mc.initial_equity))
        return mc.bands, s, (f"{_MC_PATHS} bootstrap paths of the {trades} closed trades, seed 0; "
                             "`backforge montecarlo RUN` saves a larger study")

    def monte_carlo_section(self) -> str:
        found = self._monte_carlo()
        if found is None:
            spec = {"data": [], "layout": _message_layout(320, "fewer than 5 closed trades (or too many for the "
                                                               "report): run `backforge montecarlo RUN`")}
            return (f'<section class="card" id="montecarlo"><h2>Monte Carlo</h2>'
                    f'{self._chart("chart-montecarlo", spec, 320)}</section>')
        bands, s, how = found
        step = bands["step"].to_list()
        levels = [c for c in bands.columns if c.startswith("p")]
        data = []
        pairs = [(levels[i], levels[-1 - i]) for i in range(len(levels) // 2)]
        shades = ["rgba(37,99,235,0.12)", "rgba(37,99,235,0.22)", "rgba(37,99,235,0.32)"]
        for k, (low, high) in enumerate(pairs):
            data.append({"type": "scatter", "mode": "lines", "x": step, "y": _finite_list(bands[high]),
                         "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip"})
            data.append({"type": "scatter", "mode": "lines", "x": step, "y": _finite_list(bands[low]),
                         "fill": "tonexty", "fillcolor": shades[k % len(shades)], "line": {"width": 0},
                         "name": f"{low}–{high}", "hovertemplate": "%{y:,.0f}"})
        if len(levels) % 2:
            mid = levels[len(levels) // 2]
            data.append({"type": "scatter", "mode": "lines", "x": step, "y": _finite_list(bands[mid]), "name": mid,
                         "line": {"color": _COLORS["benchmark"], "dash": "dot", "width": 1.3}})
        if "original" in bands.columns:
            data.append({"type": "scatter", "mode": "lines", "x": step, "y": _finite_list(bands["original"]),
                         "name": "this run", "line": {"color": _COLORS["strategy"], "width": 1.8}})
        unit = "trade" if s.get("block_length") is None else "bar"
        layout = _layout(360, xaxis={"title": {"text": f"{unit}s"}}, yaxis={"title": {"text": "equity"},
                                                                            "tickformat": ",.0f"})
        note = (f"{how}. Probability of loss {s.get('probability_of_loss', float('nan')):.1%}; probability of ruin "
                f"(a {s.get('ruin_drawdown', 0.5):.0%} drawdown) {s.get('probability_of_ruin', float('nan')):.1%}.")
        return (f'<section class="card" id="montecarlo"><h2>Monte Carlo</h2><p class="note">{_esc(note)}</p>'
                f'{self._chart("chart-montecarlo", {"data": data, "layout": layout}, 360)}</section>')

    def parameter_heatmap_section(self) -> str:
        """For the run of a parameter search (``backforge optimize``'s ``best-N``: the folder's parent holds
        trials.parquet and summary.json), the objective over any two of the first
        :data:`HEATMAP_MAX_PARAMETERS` parameters (best over the others), switched with a dropdown; else ''."""
        from backforge.judge.runs import _optimization_of
        from backforge.research.optimize import heatmap_grid

        search = _optimization_of(self.run_folder) if self.run_folder is not None else None
        table = search["table"] if search else None
        if table is None:
            return ""
        summary = search["summary"]
        names = [c.removeprefix("param.") for c in table.columns if c.startswith("param.")][:HEATMAP_MAX_PARAMETERS]
        metrics = summary.get("metric") or ["sharpe"]
        metric = metrics[0] if isinstance(metrics, list) else str(metrics)
        if len(names) < 2 or metric not in table.columns:
            return ""
        chosen = (self.config.get("data_source") or {}).get("parameters") or {}
        pairs, traces_x, traces_y, grids, marks = [], [], [], [], []
        for i, x in enumerate(names):
            for y in names[i + 1:]:
                xs, ys, grid = heatmap_grid(table, x, y, metric)
                pairs.append((x, y))
                labels_x, labels_y = [str(v) for v in xs], [str(v) for v in ys]
                traces_x.append(labels_x)
                traces_y.append(labels_y)
                grids.append([_finite_list(row) for row in grid])
                mark = (str(chosen[x]), str(chosen[y])) if x in chosen and y in chosen else None
                marks.append(([mark[0]], [mark[1]]) if mark and mark[0] in labels_x and mark[1] in labels_y else ([], []))

        def axes(k: int) -> dict[str, Any]:
            return {"xaxis.title.text": pairs[k][0], "yaxis.title.text": pairs[k][1]}

        data = [{"type": "heatmap", "x": traces_x[0], "y": traces_y[0], "z": grids[0], "colorscale": "RdYlGn",
                 "reversescale": metric in _minimized(), "colorbar": {"title": {"text": metric}},
                 "hovertemplate": "%{x}, %{y}: %{z:.4g}<extra></extra>", "name": metric},
                {"type": "scatter", "mode": "markers", "x": marks[0][0], "y": marks[0][1], "name": "this run",
                 "marker": {"symbol": "star", "size": 16, "color": _COLORS["ink"], "line": {"color": "#ffffff", "width": 1}},
                 "hovertemplate": "this run<extra></extra>"}]
        buttons = [{"label": f"{x} × {y}", "method": "update",
                    "args": [{"x": [traces_x[k], marks[k][0]], "y": [traces_y[k], marks[k][1]], "z": [grids[k], None]},
                             axes(k)]} for k, (x, y) in enumerate(pairs)]
        layout = _layout(420, xaxis={"title": {"text": pairs[0][0]}, "type": "category"},
                         yaxis={"title": {"text": pairs[0][1]}, "type": "category"}, hovermode="closest",
                         showlegend=False, margin={"t": 56},
                         updatemenus=[{"type": "dropdown", "buttons": buttons, "x": 0, "y": 1.02, "xanchor": "left",
                                       "yanchor": "bottom", "showactive": True, "active": 0}] if len(pairs) > 1 else [])
        total = len([c for c in table.columns if c.startswith("param.")])
        more = (f" The search has {total} parameters; the first {HEATMAP_MAX_PARAMETERS} are offered." if total > len(names) else "")
        note = (f"{metric} of the {search['source']}: each cell is the best trial with those two values (over every "
                f"value of the other parameters); blank cells never ran. ★ is this run. Pick the pair in the menu.{more}")
        return (f'<section class="card" id="parameters"><h2>Parameter heatmap</h2><p class="note">{_esc(note)}</p>'
                f'{self._chart("chart-parameters", {"data": data, "layout": layout}, 420)}</section>')

    def assets_section(self) -> str:
        assets = list(self.run.assets)
        trades = self.run.trades
        parts = []
        shown = assets[: self.max_assets]
        capped_any = False
        stops = self._stop_orders()
        for j, name in enumerate(shown):
            chart, capped = self._price_chart(j, name, trades, stops)
            capped_any = capped_any or capped
            parts.append(f"<h3>{_esc(name)}</h3>{chart}")
        notes = ["Entries ▲ (long) / ▼ (short), exits ● (signal), ✕ (stop-loss, trailing stop, liquidation), "
                 "★ (take-profit); dashed lines are stop and take-profit levels while the order was working."]
        if len(assets) > len(shown):
            notes.append(f"Showing the first {len(shown)} of {len(assets)} assets; every trade is in the trades table.")
        if capped_any:
            notes.append(f"Where an asset has more than {self.max_markers:,} closed trades, the markers show the "
                         f"{self.max_markers:,} with the largest absolute P&L.")
        breakdown = self._asset_breakdown(trades)
        return (f'<section class="card" id="assets"><h2>Assets: prices, entries, exits and stops</h2>'
                f'<p class="note">{_esc(" ".join(notes))}</p>{breakdown}{"".join(parts)}</section>')

    def _asset_breakdown(self, trades: pl.DataFrame) -> str:
        closed = trades.filter(~pl.col("is_open"))
        if closed.height == 0:
            return '<p class="note">No closed trades.</p>'
        per = (closed.group_by("asset", maintain_order=True)
               .agg(pl.len().alias("trades"), pl.col("pnl").sum().alias("pnl"), (pl.col("pnl") > 0).mean().alias("win"),
                    pl.col("return").mean().alias("avg"), pl.col("fees").sum().alias("fees"))
               .sort("pnl", descending=True))
        rows = [[r["asset"], r["trades"], round(r["pnl"], 2), round(r["win"], 6), round(r["avg"], 6), round(r["fees"], 2)]
                for r in per.iter_rows(named=True)]
        columns = [("asset", "str"), ("closed trades", "int"), ("P&L", "money", 1), ("win rate", "pct"),
                   ("avg return", "pct", 1), ("fees", "money")]
        return self._table("table-assets", columns, rows, page=10, sort=(2, -1))

    def _stop_orders(self) -> pl.DataFrame:
        stops, log = self.run._protective_orders()
        if stops.height == 0:
            return stops.select("order_id", "asset", "role", "status", "created").with_columns(
                pl.lit(None, dtype=pl.Datetime("ns", "UTC")).alias("end"), pl.lit(None, dtype=pl.Float64).alias("level"))
        last = log.group_by("order_id").agg(pl.col("timestamp").max().alias("last_event"))
        end_default = pl.lit(int(self.ts[-1])).cast(pl.Datetime("ns", "UTC"))
        return (stops.join(last, on="order_id", how="left")
                .with_columns(pl.coalesce("filled", "last_event", end_default).alias("end"),
                              pl.when(pl.col("role") == "take_profit")
                              .then(pl.coalesce(pl.col("limit_price").fill_nan(None), "stop_price"))
                              .otherwise(pl.coalesce(pl.col("stop_price").fill_nan(None), "limit_price")).alias("level"))
                .select("order_id", "asset", "role", "status", "created", "end", "level"))

    def _price_chart(self, j: int, name: str, trades: pl.DataFrame, stops: pl.DataFrame) -> tuple[str, bool]:
        prices = self.run.chart_prices(j, self.max_points)
        chart_id = f"chart-price-{j}"
        if prices is None or len(prices[0]) == 0:
            spec = {"data": [], "layout": _message_layout(200, "prices were not saved with this run")}
            return self._chart(chart_id, spec, 200), False
        ts, close = prices
        if len(ts) < len(self.ts):
            self.downsampled = True
        fmt = ".4~f" if float(np.nanmax(np.abs(close))) < 10 else ",.2f"
        data: list[dict[str, Any]] = [{"type": "scatter", "mode": "lines", "name": "close",
                                       "x": _times(ts, intraday=self.intraday), "y": np.asarray(close, dtype=np.float64),
                                       "line": {"color": "#475569", "width": 1.1}, "hovertemplate": f"%{{y:{fmt}}}"}]
        mine = trades.filter(pl.col("asset") == name)
        closed = mine.filter(~pl.col("is_open"))
        capped = closed.height > self.max_markers
        if capped:
            closed = closed.with_columns(pl.col("pnl").abs().alias("_size")).sort("_size", descending=True) \
                .head(self.max_markers).drop("_size")
        entries = pl.concat([closed, mine.filter(pl.col("is_open"))])
        time_format = "%Y-%m-%d %H:%M:%S" if self.intraday else "%Y-%m-%d"
        for direction, symbol, color in (("long", "triangle-up", _COLORS["pos"]), ("short", "triangle-down", _COLORS["neg"])):
            part = entries.filter(pl.col("direction") == direction)
            if part.height:
                text = [f"{direction} {q:,.6g} @ {p:,.6g}" + (" (open)" if o else "")
                        for q, p, o in zip(part["qty"].to_list(), part["entry_price"].to_list(), part["is_open"].to_list())]
                data.append({"type": "scatter", "mode": "markers", "name": f"{direction} entry",
                             "x": part["entry_time"].dt.strftime(time_format).to_list(),
                             "y": part["entry_price"].to_numpy().astype(np.float64), "text": text,
                             "marker": {"symbol": symbol, "size": 9, "color": color, "line": {"width": 0.5, "color": "#fff"}},
                             "hovertemplate": "%{text}<extra>entry</extra>"})
        styles = {"exit": ("circle-open", _COLORS["ink"]), "stop_loss": ("x", _COLORS["neg"]),
                  "trailing_stop": ("x", _COLORS["warn"]), "take_profit": ("star", _COLORS["pos"]),
                  "liquidation": ("x", "#7c2d12")}
        for reason, part in sorted(closed.group_by("exit_reason"), key=lambda item: str(item[0][0])):
            reason_name = str(reason[0])
            symbol, color = styles.get(reason_name, ("circle-open", _COLORS["ink"]))
            text = [f"exit ({reason_name}) @ {p:,.6g}: P&L {pnl:,.2f} ({r:.2%})"
                    for p, pnl, r in zip(part["exit_price"].to_list(), part["pnl"].to_list(), part["return"].to_list())]
            data.append({"type": "scatter", "mode": "markers", "name": reason_name.replace("_", " "),
                         "x": part["exit_time"].dt.strftime(time_format).to_list(),
                         "y": part["exit_price"].to_numpy().astype(np.float64), "text": text,
                         "marker": {"symbol": symbol, "size": 8, "color": color, "line": {"width": 1.5, "color": color}},
                         "hovertemplate": "%{text}<extra></extra>"})
        level_styles = {"stop_loss": ("stop-loss level", _COLORS["neg"]), "take_profit": ("take-profit level", _COLORS["pos"]),
                        "trailing_stop": ("trailing stop (final level)", _COLORS["warn"])}
        mine_stops = stops.filter((pl.col("asset") == name) & pl.col("level").is_not_null())
        if mine_stops.height > self.max_markers:
            mine_stops = mine_stops.sort(pl.col("status") != "filled", pl.col("created"), descending=[False, True]) \
                .head(self.max_markers)
            capped = True
        for role, (label, color) in level_styles.items():
            part = mine_stops.filter(pl.col("role") == role)
            if part.height == 0:
                continue
            xs: list[str | None] = []
            ys: list[float | None] = []
            for start, end, level in zip(part["created"].dt.strftime(time_format).to_list(),
                                         part["end"].dt.strftime(time_format).to_list(), part["level"].to_list()):
                xs += [start, end, None]
                ys += [_finite(level), _finite(level), None]
            data.append({"type": "scatter", "mode": "lines", "name": label, "x": xs, "y": ys, "connectgaps": False,
                         "line": {"color": color, "width": 1.2, "dash": "dash"}, "hoverinfo": "skip"})
        spec = {"data": data, "layout": _layout(340, yaxis={"tickformat": fmt}, hovermode="closest")}
        return self._chart(chart_id, spec, 340), capped

    def metrics_section(self) -> str:
        m, b = self.metrics, self.bench_metrics or {}
        groups = METRIC_GROUPS
        blocks = []
        for title, rows in groups:
            body = []
            with_bench = any(key in b for key in rows)
            bench_head = '<th class="n">benchmark</th>' if with_bench else ""
            for key in rows:
                label, kind, _ = METRIC_DISPLAY[key]
                if key not in m:
                    continue
                bench_cell = ""
                if with_bench:
                    bench_cell = f'<td class="n muted">{_esc(_fmt(b[key], kind)) if key in b else ""}</td>'
                body.append(f"<tr><td>{_esc(label)}</td><td class=\"n\">{_esc(_fmt(m[key], kind))}</td>{bench_cell}</tr>")
            blocks.append(f'<div><h3>{_esc(title)}</h3><table class="data static"><thead><tr><th>metric</th>'
                          f'<th class="n">strategy</th>{bench_head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')
        bench_note = f"benchmark: {self.bench_name}; " if self.bench_name else ""
        note = (f"Annualized with {m['periods_per_year']:,.0f} bars per year; risk-free rate {self.risk_free:.2%}; {bench_note}"
                "returns, VaR and drawdowns are per bar; definitions in docs/metrics.md. ∞: no losses to divide by.")
        return (f'<section class="card" id="metrics"><h2>Metrics</h2><p class="note">{_esc(note)}</p>'
                f'<div class="metrics-grid">{"".join(blocks)}</div></section>')

    def trades_section(self) -> str:
        trades = self.run.trades
        total = trades.height
        note = "Click a column to sort; type to filter. P&L is net of fees; MAE/MFE are fractions of the entry price."
        if total > self.max_rows:
            half = self.max_rows // 2
            ranked = trades.with_row_index("_row").sort("pnl")
            keep = pl.concat([ranked.head(half), ranked.tail(self.max_rows - half)]).unique("_row").sort("_row")
            trades = keep.drop("_row")
            note = (f"Showing {trades.height:,} of {total:,} trades: the {half:,} worst and {self.max_rows - half:,} best "
                    f"by P&L (every trade is in trades.parquet). " + note)
        time_format = "%Y-%m-%d %H:%M" if self.intraday else "%Y-%m-%d"
        columns = [("asset", "str"), ("side", "str"), ("qty", "num"), ("entry time", "str"), ("entry price", "num"),
                   ("exit time", "str"), ("exit price", "num"), ("P&L", "money", 1), ("return", "pct", 1),
                   ("MAE", "pct"), ("MFE", "pct"), ("fees", "money"), ("held", "dur"), ("bars", "int"),
                   ("exit reason", "str"), ("open", "bool")]
        frame = trades.select(
            "asset", "direction", "qty", pl.col("entry_time").dt.strftime(time_format), "entry_price",
            pl.col("exit_time").dt.strftime(time_format), "exit_price", "pnl", "return", "mae", "mfe", "fees",
            (pl.col("duration").dt.total_milliseconds() / 1000.0).alias("held"), "bars", "exit_reason", "is_open")
        frame = frame.with_columns(
            pl.col("qty", "entry_price", "exit_price").round_sig_figs(8), pl.col("pnl", "fees").round(2),
            pl.col("return", "mae", "mfe").round(6))
        rows = [list(row) for row in frame.iter_rows()]
        for row in rows:
            for i, value in enumerate(row):
                if isinstance(value, float) and not math.isfinite(value):
                    row[i] = None
        table = self._table("table-trades", columns, rows, page=50)
        return (f'<section class="card" id="trades"><h2>Trades ({total:,})</h2><p class="note">{_esc(note)}</p>'
                f"{table}</section>")

    def drawdowns_section(self) -> str:
        table = self.drawdowns
        total = table.height
        head = table.head(20)
        time_format = "%Y-%m-%d %H:%M" if self.intraday else "%Y-%m-%d"
        rows = []
        for rank, r in enumerate(head.iter_rows(named=True), start=1):
            rows.append([rank, r["start"].strftime(time_format), r["valley"].strftime(time_format),
                         r["recovery"].strftime(time_format) if r["recovery"] else "not recovered",
                         round(r["depth"], 6), r["duration_bars"], r["duration"].total_seconds()])
        columns = [("#", "int"), ("peak", "str"), ("valley", "str"), ("recovery", "str"), ("depth", "pct", 1),
                   ("bars", "int"), ("duration", "dur")]
        note = (f"The {min(total, 20)} deepest of {total:,} drawdowns. A drawdown starts at the peak and ends at the "
                "first bar back at or above it.")
        body = self._table("table-drawdowns", columns, rows, page=20) if rows else "<p>No drawdown.</p>"
        return f'<section class="card" id="drawdowns"><h2>Drawdown periods</h2><p class="note">{_esc(note)}</p>{body}</section>'

    def config_section(self) -> str:
        document = {key: self.config.get(key) for key in ("mode", "strategy", "sim_config", "signal_config", "data_source")
                    if self.config.get(key) is not None}
        text = json.dumps(document, indent=2, sort_keys=True, default=str)
        meta_keys = ("run_id", "data_fingerprint", "seed", "bar", "backforge_version", "versions")
        meta = {key: self.meta[key] for key in meta_keys if key in self.meta}
        return (f'<section class="card" id="config"><h2>Strategy and run configuration</h2>'
                f'<p class="note">Everything needed to re-run this backtest: the config below, the data '
                f'(fingerprint {_esc(str(self.meta.get("data_fingerprint", "–"))[:16])}…) and the versions.</p>'
                f'<div class="grid2"><div><h3>Config</h3><pre class="config">{_esc(text)}</pre></div>'
                f'<div><h3>Metadata</h3><pre class="config">{_esc(json.dumps(meta, indent=2, sort_keys=True, default=str))}</pre></div>'
                f"</div></section>")

    def audit_section(self) -> str:
        events = self.run.signal_events
        if events is None or events.height == 0:
            text = ("This run was not made from a strategy file: there is no signal-event audit."
                    if events is None else "The strategy never fired an action.")
            return f'<section class="card" id="audit"><h2>Signal-event audit</h2><p class="note">{_esc(text)}</p></section>'
        total = events.height
        note = "Every action a strategy fired, with the condition value and the leaves of its condition tree."
        if total > self.max_rows:
            half = self.max_rows // 2
            events = pl.concat([events.head(half), events.tail(self.max_rows - half)])
            note = f"Showing the first {half:,} and last {self.max_rows - half:,} of {total:,} events. " + note
        time_format = "%Y-%m-%d %H:%M" if self.intraday else "%Y-%m-%d"
        # an event-engine run logs no condition value (NaN here: shown as a blank)
        value = pl.col("value").round_sig_figs(8) if "value" in events.columns else pl.lit(float("nan")).alias("value")
        frame = events.select(pl.col("timestamp").dt.strftime(time_format), "bar", "strategy", "asset", "action",
                              "order_id", value)
        leaves = events["state_leaves"].to_list() if "state_leaves" in events.columns else [None] * events.height
        rows = []
        for row, values in zip(frame.iter_rows(), leaves):
            # list or fixed-size array of leaf values, NaN-padded: show the real ones
            shown = ", ".join(f"{v:.6g}" for v in (values or []) if v is not None and not math.isnan(v))
            rows.append([None if isinstance(v, float) and not math.isfinite(v) else v for v in row] + [shown])
        columns = [("time", "str"), ("bar", "int"), ("strategy", "str"), ("asset", "str"), ("action", "str"),
                   ("order id", "int"), ("value", "num"), ("condition leaves", "str")]
        return (f'<section class="card" id="audit"><h2>Signal-event audit ({total:,})</h2><p class="note">{_esc(note)}</p>'
                f'{self._table("table-signals", columns, rows, page=50)}</section>')

    def footer(self) -> str:
        generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        version = self.meta.get("backforge_version", "")
        sample = (f"Charts show at most {2 * self.max_points + 2:,} points per series: the minimum and maximum of "
                  f"each of {self.max_points:,} buckets, so extremes are exact. " if self.downsampled else "")
        return (f'<footer><div class="wrap">{_esc(sample)}Generated by backforge {_esc(version)} on '
                f'<span class="generated">{_esc(generated)}</span>. Self-contained: works offline.</div></footer>')

    # ------------------------------------------------------------------ assembly
    def build(self) -> str:
        from markupsafe import Markup
        from plotly.offline import get_plotlyjs

        parameters = self.parameter_heatmap_section()  # before the nav, which links it when there is one
        body = "".join([
            self.header(), self.nav(), '<main class="wrap">', self.kpis(), self.performance(), self.returns_section(),
            self.risk_section(), self.exposure_section(), self.monte_carlo_section(), parameters,
            self.assets_section(), self.metrics_section(),
            self.trades_section(), self.drawdowns_section(), self.config_section(), self.audit_section(), "</main>",
        ])
        data_scripts = [("bf-charts", _script_json(self.charts))] + [(key, _script_json(spec))
                                                                       for key, spec in self.tables.items()]
        # templates/report.html is the page; every part is escaped where it is built (_esc, as in the sections),
        # the JSON is made safe for <script> (_script_json), the CSS and scripts are the bundled files
        return _template("report.html").render(
            title=Markup(_esc(self.title)), css=Markup(_asset("report.css")),
            error_hook=Markup(_asset("report_errors.js")), plotly_js=Markup(get_plotlyjs()), chart_count=len(self.charts), body=Markup(body),
            footer=Markup(self.footer()), data_scripts=[(key, Markup(text)) for key, text in data_scripts],
            render_js=Markup(_asset("report_render.js")))


@functools.lru_cache(maxsize=None)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("backforge.results", "templates"), autoescape=True,
                              keep_trailing_newline=False)


def _template(name: str) -> Any:
    """A Jinja2 template of ``backforge/results/templates`` (autoescaped)."""
    return _environment().get_template(name)


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> str:
    """The text of a file of ``backforge/results/templates`` (the report's CSS and scripts)."""
    from importlib.resources import files

    return files("backforge.results").joinpath("templates", name).read_text(encoding="utf-8")

def report_html(
    run: Any,
    *,
    benchmark: Any = "equal_weight",
    risk_free: float = 0.0,
    calendar: str | float = "auto",
    title: str | None = None,
    max_points: int = DEFAULT_POINTS,
    max_assets: int = 8,
    max_rows: int = 5_000,
    max_markers: int = 250,
    run_folder: str | Path | None = None,
) -> str:
    """The HTML tear sheet of a run (a :class:`~backforge.results.result.Result` or a saved run).

    Parameters
    ----------
    run
        A ``Result`` or a ``SavedRun`` (from :func:`backforge.load_result`).
    benchmark
        ``"equal_weight"`` (buy-and-hold of the run's assets), ``None``, or a series of prices; see
        :meth:`~backforge.results.result.RunAnalysis.benchmark_equity`.
    risk_free
        Annual risk-free rate for Sharpe, Sortino, Omega, alpha and the rolling Sharpe.
    calendar
        Calendar for annualization (``"auto"``, ``"equities"``, ``"crypto"``, ``"fx"`` or days per year).
    title
        Page title (default: the strategy's name, the run folder's name, or "Backtest report").
    max_points
        Buckets of the min/max downsampling of every time series (at most ``2 * max_points + 2`` points).
    max_assets
        Per-asset price charts for the first ``max_assets`` assets.
    max_rows
        Rows of the trades and signal tables (beyond it: the worst and best half by P&L; first and last
        signal events).
    max_markers
        Trades marked per asset chart (the largest absolute P&L beyond it).
    run_folder
        The folder the run is saved in (default: a saved run's own folder). When it is a parameter
        search's ``best-N`` folder, the report gets a parameter heatmap section.

    Returns
    -------
    str
        A complete HTML document.

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> html = report_html(bf.from_signals(data, data.close > data.open), title="My test")
    >>> "<title>My test · backforge report</title>" in html
    True
    """
    report = _Report(run, benchmark=benchmark, risk_free=risk_free, calendar=calendar, title=title,
                     max_points=max_points, max_assets=max_assets, max_rows=max_rows, max_markers=max_markers,
                     run_folder=run_folder)
    return report.build()


def _minimized() -> frozenset:
    from backforge.research.optimize import MINIMIZE

    return frozenset(MINIMIZE)


_FIGURES = {"equity": "chart-equity", "drawdown": "chart-underwater"}


def report_figure(run: Any, chart: str = "equity", *, benchmark: Any = "equal_weight", risk_free: float = 0.0,
                  calendar: str | float = "auto", max_points: int = DEFAULT_POINTS):
    """One chart of the tear sheet as a ``plotly.graph_objects.Figure`` (the same data and layout as the
    report's; ``chart``: ``"equity"`` or ``"drawdown"``).

    Examples
    --------
    >>> import backforge as bf
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> report_figure(bf.from_signals(data, data.close > data.open), "drawdown").data[0].name
    'Drawdown'
    """
    import plotly.graph_objects as go

    if chart not in _FIGURES:
        raise ConfigError(f"unknown chart {chart!r}; choose from {', '.join(_FIGURES)}", field="chart")
    report = _Report(run, benchmark=benchmark, risk_free=risk_free, calendar=calendar, title=None,
                     max_points=max_points, max_assets=0, max_rows=2, max_markers=0)
    report.performance()
    spec = report.charts[_FIGURES[chart]]
    return go.Figure(data=spec["data"], layout=spec["layout"])


def write_report(run: Any, path: str | Path, **options: Any) -> Path:
    """Write :func:`report_html` of ``run`` to ``path`` (UTF-8; parent folders created) and return the path.

    Examples
    --------
    >>> import backforge as bf, tempfile, pathlib
    >>> data = bf.synth(n_assets=1, years=1, seed=3)
    >>> out = write_report(bf.from_signals(data, data.close > data.open), pathlib.Path(tempfile.mkdtemp()) / "a" / "r.html")
    >>> out.name, out.exists()
    ('r.html', True)
    """
    target = Path(path)
    text = report_html(run, **options)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target


# ============================================================================================ assets

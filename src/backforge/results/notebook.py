"""Rich display in notebooks: ``_repr_html_`` of results, market data and searches.

A notebook shows the HTML of the last value of a cell. Here that HTML is small and static — headline
figures in a table and the equity curve as an inline SVG sparkline (min/max-downsampled, so a
million-bar run draws as fast as a daily one) — with no JavaScript, so it renders in Jupyter, VS Code,
GitHub's notebook viewer and exported HTML alike. The interactive chart is :meth:`Result.plot`.

Examples
--------
>>> import numpy as np
>>> svg = sparkline_svg(np.array([1.0, 2.0, 1.5, 3.0]))
>>> svg.startswith("<svg") and "polyline" in svg
True
"""

from __future__ import annotations

import html
from typing import Any, Iterable

import numpy as np

__all__ = ["sparkline_svg", "table_html", "run_html", "market_html", "optimization_html"]

_STYLE = "font-family:system-ui,sans-serif;font-size:12px;border-collapse:collapse"
_CELL = "padding:2px 10px;border-bottom:1px solid #e5e7eb;text-align:right"


def sparkline_svg(values: np.ndarray, *, width: int = 320, height: int = 64, color: str = "#2563eb") -> str:
    """An inline SVG line of ``values`` (NaN skipped), downsampled to about ``width`` points.

    >>> sparkline_svg(np.array([np.nan]))
    ''
    """
    from backforge.results.report import minmax_indices

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return ""
    idx = minmax_indices(v, max(width // 2, 2))
    y = v[idx]
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo or 1.0
    xs = np.linspace(0, width, len(idx))
    ys = height - 2 - (y - lo) / span * (height - 4)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys))
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/></svg>')


def table_html(rows: Iterable[tuple[str, Any]], *, title: str | None = None) -> str:
    """Two-column table of (label, value) rows; floats get 4 significant digits.

    >>> "<td" in table_html([("sharpe", 1.23456)])
    True
    """
    def show(value: Any) -> str:
        if isinstance(value, float):
            return "–" if value != value else f"{value:,.4g}"
        return html.escape(str(value))

    head = f"<caption style='text-align:left;font-weight:600'>{html.escape(title)}</caption>" if title else ""
    body = "".join(f"<tr><td style='{_CELL};text-align:left'>{html.escape(str(k))}</td><td style='{_CELL}'>{show(v)}</td></tr>"
                   for k, v in rows)
    return f"<table style='{_STYLE}'>{head}{body}</table>"


def run_html(run: Any) -> str:
    """Headline figures and the equity sparkline of a :class:`~backforge.results.result.RunAnalysis`."""
    s = run.summary()
    rows = [("bars × assets", f"{s.get('bars')} × {s.get('assets')}"),
            ("total return", f"{s['total_return']:.2%}"), ("CAGR", f"{s['cagr']:.2%}"),
            ("Sharpe", float(s["sharpe"])), ("max drawdown", f"{s['max_drawdown']:.2%}"),
            ("trades", s.get("trades")), ("win rate", f"{s['win_rate']:.1%}"),
            ("fees", float(s.get("fees") or 0.0))]
    curve = np.asarray(run.equity_values, dtype=np.float64)
    return (f"<div style='display:flex;gap:16px;align-items:center'>{table_html(rows, title=type(run).__name__)}"
            f"<div>{sparkline_svg(curve)}<div style='{_STYLE};color:#6b7280'>equity</div></div></div>")


def market_html(data: Any) -> str:
    """Shape, assets, period and a close-price sparkline per asset (first 8) of a ``MarketData``."""
    from backforge._time import format_ns

    period = (f"{format_ns(int(data.timestamps[0]), 'minute', offset=False)} → "
              f"{format_ns(int(data.timestamps[-1]), 'minute', offset=False)}") if data.n_bars else "empty"
    rows = [("bars", data.n_bars), ("assets", data.n_assets), ("period (UTC)", period),
            ("bid/ask", "yes" if data.has_quotes else "no"), ("memory", f"{data.nbytes / 1e6:,.1f} MB")]
    lines = "".join(f"<tr><td style='{_CELL};text-align:left'>{html.escape(a)}</td><td>"
                    f"{sparkline_svg(data.close[:, j], width=200, height=28)}</td></tr>"
                    for j, a in enumerate(data.assets[:8]))
    return (f"<div style='display:flex;gap:16px'>{table_html(rows, title='MarketData')}"
            f"<table style='{_STYLE}'>{lines}</table></div>")


def optimization_html(result: Any, *, top: int = 5) -> str:
    """Method, trial count, best parameters and the top trials of an ``OptimizationResult``."""
    table = result.table
    params = [c for c in table.columns if c.startswith("param.")]
    shown = params + [m for m in dict.fromkeys([*result.metric, "total_return", "max_drawdown", "trades"])
                      if m in table.columns]
    head = "".join(f"<th style='{_CELL}'>{html.escape(c.removeprefix('param.'))}</th>" for c in shown)
    body = ""
    for row in table.head(top).iter_rows(named=True):
        cells = "".join(f"<td style='{_CELL}'>{row[c]:,.4g}</td>" if isinstance(row[c], float)
                        else f"<td style='{_CELL}'>{html.escape(str(row[c]))}</td>" for c in shown)
        body += f"<tr>{cells}</tr>"
    summary = table_html([("method", result.method), ("trials", result.n_trials), ("seconds", float(result.seconds)),
                          ("objective", ", ".join(result.metric))], title="OptimizationResult")
    return (f"<div style='display:flex;gap:16px'>{summary}<table style='{_STYLE}'><caption style='text-align:left;"
            f"font-weight:600'>top {top}</caption><tr>{head}</tr>{body}</table></div>")

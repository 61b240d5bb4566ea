"""The Judge section of the tear sheet: findings, recommendations and the before/after table.

:func:`judge_section_data` gives the section as plain data; :func:`judge_section_html` renders it as one
``<section class="card" id="judge">`` using the tear sheet's CSS classes (``card``, ``note``,
``data static``, ``pos``/``neg``), so the report module can insert it as it is.
:func:`write_judge_html` writes it as a standalone page.

Examples
--------
>>> from backforge.judge.core import Judgement
>>> from backforge.judge.evidence import EvidencePack
>>> html = judge_section_html(Judgement("run", EvidencePack({}, "run"), []))
>>> html.startswith('<section class="card" id="judge">'), "No rule fired" in html
(True, True)
"""

from __future__ import annotations

import html as html_lib
from pathlib import Path
from typing import Any

__all__ = ["judge_section_data", "judge_section_html", "write_judge_html"]

_BADGE = {"critical": "#dc2626", "warning": "#d97706", "info": "#2563eb"}


def _esc(value: Any) -> str:
    return html_lib.escape("" if value is None else str(value))


def _num(value: Any, kind: str = "float") -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if kind == "pct":
        return f"{value:.1%}"
    if kind == "int":
        return f"{int(value):,}"
    return f"{value:.2f}"


def _sign(value: Any) -> str:
    if isinstance(value, (int, float)) and value > 0:
        return ' class="n pos"'
    if isinstance(value, (int, float)) and value < 0:
        return ' class="n neg"'
    return ' class="n"'


def judge_section_data(judgement: Any) -> dict[str, Any]:
    """The Judge section as data: headline, findings, LLM review, recommendations, before/after rows.

    Parameters
    ----------
    judgement
        A :class:`~backforge.judge.core.Judgement`, or the dict of a saved ``judge.json``
        (:meth:`~backforge.judge.core.Judgement.to_dict`).

    Returns
    -------
    dict

    Examples
    --------
    >>> from backforge.judge.core import Judgement
    >>> from backforge.judge.evidence import EvidencePack
    >>> sorted(judge_section_data(Judgement("run", EvidencePack({}, "run"), [])))
    ['applied', 'findings', 'headline', 'llm', 'recommendations', 'split']
    """
    document = judgement if isinstance(judgement, dict) else judgement.to_dict()
    llm = document.get("llm")
    return {
        "headline": document["headline"],
        "findings": [{k: f[k] for k in ("id", "severity", "title", "message", "fix", "numbers")}
                     for f in document["findings"]],
        "llm": None if llm is None else {"model": llm["model"], "verdict": llm["review"]["verdict"],
                                         "summary": llm["review"]["summary"], "concerns": llm["review"]["concerns"],
                                         "totals": llm["totals"]},
        "recommendations": [{"source": r["source"], "description": r["description"], "rationale": r.get("rationale"),
                             "expected_effect": r.get("expected_effect")} for r in document["recommendations"]],
        "applied": None if document["applied"] is None else {
            "rows": document["applied"]["rows"], "tests": document["applied"]["tests"],
            "total_trials": document["applied"]["total_trials"]},
        "split": document.get("split"),
    }


def judge_section_html(judgement: Any) -> str:
    """The Judge section of the tear sheet as HTML (one ``<section>``, the report's CSS classes).

    Parameters
    ----------
    judgement
        A :class:`~backforge.judge.core.Judgement`, or the dict of a saved ``judge.json``.

    Returns
    -------
    str

    Examples
    --------
    >>> import json
    >>> saved = {"headline": "r: 0 critical, 0 warnings, 0 notes", "findings": [], "llm": None,
    ...          "recommendations": [], "applied": None, "split": None}
    >>> "No rule fired" in judge_section_html(json.loads(json.dumps(saved)))
    True
    """
    data = judge_section_data(judgement)
    parts = [f'<section class="card" id="judge"><h2>Judge</h2><p class="note">{_esc(data["headline"])}. '
             "Rules are deterministic checks over numbers the system computed; every recommendation can be applied "
             "and re-tested (<code>backforge judge RUN --apply</code>).</p>"]
    if data["findings"]:
        rows = []
        for f in data["findings"]:
            badge = (f'<span style="display:inline-block;padding:1px 7px;border-radius:999px;color:#fff;font-size:11px;'
                     f'background:{_BADGE.get(f["severity"], "#6b7280")}">{_esc(f["severity"])}</span>')
            rows.append(f"<tr><td>{badge}</td><td><code>{_esc(f['id'])}</code></td>"
                        f"<td style=\"white-space:normal\">{_esc(f['message'])}</td>"
                        f"<td style=\"white-space:normal\">{_esc(f['fix'])}</td></tr>")
        parts.append('<h3>Findings</h3><div class="tablebox"><table class="data static"><thead><tr><th>severity</th>'
                     '<th>rule</th><th>what the numbers say</th><th>suggested fix</th></tr></thead><tbody>'
                     + "".join(rows) + "</tbody></table></div>")
    else:
        parts.append('<p class="note">No rule fired.</p>')
    llm = data["llm"]
    if llm is not None:
        totals = llm["totals"]
        cost = "unknown cost" if totals.get("cost_usd") is None else f"${totals['cost_usd']:.4f}"
        concerns = "".join(f"<li>{_esc(c)}</li>" for c in llm["concerns"])
        parts.append(f"<h3>LLM review: {_esc(llm['verdict'])}</h3><p>{_esc(llm['summary'])}</p>"
                     + (f"<ul>{concerns}</ul>" if concerns else "")
                     + f'<p class="note">{_esc(llm["model"])}, {totals["calls"]} call(s), {totals["cached"]} cached, '
                       f'{totals["input_tokens"]:,} input and {totals["output_tokens"]:,} output tokens, {cost}.</p>')
    if data["recommendations"]:
        items = "".join(f"<li><b>{_esc(r['description'])}</b> <span class=\"muted\">({_esc(r['source'])})</span><br>"
                        f"{_esc(r['rationale'])} — <i>expected:</i> {_esc(r['expected_effect'])}</li>"
                        for r in data["recommendations"])
        parts.append(f"<h3>Recommendations</h3><ol>{items}</ol>")
    applied = data["applied"]
    if applied is not None:
        split = data["split"] or {}
        head = ("<tr><th>variant</th><th>source</th><th class=\"n\">IS Sharpe</th><th class=\"n\">IS return</th>"
                "<th class=\"n\">OOS Sharpe</th><th class=\"n\">OOS return</th><th class=\"n\">OOS max DD</th>"
                "<th class=\"n\">OOS trades</th><th class=\"n\">DSR</th><th>verdict</th></tr>")
        rows = []
        for r in applied["rows"]:
            if r.get("status") != "ok":
                rows.append(f"<tr><td>{_esc(r['variant'])}</td><td>{_esc(r['source'])}</td>"
                            f"<td colspan=\"8\" class=\"muted\">{_esc(r.get('status'))}: {_esc(r.get('error'))}</td></tr>")
                continue
            rows.append(f"<tr><td>{_esc(r['variant'])}</td><td>{_esc(r['source'])}</td>"
                        f"<td{_sign(r['is_sharpe'])}>{_num(r['is_sharpe'])}</td>"
                        f"<td{_sign(r['is_total_return'])}>{_num(r['is_total_return'], 'pct')}</td>"
                        f"<td{_sign(r['oos_sharpe'])}>{_num(r['oos_sharpe'])}</td>"
                        f"<td{_sign(r['oos_total_return'])}>{_num(r['oos_total_return'], 'pct')}</td>"
                        f"<td class=\"n\">{_num(r['oos_max_drawdown'], 'pct')}</td>"
                        f"<td class=\"n\">{_num(r['oos_trades'], 'int')}</td>"
                        f"<td class=\"n\">{_num(r.get('dsr'))}</td><td>{_esc(r.get('verdict'))}</td></tr>")
        oos = split.get("out_of_sample") or ["?", "?"]
        parts.append(f"<h3>Before and after</h3><p class=\"note\">In sample: what the judge saw; out of sample: "
                     f"{_esc(oos[0])} to {_esc(oos[1])}, held out. DSR counts {applied['total_trials']} trials (the "
                     "run's own plus every variant).</p><div class=\"tablebox\"><table class=\"data static\"><thead>"
                     + head + "</thead><tbody>" + "".join(rows) + "</tbody></table></div>")
        if applied["tests"]:
            items = "".join(f"<li>{_esc(t.get('recommendation'))} ({_esc(t.get('source'))}): "
                            f"{_esc(t.get('summary') or t.get('error') or t.get('status'))}</li>"
                            for t in applied["tests"])
            parts.append(f"<h3>Tests run</h3><ul>{items}</ul>")
    parts.append("</section>")
    return "".join(parts)


_PAGE_CSS = """body{margin:0;background:#f3f5f8;color:#1f2937;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,Arial,sans-serif}main{max-width:1320px;margin:0 auto;padding:12px 24px}section.card{background:#fff;border:1px
solid #e5e7eb;border-radius:12px;padding:18px 20px;margin:16px 0}h2{margin:0 0 4px;font-size:17px}h3{margin:14px 0 4px;
font-size:13.5px}p.note{color:#6b7280;font-size:12.5px}table.data{width:100%;border-collapse:collapse;font-size:12.5px}
table.data th{background:#f8fafc;text-align:left;padding:7px 8px;border-bottom:1px solid #e5e7eb}table.data td{padding:5px
8px;border-bottom:1px solid #f1f5f9;vertical-align:top}.n{text-align:right}.pos{color:#059669}.neg{color:#dc2626}
.muted{color:#6b7280}"""


def write_judge_html(judgement: Any, path: str | Path) -> Path:
    """Write the Judge section as a standalone HTML page (atomically) and return its path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from backforge.judge.core import Judgement
    >>> from backforge.judge.evidence import EvidencePack
    >>> page = write_judge_html(Judgement("r", EvidencePack({}, "r"), []), pathlib.Path(tempfile.mkdtemp()) / "j.html")
    >>> page.read_text().startswith("<!DOCTYPE html>")
    True
    """
    import os

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    name = judgement.get("run", "run") if isinstance(judgement, dict) else judgement.run_name
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Judge: {_esc(name)}</title>"
            f"<style>{_PAGE_CSS}</style></head><body><main>{judge_section_html(judgement)}</main></body></html>")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page)
    os.replace(tmp, target)
    return target

"""Results: the `Result` of a backtest, saved runs, performance metrics and the HTML tear sheet.

>>> from backforge.results import Result, SavedRun, load_result, report_html
"""

from __future__ import annotations

from backforge._lazy import lazy_exports

__all__ = [
    "EQUAL_WEIGHT",
    "Result",
    "RunAnalysis",
    "SavedRun",
    "compare_runs",
    "equal_weight_benchmark",
    "load_result",
    "minmax_indices",
    "report_html",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "minmax_indices": "backforge.results.report", "report_html": "backforge.results.report",
    "write_report": "backforge.results.report",
    "EQUAL_WEIGHT": "backforge.results.result", "Result": "backforge.results.result",
    "RunAnalysis": "backforge.results.result", "SavedRun": "backforge.results.result",
    "compare_runs": "backforge.results.result", "equal_weight_benchmark": "backforge.results.result",
    "load_result": "backforge.results.result",
}, eager=globals())

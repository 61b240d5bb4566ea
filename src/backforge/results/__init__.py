"""Results: the `Result` of a backtest, saved runs, performance metrics and the HTML tear sheet.

>>> from backforge.results import Result, SavedRun, load_result, report_html
"""

from __future__ import annotations

from backforge.results.report import minmax_indices, report_html, write_report
from backforge.results.result import (
    EQUAL_WEIGHT,
    Result,
    RunAnalysis,
    SavedRun,
    compare_runs,
    equal_weight_benchmark,
    load_result,
)

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

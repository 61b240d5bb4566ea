"""The strategy language: schema (what a strategy is), compiler (config → arrays and programs), runtime
(compiled evaluation in the simulation loop), indicators (compiled kernels), and strategies written as code
(:class:`Strategy`, :func:`backtest`)."""

from __future__ import annotations

from backforge._lazy import lazy_exports

__all__ = ["Portfolio", "Strategy", "backtest", "compile_portfolio", "crossover", "dump_portfolio", "load_data", "load_portfolio", "portfolio_json_schema",
           "run_portfolio"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Strategy": "backforge.strategy.code", "backtest": "backforge.strategy.code",
    "crossover": "backforge.strategy.code",
    "compile_portfolio": "backforge.strategy.compiler", "load_data": "backforge.strategy.compiler",
    "run_portfolio": "backforge.strategy.compiler",
    "Portfolio": "backforge.strategy.schema", "dump_portfolio": "backforge.strategy.schema",
    "load_portfolio": "backforge.strategy.schema", "portfolio_json_schema": "backforge.strategy.schema",
}, eager=globals())

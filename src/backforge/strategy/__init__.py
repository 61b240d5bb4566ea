"""The strategy language: schema (what a strategy is), compiler (config → arrays and programs), runtime
(compiled evaluation in the simulation loop), indicators (compiled kernels)."""

from backforge.strategy.compiler import compile_portfolio, load_data, run_portfolio
from backforge.strategy.schema import Portfolio, dump_portfolio, load_portfolio, portfolio_json_schema

__all__ = ["Portfolio", "compile_portfolio", "dump_portfolio", "load_data", "load_portfolio", "portfolio_json_schema",
           "run_portfolio"]

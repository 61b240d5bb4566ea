"""The strategy language: schema (what a strategy is), compiler (config → arrays and programs), runtime
(compiled evaluation in the simulation loop), indicators (compiled kernels), and strategies written as code
(:class:`Strategy`, :func:`backtest`)."""

from backforge.strategy.code import Strategy, backtest, crossover
from backforge.strategy.compiler import compile_portfolio, load_data, run_portfolio
from backforge.strategy.schema import Portfolio, dump_portfolio, load_portfolio, portfolio_json_schema

__all__ = ["Portfolio", "Strategy", "backtest", "compile_portfolio", "crossover", "dump_portfolio", "load_data", "load_portfolio", "portfolio_json_schema",
           "run_portfolio"]

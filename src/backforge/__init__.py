"""backforge — fast, accurate, event-driven backtesting and strategy evaluation.

The public surface (pinned by ``tests/test_public_api.py``): the core below, plus the strategy runner
(``run_portfolio``, ``load_portfolio``...), ``indicators``, the sweeps, ``optimize``, ``walk_forward``,
``monte_carlo`` and ``judge``, imported on first use.

>>> import backforge as bf
>>> data = bf.synth(n_assets=2, years=1, seed=1)
>>> result = bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.001)
>>> sorted(result.summary())[:3]
['assets', 'bars', 'cagr']
"""

from __future__ import annotations

from backforge.data.market import MarketData, Quotes
from backforge.data.synth import gbm as synth
from backforge.engine.config import SignalConfig, SimConfig
from backforge.engine.risk import RiskConfig
from backforge.engine.simulator import OrderProgram, Simulator, from_signals, simulate
from backforge.errors import BackforgeError, ConfigError, DataError, SimulationError
from backforge.results.result import Result, load_result

__version__ = "0.1.0"

# The headline features beyond the core, loaded on first use (``bf.run_portfolio``, ``bf.indicators``...):
# ``import backforge`` stays cheap for commands that need none of them.
_LAZY = {
    "run_portfolio": ("backforge.strategy.compiler", "run_portfolio"),
    "compile_portfolio": ("backforge.strategy.compiler", "compile_portfolio"),
    "load_data": ("backforge.strategy.compiler", "load_data"),
    "load_portfolio": ("backforge.strategy.schema", "load_portfolio"),
    "indicators": ("backforge.strategy.indicators", None),
    "sweep_signals": ("backforge.research.sweep", "sweep_signals"),
    "sweep_sma_cross": ("backforge.research.sweep", "sweep_sma_cross"),
    "optimize": ("backforge.research.optimize", "optimize"),
    "walk_forward": ("backforge.research.walkforward", "walk_forward"),
    "monte_carlo": ("backforge.research.montecarlo", "monte_carlo"),
    "judge": ("backforge.judge", "judge"),
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module, attribute = _LAZY[name]
        loaded = import_module(module)
        return loaded if attribute is None else getattr(loaded, attribute)
    raise AttributeError(f"module 'backforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BackforgeError",
    "ConfigError",
    "DataError",
    "MarketData",
    "OrderProgram",
    "Quotes",
    "Result",
    "RiskConfig",
    "SignalConfig",
    "SimConfig",
    "SimulationError",
    "Simulator",
    "__version__",
    "compile_portfolio",
    "from_signals",
    "indicators",
    "judge",
    "load_data",
    "load_portfolio",
    "load_result",
    "monte_carlo",
    "optimize",
    "run_portfolio",
    "simulate",
    "sweep_signals",
    "sweep_sma_cross",
    "synth",
    "walk_forward",
]

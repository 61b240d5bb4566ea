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

from backforge._lazy import lazy_exports
from backforge.errors import BackforgeError, ConfigError, DataError, SimulationError

__version__ = "0.1.0"

# Everything else loads on first use (``bf.from_signals``, ``bf.run_portfolio``, ``bf.indicators``...):
# ``import backforge`` — and so every ``backforge`` command — stays cheap: numba, Polars and the judge
# load when a command needs them (``backforge --help`` needs none of them).
__getattr__, __dir__ = lazy_exports(__name__, {
    "MarketData": "backforge.data.market", "Quotes": "backforge.data.market", "synth": "backforge.data.synth:gbm",
    "SignalConfig": "backforge.engine.config", "SimConfig": "backforge.engine.config",
    "RiskConfig": "backforge.engine.risk",
    "OrderProgram": "backforge.engine.simulator", "Simulator": "backforge.engine.simulator",
    "from_signals": "backforge.engine.simulator", "simulate": "backforge.engine.simulator",
    "Result": "backforge.results.result", "load_result": "backforge.results.result",
    "run_portfolio": "backforge.strategy.compiler", "compile_portfolio": "backforge.strategy.compiler",
    "load_data": "backforge.strategy.compiler",
    "load_portfolio": "backforge.strategy.schema",
    "indicators": "backforge.strategy.indicators:",
    "sweep_signals": "backforge.research.sweep", "sweep_sma_cross": "backforge.research.sweep",
    "optimize": "backforge.research.optimize",
    "walk_forward": "backforge.research.walkforward",
    "monte_carlo": "backforge.research.montecarlo",
    "judge": "backforge.judge",
    "Strategy": "backforge.strategy.code", "backtest": "backforge.strategy.code", "crossover": "backforge.strategy.code",
}, eager=globals())

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
    "Strategy",
    "__version__",
    "backtest",
    "compile_portfolio",
    "crossover",
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

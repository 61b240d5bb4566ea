"""backforge — fast, accurate, event-driven backtesting and strategy evaluation.

The public surface (pinned by ``tests/test_public_api.py``):

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
    "from_signals",
    "load_result",
    "simulate",
    "synth",
]

"""The compiled engine: simulation settings, the bar step and its drivers, record dtypes and codes, risk rules.

>>> from backforge.engine import SimConfig, from_signals, order_dt
>>> SimConfig(cash=1_000).cash
1000.0
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SimConfig": "backforge.engine.config", "SignalConfig": "backforge.engine.config",
    "RiskConfig": "backforge.engine.risk",
    "from_signals": "backforge.engine.simulator", "simulate": "backforge.engine.simulator",
    "OrderProgram": "backforge.engine.simulator", "Simulator": "backforge.engine.simulator",
    "order_dt": "backforge.engine.records", "fill_dt": "backforge.engine.records", "trade_dt": "backforge.engine.records",
    "event_dt": "backforge.engine.records", "OrderType": "backforge.engine.records", "OrderStatus": "backforge.engine.records",
    "OrderRole": "backforge.engine.records", "Reason": "backforge.engine.records", "SizeType": "backforge.engine.records",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # lazy: importing backforge.engine (or one of its kernel modules) does not compile or load the rest
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'backforge.engine' has no attribute {name!r}")

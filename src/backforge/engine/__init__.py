"""The compiled engine: simulation settings, the bar step and its drivers, record dtypes and codes, risk rules.

>>> from backforge.engine import SimConfig, from_signals, order_dt
>>> SimConfig(cash=1_000).cash
1000.0
"""

from __future__ import annotations

from backforge._lazy import lazy_exports

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

# lazy: importing backforge.engine (or one of its kernel modules) does not compile or load the rest
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

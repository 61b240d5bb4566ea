"""Paper and live trading on the same compiled step as the backtest: feeds, brokers, the runner."""

from backforge.live.broker import (
    Account,
    BarEvent,
    Broker,
    BrokerError,
    BrokerOrder,
    Feed,
    Fill,
    Instrument,
    OrderRequest,
    Position,
)

__all__ = [
    "Account", "BarEvent", "Broker", "BrokerError", "BrokerOrder", "Feed", "Fill", "Instrument", "OrderRequest",
    "Position",
]

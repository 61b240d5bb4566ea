"""Paper and live trading on the same compiled step as the backtest: feeds, brokers, the runner.

* :class:`StrategyStep` — the compiled strategy runtime advanced one bar at a time;
* :class:`PaperRunner` / :func:`run_paper` — the session loop with its SQLite store, recovery,
  reconciliation and circuit breakers (:class:`LiveConfig`);
* :class:`PaperBroker` (in-process) and :func:`start_server` / :class:`RemoteBroker` (its own process);
* :class:`ReplayFeed`, :class:`BarBuilder`, :class:`TickFeed`;
* the contract every venue adapter implements: :class:`Broker`, :class:`Feed` and their records.
"""

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
from backforge.live.feeds import BarBuilder, ReplayFeed, TickFeed
from backforge.live.paper import PaperBroker, RemoteBroker, start_server
from backforge.live.runner import LiveConfig, PaperRunner
from backforge.live.session import list_sessions, run_paper, send_command, session_status, session_tables
from backforge.live.step import StrategyStep
from backforge.live.store import SessionError, SessionStore

__all__ = [
    "Account", "BarEvent", "Broker", "BrokerError", "BrokerOrder", "Feed", "Fill", "Instrument", "OrderRequest",
    "Position",
    "BarBuilder", "ReplayFeed", "TickFeed", "PaperBroker", "RemoteBroker", "start_server", "LiveConfig",
    "PaperRunner", "StrategyStep", "SessionError", "SessionStore", "run_paper", "session_tables", "list_sessions",
    "session_status", "send_command",
]

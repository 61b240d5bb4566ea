"""Paper and live trading on the same compiled step as the backtest: feeds, brokers, the runner.

* :class:`StrategyStep` — the compiled strategy runtime advanced one bar at a time;
* :class:`PaperRunner` / :func:`run_paper` — the session loop with its SQLite store, recovery,
  reconciliation and circuit breakers (:class:`LiveConfig`);
* :class:`PaperBroker` (in-process) and :func:`start_server` / :class:`RemoteBroker` (its own process);
* :class:`ReplayFeed`, :class:`BarBuilder`, :class:`TickFeed`;
* the contract every venue adapter implements: :class:`Broker`, :class:`Feed` and their records.
"""

from __future__ import annotations

from backforge._lazy import lazy_exports

__all__ = [
   
   
   
   
   
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "Account": "backforge.live.broker", "BarEvent": "backforge.live.broker", "Broker": "backforge.live.broker",
    "BrokerError": "backforge.live.broker", "BrokerOrder": "backforge.live.broker", "Feed": "backforge.live.broker",
    "Fill": "backforge.live.broker", "Instrument": "backforge.live.broker", "OrderRequest": "backforge.live.broker",
    "Position": "backforge.live.broker",
    "BarBuilder": "backforge.live.feeds", "ReplayFeed": "backforge.live.feeds", "TickFeed": "backforge.live.feeds",
    "PaperBroker": "backforge.live.paper", "RemoteBroker": "backforge.live.paper",
    "start_server": "backforge.live.paper",
    "LiveConfig": "backforge.live.runner", "PaperRunner": "backforge.live.runner",
    "list_sessions": "backforge.live.session", "run_paper": "backforge.live.session",
    "send_command": "backforge.live.session", "session_status": "backforge.live.session",
    "session_tables": "backforge.live.session",
    "StrategyStep": "backforge.live.step",
    "SessionError": "backforge.live.store", "SessionStore": "backforge.live.store",
}, eager=globals())

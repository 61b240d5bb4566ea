"""The event-level engine: L2/L1 books, feed and order latency, queue position, partial fills.

* :mod:`~backforge.engine.events.core` — the compiled core (books, queue models, matching, the loop);
* :mod:`~backforge.engine.events.api` — what a ``@njit`` strategy calls (``elapse``, ``wait_next_feed``,
  ``submit_buy_order``, ``cancel``, ``modify``, book and position queries);
* :mod:`~backforge.engine.events.run` — :class:`EventConfig`, :func:`run_events` (→ the bar engine's
  :class:`~backforge.results.result.Result`);
* :mod:`~backforge.engine.events.strategies` — compiled reference strategies (grid market maker, quote
  breakout) used by the examples, the oracle test and the benchmark.

See ``docs/events.md``.
"""

from backforge.engine.events.run import EXCHANGES, QUEUE_MODELS, EventConfig, latency_table, new_sim, run_events

__all__ = ["EventConfig", "run_events", "new_sim", "latency_table", "QUEUE_MODELS", "EXCHANGES"]

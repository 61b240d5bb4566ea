"""The event-level engine: L2/L1 books, feed and order latency, queue position, partial fills.

* :mod:`~backforge.engine.events.core` — the compiled core (books, queue models, matching, the loop);
* :mod:`~backforge.engine.events.api` — what a ``@njit`` strategy calls (``elapse``, ``wait_next_feed``,
  ``submit_buy_order``, ``cancel``, ``modify``, book and position queries);
* :mod:`~backforge.engine.events.run` — :class:`EventConfig`, :func:`run_events` (→ the bar engine's
  :class:`~backforge.results.result.Result`);
* :mod:`~backforge.engine.events.language` — strategy files (``data.events``) on the event engine;
* :mod:`~backforge.engine.events.strategies` — compiled reference strategies (grid market maker, quote
  breakout) used by the examples, the oracle test and the benchmark;
* :mod:`~backforge.engine.events.cli` — ``backforge events import|synth|list|run``.

See ``docs/events.md``.
"""

from __future__ import annotations

from backforge._lazy import lazy_exports

_EXPORTS = {name: "backforge.engine.events.run" for name in
            ("EventConfig", "run_events", "new_sim", "latency_table", "QUEUE_MODELS", "EXCHANGES")}
_EXPORTS["run_event_portfolio"] = "backforge.engine.events.language"
_EXPORTS["api"] = "backforge.engine.events.api:"
__all__ = sorted(_EXPORTS)

# lazy: `backforge events --help` (this package's cli module) loads neither numba nor the engine
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

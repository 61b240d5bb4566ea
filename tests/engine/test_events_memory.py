"""The event engine's memory is bounded by the book window and the configured record capacities, not by
the length of the stream: a stored stream is memory-mapped (its columns are never copied onto the heap),
and four times the events take the same working memory. What grows is the output (the orders, fills and
equity rows the run records)."""

from __future__ import annotations

import dataclasses
import tracemalloc

from backforge.data.events import EventStore, synthetic_l2
from backforge.engine.events import EventConfig, run_events
from backforge.engine.events.strategies import grid_market_maker

GRID = (100_000_000, 2, 1, 10, 0.1, 1.0)  # every 100 ms, 10 levels a side two ticks from the mid


def _output_bytes(result) -> int:
    state = result.state
    return sum(getattr(state, name).nbytes for name in ("orders", "fills", "trades", "events", "equity", "cash_history",
                                                         "gross_exposure", "net_exposure", "positions"))


def test_working_memory_does_not_grow_with_the_stream(tmp_path):
    store = EventStore(tmp_path)
    config = EventConfig(cash=100_000.0, queue_model="power_prob", queue_power=3.0, entry_latency_ns=5_000_000,
                         response_latency_ns=5_000_000, sample_every="1min", order_capacity=50_000)
    for n in (20_000, 200_000, 800_000):
        store.write(dataclasses.replace(synthetic_l2(n_events=n, seed=1), symbol=f"S{n}"))
    run_events(grid_market_maker, store.load("S20000"), config, args=GRID)  # compiled before measuring
    working, data_bytes = [], []
    for n in (200_000, 800_000):
        data = store.load(f"S{n}")
        data_bytes.append(sum(getattr(data, f).nbytes for f in ("exch_ts", "local_ts", "kind", "side", "price", "qty")))
        tracemalloc.start()  # numpy's allocations are traced; memory-mapped pages are not heap
        result = run_events(grid_market_maker, data, config, args=GRID)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result.fills.height > 50
        working.append(peak - _output_bytes(result) - int(result.order_log.estimated_size()))
    assert data_bytes[1] - data_bytes[0] > 25_000_000  # 600,000 more events: 28.8 MB more data...
    assert abs(working[1] - working[0]) < 1_500_000, working  # ...and the same working memory

"""Memory stays flat over a long replay: what the runner, its strategy step and the paper broker hold does not
grow with the number of bars (the per-bar history lives in the session store, on disk). The cheap test counts
the bytes of every array and the length of every container the session holds, exactly; the slow one samples the
process's resident memory over 200,000 bars. ``benchmarks/bench_live.py`` measures 1,000,000 bars."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections import deque

import numpy as np
import pytest

from backforge.data.synth import gbm
from backforge.live import PaperBroker, PaperRunner, ReplayFeed
from backforge.live.runner import LiveConfig
from backforge.strategy.schema import load_portfolio

# indicators on bar and duration windows, a state condition (position), signal events: no orders, so any growth
# is per bar (orders themselves are kept by the engine's order book, by design)
SPEC = {"name": "mem", "universe": ["AAA", "BBB"], "strategies": [
    {"name": "x", "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_above", "rhs": {"sma": {"window": "2h"}}},
     "action": {"kind": "alert"}},
    {"name": "y", "condition": {"all": [
        {"lhs": {"rsi": {"window": 14}}, "op": ">", "rhs": 60},
        {"lhs": "close", "op": ">", "rhs": {"rolling_max": {"window": "1h"}}},
        {"lhs": {"position_qty": {}}, "op": "==", "rhs": 0}]},
     "action": {"kind": "alert"}}]}


def _footprint(root, skip: tuple = ()) -> tuple[int, int]:
    """(bytes of the distinct array buffers, total length of the containers) reachable from ``root`` through
    attributes, dicts, lists, tuples, sets and deques; ``skip``: objects not to enter."""
    seen: set[int] = {id(s) for s in skip}
    buffers: dict[int, int] = {}
    length = 0
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool, type)) or callable(obj) \
                and not hasattr(obj, "__dict__"):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base.base is None or not isinstance(base.base, (bytes, memoryview)):
                buffers[id(base)] = base.nbytes if base.strides and 0 not in base.strides else base.itemsize
            continue
        if isinstance(obj, dict):
            length += len(obj)
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, deque)):
            length += len(obj)
            todo.extend(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("backforge"):
            todo.extend(vars(obj).values())
    return sum(buffers.values()), length


def _session(n_bars: int, folder):
    portfolio = load_portfolio(SPEC)
    data = gbm(2, n_bars / (252 * 390) + 0.01, bar="1min", seed=5, assets=("AAA", "BBB")).rows(0, n_bars + 200)
    feed = ReplayFeed(data, start=200)
    broker = PaperBroker.for_portfolio(portfolio, feed.symbols)
    runner = PaperRunner(portfolio, feed, broker, folder, reference=data,
                         config=LiveConfig(log_bars=False, status_every_s=60.0, snapshot_every=100))
    return runner, feed, broker


@pytest.mark.slow
def test_what_the_session_holds_does_not_grow_with_bars(tmp_path):
    runner, feed, broker = _session(9_000, tmp_path)
    skip = (feed, runner.store, runner.portfolio, runner.step.compiled, runner.step.portfolio)
    try:
        runner.run(max_bars=3_000)  # rings and caches at their size
        before = _footprint(runner, skip)
        runner.run()
        after = _footprint(runner, skip)
        assert runner.bars_processed == 9_000 and len(runner.store.signals()) > 10
    finally:
        runner.close()
    assert after == before, f"bytes, container items after 3,000 bars {before}, after 9,000 {after}"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def _measure_rss(folder) -> tuple[float, float, int]:
    """(resident MB after 50,000 bars, after 200,000, bars processed) of a 200,000-bar replay session."""
    runner, feed, broker = _session(200_000, folder)
    try:
        runner.run(max_bars=50_000)
        gc.collect()
        before = _rss_mb()
        runner.run()
        gc.collect()
        return before, _rss_mb(), runner.bars_processed
    finally:
        runner.close()


@pytest.mark.slow  # 108 s measured on the shared 2-core machine (load ~2)
def test_resident_memory_is_flat_over_200k_bars(tmp_path):
    # in a fresh interpreter: a test process that has run the rest of the suite (2.5 GB resident) moves by a few
    # MB with what earlier tests left behind — their threads, the allocator's fragmentation — not with this session
    done = subprocess.run([sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    before, after, bars = json.loads(done.stdout.strip().splitlines()[-1])
    assert bars == 200_000
    assert after - before < 4.0, f"resident memory {before:.1f} MB after 50,000 bars, {after:.1f} MB after 200,000"


if __name__ == "__main__":  # the child of test_resident_memory_is_flat_over_200k_bars
    print(json.dumps(_measure_rss(sys.argv[1])))

"""Crash test: the runner is SIGKILLed 30 times during a replay — at chosen points (between "order written" and
"broker acknowledged", in the middle of storing fills, ...) and at random moments — and restarted each time,
with the paper broker in its own process. No client order id reaches the broker twice, and the final positions,
cash and fills equal an uninterrupted run's."""

from __future__ import annotations

import multiprocessing as mp
import random
import signal
import time

import crash_child
import pytest

from backforge.engine import kernels as k
from backforge.live import PaperBroker
from backforge.live.paper import start_server
from backforge.strategy.compiler import sim_config_of
from backforge.strategy.schema import load_portfolio

POINTS = ["after_intent", "before_submit", "after_submit", "mid_fills", "after_step"]


@pytest.mark.slow
def test_killed_30_times_no_duplicate_and_same_outcome(tmp_path, monkeypatch):
    market = crash_child.market()
    portfolio = load_portfolio(crash_child.SPEC)
    reference = PaperBroker(market.assets, config=sim_config_of(portfolio))
    crash_child.run_session(str(tmp_path / "ref"), reference)
    n_fills = int(reference.state.counters[k.C_FILLS])
    assert n_fills >= 20

    ctx = mp.get_context("forkserver")
    monkeypatch.setenv("BACKFORGE_CRASH_WARM", "1")  # the fork server runs one session to load compiled code
    ctx.set_forkserver_preload(["crash_child"])
    proc, client = start_server(market.assets, tmp_path / "broker", config=sim_config_of(portfolio))
    rng = random.Random(12)
    plan = [f"{POINTS[i % len(POINTS)]}:{1 + rng.randrange(4)}" for i in range(20)] + ["random"] * 10
    rng.shuffle(plan)
    folder = str(tmp_path / "session")
    kills = 0
    started = time.monotonic()
    try:
        for crash_at in plan + [""]:
            child = ctx.Process(target=crash_child.child, args=(folder, client.address, client._authkey,
                                                     "" if crash_at == "random" else crash_at))
            child.start()
            if crash_at == "random":
                time.sleep(rng.uniform(0.05, 0.6))
                if child.is_alive():
                    child.kill()
            child.join(60)
            assert child.exitcode is not None, "runner hung"
            if child.exitcode == -signal.SIGKILL:
                kills += 1
            else:
                assert child.exitcode == 0, f"runner failed ({crash_at}): exit code {child.exitcode}"
        assert time.monotonic() - started < 300  # bounded; ~2-4 min on the loaded 2-core machine
        counts = client.submit_counts()
        assert counts and max(counts.values()) == 1, "a client order id reached the broker twice"
        assert set(counts) == set(reference.submit_counts)
        assert client.account().cash == reference.account().cash
        assert client.positions() == reference.positions()
        fills = client.fills()
        assert [(f.fill_id, f.client_order_id, f.qty, f.price, f.fee, f.ts_ns) for f in fills] == \
            [(f.fill_id, f.client_order_id, f.qty, f.price, f.fee, f.ts_ns) for f in reference.fills()]
        from backforge.live.store import SessionStore

        store = SessionStore.read(folder)
        try:
            assert sorted(f["fill_id"] for f in store.fills()) == sorted(f.fill_id for f in fills)
        finally:
            store.close()
        assert kills >= 20
    finally:
        client.shutdown()
        proc.wait(10)

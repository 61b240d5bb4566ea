"""Faults against a real server: a worker killed twice (retried once, then failed with the reason), a
hung worker (stale heartbeat), and the server itself killed with SIGKILL mid-run and restarted."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from svc_server import QUICK, Service, wait_for, worker_pid

pytestmark = pytest.mark.slow

# 120 trials: seconds of running, with progress every batch
MEDIUM = """name: medium-search
universe: [AAA, BBB]
data: {years: 12, seed: 5}
strategies:
  - name: enter
    condition: {lhs: {sma: {window: {param: fast, range: [2, 80, 1]}}}, op: crosses_above,
                rhs: {sma: {window: {param: slow, range: [100, 300, 20]}}}}
    action: {buy: {allocation: {equity_fraction: 0.4}}}
  - name: exit
    condition: {lhs: {sma: {window: {param: fast, range: [2, 80, 1]}}}, op: crosses_below,
                rhs: {sma: {window: {param: slow, range: [100, 300, 20]}}}}
    action: {close: {}}
"""


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _events(client, job_id):
    text = client.get(f"/api/jobs/{job_id}/events", timeout=30).text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {\"id\"")]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    server = Service(tmp_path_factory.mktemp("faults"), workers=1, heartbeat=0.3, stale_after=2.5).start()
    yield server
    server.stop()


def test_a_dead_worker_is_retried_once_then_the_job_fails_with_the_reason(one_worker):
    with one_worker.client() as client:
        job = client.post("/api/jobs", json={"kind": "optimize", "strategy": MEDIUM, "top": 0}).json()
        first = wait_for(client, job["id"], ("running",), timeout=60)
        pid1 = worker_pid(first)
        os.kill(pid1, signal.SIGKILL)
        second = wait_for(client, job["id"], ("running",), timeout=90, condition=lambda j: j["attempts"] == 2)
        pid2 = worker_pid(second)
        assert pid2 != pid1 and _gone(pid1)
        os.kill(pid2, signal.SIGKILL)
        failed = wait_for(client, job["id"], timeout=60)
        assert failed["state"] == "failed" and failed["attempts"] == 2
        assert failed["error"] == f"worker process {pid2} died (signal SIGKILL) (after 2 attempts)"
        retry = [e for e in _events(client, job["id"]) if e.get("retry")]
        assert [e["reason"] for e in retry] == [f"worker process {pid1} died (signal SIGKILL)"]
        assert client.get("/api/health").json()["workers"]["restarts"] >= 2
        # the replacement worker takes new work
        assert wait_for(client, client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK}).json()["id"],
                        timeout=90)["state"] == "done"


def test_a_hung_worker_is_found_by_its_stale_heartbeat(one_worker):
    with one_worker.client() as client:
        job = client.post("/api/jobs", json={"kind": "optimize", "strategy": MEDIUM, "top": 0}).json()
        running = wait_for(client, job["id"], ("running",), timeout=90)
        pid = worker_pid(running)
        os.kill(pid, signal.SIGSTOP)  # alive but silent: no heartbeat, no progress
        stopped_at = time.monotonic()
        requeued = wait_for(client, job["id"], ("queued", "warming_up", "running"), timeout=30,
                            condition=lambda j: j["attempts"] == 2 or j["state"] == "queued")
        assert time.monotonic() - stopped_at >= 2.0  # not before the heartbeat went stale
        assert _gone(pid)
        retry = [e for e in _events(client, job["id"]) if e.get("retry")]
        assert len(retry) == 1 and retry[0]["reason"].startswith(f"worker process {pid} sent no heartbeat for")
        assert requeued["worker"] != running["worker"]
        client.post(f"/api/jobs/{job['id']}/cancel")


def test_server_killed_mid_run_and_restarted(one_worker):
    """Last in the module: it kills the module's server and starts a second one on the same folders."""
    from backforge.results.result import load_result

    first, root = one_worker, one_worker.root
    runs = root / "runs"
    before = {p.name for p in runs.iterdir() if not p.name.startswith(".")}  # the runs of the tests above
    with first.client() as client:
        long_job = client.post("/api/jobs", json={"kind": "optimize", "strategy": MEDIUM, "top": 1}).json()
        quick = [client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK.replace("seed: 3", f"seed: {i}")}).json()
                 for i in range(3)]
        running = wait_for(client, long_job["id"], ("running",), timeout=60)
    first.kill(signal.SIGKILL)
    assert _gone(worker_pid(running))  # the orphaned worker ends itself
    for folder in runs.iterdir():  # nothing half-written: only complete runs or hidden staging folders
        assert folder.name.startswith(".") or (folder / "metadata.json").is_file() or (folder / "summary.json").is_file()
    second = Service(root, workers=1, heartbeat=0.3, stale_after=2.5).start(wait_for_workers=False)
    try:
        with second.client() as client:
            resumed = wait_for(client, long_job["id"], timeout=120)
            done = [wait_for(client, q["id"], timeout=60) for q in quick]
            assert [d["state"] for d in done] == ["done"] * 3  # queued jobs continue
            assert resumed["state"] == "done" and resumed["attempts"] == 2  # the running one was resumed
            retry = [e for e in _events(client, long_job["id"]) if e.get("retry")]
            assert len(retry) == 1 and "the server was restarted" in retry[0]["reason"]
            listed = {r["id"] for r in client.get("/api/runs").json()["runs"]}
        assert listed == before | {d["result"]["run"] for d in done} | {resumed["result"]["run"]}
        assert not before & ({d["result"]["run"] for d in done} | {resumed["result"]["run"]})
        for d in done:
            assert load_result(runs / d["result"]["run"]).summary()["bars"] > 0
        assert load_result(runs / resumed["result"]["best_run"]).summary()["bars"] > 0
        ours = {f".staging-{j['id']}" for j in (long_job, *quick)}
        assert not [p for p in runs.iterdir() if p.name in ours]  # no staging folder of these jobs is left
    finally:
        second.stop()

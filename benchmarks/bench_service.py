"""Benchmark: the job service (``backforge serve``) over real HTTP on 127.0.0.1.

Targets (issue "Service"): submit-to-done of the demo backtest with a warm worker p50 < 300 ms;
>= 1,000 job-status requests per second; the job list with 1,000 runs renders in under 1 s.

What is measured, against one ``backforge serve`` process (2 local workers, a SQLite store in a
temporary folder), from a client in this process:

* **submit → done**: the demo backtest (``backforge demo``'s SMA 20/50 cross on 7 synthetic assets ×
  10 years of daily bars, as a strategy file) posted ``--jobs`` times one after the other once the
  workers are warm; the time from the ``POST /api/jobs`` to the client seeing ``done`` (polling the
  job every 5 ms), which includes validation, queueing, the claim, data, compile, backtest, saving
  the run folder and every progress event;
* **job status**: ``GET /api/jobs/{id}`` from 32 concurrent keep-alive connections (asyncio httpx)
  for ``--seconds`` seconds;
* **job list with 1,000 runs**: 1,000 finished jobs in the store and 1,000 saved runs on disk (copies
  of one demo run), then the page ``GET /`` (the newest 100 jobs and every run, rendered by Jinja2)
  and ``GET /api/runs``, median of 5.

Usage::

    python benchmarks/bench_service.py            # the full measurement
    python benchmarks/bench_service.py --quick    # fewer jobs and a shorter status run
    python benchmarks/bench_service.py --write    # also update the bench_service section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TOKEN = "benchmark-token-0123456789abcdef"
DEMO = """name: demo-sma-cross
universe: [A0, A1, A2, A3, A4, A5, A6]
data: {years: 10, bar: 1d, seed: 7}
costs: {fee_rate: 0.0005, slippage_bps: 1}
strategies:
  - name: enter
    condition: {lhs: {sma: {window: 20}}, op: crosses_above, rhs: {sma: {window: 50}}}
    action: {buy: {allocation: {equity_fraction: 0.142857}}}
  - name: exit
    condition: {lhs: {sma: {window: 20}}, op: crosses_below, rhs: {sma: {window: 50}}}
    action: {close: {}}
"""


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, BACKFORGE_API_TOKEN=TOKEN,
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "backforge.cli", "serve", "--port", "0", "--workers", str(workers),
         "--catalog", str(folder / "catalog"), "--runs", str(folder / "runs"),
         "--store", f"sqlite:///{folder / 'service.db'}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=folder, start_new_session=True)
    line = process.stdout.readline().decode()
    if "http://" not in line:
        raise SystemExit(f"the server did not start: {line!r}")
    return process, line.split()[2].rstrip("/")


def wait_ready(client, workers: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/api/health").json()["workers"]["ready"] >= workers:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise SystemExit("the workers did not warm up in time")


def submit_to_done(client, n_jobs: int) -> list[float]:
    times = []
    for _ in range(n_jobs + 2):
        start = time.perf_counter()
        job_id = client.post("/api/jobs", json={"kind": "backtest", "strategy": DEMO}).json()["id"]
        while True:
            state = client.get(f"/api/jobs/{job_id}").json()["state"]
            if state in ("done", "failed", "cancelled"):
                break
            time.sleep(0.005)
        if state != "done":
            raise SystemExit(f"job {job_id} ended {state}")
        times.append(time.perf_counter() - start)
    return times[2:]  # the first two warm both workers' demo path


async def status_rate(url: str, job_id: str, seconds: float, connections: int = 32) -> float:
    import httpx

    count = 0
    stop = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                                 limits=httpx.Limits(max_connections=connections)) as client:
        async def hammer() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                response = await client.get(f"/api/jobs/{job_id}")
                response.raise_for_status()
                count += 1

        start = time.perf_counter()
        await asyncio.gather(*(hammer() for _ in range(connections)))
        return count / (time.perf_counter() - start)


def fill_thousand(folder: Path, run_id: str) -> None:
    from backforge.service.store import JobStore

    runs = folder / "runs"
    for i in range(1000 - len(list(runs.iterdir()))):
        shutil.copytree(runs / run_id, runs / f"copy-{i:04d}")
    import json
    import uuid

    from backforge.service.store import jobs_table

    store = JobStore(f"sqlite:///{folder / 'service.db'}")
    now = time.time()
    rows = [{"id": uuid.uuid4().hex[:16], "kind": "backtest", "state": "done", "config": json.dumps({"strategy": DEMO}),
             "created": now - i, "updated": now - i, "started": now - i, "finished": now - i, "attempts": 1,
             "max_attempts": 2, "worker": "bench", "heartbeat": now - i, "progress": 1.0, "eta": 0.0, "message": "done",
             "result": json.dumps({"run": f"copy-{i % 999:04d}"}), "error": None} for i in range(1000)]
    with store.engine.begin() as conn:  # finished jobs written directly (the running workers must not claim them)
        conn.execute(jobs_table.insert(), rows)
    store.close()


def page_times(client, repeat: int = 5) -> tuple[float, float, int]:
    pages, api = [], []
    size = 0
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get("/")
        response.raise_for_status()
        pages.append(time.perf_counter() - start)
        size = len(response.content)
        start = time.perf_counter()
        assert client.get("/api/runs", params={"limit": 1000}).json()["total"] >= 1000
        api.append(time.perf_counter() - start)
    return statistics.median(pages), statistics.median(api), size


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, a shorter status run")
    parser.add_argument("--jobs", type=int, default=None, help="demo backtests to time (default 40, quick 10)")
    parser.add_argument("--seconds", type=float, default=None, help="length of the status run (default 5, quick 2)")
    parser.add_argument("--write", action="store_true", help="update the bench_service section of BENCHMARKS.md")
    args = parser.parse_args()
    n_jobs = args.jobs or (10 if args.quick else 40)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    folder = Path(tempfile.mkdtemp(prefix="bench-service-"))
    process, url = start_server(folder, workers=2)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            wait_ready(client, 2)
            times = submit_to_done(client, n_jobs)
            p50, p90 = statistics.median(times), statistics.quantiles(times, n=10)[-1]
            print(f"submit → done (demo backtest, warm workers, {len(times)} jobs): p50 {p50 * 1000:.0f} ms, "
                  f"p90 {p90 * 1000:.0f} ms (target p50 < 300 ms)")
            last = client.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]
            rate = asyncio.run(status_rate(url, last["id"], seconds))
            print(f"job status: {rate:,.0f} requests/s over {seconds:.0f} s, 32 connections (target >= 1,000)")
            fill_thousand(folder, last["result"]["run"])
            page, api, size = page_times(client)
            print(f"job list page with 1,000 runs and 1,000 jobs: {page * 1000:.0f} ms ({size / 1e6:.1f} MB HTML); "
                  f"GET /api/runs: {api * 1000:.0f} ms (target < 1 s)")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(folder, ignore_errors=True)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _common import machine, write_section

        m = machine()
        section = "\n".join([
            "<!-- bench_service:start -->", "## Job service (`benchmarks/bench_service.py`)", "",
            f"Machine: {m['cpu']}, {m['cores']}, {m['ram']}, {m['os']}; load {m['load']}; {m['date']}.", "",
            "| measurement | result | target |", "|---|---|---|",
            f"| submit → done, demo backtest, warm worker ({len(times)} jobs) | p50 {p50 * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms | p50 < 300 ms |",
            f"| job status requests/s (32 connections) | {rate:,.0f} | ≥ 1,000 |",
            f"| job list page with 1,000 runs | {page * 1000:.0f} ms | < 1 s |",
            "<!-- bench_service:end -->"])
        print(f"wrote {write_section('bench_service', section)}")


if __name__ == "__main__":
    main()

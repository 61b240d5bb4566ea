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
* **job status**: ``GET /api/jobs/{id}`` (token checked, one row read, its JSON) over 8 keep-alive
  HTTP/1.1 connections from 2 client processes (4 threads each, a minimal blocking client: the
  measurement must not be the client's own Python cost) for ``--seconds`` seconds, in 3 rounds
  alternating with the **peer**: a trivial FastAPI route (``{"ok": true}``, no auth, no database) on
  the same uvicorn settings in its own process — the ceiling of the stack itself, measured in the same run;
* **job list with 1,000 runs**: 1,000 finished jobs in the store and 1,000 saved runs on disk (copies
  of one demo run), then the page ``GET /`` (the newest 100 jobs and every run, rendered by Jinja2)
  and ``GET /api/runs``, median of 5.

Usage::

    python benchmarks/bench_service.py            # the full measurement
    python benchmarks/bench_service.py --quick    # fewer jobs and a shorter status run
    python benchmarks/bench_service.py --write    # also update the svc section of BENCHMARKS.md
    python benchmarks/bench_service.py --status-only   # just the status rate against its peer (no workers)
"""

from __future__ import annotations

import argparse
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


def _read_response(sock, buf: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length from a keep-alive socket: (status, body)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).lower()
            at = head.find(b"content-length:")
            if at < 0:
                raise RuntimeError(f"no content-length in {head!r}")
            stop = head.find(b"\r\n", at)
            total = end + 4 + int(head[at + 15:stop if stop > 0 else None])
            while len(buf) < total:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buf += chunk
            status, body = int(head[9:12]), bytes(buf[end + 4:total])
            del buf[:total]
            return status, body
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk


def _hammer(port: int, request: bytes, expect: bytes, seconds: float, threads: int, out) -> None:
    """Client process: ``threads`` keep-alive connections sending ``request`` until the time is up."""
    import socket
    import threading

    counts = [0] * threads
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf, n = bytearray(), 0
        try:
            while time.perf_counter() < stop:
                sock.sendall(request)
                status, body = _read_response(sock, buf)
                if status != 200 or expect not in body:
                    errors.append(f"{status} {body[:200]!r}")
                    return
                n += 1
        finally:
            counts[i] = n
            sock.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((sum(counts), errors[:1]))


def request_rate(url: str, path: str, *, seconds: float, token: str | None = None, expect: bytes = b"",
                 processes: int = 2, threads: int = 4) -> float:
    """Requests per second answered 200 (with ``expect`` in the body) on ``processes × threads``
    keep-alive connections."""
    import multiprocessing

    port = int(url.rsplit(":", 1)[1])
    headers = f"Host: 127.0.0.1:{port}\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "")
    request = f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode()
    out = multiprocessing.get_context("spawn").Queue()
    clients = [multiprocessing.get_context("spawn").Process(target=_hammer, args=(port, request, expect, seconds,
                                                                               threads, out)) for _ in range(processes)]
    for c in clients:
        c.start()
    results = [out.get(timeout=seconds + 120) for _ in clients]
    for c in clients:
        c.join()
    errors = [e for _, errs in results for e in errs]
    if errors:
        raise SystemExit(f"{path}: {errors[0]}")
    return sum(n for n, _ in results) / seconds


PEER_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/ping")
async def ping():
    return {"ok": True}


print("ready", flush=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, lifespan="on")
"""


def start_peer() -> tuple[subprocess.Popen, str]:
    """The peer: a trivial FastAPI route on uvicorn (the same defaults ``backforge serve`` uses)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", PEER_APP, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    process.stdout.readline()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the peer server did not start")


def status_rates(url: str, job_id: str, seconds: float, rounds: int = 3) -> tuple[float, float]:
    """Median job-status rate and median peer rate, measured in alternating rounds."""
    peer, peer_url = start_peer()
    try:
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(request_rate(url, f"/api/jobs/{job_id}", seconds=seconds, token=TOKEN,
                                     expect=f'"id":"{job_id}"'.encode()))
            theirs.append(request_rate(peer_url, "/api/ping", seconds=seconds, expect=b'"ok":true'))
        return statistics.median(ours), statistics.median(theirs)
    finally:
        stop(peer)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def http_stack() -> str:
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn with {http} and {loop}"


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

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import load_average, machine, write_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, a shorter status run")
    parser.add_argument("--jobs", type=int, default=None, help="demo backtests to time (default 40, quick 10)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each status round (default 5, quick 2)")
    parser.add_argument("--status-only", action="store_true", help="only the job-status rate and its peer")
    parser.add_argument("--write", action="store_true", help="update the svc section of BENCHMARKS.md")
    args = parser.parse_args()
    n_jobs = args.jobs or (10 if args.quick else 40)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    load_before = load_average()
    folder = Path(tempfile.mkdtemp(prefix="bench-service-"))
    process, url = start_server(folder, workers=2)
    times: list[float] = []
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            if args.status_only:
                job_id = client.post("/api/jobs", json={"kind": "backtest", "strategy": DEMO}).json()["id"]
            else:
                wait_ready(client, 2)
                times = submit_to_done(client, n_jobs)
                p50, p90 = statistics.median(times), statistics.quantiles(times, n=10)[-1]
                print(f"submit → done (demo backtest, warm workers, {len(times)} jobs): p50 {p50 * 1000:.0f} ms, "
                      f"p90 {p90 * 1000:.0f} ms (target p50 < 300 ms)")
                job_id = client.get("/api/jobs", params={"limit": 1}).json()["jobs"][0]["id"]
            rate, peer = status_rates(url, job_id, seconds)
            print(f"job status: {rate:,.0f} requests/s (median of 3 × {seconds:.0f} s, 8 keep-alive connections; "
                  f"target >= 1,000); peer, a trivial FastAPI route: {peer:,.0f}/s; ratio {rate / peer:.2f} "
                  f"[{http_stack()}]")
            if not args.status_only:
                last = client.get(f"/api/jobs/{job_id}").json()
                fill_thousand(folder, last["result"]["run"])
                page, api, size = page_times(client)
                print(f"job list page with 1,000 runs and 1,000 jobs: {page * 1000:.0f} ms ({size / 1e6:.1f} MB HTML); "
                      f"GET /api/runs: {api * 1000:.0f} ms (target < 1 s)")
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)
    load_after = load_average()
    print(f"load average: {load_before} before, {load_after} after")
    if args.write and not args.status_only:
        m = machine()
        section = "\n".join([
            "<!-- svc:start -->", "## Job service (`benchmarks/bench_service.py`)", "",
            f"Machine: {m['cpu']}, {m['cores']}, {m['ram']}, {m['os']}; {m['date']}; {http_stack()}. "
            f"Measured under load: load average {load_before} before, {load_after} after.", "",
            "| measurement | backforge | peer (same run) | target |", "|---|---|---|---|",
            f"| submit → done, demo backtest, warm worker ({len(times)} jobs) | p50 {p50 * 1000:.0f} ms, "
            f"p90 {p90 * 1000:.0f} ms | – | p50 < 300 ms {'✓' if p50 < 0.3 else '✗'} |",
            f"| job status `GET /api/jobs/{{id}}`, requests/s (8 keep-alive connections, median of 3 × {seconds:.0f} s) "
            f"| {rate:,.0f} | trivial FastAPI route {peer:,.0f} ({rate / peer:.2f}×) | ≥ 1,000 {'✓' if rate >= 1000 else '✗'} |",
            f"| job list page `GET /` with 1,000 runs and 1,000 jobs (median of 5) | {page * 1000:.0f} ms "
            f"({size / 1e6:.1f} MB); `GET /api/runs` {api * 1000:.0f} ms | – | < 1 s {'✓' if page < 1 else '✗'} |",
            "<!-- svc:end -->"])
        print(f"wrote {write_section('svc', section)}")


if __name__ == "__main__":
    main()

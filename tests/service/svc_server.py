"""A real ``backforge serve`` process on 127.0.0.1 (a random free port) for the service tests, with
bounded waits everywhere."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

TOKEN = "test-token-for-the-service-0123456789"

QUICK = """name: quick
universe: [AAA]
data: {years: 2, seed: 3}
strategies:
  - name: enter
    condition: {lhs: {sma: {window: 5}}, op: crosses_above, rhs: {sma: {window: 20}}}
    action: {buy: {allocation: {equity_fraction: 0.5}}}
  - name: exit
    condition: {lhs: {sma: {window: 5}}, op: crosses_below, rhs: {sma: {window: 20}}}
    action: {close: {}}
"""

# an optimization long enough to be caught running (about 1,700 trials, progress every batch)
SLOW = """name: slow-search
universe: [AAA, BBB, CCC]
data: {years: 10, seed: 5}
strategies:
  - name: enter
    condition: {lhs: {sma: {window: {param: fast, range: [2, 80, 1]}}}, op: crosses_above,
                rhs: {sma: {window: {param: slow, range: [100, 300, 10]}}}}
    action: {buy: {allocation: {equity_fraction: 0.3}}}
  - name: exit
    condition: {lhs: {sma: {window: {param: fast, range: [2, 80, 1]}}}, op: crosses_below,
                rhs: {sma: {window: {param: slow, range: [100, 300, 10]}}}}
    action: {close: {}}
"""

TERMINAL = ("done", "failed", "cancelled")


class Service:
    """``python -m backforge.cli serve`` in its own session, driven over HTTP."""

    def __init__(self, root: Path, *, workers: int = 2, store: str | None = None, heartbeat: float = 0.5,
                 stale_after: float = 30.0, extra: tuple[str, ...] = (), token: str | None = TOKEN) -> None:
        self.root = Path(root)
        self.workers = workers
        self.store = store or f"sqlite:///{self.root / 'service.db'}"
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.extra = extra
        self.token = token
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        (self.root / "files").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_timeout: float = 300.0, wait_for_workers: bool = True) -> "Service":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")])
        env.pop("BACKFORGE_API_TOKEN", None)
        if self.token:
            env["BACKFORGE_API_TOKEN"] = self.token
        command = [sys.executable, "-m", "backforge.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--workers", str(self.workers), "--store", self.store, "--catalog", str(self.root / "catalog"),
                   "--runs", str(self.root / "runs"), "--sessions", str(self.root / "sessions"), "--import-root", str(self.root / "files"),
                   "--heartbeat", str(self.heartbeat), "--stale-after", str(self.stale_after), *self.extra]
        self.log = open(self.root / "server.log", "ab")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=self.root,
                                        start_new_session=True)
        lines: queue.Queue = queue.Queue()
        self.banner: list[str] = []
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout], daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic())).decode()
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"the server did not start: {self.tail()}") from None
            self.banner.append(line)
            if "http://127.0.0.1:" in line:
                self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
                break
        with self.client() as client:
            deadline = time.monotonic() + ready_timeout
            while time.monotonic() < deadline:
                try:
                    response = client.get("/api/health")
                    if response.status_code == 401 and not wait_for_workers:
                        return self  # up (the test has no token to ask more)
                    status = response.json()["workers"]
                    if not wait_for_workers or status.get("ready", 0) >= self.workers:
                        return self
                except httpx.HTTPError:
                    pass
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited: {self.tail()}")
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the workers did not become ready in time")

    def tail(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")[-3000:]

    def client(self, *, token: str | None = "default", timeout: float = 30.0) -> httpx.Client:
        token = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server process only (its workers notice and end themselves)."""
        self.process.send_signal(sig)
        self.process.wait(30)
        self.process.stdout.close()
        self.log.close()

    def stop(self) -> None:
        if self.process is None or self.log.closed:
            if self.process is not None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        try:  # workers left behind by a killed server, by our own process group id
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.stdout.close()
        self.log.close()


def wait_for(client: httpx.Client, job_id: str, states=TERMINAL, *, timeout: float = 60.0,
             condition=None) -> dict:
    """Poll a job until its state is in ``states`` (and ``condition(job)`` holds); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in states and (condition is None or condition(job)):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states} in {timeout} s: {job}")


def worker_pid(job: dict) -> int:
    return int(job["worker"].split(":")[1])

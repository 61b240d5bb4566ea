"""Workers of ``backforge serve``: local worker processes (default) or Ray tasks, supervised.

A local worker is a long-lived process (``spawn``) that warms the compiled code once, then loops:
claim the oldest queued job from the store, run it (:func:`backforge.service.jobs.run_job`), record
the result. A thread beside the job beats every ``heartbeat`` seconds; when a beat is refused (the job
was cancelled, or taken from this worker because it looked dead) the job is abandoned — cooperatively
at the next progress report, or by ending the process after a short grace if the job is inside a
long compiled call. A worker whose server died ends itself.

The :class:`Supervisor` (a thread in the server) respawns dead workers and hands their job back to the
store as *lost* (queued again while it has attempts left, failed with the reason otherwise); it finds
jobs whose heartbeat is older than ``stale_after`` seconds — a hung worker is ended, a job held by a
worker of a server that no longer exists is lost — so nothing stays "running" forever. At start it
takes back the jobs of this host's worker processes that are gone (the server was restarted).

With ``executor="ray"`` the supervisor claims jobs itself and runs each as a Ray task (the same code,
heartbeats included, :func:`execute_job`), at most ``workers`` at a time; a task whose worker died is
a lost job as above. Ray's own retries are off: the store decides.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from backforge.errors import BackforgeError, ConfigError

__all__ = ["Supervisor", "execute_job", "worker_main", "warm_up"]

HOST = socket.gethostname()
CANCEL_GRACE = 2.0


def warm_up() -> None:
    """Load the compiled kernels a backtest needs (from numba's disk cache) with a tiny run."""
    from backforge.data.synth import gbm
    from backforge.strategy.compiler import run_portfolio

    import shutil
    import tempfile
    from pathlib import Path

    data = gbm(2, 1, bar="1d", seed=1, assets=("AAA", "BBB"))
    result = run_portfolio({"name": "warm", "universe": ["AAA", "BBB"], "strategies": [
        {"name": "in", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_above", "rhs": {"sma": {"window": 20}}},
         "action": {"buy": {"allocation": {"equity_fraction": 0.5}}}},
        {"name": "out", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_below", "rhs": {"sma": {"window": 20}}},
         "action": {"close": {}}}]}, data)
    folder = Path(tempfile.mkdtemp(prefix="backforge-warm-"))
    try:
        result.save(folder / "run")  # the metrics and the saved tables' code paths
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_pid(worker_id: str | None) -> tuple[str, int] | None:
    """``host:pid:...`` → (host, pid) for local worker ids."""
    if not worker_id:
        return None
    parts = worker_id.split(":")
    if len(parts) >= 3 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return None


def execute_job(store: Any, ctx: Any, job: Any, worker_id: str, *, heartbeat: float = 1.0,
                parent_pid: int | None = None, exit_on_cancel: bool = True) -> str:
    """Run one claimed job with heartbeats; record done/failed. Returns the final state as seen here."""
    from backforge.service.jobs import JobCancelled, JobRun, run_job

    stop = threading.Event()
    lost = threading.Event()
    finished = threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat):
            if parent_pid is not None and os.getppid() != parent_pid:
                os._exit(0)  # the server is gone: its successor takes the job back
            try:
                ok = store.heartbeat(job.id, worker_id)
            except Exception:  # noqa: BLE001 - a store hiccup: try again at the next beat
                continue
            if not ok:
                lost.set()
                if exit_on_cancel and not finished.wait(CANCEL_GRACE):
                    os._exit(0)  # stuck in compiled code: end the process; the supervisor starts another
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
    thread.start()

    def report(fraction: float, message: str) -> None:
        if lost.is_set() or not store.progress(job.id, worker_id, fraction, message):
            raise JobCancelled(job.id)

    def started() -> None:
        if lost.is_set() or not store.start(job.id, worker_id):
            raise JobCancelled(job.id)

    run = JobRun(job.id, job.kind, job.config, ctx, report, started, lambda line: store.log(job.id, line))
    try:
        result = run_job(run)
        if store.finish(job.id, worker_id, result):
            return "done"
        _discard(ctx, job, result)  # cancelled at the last moment: the result must not appear
        return "cancelled"
    except JobCancelled:
        return "cancelled"
    except BackforgeError as exc:
        store.fail(job.id, worker_id, str(exc))
        return "failed"
    except MemoryError:
        store.fail(job.id, worker_id, "out of memory")
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a bug must fail the job with a reason, not kill the worker
        where = traceback.extract_tb(exc.__traceback__)[-1]
        store.fail(job.id, worker_id, f"internal error: {type(exc).__name__}: {exc} "
                                      f"({os.path.basename(where.filename)}:{where.lineno})")
        return "failed"
    finally:
        finished.set()
        stop.set()


def _discard(ctx: Any, job: Any, result: dict[str, Any]) -> None:
    import shutil

    name = result.get("run")
    if job.kind in ("backtest", "optimize", "walk_forward", "monte_carlo") and isinstance(name, str):
        shutil.rmtree(ctx.runs_root / name, ignore_errors=True)


def worker_main(store_url: str, ctx_dict: dict[str, Any], worker_id: str, wake: Any, ready: Any,
                parent_pid: int, heartbeat: float) -> None:
    """Entry point of a local worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops the workers
    from backforge.service.jobs import JobContext
    from backforge.service.store import JobStore

    store = JobStore(store_url)
    ctx = JobContext.from_dict(ctx_dict)
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - a cold worker still works, only slower
        pass
    ready.set()
    while True:
        if os.getppid() != parent_pid:
            return
        wake.clear()
        try:
            job = store.claim(worker_id)
        except Exception:  # noqa: BLE001 - the database is busy or restarting: wait and retry
            time.sleep(0.5)
            continue
        if job is None:
            wake.wait(0.5)
            continue
        execute_job(store, ctx, job, worker_id, heartbeat=heartbeat, parent_pid=parent_pid)


def _ray_execute(store_url: str, ctx_dict: dict[str, Any], job_id: str, worker_id: str, heartbeat: float) -> str:
    from backforge.service.jobs import JobContext
    from backforge.service.store import JobStore

    store = JobStore(store_url)
    try:
        return execute_job(store, JobContext.from_dict(ctx_dict), store.get(job_id), worker_id, heartbeat=heartbeat,
                           exit_on_cancel=False)
    finally:
        store.close()


@dataclass
class _Slot:
    index: int
    worker_id: str
    process: Any
    ready: Any


class Supervisor:
    """Runs, watches and replaces the workers of one server (see the module docstring)."""

    def __init__(self, store: Any, ctx: Any, *, workers: int = 2, executor: str = "local",
                 ray_address: str | None = None, heartbeat: float = 1.0, stale_after: float = 30.0) -> None:
        if executor not in ("local", "ray"):
            from backforge.errors import did_you_mean

            raise ConfigError(f"unknown executor {executor!r}{did_you_mean(executor, ['local', 'ray'])}",
                              field="executor")
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}", field="workers")
        if stale_after <= 2 * heartbeat:
            raise ConfigError(f"--stale-after ({stale_after} s) must exceed two heartbeats ({heartbeat} s each)",
                              field="stale_after")
        self.store = store
        self.ctx = ctx
        self.n_workers = workers
        self.executor = executor
        self.ray_address = ray_address
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.instance = uuid.uuid4().hex[:8]
        self._slots: list[_Slot] = []
        self._hung: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mp = None
        self._wake = None
        self._ray_tasks: dict[Any, tuple[str, str]] = {}
        self._ray_remote = None
        self._ray_started = False
        self.restarts = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        import multiprocessing as mp

        self._mp = mp.get_context("spawn")
        self._wake = self._mp.Event()
        self.recover()
        if self.executor == "local":
            for i in range(self.n_workers):
                self._slots.append(self._spawn(i))
        else:
            self._start_ray()
        self._thread = threading.Thread(target=self._loop, name="backforge-supervisor", daemon=True)
        self._thread.start()

    def _start_ray(self) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'backforge[ray]'", field="executor") from None
        if self.ray_address and self.ray_address != "auto":
            from backforge.research.optimize import _check_reachable

            _check_reachable(self.ray_address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.ray_address:
                kwargs["address"] = self.ray_address
            else:
                kwargs["num_cpus"] = self.n_workers
            ray.init(**kwargs)
            self._ray_started = True
        self._ray_remote = ray.remote(_ray_execute).options(max_retries=0, retry_exceptions=False)

    def _spawn(self, index: int) -> _Slot:
        ready = self._mp.Event()
        process = self._mp.Process(target=_spawn_target, name=f"backforge-worker-{index}", daemon=True,
                                   args=(self.store.url, self.ctx.to_dict(), f"{HOST}:{{pid}}:{self.instance}:{index}",
                                         self._wake, ready, os.getpid(), self.heartbeat))
        process.start()
        worker_id = f"{HOST}:{process.pid}:{self.instance}:{index}"
        return _Slot(index, worker_id, process, ready)

    def stop(self) -> None:
        """Stop the supervisor and end the workers (their jobs are taken back at the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for slot in self._slots:
            if slot.process.is_alive():
                slot.process.terminate()
        for slot in self._slots:
            slot.process.join(3)
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join(2)
        self._slots = []
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    def wake(self) -> None:
        """Tell idle workers a job was queued (they also poll twice a second)."""
        if self._wake is not None:
            self._wake.set()

    def status(self) -> dict[str, Any]:
        if self.executor == "ray":
            return {"executor": "ray", "workers": self.n_workers, "running": len(self._ray_tasks), "ready": self.n_workers}
        return {"executor": "local", "workers": len(self._slots), "restarts": self.restarts,
                "ready": sum(1 for s in self._slots if s.ready.is_set() and s.process.is_alive()),
                "pids": [s.process.pid for s in self._slots]}

    def worker_pids(self) -> dict[str, int]:
        return {s.worker_id: s.process.pid for s in self._slots}

    # ------------------------------------------------------------------ watching
    def recover(self) -> int:
        """Take back jobs whose worker process on this host is gone (a restart); returns how many."""
        taken = 0
        for job in self.store.active():
            owner = _worker_pid(job.worker)
            if owner and owner[0] == HOST and not _pid_alive(owner[1]):
                if self.store.lost(job.id, f"its worker process {owner[1]} is gone (the server was restarted)",
                                   worker=job.worker):
                    taken += 1
        return taken

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable; keep watching
                time.sleep(0.5)

    def check(self) -> None:
        """One round: replace dead workers, take back their jobs, end hung workers, catch stale jobs."""
        for i, slot in enumerate(self._slots):
            if slot.process.is_alive() or self._stop.is_set():
                continue
            code = slot.process.exitcode
            reason = (f"worker process {slot.process.pid} died (signal {signal.Signals(-code).name})" if code and code < 0
                      else f"worker process {slot.process.pid} exited with code {code}")
            silent = self._hung.pop(slot.worker_id, None)
            if silent is not None:
                reason = f"worker process {slot.process.pid} sent no heartbeat for {silent:.0f} s and was ended"
            # the replacement first: once the dead worker's job shows as queued again or failed, the restart
            # is already counted in /api/health (a client seeing the job's new state never sees the old count)
            self._slots[i] = self._spawn(slot.index)
            self.restarts += 1
            for job in self.store.active():
                if job.worker == slot.worker_id:
                    self.store.lost(job.id, reason, worker=slot.worker_id)
        if self.executor == "ray":
            self._check_ray()
        ours = {s.worker_id: s for s in self._slots}
        for job in self.store.stale(self.stale_after):
            age = time.time() - (job.heartbeat or 0.0)
            slot = ours.get(job.worker or "")
            if slot is not None and slot.process.is_alive():
                self._hung[slot.worker_id] = age
                slot.process.kill()  # hung: the next round takes its job back as a dead worker's
                continue
            self.store.lost(job.id, f"no heartbeat for {age:.0f} s from worker {job.worker}", worker=job.worker)

    def _check_ray(self) -> None:
        import ray

        if self._ray_tasks:
            done, _ = ray.wait(list(self._ray_tasks), num_returns=len(self._ray_tasks), timeout=0)
            for ref in done:
                job_id, worker_id = self._ray_tasks.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task's worker died or Ray lost it
                    self.store.lost(job_id, f"Ray task failed: {type(exc).__name__}", worker=worker_id)
        while len(self._ray_tasks) < self.n_workers and not self._stop.is_set():
            worker_id = f"ray:{self.instance}:{uuid.uuid4().hex[:6]}"
            job = self.store.claim(worker_id)
            if job is None:
                break
            ref = self._ray_remote.remote(self.store.url, self.ctx.to_dict(), job.id, worker_id, self.heartbeat)
            self._ray_tasks[ref] = (job.id, worker_id)


def _spawn_target(store_url: str, ctx_dict: dict[str, Any], worker_template: str, wake: Any, ready: Any,
                  parent_pid: int, heartbeat: float) -> None:
    worker_main(store_url, ctx_dict, worker_template.replace("{pid}", str(os.getpid())), wake, ready, parent_pid,
                heartbeat)

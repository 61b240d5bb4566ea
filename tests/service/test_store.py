"""The job store on SQLite and on a real PostgreSQL server: lifecycle, atomic claims, cancel in every
state, retry once then fail, stale heartbeats, filters as bound parameters."""

from __future__ import annotations

import threading
import time

import pytest

from backforge.service import store as store_module
from backforge.service.store import JobConflict, JobNotFound, JobStore


def test_lifecycle_with_progress_and_events(store_url):
    store = JobStore(store_url)
    job = store.create("backtest", {"strategy": "x"})
    assert store.get(job.id).config == {"strategy": "x"}
    claimed = store.claim("w1")
    assert (claimed.id, claimed.state, claimed.worker, claimed.attempts) == (job.id, "warming_up", "w1", 1)
    assert store.start(job.id, "w1")
    assert store.progress(job.id, "w1", 0.5, "half")
    mid = store.get(job.id)
    assert (mid.state, mid.progress, mid.message) == ("running", 0.5, "half")
    assert mid.eta is not None and mid.eta >= 0
    assert not store.progress(job.id, "intruder", 0.9)  # not this worker's job
    store.log(job.id, "a log line")
    assert store.finish(job.id, "w1", {"run": "r-1"})
    done = store.get(job.id)
    assert (done.state, done.progress, done.result, done.finished is not None) == ("done", 1.0, {"run": "r-1"}, True)
    kinds = [(e.type, e.data.get("state") or e.data.get("line") or e.data.get("message")) for e in store.events(job.id)]
    assert kinds == [("state", "queued"), ("state", "warming_up"), ("state", "running"), ("progress", "half"),
                     ("log", "a log line"), ("state", "done")]
    first = store.events(job.id)[2].id
    assert [e.data.get("state") for e in store.events(job.id, after=first)][-1] == "done"
    store.close()


def test_claims_are_exclusive_under_concurrency(store_url):
    setup = JobStore(store_url)
    ids = {setup.create("backtest", {"i": i}).id for i in range(60)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        own = JobStore(store_url)  # its own connection pool, as a separate process would have
        while True:
            job = own.claim(name)
            if job is None:
                break
            with lock:
                claimed.append(job.id)
        own.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert setup.counts()["warming_up"] == 60
    setup.close()


def test_claim_order_is_oldest_first(store_url):
    store = JobStore(store_url)
    first = store.create("backtest", {})
    time.sleep(0.01)
    store.create("backtest", {})
    assert store.claim("w").id == first.id
    store.close()


@pytest.mark.parametrize("state", ["queued", "warming_up", "running"])
def test_cancel_in_each_active_state(store_url, state):
    store = JobStore(store_url)
    job = store.create("backtest", {})
    if state != "queued":
        store.claim("w")
    if state == "running":
        store.start(job.id, "w")
    assert store.get(job.id).state == state
    cancelled = store.cancel(job.id)
    assert cancelled.state == "cancelled" and cancelled.finished is not None
    # the worker that held it can no longer move it anywhere
    assert not store.start(job.id, "w")
    assert not store.finish(job.id, "w", {"run": "x"})
    assert not store.heartbeat(job.id, "w")
    assert store.get(job.id).state == "cancelled"
    assert store.claim("w2") is None
    store.close()


@pytest.mark.parametrize("final", ["done", "failed", "cancelled"])
def test_cancel_of_a_finished_job_is_a_conflict(store_url, final):
    store = JobStore(store_url)
    job = store.create("backtest", {})
    if final == "cancelled":
        store.cancel(job.id)
    else:
        store.claim("w")
        store.start(job.id, "w")
        store.finish(job.id, "w", {}) if final == "done" else store.fail(job.id, "w", "bad data")
    with pytest.raises(JobConflict, match=f"already {final}"):
        store.cancel(job.id)
    assert store.get(job.id).state == final
    store.close()


def test_lost_worker_is_retried_once_then_failed_with_the_reason(store_url):
    store = JobStore(store_url)
    job = store.create("backtest", {})
    store.claim("w1")
    store.start(job.id, "w1")
    assert store.lost(job.id, "worker process 123 died (signal 9)") == "queued"
    again = store.get(job.id)
    assert (again.state, again.worker, again.attempts) == ("queued", None, 1)
    assert not store.finish(job.id, "w1", {})  # the dead worker's late write is refused
    assert store.claim("w2").attempts == 2
    assert store.lost(job.id, "worker process 456 died (signal 9)") == "failed"
    failed = store.get(job.id)
    assert failed.state == "failed"
    assert failed.error == "worker process 456 died (signal 9) (after 2 attempts)"
    assert store.lost(job.id, "again") is None
    store.close()


def test_stale_heartbeats_are_found(store_url):
    store = JobStore(store_url)
    beating, silent = store.create("backtest", {}), store.create("backtest", {})
    store.claim("a")
    store.claim("b")
    time.sleep(0.3)
    assert store.heartbeat(beating.id, "a")
    assert [j.id for j in store.stale(0.2)] == [silent.id]
    assert store.stale(10) == []
    store.close()


def test_filters_are_bound_parameters_not_sql(store_url):
    store = JobStore(store_url)
    for kind in ("backtest", "optimize", "backtest"):
        store.create(kind, {})
    jobs, total = store.list(kind="backtest")
    assert total == 2 and {j.kind for j in jobs} == {"backtest"}
    for hostile in ("backtest' OR '1'='1", "x'; DROP TABLE bf_jobs; --", '" OR 1=1 --', "%", "_"):
        assert store.list(kind=hostile) == ([], 0)
        assert store.list(state=hostile) == ([], 0)
    assert store.list()[1] == 3  # the table is still there, untouched
    page, total = store.list(limit=2, offset=2)
    assert total == 3 and len(page) == 1
    with pytest.raises(JobNotFound, match="no job"):
        store.get("../../etc/passwd")
    store.close()


def test_tokens_are_stored_as_digests(store_url):
    store = JobStore(store_url)
    assert not store.has_tokens()
    store.add_token("s3cret-token")
    store.add_token("s3cret-token")
    assert store.token_digests() == [store_module.token_digest("s3cret-token")]
    assert "s3cret-token" not in store.token_digests()[0]
    assert store.check_token("s3cret-token") and not store.check_token("s3cret-tokeN")
    store.close()


def test_a_bad_url_is_one_clear_error():
    from backforge.errors import BackforgeError

    with pytest.raises(BackforgeError, match="not a database URL"):
        JobStore("not a url")
    with pytest.raises(BackforgeError, match="cannot open the job store"):
        JobStore("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_the_lean_status_read_is_the_job_and_survives_a_lost_connection(store_url):
    import json

    import sqlalchemy as sa

    store = JobStore(store_url)
    job = store.create("backtest", {"strategy": "name: x", "odd": float("nan"), "text": 'quote " and </script>'})
    seen = [json.loads(store.status_json(job.id))]
    assert seen[0] == store.get(job.id).to_dict() and seen[0]["config"]["odd"] is None
    store.claim("w1")
    store.start(job.id, "w1")
    store.progress(job.id, "w1", 0.25, "a quarter")
    seen.append(json.loads(store.status_json(job.id)))  # the kept connection sees every commit
    assert (seen[1]["state"], seen[1]["progress"], seen[1]["message"]) == ("running", 0.25, "a quarter")
    store.finish(job.id, "w1", {"run": "r-1", "summary": {"sharpe": float("inf")}})
    done = json.loads(store.status_json(job.id))
    assert done == store.get(job.id).to_dict() and done["result"] == {"run": "r-1", "summary": {"sharpe": None}}
    with pytest.raises(JobNotFound, match="no job"):
        store.status_json("x' OR '1'='1")
    if store.dialect == "postgresql":  # the server drops the reader's connection: the next read reconnects
        admin = sa.create_engine(store_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            dropped = conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all()
        admin.dispose()
        assert dropped
        assert json.loads(store.status_json(job.id))["state"] == "done"
    store.close()

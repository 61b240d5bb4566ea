"""The persistent job store of ``backforge serve``: jobs, their events (state changes, progress, log
lines) and heartbeats, in any SQLAlchemy database.

The default is a SQLite file in WAL mode beside the catalog (``backforge-data/service.db``); a
PostgreSQL URL (``postgresql+psycopg://user@host/db``) makes one store shared by several servers.
Every change is one short transaction and every transition is *conditional* on the state it leaves
(``UPDATE jobs SET state='running' WHERE id=:id AND state='warming_up' AND worker=:me``), so two
workers can never both claim a job, a cancelled job never turns ``done``, and a worker that lost its
job (a stale heartbeat, a restart) can no longer write to it. Claiming takes the oldest queued job
with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL and ``BEGIN IMMEDIATE`` on SQLite.

States: ``queued → warming_up → running → done | failed | cancelled``. A job whose worker died or
whose heartbeat went stale is queued again while it has attempts left (two by default: it is retried
once) and failed with the reason otherwise.

Examples
--------
>>> store = JobStore("sqlite://")
>>> job = store.create("backtest", {"strategy": "name: x"})
>>> job.state, job.attempts
('queued', 0)
>>> claimed = store.claim("worker-1")
>>> claimed.id == job.id, claimed.state, claimed.attempts
(True, 'warming_up', 1)
>>> store.claim("worker-2") is None
True
>>> store.start(job.id, "worker-1") and store.finish(job.id, "worker-1", {"run": "x-1"})
True
>>> [e.type for e in store.events(job.id)]
['state', 'state', 'state', 'state']
>>> store.get(job.id).state
'done'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa

from backforge.errors import BackforgeError

__all__ = ["JobStore", "Job", "Event", "JobConflict", "JobNotFound", "STATES", "ACTIVE_STATES", "TERMINAL_STATES",
           "default_store_url"]

STATES = ("queued", "warming_up", "running", "done", "failed", "cancelled")
ACTIVE_STATES = ("warming_up", "running")
TERMINAL_STATES = ("done", "failed", "cancelled")


class JobNotFound(BackforgeError):
    """No job with this id."""

    code = "BF-SERVICE"


class JobConflict(BackforgeError):
    """The job is not in a state that allows the request (e.g. cancelling a finished job)."""

    code = "BF-SERVICE"


metadata = sa.MetaData()

jobs_table = sa.Table(
    "bf_jobs", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=2),
    sa.Column("worker", sa.String(64)),
    sa.Column("heartbeat", sa.Float),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("eta", sa.Float),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Index("bf_jobs_state_created", "state", "created"),
    sa.Index("bf_jobs_kind", "kind"),
)

events_table = sa.Table(
    "bf_job_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Index("bf_job_events_job", "job_id", "id"),
)

tokens_table = sa.Table(
    "bf_api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(128), nullable=False, unique=True),
    sa.Column("created", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Job:
    """One row of the job table, decoded."""

    id: str
    kind: str
    state: str
    config: dict[str, Any]
    created: float
    updated: float
    started: float | None
    finished: float | None
    attempts: int
    max_attempts: int
    worker: str | None
    heartbeat: float | None
    progress: float
    eta: float | None
    message: str
    result: dict[str, Any] | None
    error: str | None

    @property
    def terminal(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.state in TERMINAL_STATES

    def to_dict(self, *, config: bool = True) -> dict[str, Any]:
        """JSON-ready (``config=False`` leaves the submitted config out, for lists)."""
        out = {"id": self.id, "kind": self.kind, "state": self.state, "created": self.created,
               "updated": self.updated, "started": self.started, "finished": self.finished,
               "attempts": self.attempts, "max_attempts": self.max_attempts, "worker": self.worker,
               "heartbeat": self.heartbeat, "progress": self.progress, "eta": self.eta, "message": self.message,
               "result": self.result, "error": self.error}
        if config:
            out["config"] = self.config
        return out


@dataclass(frozen=True)
class Event:
    """A state change, a progress report or a log line of one job."""

    id: int
    job_id: str
    time: float
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "job_id": self.job_id, "time": self.time, "type": self.type, **self.data}


def default_store_url(catalog_root: str | Path | None = None) -> str:
    """``sqlite:///<catalog>/service.db``: the job store beside the catalog (``$BACKFORGE_DATA`` or
    ``./backforge-data``).

    Examples
    --------
    >>> default_store_url("/tmp/cat")
    'sqlite:////tmp/cat/service.db'
    """
    import os

    from backforge.data.catalog import DEFAULT_ROOT

    root = Path(catalog_root or os.environ.get("BACKFORGE_DATA") or DEFAULT_ROOT)
    return f"sqlite:///{(root / 'service.db').as_posix()}"


def _finite(value: Any) -> Any:
    """NaN and infinities (a Sharpe ratio without trades) become None: the stored JSON stays standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(_finite(value), allow_nan=False, default=str)


def _row_to_job(row: Any) -> Job:
    m = row._mapping
    return Job(id=m["id"], kind=m["kind"], state=m["state"], config=json.loads(m["config"]), created=m["created"],
               updated=m["updated"], started=m["started"], finished=m["finished"], attempts=m["attempts"],
               max_attempts=m["max_attempts"], worker=m["worker"], heartbeat=m["heartbeat"], progress=m["progress"],
               eta=m["eta"], message=m["message"] or "", result=json.loads(m["result"]) if m["result"] else None,
               error=m["error"])


# the columns of a job in table order: the lean status read fetches them as a plain tuple
_JOB_COLUMNS = tuple(c.name for c in jobs_table.columns)
_SCALAR_COLUMNS = tuple(c for c in _JOB_COLUMNS if c not in ("config", "result"))
_CONFIG_AT, _RESULT_AT = _JOB_COLUMNS.index("config"), _JOB_COLUMNS.index("result")


def _lean_queries() -> dict[str, Any]:
    """The statements of :meth:`JobStore._lean_read`, with named parameters."""
    e = events_table.c
    return {
        "job": sa.select(*(jobs_table.c[c] for c in _JOB_COLUMNS)).where(jobs_table.c.id == sa.bindparam("id")),
        "events": (sa.select(e.id, e.job_id, e.time, e.type, e.data)
                   .where(e.job_id == sa.bindparam("job_id"), e.id > sa.bindparam("after"))
                   .order_by(e.id).limit(sa.bindparam("limit", type_=sa.Integer))),
    }


def _status_json(row: tuple) -> bytes:
    """A job row as the JSON of :meth:`Job.to_dict`, without decoding the stored config and result: they
    are JSON texts already (written by :func:`_dumps`, finite by construction) and are spliced in as they are."""
    values = dict(zip(_JOB_COLUMNS, row))
    config, result = values.pop("config"), values.pop("result")
    values["message"] = values["message"] or ""
    head = json.dumps(_finite(values), allow_nan=False, separators=(",", ":"))
    return f'{head[:-1]},"result":{result or "null"},"config":{config}}}'.encode()


def token_digest(token: str) -> str:
    """The stored form of an API token: its SHA-256 (the token itself is never written anywhere).

    Examples
    --------
    >>> len(token_digest("secret")), token_digest("secret") == token_digest("secret")
    (64, True)
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class JobStore:
    """Jobs, events and heartbeats in a SQLAlchemy database (see the module docstring).

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///path/service.db`` (WAL mode, created with its folder),
        ``sqlite://`` (in memory, one process) or ``postgresql+psycopg://user@host:port/db``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise BackforgeError(f"not a database URL: {url!r}; use e.g. sqlite:///service.db or "
                                 "postgresql+psycopg://user@host/db", field="store") from None
        self.dialect = parsed.get_backend_name()
        self._sqlite = self.dialect == "sqlite"
        if self._sqlite:
            database = parsed.database
            memory = not database or database == ":memory:"
            if not memory:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
            if memory:
                kwargs["poolclass"] = sa.pool.StaticPool
            self.engine = sa.create_engine(url, **kwargs)
            self._write_engine = self.engine if memory else sa.create_engine(url, **kwargs)
            self._sqlite_hooks(self.engine, immediate=memory)
            if self._write_engine is not self.engine:
                self._sqlite_hooks(self._write_engine, immediate=True)
        else:
            try:
                self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            except (sa.exc.ArgumentError, ImportError, sa.exc.NoSuchModuleError) as exc:
                raise BackforgeError(f"cannot open the job store {parsed.render_as_string(hide_password=True)}: {exc}",
                                     field="store") from None
            self._write_engine = self.engine
        # the status readers: one kept connection per thread (not for an in-memory SQLite: one connection)
        self._readers = threading.local()
        self._reader_connections: list[Any] = []
        self._reader_lock = threading.Lock()
        shared_memory = self._sqlite and self._write_engine is self.engine
        reader_args = {"connect_args": {"timeout": 30, "check_same_thread": False}} if self._sqlite else {}
        self._reader_engine = None if shared_memory else sa.create_engine(url, poolclass=sa.pool.NullPool,
                                                                          **reader_args)
        # the two reads behind every status request and every event-stream poll, compiled once
        self._lean = {name: self.engine.dialect.statement_compiler(self.engine.dialect, query)
                      for name, query in _lean_queries().items()}
        try:
            metadata.create_all(self._write_engine)
        except sa.exc.OperationalError as exc:
            raise BackforgeError(f"cannot open the job store {parsed.render_as_string(hide_password=True)}: "
                                 f"{str(exc.orig).strip().splitlines()[0]}", field="store") from None

    @staticmethod
    def _sqlite_hooks(engine: sa.engine.Engine, *, immediate: bool) -> None:
        """WAL, a busy timeout, and (for the write engine) ``BEGIN IMMEDIATE`` so a read-then-write
        transaction takes the write lock up front instead of failing on the upgrade."""

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def close(self) -> None:
        """Release the connection pools and the status readers' connections."""
        with self._reader_lock:
            for connection in self._reader_connections:
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - closing a connection that is already gone
                    pass
            self._reader_connections.clear()
        self._readers = threading.local()
        self.engine.dispose()
        if self._write_engine is not self.engine:
            self._write_engine.dispose()

    # ------------------------------------------------------------------ the lean status read
    def _reader(self) -> Any:
        """This thread's own DBAPI connection for single-row reads (autocommit: no transaction is held
        open between reads), made once and kept; None for an in-memory SQLite store (one connection)."""
        cursor = getattr(self._readers, "cursor", None)
        if cursor is not None or self._reader_engine is None:
            return cursor
        fairy = self._reader_engine.raw_connection()
        dbapi = fairy.dbapi_connection
        if self._sqlite:
            dbapi.isolation_level = None
            dbapi.execute("PRAGMA busy_timeout=30000")
        else:
            dbapi.autocommit = True
        with self._reader_lock:
            self._reader_connections.append(fairy)
        self._readers.cursor = cursor = dbapi.cursor()
        return cursor

    def _lean_read(self, name: str, **values: Any) -> list[tuple]:
        """Rows of one of the lean queries (:func:`_lean_queries`): the compiled statement run on this
        thread's kept connection, no Core or ORM layer on the way; through the engine for an in-memory
        SQLite store."""
        compiled = self._lean[name]
        cursor = self._reader()
        if cursor is None:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(compiled.statement, values).all()]
        bound = compiled.construct_params(values)  # the given values and the statement's own (e.g. OFFSET)
        params: Any = tuple(bound[key] for key in compiled.positiontup) if compiled.positional else bound
        try:
            cursor.execute(compiled.string, params)
            return cursor.fetchall()
        except Exception:  # noqa: BLE001 - a dropped connection (a PostgreSQL restart): reconnect once
            self._readers.cursor = None
            cursor = self._reader()
            cursor.execute(compiled.string, params)
            return cursor.fetchall()

    def _fetch_row(self, job_id: str) -> tuple | None:
        """The job's columns (``_JOB_COLUMNS`` order) by primary key (the read behind every status request)."""
        rows = self._lean_read("job", id=job_id)
        return rows[0] if rows else None

    def status_json(self, job_id: str) -> bytes:
        """The job as JSON (what ``GET /api/jobs/{id}`` answers), or :class:`JobNotFound`.

        Examples
        --------
        >>> store = JobStore("sqlite://")
        >>> job = store.create("backtest", {"strategy": "name: x"})
        >>> json.loads(store.status_json(job.id)) == store.get(job.id).to_dict()
        True
        """
        row = self._fetch_row(job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id!r}", field="id")
        return _status_json(row)

    # ------------------------------------------------------------------ helpers
    def _write(self):
        return self._write_engine.begin()

    def _event(self, conn: Any, job_id: str, type_: str, data: dict[str, Any], now: float) -> None:
        conn.execute(events_table.insert().values(job_id=job_id, time=now, type=type_,
                                                  data=_dumps(data)))

    def _transition(self, job_id: str, *, to: str, where_states: Iterable[str], worker: str | None = None,
                    values: dict[str, Any] | None = None, event: dict[str, Any] | None = None) -> bool:
        """Move ``job_id`` to state ``to`` if it is in one of ``where_states`` (and held by ``worker``
        when given); record a state event. False when the condition did not hold."""
        now = time.time()
        cond = [jobs_table.c.id == job_id, jobs_table.c.state.in_(list(where_states))]
        if worker is not None:
            cond.append(jobs_table.c.worker == worker)
        with self._write() as conn:
            done = conn.execute(jobs_table.update().where(*cond).values(state=to, updated=now, **(values or {})))
            if done.rowcount != 1:
                return False
            self._event(conn, job_id, "state", {"state": to, **(event or {})}, now)
        return True

    # ------------------------------------------------------------------ jobs
    def create(self, kind: str, config: dict[str, Any], *, max_attempts: int = 2) -> Job:
        """Queue a new job (the config was validated by the caller)."""
        now = time.time()
        job_id = uuid.uuid4().hex[:16]
        with self._write() as conn:
            conn.execute(jobs_table.insert().values(
                id=job_id, kind=kind, state="queued", config=_dumps(config), created=now,
                updated=now, attempts=0, max_attempts=max_attempts, progress=0.0, message="queued"))
            self._event(conn, job_id, "state", {"state": "queued"}, now)
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """The job, or :class:`JobNotFound`."""
        row = self._fetch_row(job_id)
        if row is None:
            raise JobNotFound(f"no job {job_id!r}", field="id")
        values = dict(zip(_JOB_COLUMNS, row))
        values["config"] = json.loads(values["config"])
        values["result"] = json.loads(values["result"]) if values["result"] else None
        values["message"] = values["message"] or ""
        return Job(**values)

    def list(self, *, state: str | None = None, kind: str | None = None, limit: int = 50, offset: int = 0,
             ) -> tuple[list[Job], int]:
        """Jobs newest first, filtered by state and kind (bound parameters, never SQL text), and the
        total count that matches."""
        cond = []
        if state is not None:
            cond.append(jobs_table.c.state == state)
        if kind is not None:
            cond.append(jobs_table.c.kind == kind)
        query = sa.select(jobs_table).where(*cond).order_by(jobs_table.c.created.desc(), jobs_table.c.id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(jobs_table).where(*cond)).scalar_one()
        return [_row_to_job(r) for r in rows], int(total)

    def counts(self) -> dict[str, int]:
        """Number of jobs per state."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)).all()
        return {state: 0 for state in STATES} | {r[0]: int(r[1]) for r in rows}

    def claim(self, worker: str) -> Job | None:
        """Atomically take the oldest queued job for ``worker`` (state ``warming_up``), or None."""
        now = time.time()
        for _ in range(20):
            with self._write() as conn:
                query = (sa.select(jobs_table.c.id).where(jobs_table.c.state == "queued")
                         .order_by(jobs_table.c.created, jobs_table.c.id).limit(1))
                if not self._sqlite:
                    query = query.with_for_update(skip_locked=True)
                job_id = conn.execute(query).scalar()
                if job_id is None:
                    return None
                done = conn.execute(jobs_table.update().where(jobs_table.c.id == job_id, jobs_table.c.state == "queued")
                                    .values(state="warming_up", worker=worker, heartbeat=now, started=now, updated=now,
                                            attempts=jobs_table.c.attempts + 1, progress=0.0, eta=None,
                                            message="warming up", error=None))
                if done.rowcount == 1:
                    self._event(conn, job_id, "state", {"state": "warming_up", "worker": worker}, now)
                    break
        else:
            return None
        return self.get(job_id)

    def start(self, job_id: str, worker: str) -> bool:
        """``warming_up → running``; False when the job is no longer this worker's (cancelled, lost)."""
        return self._transition(job_id, to="running", where_states=["warming_up"], worker=worker,
                                values={"heartbeat": time.time(), "message": "running"})

    def progress(self, job_id: str, worker: str, fraction: float, message: str = "") -> bool:
        """Record progress (0..1, with an ETA from the time since the start) and a heartbeat; False when
        the job is no longer this worker's — the worker then stops."""
        now = time.time()
        fraction = min(max(float(fraction), 0.0), 1.0)
        with self._write() as conn:
            row = conn.execute(sa.select(jobs_table.c.started).where(
                jobs_table.c.id == job_id, jobs_table.c.worker == worker,
                jobs_table.c.state.in_(ACTIVE_STATES))).first()
            if row is None:
                return False
            elapsed = now - (row[0] or now)
            eta = elapsed * (1.0 - fraction) / fraction if fraction > 0 else None
            conn.execute(jobs_table.update().where(jobs_table.c.id == job_id).values(
                progress=fraction, eta=eta, message=message, heartbeat=now, updated=now))
            self._event(conn, job_id, "progress", {"progress": fraction, "eta": eta, "message": message}, now)
        return True

    def heartbeat(self, job_id: str, worker: str) -> bool:
        """Refresh the heartbeat; False when the job is no longer this worker's (cancelled or lost)."""
        with self._write() as conn:
            done = conn.execute(jobs_table.update().where(
                jobs_table.c.id == job_id, jobs_table.c.worker == worker,
                jobs_table.c.state.in_(ACTIVE_STATES)).values(heartbeat=time.time()))
        return done.rowcount == 1

    def log(self, job_id: str, line: str) -> None:
        """Append a log line to the job's events."""
        with self._write() as conn:
            self._event(conn, job_id, "log", {"line": str(line)}, time.time())

    def finish(self, job_id: str, worker: str, result: dict[str, Any]) -> bool:
        """``running → done`` with the result (e.g. the saved run's id)."""
        now = time.time()
        return self._transition(job_id, to="done", where_states=["running"], worker=worker,
                                values={"result": _dumps(result), "finished": now,
                                        "progress": 1.0, "eta": 0.0, "message": "done"}, event={"result": result})

    def fail(self, job_id: str, worker: str, reason: str) -> bool:
        """A job that cannot succeed (bad data, an error in the strategy): failed, not retried."""
        return self._transition(job_id, to="failed", where_states=ACTIVE_STATES, worker=worker,
                                values={"error": reason, "finished": time.time(), "message": "failed"},
                                event={"error": reason})

    def lost(self, job_id: str, reason: str, *, worker: str | None = None) -> str | None:
        """The job's worker died or stopped beating: queue it again while it has attempts left, else fail
        it with ``reason``. Returns the new state (None when the job was not active any more)."""
        job = self.get(job_id)
        if job.state not in ACTIVE_STATES or (worker is not None and job.worker != worker):
            return None
        if job.attempts < job.max_attempts:
            ok = self._transition(job_id, to="queued", where_states=ACTIVE_STATES, worker=job.worker,
                                  values={"worker": None, "heartbeat": None, "progress": 0.0, "eta": None,
                                          "message": f"retrying: {reason}", "error": reason},
                                  event={"reason": reason, "retry": True})
            return "queued" if ok else None
        ok = self._transition(job_id, to="failed", where_states=ACTIVE_STATES, worker=job.worker,
                              values={"error": f"{reason} (after {job.attempts} attempts)", "finished": time.time(),
                                      "message": "failed"},
                              event={"error": f"{reason} (after {job.attempts} attempts)"})
        return "failed" if ok else None

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued, warming-up or running job (its worker notices and stops); a finished job
        raises :class:`JobConflict`."""
        job = self.get(job_id)
        if job.terminal:
            raise JobConflict(f"job {job_id} is already {job.state}; only queued, warming_up or running jobs can be "
                              "cancelled", field="state")
        ok = self._transition(job_id, to="cancelled", where_states=["queued", *ACTIVE_STATES],
                              values={"finished": time.time(), "message": "cancelled", "eta": None},
                              event={"previous": job.state})
        if not ok:  # it finished in between
            job = self.get(job_id)
            raise JobConflict(f"job {job_id} is already {job.state}; only queued, warming_up or running jobs can be "
                              "cancelled", field="state")
        return self.get(job_id)

    def active(self) -> list[Job]:
        """Jobs held by a worker (warming up or running)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs_table).where(jobs_table.c.state.in_(ACTIVE_STATES))).all()
        return [_row_to_job(r) for r in rows]

    def stale(self, older_than: float) -> list[Job]:
        """Active jobs whose last heartbeat is more than ``older_than`` seconds old."""
        limit = time.time() - older_than
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs_table).where(jobs_table.c.state.in_(ACTIVE_STATES),
                                                            jobs_table.c.heartbeat < limit)).all()
        return [_row_to_job(r) for r in rows]

    def events(self, job_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """The job's events with an id above ``after``, oldest first."""
        rows = self._lean_read("events", job_id=job_id, after=int(after), limit=int(limit))
        return [Event(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    # ------------------------------------------------------------------ API tokens
    def has_tokens(self) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(tokens_table)).scalar_one() > 0

    def add_token(self, token: str) -> None:
        """Store the digest of a token (idempotent)."""
        digest = token_digest(token)
        with self._write() as conn:
            exists = conn.execute(sa.select(tokens_table.c.id).where(tokens_table.c.digest == digest)).first()
            if exists is None:
                conn.execute(tokens_table.insert().values(digest=digest, created=time.time()))

    def token_digests(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(tokens_table.c.digest)).all()]

    def check_token(self, token: str, digests: Iterable[str] | None = None) -> bool:
        """Whether ``token`` is a stored token (constant-time comparison of digests)."""
        digest = token_digest(token)
        found = False
        for known in (self.token_digests() if digests is None else digests):
            found |= hmac.compare_digest(digest, known)
        return found

"""The session store: one SQLite database (WAL) per paper/live session, in the session's state folder.

It holds everything a restarted runner needs to carry on without sending an order twice:

* ``meta`` — the session id, the strategy config and its hash, halt state;
* ``bars`` — every bar consumed (index, timestamp, fingerprint of its prices) with equity and cash after it;
* ``orders`` — every order with its deterministic client order id (session, bar, strategy, leg), written
  and committed *before* it is sent, then its broker acknowledgements and status; ``request`` holds what
  sends it again after a restart: a strategy's order keeps its engine fields as a BLOB (the row's columns
  hold the rest), an operator's (flatten) the whole request as JSON;
* ``fills`` — executions, unique by the venue's ``fill_id`` (a fill replayed by a reconnect or restart is
  ignored);
* ``positions`` — the broker's positions at the last reconciliation;
* ``snapshots`` — the compiled engine state arrays (``np.savez`` in a BLOB, with a format version);
* ``signals``, ``events`` and ``control`` — audit events, reconciliation/halt events, and commands left by
  ``backforge sessions halt|resume|flatten|stop`` for the running runner.

Durability. The database runs in WAL mode with ``synchronous=NORMAL``: a committed transaction has been
written to the WAL file (handed to the operating system) before ``COMMIT`` returns, so it survives the
runner's process being killed at any moment (SIGKILL, a crash, an OOM kill) — the fault model of the
crash test. What ``NORMAL`` does not promise is survival of a power loss or kernel panic before the OS
flushes its cache (the last transactions may be lost; the database stays consistent). An fsync per order
cost 1-25 ms on this machine, more than everything else the runner does per bar; a lost tail after a
power cut is recovered like any other restart — reconciliation with the broker (its open orders, fills
and positions) before acting. The runner groups its writes per bar (:meth:`SessionStore.bar_batch`): the
fills and acknowledgements drained at the bar's start and the bar's order intents are committed in one
transaction *before* any of those orders is sent; what is written while sending (send counts,
acknowledgements, immediate fills) is committed with the bar record itself. A kill in between loses only
what the broker can tell again, and reconciliation asks it.

One runner writes a folder at a time: a lock file (``fcntl.flock``) refuses a second one. A corrupt or
locked database, or a folder written by a different strategy config (hash mismatch; ``force`` overrides),
raises one :class:`SessionError` naming the folder.

Examples
--------
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> store = SessionStore.open(folder, config={"name": "x"}, session_id="s1")
>>> store.write_intent(OrderIntent("s1-3-0-0", bar=3, ts_ns=10, strategy=0, leg=0, engine_id=0, symbol="AAPL",
...                                side="buy", qty=5.0, order_type="market"))
True
>>> store.order("s1-3-0-0")["status"]
'intent'
>>> store.add_fill(Fill("f1", "s1-3-0-0", "v1", "AAPL", "buy", 5.0, 100.0)), store.add_fill(Fill("f1", "s1-3-0-0", "v1", "AAPL", "buy", 5.0, 100.0))
(True, False)
>>> store.close()
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backforge.errors import BackforgeError
from backforge.live.broker import BrokerOrder, Fill

__all__ = ["DB_NAME", "SNAPSHOT_VERSION", "OrderIntent", "SessionError", "SessionStore", "config_hash"]

DB_NAME = "session.db"
LOCK_NAME = "runner.lock"
SCHEMA_VERSION = 1
SNAPSHOT_VERSION = 3
KEEP_SNAPSHOTS = 3

# order statuses in the store: the broker's (broker.ORDER_STATUSES) plus the runner's own
#   intent    written, not yet sent (or sent and the runner died before hearing back)
#   ambiguous sent, outcome unknown (timeout, 5xx, disconnect): in flight until reconciled
#   waiting   held back by the in-flight gate; sent when the asset's earlier order is resolved
#   suppressed decided while the session was halted; never sent
IN_FLIGHT = ("intent", "ambiguous", "accepted", "partially_filled", "pending_cancel")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bars (t INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL UNIQUE, fingerprint TEXT NOT NULL,
    equity REAL, cash REAL, wall_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (client_order_id TEXT PRIMARY KEY, bar INTEGER, ts_ns INTEGER, strategy INTEGER,
    leg INTEGER, engine_id INTEGER, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL, order_type TEXT,
    limit_price REAL, stop_price REAL, request TEXT, status TEXT NOT NULL, venue_order_id TEXT, filled_qty REAL DEFAULT 0,
    avg_fill_price REAL, reason TEXT DEFAULT '', external INTEGER DEFAULT 0, sends INTEGER DEFAULT 0,
    created_wall_ns INTEGER, updated_wall_ns INTEGER);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status);
CREATE TABLE IF NOT EXISTS fills (fill_id TEXT PRIMARY KEY, client_order_id TEXT, venue_order_id TEXT, symbol TEXT,
    side TEXT, qty REAL, price REAL, fee REAL, ts_ns INTEGER, seq INTEGER);
CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, qty REAL, avg_price REAL, updated_wall_ns INTEGER);
CREATE TABLE IF NOT EXISTS snapshots (t INTEGER PRIMARY KEY, ts_ns INTEGER, version INTEGER, data BLOB,
    wall_ns INTEGER);
CREATE TABLE IF NOT EXISTS signals (seq INTEGER PRIMARY KEY AUTOINCREMENT, t INTEGER, ts_ns INTEGER, strategy INTEGER,
    asset INTEGER, action INTEGER, order_id INTEGER, value REAL, leaves TEXT);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, wall_ns INTEGER, kind TEXT, payload TEXT);
CREATE TABLE IF NOT EXISTS control (seq INTEGER PRIMARY KEY AUTOINCREMENT, wall_ns INTEGER, command TEXT,
    done INTEGER DEFAULT 0);
"""


class SessionError(BackforgeError):
    """A session's state folder cannot be used (locked, corrupt, written by another strategy version)."""

    code = "BF-SESSION"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """An order the runner decided, as written to the store before it is sent."""

    client_order_id: str
    bar: int
    ts_ns: int
    strategy: int
    leg: int
    engine_id: int
    symbol: str
    side: str
    qty: float
    order_type: str
    limit_price: float | None = None
    stop_price: float | None = None
    request: str | bytes = ""
    """What sends the order again after a restart: the ``OrderRequest`` as JSON, or for a strategy's order its
    engine fields as bytes (``live._engine.engine_rows``; the row's own columns hold the rest)."""
    status: str = "intent"


_INSERT_INTENT = ("INSERT OR IGNORE INTO orders (client_order_id, bar, ts_ns, strategy, leg, engine_id, symbol, side,"
                  " qty, order_type, limit_price, stop_price, request, status, created_wall_ns, updated_wall_ns)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

_ACK = ("UPDATE orders SET sends = sends + ?, status = ?, venue_order_id = COALESCE(?, venue_order_id), filled_qty = ?,"
        " avg_fill_price = ?, reason = CASE WHEN ? != '' THEN ? ELSE reason END, updated_wall_ns = ?"
        " WHERE client_order_id = ?")
"""The broker's view of a stored order (with ``sends`` more sends counted): :meth:`SessionStore.record_ack`,
``record_acks`` and ``record_sends``."""


def _ack_row(sends: int, o: BrokerOrder, now: int) -> tuple:
    return (sends, o.status, o.venue_order_id, o.filled_qty, o.avg_fill_price, o.reason, o.reason, now,
            o.client_order_id)


def config_hash(config: Any) -> str:
    """A stable 16-hex-digit hash of a JSON-serializable config.

    >>> config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _now() -> int:
    return time.time_ns()


class SessionStore:
    """The SQLite store of one session. Open it with :meth:`open` (the runner, exclusive) or :meth:`read`
    (status views and ``sessions`` commands, no lock)."""

    def __init__(self, folder: Path, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.folder = folder
        self.conn = conn
        self._lock_fd = lock_fd
        self._batch = False  # inside bar_batch(): writes join one open transaction
        self._fill_seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM fills")

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, folder: str | Path, *, config: Any, session_id: str | None = None, force: bool = False,
             lock: bool = True) -> SessionStore:
        """Open (or create) the store of ``folder`` for the runner: takes the folder's lock, checks the
        database, and checks that ``config`` hashes to the value recorded at creation (``force`` accepts a
        different one and records that it did)."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SessionError(f"cannot create the state folder: {exc.strerror}", path=str(folder)) from None
        lock_fd = _take_lock(folder) if lock else None
        try:
            conn = _connect(folder / DB_NAME)
            store = cls(folder, conn, lock_fd)
            store._init_meta(config, session_id, force)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return store

    @classmethod
    def read(cls, folder: str | Path) -> SessionStore:
        """Open an existing store without taking the runner's lock (readers and control commands)."""
        folder = Path(folder)
        if not (folder / DB_NAME).is_file():
            raise SessionError("no session here (no session.db)", path=str(folder))
        return cls(folder, _connect(folder / DB_NAME), None)

    def _init_meta(self, config: Any, session_id: str | None, force: bool) -> None:
        digest = config_hash(config)
        existing = self.meta("config_hash")
        if existing is None:
            with self.transaction():
                for key, value in (("schema_version", str(SCHEMA_VERSION)), ("session_id", session_id or digest),
                                   ("config", json.dumps(config, sort_keys=True, default=str)),
                                   ("config_hash", digest), ("created_ns", str(_now())), ("halted", "")):
                    self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            return
        if existing != digest:
            if not force:
                raise SessionError(f"this state folder was written by a different strategy config (hash {existing}, "
                                   f"now {digest}); use another --state folder, or --force to continue it anyway",
                                   path=str(self.folder))
            with self.transaction():
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True, default=str),))
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('config_hash', ?)", (digest,))
                self._event("forced_config", {"old_hash": existing, "new_hash": digest})

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------ helpers
    def transaction(self):
        """``with store.transaction():`` — ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error); inside
        :meth:`bar_batch` the writes join the batch's open transaction instead."""
        return _Joined() if self._batch else _Transaction(self.conn)

    def bar_batch(self) -> _Batch:
        """``with store.bar_batch():`` — every write until the block ends (or :meth:`commit_pending`) goes into one
        transaction, committed at the end of the block (also when the block raises)."""
        return _Batch(self)

    def commit_pending(self) -> None:
        """Commit what a :meth:`bar_batch` wrote so far and carry on in a new transaction (the write-before-send
        point: order intents are committed here before any is sent)."""
        if self._batch:
            self.conn.execute("COMMIT")
            self.conn.execute("BEGIN IMMEDIATE")

    def _scalar(self, sql: str, args: tuple = ()) -> Any:
        try:
            row = self.conn.execute(sql, args).fetchone()
        except sqlite3.DatabaseError as exc:
            raise SessionError(f"the state database is unreadable ({exc})", path=str(self.folder / DB_NAME)) from None
        return row[0] if row else None

    def meta(self, key: str) -> str | None:
        return self._scalar("SELECT value FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def session_id(self) -> str:
        return self.meta("session_id") or ""

    def _event(self, kind: str, payload: dict) -> None:
        self.conn.execute("INSERT INTO events (wall_ns, kind, payload) VALUES (?, ?, ?)",
                          (_now(), kind, json.dumps(payload, default=str)))

    def event(self, kind: str, payload: dict) -> None:
        """Record a reconciliation/halt/repair event."""
        with self.transaction():
            self._event(kind, payload)

    def events(self, kind: str | None = None) -> list[dict]:
        sql = "SELECT seq, wall_ns, kind, payload FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY seq"
        rows = self.conn.execute(sql, (kind,) if kind else ()).fetchall()
        return [{"seq": r[0], "wall_ns": r[1], "kind": r[2], **json.loads(r[3])} for r in rows]

    # ------------------------------------------------------------------ orders
    def write_intent(self, intent: OrderIntent) -> bool:
        """Persist an order before it is sent (committed before this returns, see the module docstring on
        durability). False when the client order id is already stored (a restarted runner re-deciding a bar):
        nothing is overwritten."""
        return self.write_intents([intent])[0]

    def write_intents(self, intents: list[OrderIntent]) -> list[bool]:
        """:meth:`write_intent` for the orders of one bar in one transaction (inside a :meth:`bar_batch`, the
        batch so far is committed with them)."""
        if not intents:
            return []
        now = _now()
        rows = [(i.client_order_id, i.bar, i.ts_ns, i.strategy, i.leg, i.engine_id, i.symbol, i.side, i.qty,
                 i.order_type, i.limit_price, i.stop_price, i.request, i.status, now, now) for i in intents]
        with self.transaction():
            fresh = self._insert_new(_INSERT_INTENT, rows,
                                     "SELECT client_order_id FROM orders WHERE client_order_id IN")
        self.commit_pending()
        return fresh

    def _insert_new(self, insert: str, rows: list[tuple], known_sql: str, renumber=None) -> list[bool]:
        """``INSERT OR IGNORE`` the rows (keyed by their first value) in one executemany; whether each was new.
        When every row went in (the common case: a bar re-decided after a restart, or a fill replayed, is
        rare) that is the answer, without a look-up. Otherwise the insert is rolled back to a savepoint and
        done again after one look-up of the keys already stored (``known_sql``, completed with ``(?, ...)``):
        the first row of a key is the new one, later rows of the same key are not (``renumber`` rewrites the
        new rows before that second insert)."""
        conn = self.conn
        conn.execute("SAVEPOINT insert_new")
        before = conn.total_changes
        conn.executemany(insert, rows)
        if conn.total_changes - before == len(rows):
            conn.execute("RELEASE insert_new")
            return [True] * len(rows)
        conn.execute("ROLLBACK TO insert_new")
        keys = [r[0] for r in rows]
        known: set = set()
        for lo in range(0, len(keys), 500):  # within SQLite's bound-parameter limit
            chunk = keys[lo:lo + 500]
            known.update(r[0] for r in conn.execute(f"{known_sql} ({','.join('?' * len(chunk))})", chunk))
        fresh = []
        for key in keys:
            fresh.append(key not in known)
            known.add(key)
        new_rows = [r for r, new in zip(rows, fresh) if new]
        conn.executemany(insert, renumber(new_rows) if renumber is not None else new_rows)
        conn.execute("RELEASE insert_new")
        return fresh

    def mark_sent(self, client_order_id: str) -> None:
        with self.transaction():
            self.conn.execute("UPDATE orders SET sends = sends + 1, updated_wall_ns = ? WHERE client_order_id = ?",
                              (_now(), client_order_id))

    def record_sends(self, sends: list[tuple[int, BrokerOrder]]) -> None:
        """:meth:`mark_sent` (``n`` times) and :meth:`record_ack` of our own orders' answers, for the orders one
        bar sent, in one executemany (inside a :meth:`bar_batch` these are committed with the bar record, as the
        per-order writes were)."""
        if not sends:
            return
        now = _now()
        with self.transaction():
            self.conn.executemany(_ACK, [_ack_row(n, o, now) for n, o in sends])

    def set_status(self, client_order_id: str, status: str, reason: str = "") -> None:
        with self.transaction():
            self.conn.execute("UPDATE orders SET status = ?, reason = ?, updated_wall_ns = ? WHERE client_order_id = ?",
                              (status, reason, _now(), client_order_id))

    def record_ack(self, order: BrokerOrder, *, external: bool = False) -> None:
        """Store the broker's view of an order (an acknowledgement, an update or a reconciliation answer);
        an order the runner never wrote is stored as ``external``."""
        with self.transaction():
            cur = self.conn.execute(_ACK, _ack_row(0, order, _now()))
            if cur.rowcount == 0:
                self.conn.execute(
                    "INSERT INTO orders (client_order_id, symbol, side, qty, order_type, limit_price, stop_price, status,"
                    " venue_order_id, filled_qty, avg_fill_price, reason, external, created_wall_ns, updated_wall_ns)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (order.client_order_id, order.symbol, order.side, order.qty, order.order_type, order.limit_price,
                     order.stop_price, order.status, order.venue_order_id, order.filled_qty, order.avg_fill_price,
                     order.reason, 1 if external else 0, _now(), _now()))

    def record_acks(self, orders: list[BrokerOrder]) -> None:
        """:meth:`record_ack` of orders the store already holds (the runner's own), in one executemany."""
        if not orders:
            return
        now = _now()
        with self.transaction():
            self.conn.executemany(_ACK, [_ack_row(0, o, now) for o in orders])

    def order(self, client_order_id: str) -> dict | None:
        cur = self.conn.execute("SELECT * FROM orders WHERE client_order_id = ?", (client_order_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def orders(self, statuses: tuple[str, ...] | None = None) -> list[dict]:
        sql = "SELECT * FROM orders"
        args: tuple = ()
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args = tuple(statuses)
        cur = self.conn.execute(sql + " ORDER BY rowid", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def in_flight(self) -> list[dict]:
        """Orders sent (or about to be) whose final outcome the runner does not know yet."""
        return self.orders(IN_FLIGHT)

    # ------------------------------------------------------------------ fills and positions
    def add_fill(self, fill: Fill) -> bool:
        """Store a fill; False (ignored) when its ``fill_id`` is already stored."""
        return self.add_fills([fill])[0]

    def add_fills(self, fills: list[Fill]) -> list[bool]:
        """:meth:`add_fill` of each fill in order, in one transaction (one look-up of the ids already stored, one
        executemany): whether each was new."""
        if not fills:
            return []
        seq = self._fill_seq
        rows = [(f.fill_id, f.client_order_id, f.venue_order_id, f.symbol, f.side, f.qty, f.price, f.fee, f.ts_ns,
                 seq + i) for i, f in enumerate(fills, start=1)]
        with self.transaction():
            fresh = self._insert_new("INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows,
                                     "SELECT fill_id FROM fills WHERE fill_id IN",
                                     renumber=lambda new: [(*r[:-1], seq + i) for i, r in enumerate(new, start=1)])
        self._fill_seq = seq + sum(fresh)  # the stored fills' seq stays 1, 2, 3, ... without gaps
        return fresh

    def fills(self) -> list[dict]:
        cur = self.conn.execute("SELECT * FROM fills ORDER BY seq")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def last_fill_ts(self) -> int:
        return int(self._scalar("SELECT COALESCE(MAX(ts_ns), 0) FROM fills"))

    def set_positions(self, positions: dict[str, tuple[float, float]]) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM positions")
            self.conn.executemany("INSERT INTO positions VALUES (?, ?, ?, ?)",
                                  [(s, q, p, _now()) for s, (q, p) in positions.items()])

    def positions(self) -> dict[str, tuple[float, float]]:
        return {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT symbol, qty, avg_price FROM positions")}

    # ------------------------------------------------------------------ bars, signals, snapshots
    def last_bar(self) -> tuple[int, int, str] | None:
        """``(t, ts_ns, fingerprint)`` of the last consumed bar, or None."""
        row = self.conn.execute("SELECT t, ts_ns, fingerprint FROM bars ORDER BY t DESC LIMIT 1").fetchone()
        return (int(row[0]), int(row[1]), row[2]) if row else None

    def bar_fingerprint(self, ts_ns: int) -> str | None:
        return self._scalar("SELECT fingerprint FROM bars WHERE ts_ns = ?", (int(ts_ns),))

    def commit_bar(self, t: int, ts_ns: int, fingerprint: str, equity: float, cash: float,
                   signals: list[tuple] = (), snapshot: bytes | None = None) -> None:
        """Record a consumed bar, its signal events and (optionally) an engine snapshot in one transaction."""
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO bars VALUES (?, ?, ?, ?, ?, ?)",
                              (t, ts_ns, fingerprint, equity, cash, _now()))
            if signals:
                self.conn.execute("DELETE FROM signals WHERE t = ?", (t,))
                self.conn.executemany("INSERT INTO signals (t, ts_ns, strategy, asset, action, order_id, value, leaves)"
                                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", signals)
            if snapshot is not None:
                self.conn.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)",
                                  (t, ts_ns, SNAPSHOT_VERSION, snapshot, _now()))
                self.conn.execute("DELETE FROM snapshots WHERE t NOT IN (SELECT t FROM snapshots ORDER BY t DESC LIMIT ?)",
                                  (KEEP_SNAPSHOTS,))

    def bars(self) -> list[tuple]:
        return self.conn.execute("SELECT t, ts_ns, fingerprint, equity, cash FROM bars ORDER BY t").fetchall()

    def signals(self) -> list[tuple]:
        return self.conn.execute("SELECT t, ts_ns, strategy, asset, action, order_id, value, leaves FROM signals"
                                 " ORDER BY seq").fetchall()

    def last_snapshot(self) -> tuple[int, int, dict[str, np.ndarray]] | None:
        """``(t, ts_ns, arrays)`` of the newest engine snapshot, or None."""
        row = self.conn.execute("SELECT t, ts_ns, version, data FROM snapshots ORDER BY t DESC LIMIT 1").fetchone()
        if row is None:
            return None
        if row[2] != SNAPSHOT_VERSION:
            raise SessionError(f"the engine snapshot has format version {row[2]}, this backforge reads {SNAPSHOT_VERSION}",
                               path=str(self.folder / DB_NAME))
        try:
            arrays = unpack_arrays(bytes(row[3]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SessionError(f"the engine snapshot of bar {row[0]} is unreadable ({exc})",
                               path=str(self.folder / DB_NAME)) from None
        return int(row[0]), int(row[1]), arrays

    # ------------------------------------------------------------------ control commands
    def push_command(self, command: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT INTO control (wall_ns, command) VALUES (?, ?)", (_now(), command))

    def take_commands(self) -> list[str]:
        rows = self.conn.execute("SELECT seq, command FROM control WHERE done = 0 ORDER BY seq").fetchall()
        if rows:
            with self.transaction():
                self.conn.executemany("UPDATE control SET done = 1 WHERE seq = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows]


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    """Serialize arrays for a snapshot BLOB: a JSON header (names, NumPy dtype descriptions, shapes) and the
    raw bytes, no pickles. Inverse: :func:`unpack_arrays`.

    >>> import numpy as np
    >>> out = unpack_arrays(pack_arrays({"a": np.arange(3), "b": np.zeros((2, 2))}))
    >>> out["a"].tolist(), out["b"].shape
    ([0, 1, 2], (2, 2))
    """
    header = []
    chunks = []
    for name, value in arrays.items():
        value = np.ascontiguousarray(value)
        header.append([name, _descr(value.dtype), list(value.shape), value.nbytes])
        chunks.append(value.tobytes())
    head = json.dumps(header).encode()
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


_DESCRS: dict[np.dtype, Any] = {}


def _descr(dtype: np.dtype) -> Any:
    """``numpy.lib.format.dtype_to_descr``, memoized (a structured dtype's description costs ~50 us; a snapshot
    has a few dozen arrays of a handful of dtypes)."""
    descr = _DESCRS.get(dtype)
    if descr is None:
        from numpy.lib.format import dtype_to_descr

        descr = _DESCRS[dtype] = dtype_to_descr(dtype)
    return descr


def unpack_arrays(blob: bytes) -> dict[str, np.ndarray]:
    from numpy.lib.format import descr_to_dtype

    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8: 8 + size].decode())
    out = {}
    pos = 8 + size
    for name, descr, shape, nbytes in header:
        dtype = descr_to_dtype(descr if isinstance(descr, str) else [tuple(f) if isinstance(f, list) else f for f in descr])
        out[name] = np.frombuffer(blob, dtype=dtype, count=int(np.prod(shape)) if shape else 1, offset=pos).reshape(shape).copy()
        pos += nbytes
    return out


class _Joined:
    """A write inside a bar batch: part of the batch's open transaction."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> None:
        return None


class _Batch:
    def __init__(self, store: SessionStore) -> None:
        self.store = store

    def __enter__(self) -> SessionStore:
        if self.store._batch:
            raise RuntimeError("bar batches do not nest")
        self.store.conn.execute("BEGIN IMMEDIATE")
        self.store._batch = True
        return self.store

    def __exit__(self, kind, value, tb) -> None:
        # an error mid-bar keeps what was written (each write is valid on its own, as outside a batch)
        self.store._batch = False
        try:
            self.store.conn.execute("COMMIT")
        except sqlite3.Error:
            self.store.conn.execute("ROLLBACK")
            if kind is None:
                raise


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(check)
        conn.executescript(_SCHEMA)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise SessionError("the state database is locked by another process; stop it first", path=str(path)) from None
        raise SessionError(f"the state database cannot be opened ({exc})", path=str(path)) from None
    except sqlite3.DatabaseError as exc:
        raise SessionError(f"the state database is corrupt ({exc}); nothing was changed — move it away to start "
                           "a new session", path=str(path)) from None
    return conn


def _take_lock(folder: Path) -> int:
    import fcntl

    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        finally:
            os.close(fd)
        raise SessionError(f"another runner (pid {holder or '?'}) is using this state folder; stop it first",
                           path=str(folder)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def iter_sessions(root: str | Path) -> Iterator[Path]:
    """Session folders under ``root`` (the folder itself when it is one)."""
    root = Path(root)
    if (root / DB_NAME).is_file():
        yield root
        return
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if (child / DB_NAME).is_file():
                yield child


def _asdict(obj: Any) -> dict:
    return asdict(obj)

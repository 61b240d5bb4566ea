"""Parts shared by the venue adapters (Alpaca, ccxt, OANDA): credentials that never print, bounded retries
that honour ``Retry-After``, symbol suggestions, order conforming to a venue's tick and size rules, a
background event loop for websocket streams, and the update queue that drops a fill seen twice.

Examples
--------
>>> key = Secret("abc123")
>>> key, str(key)
(Secret('***'), '***')
>>> key.reveal()
'abc123'
>>> closest_symbols("AAPLL", ["AAPL", "MSFT", "AAP"])
['AAPL', 'AAP']
>>> scrub("bad key abc123 for /v2?signature=ffee", ["abc123"])
'bad key *** for /v2?signature=***'
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import queue
import re
import threading
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

from backforge._paths import config_dir
from backforge.live.broker import BrokerError, BrokerOrder, Fill, Instrument, OrderRequest

__all__ = [
    "Secret", "load_credentials", "RetryPolicy", "call_with_retry", "closest_symbols", "unknown_symbol_error",
    "conform_order", "scrub", "LoopThread", "UpdateQueue", "http_error_kind", "parse_retry_after",
    "DEFAULT_CONFIG_PATH",
]

log = logging.getLogger("backforge.live")
T = TypeVar("T")

DEFAULT_CONFIG_PATH = Path("~/.config/backforge/brokers.toml")
"""Where keys are read from when the environment does not have them (a TOML table per venue), on Linux
with ``XDG_CONFIG_HOME`` unset; the lookup itself uses :func:`backforge._paths.config_dir` (which honours
``XDG_CONFIG_HOME`` and uses platformdirs' folder elsewhere)."""


class Secret:
    """A credential that prints as ``***`` (repr, str, f-strings, logging); :meth:`reveal` hands the value
    to the client library and nothing else."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # never pickled into a state file by accident
        raise TypeError("a Secret cannot be pickled")


def load_credentials(venue: str, fields: dict[str, Sequence[str]], *, given: dict[str, str | None] | None = None,
                     config_path: str | os.PathLike | None = None, required: Sequence[str] | None = None
                     ) -> dict[str, Secret]:
    """Credentials for ``venue``: explicit values first, then environment variables (``fields`` maps each
    credential to the variable names tried in order), then the ``[venue]`` table of a TOML config file
    (``config_path``, ``$BACKFORGE_BROKERS_CONFIG`` or :data:`DEFAULT_CONFIG_PATH`). A missing required
    credential is an ``auth`` error naming the variables to set -- never a value.

    >>> import os
    >>> os.environ["DOCTEST_VENUE_KEY"] = "k-1"
    >>> creds = load_credentials("doctest", {"key": ["DOCTEST_VENUE_KEY"]}, config_path="/nonexistent.toml")
    >>> creds
    {'key': Secret('***')}
    >>> load_credentials("doctest", {"secret": ["DOCTEST_VENUE_SECRET"]}, config_path="/nonexistent.toml")
    Traceback (most recent call last):
    ...
    backforge.live.broker.BrokerError: doctest: no secret; set DOCTEST_VENUE_SECRET or put secret under [doctest] in /nonexistent.toml
    """
    given = given or {}
    path = Path(config_path or os.environ.get("BACKFORGE_BROKERS_CONFIG") or config_dir() / "brokers.toml").expanduser()
    table: dict = {}
    if path.is_file():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
            for part in venue.split("."):  # "ccxt.binance" reads the [ccxt.binance] table
                table = table.get(part, {}) if isinstance(table, dict) else {}
        except (OSError, tomllib.TOMLDecodeError) as exc:  # the message of a TOML error quotes no values
            raise BrokerError(f"{venue}: cannot read the broker config: {type(exc).__name__}", kind="auth",
                              path=str(path)) from None
    out: dict[str, Secret] = {}
    for name, variables in fields.items():
        value = given.get(name)
        if not value:
            value = next((os.environ[v] for v in variables if os.environ.get(v)), None)
        if not value:
            value = table.get(name)
        if value:
            out[name] = Secret(str(value))
            register_secrets(out[name])
    for name in (fields if required is None else required):
        if name not in out:
            names = " or ".join(fields[name])
            raise BrokerError(f"{venue}: no {name}; set {names} or put {name} under [{venue}] in {path}",
                              kind="auth")
    return out


class _SecretFilter(logging.Filter):
    """Scrubs every registered secret (and query-string credentials) from the records of the client
    libraries' loggers, which log request headers, URLs and websocket frames at DEBUG."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record that cannot be formatted is left to logging's own error path
            return True
        clean = scrub(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_REDACTOR = _SecretFilter()
LIBRARY_LOGGERS = ("ccxt.base.exchange", "websockets.client", "websockets.protocol", "urllib3.connectionpool",
                   "httpx", "httpcore.http11", "aiohttp.client", "alpaca.trading.stream",
                   "alpaca.data.live.websocket", "alpaca.common.rest")
for _name in LIBRARY_LOGGERS:
    logging.getLogger(_name).addFilter(_REDACTOR)


def register_secrets(*secrets: "Secret | str") -> None:
    """Add values that the client libraries' loggers must never print; they are also registered with
    :mod:`backforge._secrets`, so every message backforge itself redacts (events, errors, files) drops them."""
    from backforge._secrets import register_secret
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else str(secret)
        if len(value) >= 4:
            _REDACTOR.secrets.add(value)
            register_secret(value)


_SIGNATURE = re.compile(r"(signature|apiKey|api_key|token|secret|key)=([^&\s\"']+)", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+")


def scrub(text: str, secrets: Iterable[str | Secret] = ()) -> str:
    """``text`` with every secret value, query-string credential and bearer token replaced by ``***`` --
    applied to every message that comes from a client library before it reaches an error or a log."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = _SIGNATURE.sub(lambda m: f"{m.group(1)}=***", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}***", text)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of ``retryable`` failures: at most ``attempts`` calls in all, waiting the venue's
    ``Retry-After`` (capped at ``max_wait``) or ``base_delay * 2**i``. ``ambiguous``, ``final`` and ``auth``
    failures are never retried here."""

    attempts: int = 4
    base_delay: float = 0.5
    max_wait: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_wait)
        return min(self.base_delay * (2 ** attempt), self.max_wait)


def call_with_retry(call: Callable[[], T], policy: RetryPolicy, *, what: str,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``call``; on a ``retryable`` :class:`BrokerError` wait and try again, up to ``policy.attempts``.

    >>> tries = []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise BrokerError("429", kind="retryable", retry_after=0.0)
    ...     return "ok"
    >>> call_with_retry(flaky, RetryPolicy(attempts=3), what="get"), len(tries)
    ('ok', 3)
    """
    attempt = 0
    while True:
        try:
            return call()
        except BrokerError as exc:
            attempt += 1
            if exc.kind != "retryable" or attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt - 1, exc.retry_after)
            log.warning("%s: %s; retry %d/%d in %.2f s", what, exc, attempt, policy.attempts - 1, wait)
            sleep(wait)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable.

    >>> parse_retry_after("2"), parse_retry_after(None), parse_retry_after("soon")
    (2.0, None, None)
    """
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_error_kind(status: int, *, mutating: bool) -> str:
    """The failure class of an HTTP status: 401/403 ``auth``, 408/425/429 and 503 ``retryable``, other 5xx
    ``retryable`` for reads and ``ambiguous`` for order-changing requests, other 4xx ``final``.

    >>> [http_error_kind(s, mutating=True) for s in (401, 429, 503, 500, 400)]
    ['auth', 'retryable', 'retryable', 'ambiguous', 'final']
    """
    if status in (401, 403):
        return "auth"
    if status in (408, 425, 429, 503):
        return "retryable"
    if status >= 500:
        return "ambiguous" if mutating else "retryable"
    return "final"


def closest_symbols(symbol: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` listed symbols closest to ``symbol`` (case and separators ignored)."""
    choices = list(choices)

    def key(text: str) -> str:
        return re.sub(r"[^A-Z0-9]", "", text.upper())

    by_key: dict[str, str] = {}
    for choice in choices:
        by_key.setdefault(key(choice), choice)
    hits = difflib.get_close_matches(key(symbol), list(by_key), n=n, cutoff=0.5)
    return [by_key[h] for h in hits]


def unknown_symbol_error(venue: str, symbol: str, choices: Iterable[str]) -> BrokerError:
    near = closest_symbols(symbol, choices)
    hint = f"; closest: {', '.join(near)}" if near else "; no listed symbol is close"
    return BrokerError(f"{venue} does not list {symbol!r}{hint}", kind="final", asset=symbol)


def conform_order(request: OrderRequest, instrument: Instrument, *, venue: str,
                  reference_price: float | None = None) -> tuple[OrderRequest, list[str]]:
    """``request`` fitted to the venue's rules: the quantity rounded down to the step, prices moved onto the
    tick grid away from crossing (buys down, sells up; bracket children toward the safe side), and a
    ``final`` refusal when the quantity falls below the minimum size or the notional below the minimum.
    Returns the order to send and the reasons for every change (for the order log).

    >>> inst = Instrument("BTC/USDT", qty_step=0.001, min_qty=0.001, price_tick=0.01, min_notional=5.0)
    >>> req = OrderRequest("c1", "BTC/USDT", "buy", 0.12345, "limit", limit_price=100.017)
    >>> fitted, notes = conform_order(req, inst, venue="binance")
    >>> fitted.qty, fitted.limit_price
    (0.123, 100.01)
    >>> notes
    ['qty 0.12345 rounded down to 0.123 (step 0.001)', 'limit_price 100.017 rounded to 100.01 (tick 0.01)']
    >>> conform_order(OrderRequest("c2", "BTC/USDT", "buy", 0.0004), inst, venue="binance")
    Traceback (most recent call last):
    ...
    backforge.live.broker.BrokerError: asset BTC/USDT: binance refuses qty 0.0004: below the minimum 0.001 (step 0.001)
    """
    notes: list[str] = []
    changes: dict[str, float] = {}
    qty = instrument.round_qty(request.qty)
    if qty != request.qty:
        notes.append(f"qty {_num(request.qty)} rounded down to {_num(qty)} (step {_num(instrument.qty_step)})")
        changes["qty"] = qty
    if qty <= 0 or (instrument.min_qty > 0 and qty < instrument.min_qty - 1e-12):
        raise BrokerError(f"{venue} refuses qty {_num(request.qty)}: below the minimum {_num(instrument.min_qty)} "
                          f"(step {_num(instrument.qty_step)})", kind="final", asset=request.symbol)
    # limit prices never pay more than asked (by the side of their order); stop prices trigger no later
    # (by the opposite side); bracket children belong to the exit order
    exit_side = "sell" if request.side == "buy" else "buy"
    for name, side in (("limit_price", request.side), ("stop_price", exit_side),
                       ("take_profit", exit_side), ("stop_loss", request.side)):
        value = getattr(request, name)
        if value is None:
            continue
        rounded = instrument.round_price(value, side)
        if rounded <= 0:
            raise BrokerError(f"{venue} refuses {name} {_num(value)}: below one price tick "
                              f"({_num(instrument.price_tick)})", kind="final", asset=request.symbol)
        if rounded != value:
            notes.append(f"{name} {_num(value)} rounded to {_num(rounded)} (tick {_num(instrument.price_tick)})")
            changes[name] = rounded
    price = changes.get("limit_price", request.limit_price) or reference_price
    if instrument.min_notional > 0 and price is not None and qty * price < instrument.min_notional - 1e-9:
        raise BrokerError(f"{venue} refuses a notional of {_num(qty * price)}: below the minimum "
                          f"{_num(instrument.min_notional)}", kind="final", asset=request.symbol)
    for note in notes:
        log.info("%s order %s: %s", venue, request.client_order_id, note)
    return (replace(request, **changes) if changes else request), notes


def _num(value: float) -> str:
    return f"{value:.12g}"


class LoopThread:
    """An asyncio event loop on a daemon thread, for the websocket clients; :meth:`run` calls a coroutine
    on it from the runner's thread with a timeout."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # drain what is left so closing the loop raises no "task destroyed" warnings
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro) -> "asyncio.Future":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


class UpdateQueue:
    """Order updates and fills from a stream or a backfill, in arrival order; a fill whose ``fill_id`` was
    already queued is dropped, so a reconnect's backfill never counts an execution twice."""

    def __init__(self) -> None:
        self._queue: "queue.Queue[BrokerOrder | Fill]" = queue.Queue()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def put(self, item: BrokerOrder | Fill) -> bool:
        if isinstance(item, Fill):
            with self._lock:
                if item.fill_id in self._seen:
                    return False
                self._seen.add(item.fill_id)
        self._queue.put(item)
        return True

    def seen(self, fill_id: str) -> bool:
        with self._lock:
            return fill_id in self._seen

    def drain(self, timeout: float = 0.0) -> list[BrokerOrder | Fill]:
        out: list[BrokerOrder | Fill] = []
        try:
            out.append(self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


def dt_ns(value) -> int:
    """int64 ns UTC of a datetime (naive = UTC), an ISO-8601 string (``Z`` and nanoseconds allowed) or
    epoch milliseconds.

    >>> dt_ns("2024-01-02T14:30:00.123456789Z")
    1704205800123456789
    >>> dt_ns(1704205800123)
    1704205800123000000
    """
    from datetime import datetime, timezone
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value) * 1_000_000
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        frac_ns = 0
        match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
        if match:
            frac = (match.group(2) or ".")[1:]
            frac_ns = int((frac + "000000000")[:9]) if frac else 0
            text = match.group(1) + (match.group(3) or "")
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return int(parsed.timestamp()) * 1_000_000_000 + frac_ns
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.replace(microsecond=0).timestamp()) * 1_000_000_000 + value.microsecond * 1000


def ns_iso(ts_ns: int) -> str:
    """RFC 3339 UTC text of int64 ns (microsecond precision).

    >>> ns_iso(1704205800123456789)
    '2024-01-02T14:30:00.123456Z'
    """
    from datetime import datetime, timezone
    seconds, rest = divmod(int(ts_ns), 1_000_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


class BarAssembler:
    """Collects one bar per symbol per timestamp from a stream and hands out a :class:`BarEvent` once every
    symbol has reported for a timestamp, or when a later timestamp shows the earlier one is complete (then
    the silent symbols are NaN). A bar at or before the last one handed out is dropped (a replayed bar)."""

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self._index = {s: i for i, s in enumerate(self.symbols)}
        self._pending: dict[int, dict[str, tuple]] = {}
        self.last_ts = -1
        self._ready: "queue.Queue" = queue.Queue()
        self._lock = threading.Lock()

    def add(self, symbol: str, ts_ns: int, o: float, h: float, low: float, c: float, v: float,
            bid: tuple | None = None, ask: tuple | None = None) -> None:
        with self._lock:
            if symbol not in self._index or ts_ns <= self.last_ts:
                return
            self._pending.setdefault(ts_ns, {})[symbol] = (o, h, low, c, v, bid, ask)
            done = [t for t in sorted(self._pending) if len(self._pending[t]) == len(self.symbols)]
            if done:
                newest = done[-1]
                for t in sorted(self._pending):
                    if t <= newest:
                        self._emit(t, self._pending.pop(t))

    def _emit(self, ts_ns: int, rows: dict[str, tuple]) -> None:
        import numpy as np
        from backforge.live.broker import BarEvent
        n = len(self.symbols)
        cols = [np.full(n, np.nan) for _ in range(5)]
        has_quotes = any(r[5] is not None for r in rows.values())
        bid = tuple(np.full(n, np.nan) for _ in range(4)) if has_quotes else None
        ask = tuple(np.full(n, np.nan) for _ in range(4)) if has_quotes else None
        for symbol, row in rows.items():
            i = self._index[symbol]
            for k in range(5):
                cols[k][i] = row[k]
            if has_quotes and row[5] is not None:
                for k in range(4):
                    bid[k][i] = row[5][k]
                    ask[k][i] = row[6][k]
        self.last_ts = ts_ns
        self._ready.put(BarEvent(ts_ns, *cols, bid=bid, ask=ask))

    def rewind(self, ts_ns: int, rows: Iterable[tuple]) -> None:
        """Restart after ``ts_ns`` (a session's last consumed bar): the closed bars of ``rows`` (``(symbol, ts,
        o, h, l, c, v[, bid, ask])``, fetched over REST) are handed out first, then the stream's bars that are
        newer -- the runner catches up what it missed while it was down, in order."""
        with self._lock:
            drained = []
            while True:
                try:
                    drained.append(self._ready.get_nowait())
                except queue.Empty:
                    break
            self.last_ts = ts_ns
            self._pending = {t: p for t, p in self._pending.items() if t > ts_ns}
        for row in sorted(rows, key=lambda r: (r[1], r[0])):
            self.add(*row)
        with self._lock:
            for event in drained:
                if event.ts_ns > self.last_ts:
                    self.last_ts = event.ts_ns
                    self._ready.put(event)

    def next(self, timeout: float | None):
        try:
            return self._ready.get(timeout=timeout) if timeout is None or timeout > 0 else self._ready.get_nowait()
        except queue.Empty:
            return None


def bars_to_market_data(symbols: Sequence[str], rows: dict[str, list[tuple]], n_bars: int,
                        *, quotes: bool = False):
    """A ``MarketData`` of the last ``n_bars`` timestamps from per-symbol rows ``(ts_ns, o, h, l, c, v[, bid
    ohlc, ask ohlc])`` (NaN where a symbol has no bar at a timestamp)."""
    import numpy as np
    from backforge.data.market import MarketData
    stamps = sorted({r[0] for rs in rows.values() for r in rs})[-n_bars:] if n_bars > 0 else []
    where = {t: i for i, t in enumerate(stamps)}
    shape = (len(stamps), len(symbols))
    arrays = {k: np.full(shape, np.nan) for k in ("open", "high", "low", "close", "volume")}
    bid = {k: np.full(shape, np.nan) for k in ("open", "high", "low", "close")} if quotes else None
    ask = {k: np.full(shape, np.nan) for k in ("open", "high", "low", "close")} if quotes else None
    for j, symbol in enumerate(symbols):
        for row in rows.get(symbol, []):
            i = where.get(row[0])
            if i is None:
                continue
            for k, name in enumerate(("open", "high", "low", "close", "volume")):
                arrays[name][i, j] = row[1 + k]
            if quotes:
                for k, name in enumerate(("open", "high", "low", "close")):
                    bid[name][i, j] = row[6][k]
                    ask[name][i, j] = row[7][k]
    return MarketData.from_arrays(np.asarray(stamps, dtype=np.int64), assets=symbols, bid=bid, ask=ask,
                                  validate=False, **arrays)

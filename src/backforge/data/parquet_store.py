"""The default catalog backend: a folder of versioned Parquet files plus Arrow IPC caches.

Layout of a catalog folder (default ``./backforge-data``, or ``$BACKFORGE_DATA``)::

    <root>/<SYMBOL>/<bar>/CURRENT             name of the live version, e.g. "v000003"
    <root>/<SYMBOL>/<bar>/v000003/meta.json   kind, rows, range, columns, import history
    <root>/<SYMBOL>/<bar>/v000003/data.parquet          (or year=2013.parquet, ... for large series)
    <root>/<SYMBOL>/<bar>/v000003/cache.arrow  uncompressed Arrow IPC: timestamp + float64 columns
    <root>/_fundamentals/all/...               point-in-time fundamentals (same versioning)
    <root>/_aligned/<key>.arrow                aligned [T, A] blocks of multi-symbol loads

**Atomic writes.** A write builds a complete new version in a temporary folder next to the live one
(unchanged yearly Parquet partitions are hard-linked, not copied), fsyncs it, renames it into place and
only then replaces ``CURRENT`` (itself written to a temporary file and renamed). A crash at any point
leaves ``CURRENT`` naming the previous complete version; the debris is removed by the next write.
Writers of one series serialize on a lock file; readers take no lock. The previous version is kept
when a new one is published, so a reader that resolved ``CURRENT`` just before a write still finds
its files (and files already opened or memory-mapped stay valid even after deletion on POSIX).

**Loads.** :meth:`~backforge.data.catalog.Catalog.load` memory-maps each series' ``cache.arrow`` and builds
:class:`~backforge.data.market.MarketData` on top of it: a single symbol is zero-copy (read-only
arrays backed by the page cache); several symbols are aligned once on the union of their timestamps
(NaN where a symbol has no bar — never forward-filled) and the aligned block is itself cached as an
Arrow IPC file of fixed-size lists, so the next load of the same symbols is zero-copy too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from backforge.data.market import MarketData
from backforge.data.store import (
    _FORMAT_VERSION, _PRICE, SeriesInfo, WriteResult, _align_series, _bounds_index, _cache_fields, _cut,
    _empty_frame, _filter_time, _fundamental_key, _iso, _market, _merge, _now, _ns, _Store, _year,
)
from backforge.errors import DataError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = ["ParquetStore"]

_MAX_ALIGNED_FILES = 16
_PENDING = ".pending"


class _Versioned:
    """A folder whose content is published atomically as numbered versions behind a CURRENT file.

    With ``root``, each temporary version folder is announced by a marker in ``<root>/.pending`` (naming the
    folder and the lock its writer holds) from before it is created until it is published or discarded, so
    :func:`_sweep_debris` can find and remove the folder of a writer that was killed — without walking the
    catalog, and without touching the folder of a writer that is still alive (it holds the lock).
    """

    def __init__(self, path: Path, *, root: Path | None = None) -> None:
        self.path = path
        self.root = root
        self._markers: dict[Path, Path] = {}

    def current(self) -> Path | None:
        try:
            name = (self.path / "CURRENT").read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self.path / name

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        from filelock import FileLock

        self.path.mkdir(parents=True, exist_ok=True)
        with FileLock(self.path / ".lock", mode=0o644):  # flock on POSIX, msvcrt on Windows; released if killed
            yield

    def new_version(self) -> tuple[Path, str]:
        """A fresh temporary folder and the version name it will be published as (call under lock)."""
        for debris in self.path.glob(".tmp-*"):  # left by a crashed writer: we hold the lock, so no one else is writing
            shutil.rmtree(debris, ignore_errors=True)
        for pointer in self.path.glob(".CURRENT-*"):  # a pointer written but never renamed over CURRENT
            with contextlib.suppress(FileNotFoundError):
                pointer.unlink()
        numbers = [int(p.name[1:]) for p in self.path.glob("v[0-9]*") if p.name[1:].isdigit()]
        name = f"v{max(numbers, default=0) + 1:06d}"
        token = uuid.uuid4().hex
        tmp = self.path / f".tmp-{token}"
        if self.root is not None:
            pending = self.root / _PENDING
            pending.mkdir(exist_ok=True)
            marker = pending / token
            marker.write_text(json.dumps({"tmp": str(tmp.relative_to(self.root)),
                                          "lock": str((self.path / ".lock").relative_to(self.root)), "pid": os.getpid()}))
            self._markers[tmp] = marker
        tmp.mkdir()
        return tmp, name

    def discard(self, tmp: Path) -> None:
        """Remove an unpublished temporary version (call under lock)."""
        shutil.rmtree(tmp, ignore_errors=True)
        self._forget(tmp)

    def _forget(self, tmp: Path) -> None:
        marker = self._markers.pop(tmp, None)
        if marker is not None:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()

    def publish(self, tmp: Path, name: str, *, keep: int = 2) -> None:
        for f in tmp.iterdir():
            _fsync_file(f)
        final = self.path / name
        _publish_step(tmp, final)
        self._forget(tmp)
        _fsync_dir(self.path)
        pointer = self.path / f".CURRENT-{uuid.uuid4().hex}"
        with open(pointer, "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, self.path / "CURRENT")
        _fsync_dir(self.path)
        versions = sorted((p for p in self.path.glob("v[0-9]*") if p.name[1:].isdigit()), key=lambda p: int(p.name[1:]))
        for old in versions[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _publish_step(tmp: Path, final: Path) -> None:
    """Rename a finished temporary version into place (a separate function so tests can simulate crashes)."""
    os.rename(tmp, final)


def _sweep_debris(root: Path) -> int:
    """Remove what killed writers left behind; returns the number of items removed.

    * temporary version folders announced in ``<root>/.pending`` whose writer no longer holds its lock
      (the lock is taken without waiting: a live writer keeps its folder);
    * folders in ``<root>/.trash`` (deleted series whose removal was interrupted; nothing refers to them);
    * temporary aligned-cache files whose writing process is gone.
    """
    from filelock import FileLock, Timeout

    removed = 0
    pending = root / _PENDING
    try:
        markers = list(os.scandir(pending))
    except (FileNotFoundError, NotADirectoryError):
        markers = []
    for entry in markers:
        marker = Path(entry.path)
        try:
            info = json.loads(marker.read_text())
            tmp, lock = root / info["tmp"], root / info["lock"]
        except (OSError, ValueError, KeyError, TypeError):  # being written right now, or damaged
            if time.time() - entry.stat().st_mtime > 3600:
                with contextlib.suppress(OSError):
                    marker.unlink()
            continue
        if not tmp.name.startswith(".tmp-") or ".." in Path(info["tmp"]).parts or ".." in Path(info["lock"]).parts:
            continue  # never remove anything a marker did not create
        if lock.exists():  # no lock file: no writer can be holding it
            writer = FileLock(lock, timeout=0, mode=0o644)
            try:
                writer.acquire()
            except Timeout:  # a live writer of this series: its folder (or its turn) is not debris
                continue
            except OSError:
                continue
        else:
            writer = None
        try:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        finally:
            if writer is not None:
                writer.release()
    for folder in _list_dir(root / ".trash"):
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    for path in _list_dir(root / "_aligned"):
        match = re.match(r"^\..+\.(\d+)\.[0-9a-f]{32}\.tmp$", path.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def _list_dir(folder: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class ParquetStore(_Store):
    """The default backend: a folder of versioned Parquet files plus Arrow IPC caches."""

    backend = "parquet"

    def __init__(self, root: Path, *, partition_rows: int) -> None:
        self.root = root
        self.partition_rows = partition_rows
        self._writable = False

    def sweep(self) -> int:
        try:
            return _sweep_debris(self.root)
        except OSError:  # a read-only catalog: nothing can (or needs to) be removed by this process
            return 0

    def _check_writable(self) -> None:
        """Refuse (one DataError naming the catalog) a catalog folder that cannot be written, before any work."""
        if self._writable:
            return
        from backforge._paths import check_output_folder
        from backforge.errors import ConfigError

        try:
            check_output_folder(self.root, option="catalog")
        except ConfigError as exc:
            raise DataError(exc.message, path=str(self.root)) from None
        self._writable = True

    # ------------------------------------------------------------------ paths
    def _series(self, symbol: str, bar: str) -> _Versioned:
        return _Versioned(self.root / symbol / bar, root=self.root)

    def _current(self, symbol: str, bar: str) -> tuple[Path, dict[str, Any]]:
        """Current version folder and its meta, retrying if a concurrent write just replaced it."""
        series = self._series(symbol, bar)
        for attempt in range(5):
            folder = series.current()
            if folder is None:
                raise DataError(f"no {bar} data for {symbol}", asset=symbol, field="bar")
            try:
                return folder, json.loads((folder / "meta.json").read_text())
            except FileNotFoundError:
                time.sleep(0.01 * (attempt + 1))
        raise DataError(f"the {bar} series of {symbol} keeps changing; try again", asset=symbol)

    # ------------------------------------------------------------------ listing
    def bars(self, symbol: str) -> list[str]:
        folder = self.root / symbol
        if not folder.is_dir():
            return []
        return [p.name for p in folder.iterdir() if p.is_dir() and (p / "CURRENT").exists()]

    def list(self) -> list[SeriesInfo]:
        if not self.root.is_dir():
            return []
        out = []
        for sym_dir in self.root.iterdir():
            if not sym_dir.is_dir() or sym_dir.name.startswith(("_", ".")):
                continue
            for bar in self.bars(sym_dir.name):
                with contextlib.suppress(DataError):
                    out.append(self.info(sym_dir.name, bar))
        return out

    def info(self, symbol: str, bar: str) -> SeriesInfo:
        folder, meta = self._current(symbol, bar)
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        return SeriesInfo(symbol, bar, meta["kind"], meta["rows"], meta["start"], meta["end"], meta["version"], size,
                          tuple(meta["columns"]), tuple(meta.get("history", ())), bool(meta.get("partitioned")))

    # ------------------------------------------------------------------ reading
    def _files(self, folder: Path, meta: dict[str, Any], start: int | None = None, end: int | None = None) -> list[Path]:
        files = [folder / f for f in meta["files"]]
        if meta.get("partitioned") and (start is not None or end is not None):
            lo = _year(start) if start is not None else -1
            hi = _year(end) if end is not None else 10_000
            files = [f for f in files if lo <= int(f.stem.split("=")[1]) <= hi]
        return files

    def read(self, symbol: str, bar: str, start: int | None, end: int | None) -> "pl.DataFrame":
        import polars as pl
        import pyarrow.parquet as pq

        import pyarrow as pa

        for attempt in range(5):
            folder, meta = self._current(symbol, bar)
            files = self._files(folder, meta, start, end)
            if not files:
                return _empty_frame(meta)
            try:
                tables = [pq.read_table(f) for f in files]
                break
            except FileNotFoundError:  # replaced by concurrent writes: read CURRENT again
                time.sleep(0.01 * (attempt + 1))
        else:
            raise DataError(f"the {bar} series of {symbol} keeps changing; try again", asset=symbol)
        frame = pl.from_arrow(pa.concat_tables(tables))
        assert isinstance(frame, pl.DataFrame)
        return _filter_time(frame, start, end)

    def scan(self, symbol: str, bar: str) -> "pl.LazyFrame":
        import polars as pl

        folder, meta = self._current(symbol, bar)
        return pl.scan_parquet([str(f) for f in self._files(folder, meta)])

    def arrays(self, symbol: str, bar: str, start: int | None, end: int | None) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
        for attempt in range(5):
            folder, meta = self._current(symbol, bar)
            if meta["kind"] == "trades":
                raise DataError(f"{symbol} {bar} holds trade ticks, which are not bars: resample them first "
                                "(backforge.data.resample.trades_to_bars) and store the bars", asset=symbol, field="bar")
            try:
                ts, fields = _map_cache(folder / "cache.arrow")
                break
            except FileNotFoundError:  # two writes replaced this version since CURRENT was read: read it again
                time.sleep(0.01 * (attempt + 1))
        else:
            raise DataError(f"the {bar} series of {symbol} keeps changing; try again", asset=symbol)
        lo, hi = _bounds_index(ts, start, end)
        return ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, meta["kind"]

    def load_aligned(self, symbols: list[str], bar: str, start: int | None, end: int | None, *, cache: bool, max_cells: int) -> MarketData:
        metas = [self._current(s, bar) for s in symbols]
        key_src = json.dumps([bar, symbols, [m["version"] for _, m in metas], [str(f) for f, _ in metas], _FORMAT_VERSION])
        key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
        path = self.root / "_aligned" / f"{bar}-{key}.arrow"
        if cache and path.exists():
            with contextlib.suppress(FileNotFoundError):
                ts, fields, kind = _map_aligned(path)
                lo, hi = _bounds_index(ts, start, end)
                with contextlib.suppress(OSError):  # a read-only catalog still loads
                    os.utime(path)  # recently used: kept by the size cap
                return _market(ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, tuple(symbols), kind)
        full = [self.arrays(s, bar, None, None) for s in symbols]
        if not cache or max(len(ts) for ts, _, _ in full) * len(symbols) > max_cells:  # too big to keep a second copy on disk
            return _align_series([_cut(s, start, end) for s in full], tuple(symbols))
        market = _align_series(full, tuple(symbols))
        try:
            _write_aligned(path, market, symbols=symbols, versions=[m["version"] for _, m in metas])
            self._trim_aligned()
            ts, fields, kind = _map_aligned(path)  # serve from the page cache: no private copy kept
        except OSError:  # read-only catalog or full disk: the in-memory alignment is still right
            return market.slice(start, end) if (start is not None or end is not None) else market
        del market
        lo, hi = _bounds_index(ts, start, end)
        return _market(ts[lo:hi], {k: v[lo:hi] for k, v in fields.items()}, tuple(symbols), kind)

    def _trim_aligned(self) -> None:
        files = sorted((self.root / "_aligned").glob("*.arrow"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[_MAX_ALIGNED_FILES:]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()

    def clear_cache(self) -> int:
        folder = self.root / "_aligned"
        if not folder.is_dir():
            return 0
        n = 0
        for f in folder.glob("*.arrow"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                n += 1
        return n

    # ------------------------------------------------------------------ writing
    def write(self, symbol: str, bar: str, frame: "pl.DataFrame", *, kind: str, mode: str, source: dict) -> WriteResult:
        series = self._series(symbol, bar)
        self._check_writable()
        self.root.mkdir(parents=True, exist_ok=True)
        with series.lock():
            old_folder = series.current()
            old_meta = json.loads((old_folder / "meta.json").read_text()) if old_folder is not None else None
            if old_meta is not None and mode == "append" and old_meta["kind"] != kind:
                raise DataError(f"{symbol} {bar} holds {old_meta['kind']}, cannot append {kind}; use mode='replace' or another bar label",
                                asset=symbol, field="kind")
            added, replaced = frame.height, 0
            touched_years: set[int] | None = None
            if old_meta is not None and mode == "append":
                old = self.read(symbol, bar, None, None)
                frame, added, replaced, touched_years = _merge(old, frame, kind)
            history = list(old_meta.get("history", [])) if old_meta is not None and mode == "append" else []
            history.append({"at": _now(), "mode": mode, "added": added, "replaced": replaced, **source})
            tmp, name = series.new_version()
            try:
                files, partitioned = self._write_parquet(tmp, frame, old_folder if mode == "append" else None, old_meta, touched_years)
                _write_cache(tmp / "cache.arrow", frame, kind, meta={"symbol": symbol, "bar": bar, "kind": kind})
                ts = frame["timestamp"]
                meta = {
                    "format_version": _FORMAT_VERSION, "symbol": symbol, "bar": bar, "kind": kind, "version": int(name[1:]),
                    "rows": frame.height, "start": _ns(ts, 0), "end": _ns(ts, -1),
                    "columns": frame.columns, "files": files, "partitioned": partitioned, "history": history[-50:],
                }
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
                series.publish(tmp, name)
            except BaseException:
                series.discard(tmp)
                raise
            self._drop_aligned(symbol, bar)
        return WriteResult(symbol, bar, kind, int(name[1:]), added, replaced, frame.height)

    def _write_parquet(self, tmp: Path, frame: "pl.DataFrame", old_folder: Path | None, old_meta: dict | None,
                       touched_years: set[int] | None) -> tuple[list[str], bool]:
        if frame.height <= self.partition_rows:
            frame.write_parquet(tmp / "data.parquet", compression="zstd", compression_level=1, statistics=True)
            return ["data.parquet"], False
        ns = frame["timestamp"].dt.epoch("ns").to_numpy()
        first, last = _year(int(ns[0])), _year(int(ns[-1]))
        edges = [int(np.datetime64(f"{y}-01-01", "ns").astype(np.int64)) for y in range(first + 1, last + 1)]
        cuts = [0, *np.searchsorted(ns, edges, side="left").tolist(), len(ns)]  # rows are sorted: a year is a slice
        files = []
        reuse = (old_folder is not None and old_meta is not None and old_meta.get("partitioned") and touched_years is not None
                 and list(old_meta["columns"]) == frame.columns)  # same schema: an untouched year file is still exact
        for year, lo, hi in zip(range(first, last + 1), cuts[:-1], cuts[1:]):
            if hi <= lo:
                continue
            name = f"year={year}.parquet"
            files.append(name)
            if reuse and year not in touched_years and (old_folder / name).exists():  # type: ignore[operator]
                try:
                    os.link(old_folder / name, tmp / name)  # type: ignore[operator]
                    continue
                except OSError:
                    pass
            frame.slice(lo, hi - lo).write_parquet(tmp / name, compression="zstd", compression_level=1, statistics=True)
        return files, True

    def _drop_aligned(self, symbol: str, bar: str) -> None:
        """Remove aligned caches that include this series (they are keyed by version and would never match again)."""
        folder = self.root / "_aligned"
        if not folder.is_dir():
            return
        for path in folder.glob(f"{bar}-*.arrow"):
            with contextlib.suppress(Exception):
                import pyarrow as pa

                with pa.memory_map(str(path)) as source:
                    meta = pa.ipc.open_file(source).schema.metadata or {}
                if symbol in json.loads(meta.get(b"symbols", b"[]")):
                    path.unlink()

    def delete(self, symbol: str, bar: str) -> None:
        series = self._series(symbol, bar)
        self._check_writable()
        with series.lock():
            trash = self.root / ".trash" / uuid.uuid4().hex
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.rename(series.path, trash)  # one atomic step: readers see the series or nothing
        shutil.rmtree(trash, ignore_errors=True)
        self._drop_aligned(symbol, bar)
        sym_dir = self.root / symbol
        with contextlib.suppress(OSError):
            sym_dir.rmdir()

    # ------------------------------------------------------------------ fundamentals
    def write_fundamentals(self, frame: "pl.DataFrame", *, mode: str) -> int:
        import polars as pl

        store = _Versioned(self.root / "_fundamentals" / "all", root=self.root)
        self._check_writable()
        self.root.mkdir(parents=True, exist_ok=True)
        with store.lock():
            current = store.current()
            if current is not None and mode == "append":
                old = pl.read_parquet(current / "fundamentals.parquet")
                frame = pl.concat([old, frame], how="diagonal_relaxed")
                frame = frame.unique(subset=_fundamental_key(frame), keep="last", maintain_order=True)
            frame = frame.sort(_fundamental_key(frame), maintain_order=True)
            tmp, name = store.new_version()
            try:
                frame.write_parquet(tmp / "fundamentals.parquet", compression="zstd")
                store.publish(tmp, name)
            except BaseException:
                store.discard(tmp)
                raise
        return frame.height

    def read_fundamentals(self) -> "pl.DataFrame | None":
        import polars as pl

        store = _Versioned(self.root / "_fundamentals" / "all")
        for attempt in range(5):
            current = store.current()
            if current is None:
                return None
            try:
                return pl.read_parquet(current / "fundamentals.parquet")
            except FileNotFoundError:
                time.sleep(0.01 * (attempt + 1))
        return None

    # ------------------------------------------------------------------ SQL
    def sql(self, query: str) -> "pl.DataFrame":
        """Run ``query`` in a sandbox: an in-memory DuckDB whose only data are read-only views over Arrow datasets
        of the current Parquet files (opened by Arrow, not by DuckDB), with external access disabled, Python
        replacement scans and extension loading off, and the configuration locked once the views exist — so
        no statement can read, write or attach a file (``COPY ... TO``, ``read_csv('/etc/passwd')``,
        ``ATTACH``) or turn that back on."""
        try:
            import duckdb
        except ImportError:
            raise DataError("SQL needs DuckDB: pip install duckdb") from None
        import pyarrow as pa
        import pyarrow.dataset as ds

        con = duckdb.connect(":memory:", config={
            "enable_external_access": False, "python_enable_replacements": False, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False, "allow_community_extensions": False, "allow_persistent_secrets": False,
        })
        try:
            views: dict[str, list[str]] = {"bars": [], "quotes": [], "trades": []}
            rows = []
            for number, info in enumerate(self.list()):
                folder, meta = self._current(info.symbol, info.bar)
                name = f"_series_{number}"
                dataset = ds.dataset([str(f) for f in self._files(folder, meta)], format="parquet")
                con.register(name, dataset)
                view = {"bars": "bars", "quote_bars": "bars", "quotes": "quotes", "trades": "trades"}[info.kind]
                views[view].append(f"SELECT {_sql_str(info.symbol)} AS symbol, {_sql_str(info.bar)} AS bar, "
                                   f"{_sql_columns(dataset.schema)} FROM {name}")
                rows.append((info.symbol, info.bar, info.kind, info.rows, _iso(info.start), _iso(info.end), info.version))
            for view, selects in views.items():
                if selects:
                    con.execute(f"CREATE VIEW {view} AS " + " UNION ALL BY NAME ".join(selects))
            columns = {"symbol": pa.string(), "bar": pa.string(), "kind": pa.string(), "rows": pa.int64(),
                       "start_time": pa.string(), "end_time": pa.string(), "version": pa.int32()}
            con.register("_series", pa.table({c: pa.array([r[i] for r in rows], type=t) for i, (c, t) in enumerate(columns.items())}))
            con.execute("CREATE VIEW series AS SELECT * FROM _series")
            current = _Versioned(self.root / "_fundamentals" / "all").current()
            if current is not None:
                dataset = ds.dataset([str(current / "fundamentals.parquet")], format="parquet")
                con.register("_fundamentals", dataset)
                con.execute(f"CREATE VIEW fundamentals AS SELECT {_sql_columns(dataset.schema)} FROM _fundamentals")
            con.execute("SET lock_configuration = true")
            try:
                relation = con.sql(query)
                if relation is None:
                    import polars as pl

                    return pl.DataFrame()
                return relation.pl()
            except duckdb.Error as exc:
                tables = ", ".join(v for v, s in views.items() if s) or "none yet"
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in first or "configuration has been locked" in first:
                    raise DataError(f"SQL may only read the catalog's views ({tables}, series"
                                    f"{', fundamentals' if current is not None else ''}): files, ATTACH, extensions and "
                                    f"settings are off; write results with --output. DuckDB said: {first}", field="query") from None
                raise DataError(f"SQL error: {first} (views: {tables}, series"
                                f"{', fundamentals' if current is not None else ''})", field="query") from None
        finally:
            con.close()


def _write_cache(path: Path, frame: "pl.DataFrame", kind: str, *, meta: dict[str, str]) -> None:
    import pyarrow as pa

    ts, fields = _cache_fields(frame, kind)
    columns = {"timestamp": pa.array(ts, type=pa.int64()).view(pa.timestamp("ns", "UTC"))}
    columns.update({k: pa.array(v, type=pa.float64()) for k, v in fields.items()})
    table = pa.table(columns).replace_schema_metadata({**meta, "format_version": str(_FORMAT_VERSION)})
    _write_ipc(path, table)


def _write_ipc(path: Path, table: "pa.Table") -> None:
    import pyarrow as pa

    options = pa.ipc.IpcWriteOptions(compression=None)
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table.combine_chunks(), max_chunksize=max(table.num_rows, 1))


def _map_cache(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Memory-map a series cache: zero-copy, read-only numpy views of each column."""
    batch = _mapped_batch(path)
    ts = _np(batch.column(0))
    return ts, {name: _np(batch.column(i)) for i, name in enumerate(batch.schema.names) if i > 0}


def _mapped_batch(path: Path) -> "pa.RecordBatch":
    import pyarrow as pa

    source = pa.memory_map(str(path), "r")
    reader = pa.ipc.open_file(source)
    if reader.num_record_batches == 1:
        return reader.get_batch(0)
    return reader.read_all().combine_chunks().to_batches()[0]


def _np(arr: "pa.Array") -> np.ndarray:
    """Zero-copy numpy view of a null-free fixed-width Arrow array (read-only when memory-mapped)."""
    import pyarrow as pa

    if arr.null_count:
        raise DataError("corrupt catalog cache: unexpected nulls; delete and re-import the series")
    dtype = np.int64 if pa.types.is_timestamp(arr.type) or pa.types.is_integer(arr.type) else np.float64
    buf = arr.buffers()[1]
    return np.frombuffer(buf, dtype=dtype, count=len(arr), offset=arr.offset * 8)


def _write_aligned(path: Path, market: MarketData, *, symbols: Sequence[str], versions: Sequence[int]) -> None:
    import pyarrow as pa

    a = market.n_assets
    fields: dict[str, np.ndarray] = {f: getattr(market, f) for f in (*_PRICE, "volume")}
    if market.bid is not None and market.ask is not None:
        fields.update({f"bid_{f}": getattr(market.bid, f) for f in _PRICE})
        fields.update({f"ask_{f}": getattr(market.ask, f) for f in _PRICE})
    columns = {"timestamp": pa.array(market.timestamps, type=pa.int64()).view(pa.timestamp("ns", "UTC"))}
    for name, arr in fields.items():
        flat = pa.array(np.ascontiguousarray(arr).reshape(-1), type=pa.float64())
        columns[name] = pa.FixedSizeListArray.from_arrays(flat, a)
    kind = "quote_bars" if market.bid is not None else "bars"
    table = pa.table(columns).replace_schema_metadata(
        {"symbols": json.dumps(list(symbols)), "versions": json.dumps(list(versions)), "kind": kind, "format_version": str(_FORMAT_VERSION)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")  # the pid lets _sweep_debris tell debris
    try:
        _write_ipc(tmp, table)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _map_aligned(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Memory-map an aligned block: each fixed-size-list column is a C-contiguous [T, A] view."""
    batch = _mapped_batch(path)
    meta = batch.schema.metadata or {}
    n_assets = len(json.loads(meta[b"symbols"]))
    ts = _np(batch.column(0))
    fields = {}
    for i, name in enumerate(batch.schema.names):
        if i == 0:
            continue
        col = batch.column(i)
        values = _np(col.values)
        fields[name] = values[col.offset * n_assets:(col.offset + len(col)) * n_assets].reshape(len(col), n_assets)
    return ts, fields, meta[b"kind"].decode()


def _sql_columns(schema: "pa.Schema") -> str:
    """``*`` with nanosecond timestamps cast to DuckDB's TIMESTAMPTZ (what ``read_parquet`` gives, and what every
    date function accepts)."""
    import pyarrow as pa

    casts = [f'CAST("{f.name}" AS {"TIMESTAMPTZ" if f.type.tz else "TIMESTAMP"}) AS "{f.name}"'
             for f in schema if pa.types.is_timestamp(f.type)]
    return f"* REPLACE ({', '.join(casts)})" if casts else "*"


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


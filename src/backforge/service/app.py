"""The HTTP side of ``backforge serve``: a FastAPI application with the REST API, server-sent events
and the server-rendered web page.

Security: every ``/api`` route and every page needs the API token — ``Authorization: Bearer TOKEN``,
or the ``backforge_token`` cookie the login page sets (HttpOnly, SameSite=Strict) — and answers 401
without it; only ``/docs``, ``/openapi.json``, ``/login`` and ``/static`` are open. Tokens are kept
as SHA-256 digests in the store. CORS is off (no cross-origin headers are ever sent), request bodies
above ``max_body`` bytes are refused with 413 before they are read, run ids are resolved inside the
runs folder only (anything else is 404), and filters reach SQL as bound parameters.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse

from backforge.errors import BackforgeError
from backforge.service.jobs import (JOB_KINDS, JobContext, JobValidationError, check_strategy, job_json_schemas,
                                    list_runs, resolve_run, run_kind, validate_job)
from backforge.service.store import STATES, JobConflict, JobNotFound, JobStore, token_digest

__all__ = ["ServiceSettings", "create_app"]

HERE = Path(__file__).resolve().parent
COOKIE = "backforge_token"
OPEN_PATHS = ("/docs", "/openapi.json", "/login", "/static/", "/favicon.ico")


@dataclass
class ServiceSettings:
    """Everything the application needs (the CLI builds it from its options)."""

    store: JobStore
    ctx: JobContext
    auth: bool = True
    max_body: int = 1_000_000
    supervisor: Any = None
    examples: Optional[Path] = None
    token_digests: list[str] = field(default_factory=list)
    sessions: Optional[Path] = None  # the folder of paper-session state folders (``backforge paper --state``)


# ------------------------------------------------------------------------------------ middleware

class BodyLimit:
    """Refuse request bodies above ``limit`` bytes with 413: at once by Content-Length, or after reading
    at most ``limit`` bytes of a chunked body (which is then replayed to the application)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
        if length is not None:
            if length < 0 or length > self.limit:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body too large (limit {self.limit:,} bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _authorized(request: Request, settings: ServiceSettings) -> bool:
    if not settings.auth:
        return True
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else request.cookies.get(COOKIE, "")
    if not token:
        return False
    digest = token_digest(token)
    found = False
    for known in settings.token_digests:
        found |= hmac.compare_digest(digest, known)
    return found


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return _clean(value.item())
        except (TypeError, ValueError):
            return str(value)
    return value


def _validation_response(exc: JobValidationError) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": exc.loc, "path": exc.path, "msg": exc.message, "type": "value_error"}]},
                        status_code=422)


def _loaded_run(folder: Path):
    from backforge.results.result import load_result

    return load_result(folder)


# ------------------------------------------------------------------------------------ the app

def create_app(settings: ServiceSettings) -> FastAPI:
    """The FastAPI application (started by ``backforge serve``; tests drive it through uvicorn)."""
    from contextlib import asynccontextmanager

    from jinja2 import Environment, FileSystemLoader, select_autoescape

    import backforge.strategy.schema  # noqa: F401 - imported once here, not by the first submission

    if settings.auth and not settings.token_digests:
        settings.token_digests = settings.store.token_digests()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if settings.supervisor is not None:
            settings.supervisor.start()
        try:
            yield
        finally:
            if settings.supervisor is not None:
                settings.supervisor.stop()

    app = FastAPI(title="backforge", version=_version(), lifespan=lifespan,
                  description="Queue, run, watch and compare backtests. Every /api route needs "
                              "`Authorization: Bearer TOKEN`.")
    app.add_middleware(BodyLimit, limit=settings.max_body)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    templates.filters["pct"] = lambda v: "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2%}"
    templates.filters["num"] = lambda v: "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:,.2f}"
    templates.filters["when"] = lambda v: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v)) if v else "–"
    store, ctx = settings.store, settings.ctx
    plotly_js: list[bytes] = []

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(auth=settings.auth, **values)
        return HTMLResponse(html, status_code=status)

    class Guard:
        """The token check in front of every route but the open ones (plain ASGI: no per-request task),
        and two security headers on every answer."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            path = scope["path"]
            if not path.startswith(OPEN_PATHS) and not _authorized(Request(scope), settings):
                if path.startswith("/api/"):
                    response: Response = JSONResponse(
                        {"detail": "missing or wrong API token: send Authorization: Bearer TOKEN"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                else:
                    response = page("login.html", status=401, next=path, error=None)
                return await response(scope, receive, send)

            async def with_headers(message: dict) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff"),
                                          (b"referrer-policy", b"same-origin")]
                await send(message)

            await self.inner(scope, receive, with_headers)

    app.add_middleware(Guard)

    @app.exception_handler(JobValidationError)
    async def _invalid(_request: Request, exc: JobValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(JobNotFound)
    async def _missing(_request: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=404)

    @app.exception_handler(JobConflict)
    async def _conflict(_request: Request, exc: JobConflict) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=409)

    def _run_folder(run_id: str, *, saved_run: bool = False) -> Path:
        try:
            return resolve_run(run_id, ctx, saved_run=saved_run)
        except BackforgeError as exc:
            raise HTTPException(404, exc.message) from None

    async def _json_body(request: Request) -> Any:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HTTPException(415, "send the body as JSON with Content-Type: application/json")
        raw = await request.body()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            message = f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}" \
                if isinstance(exc, json.JSONDecodeError) else "the body is not UTF-8 text"
            raise JobValidationError(message, loc=["body"]) from None

    # -------------------------------------------------------------- login (cookie for the browser)
    @app.get("/login", include_in_schema=False)
    def login_page(next: str = "/") -> HTMLResponse:
        return page("login.html", next=next if next.startswith("/") and not next.startswith("//") else "/", error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        from urllib.parse import parse_qs

        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = (form.get("next") or ["/"])[0]
        target = target if target.startswith("/") and not target.startswith("//") else "/"
        digest = token_digest(token) if token else ""
        ok = not settings.auth or any(hmac.compare_digest(digest, d) for d in settings.token_digests)
        if not ok:
            return page("login.html", status=401, next=target, error="wrong token")
        response = RedirectResponse(target, status_code=303)
        if settings.auth:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly() -> Response:
        if not plotly_js:
            from plotly.offline import get_plotlyjs

            plotly_js.append(get_plotlyjs().encode())
        return Response(plotly_js[0], media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = HERE / "static" / name
        if name not in {p.name for p in (HERE / "static").iterdir()}:
            raise HTTPException(404, "no such file")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    # -------------------------------------------------------------- jobs
    @app.post("/api/jobs", status_code=201, tags=["jobs"],
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "oneOf": list(job_json_schemas().values())}}}}})
    async def submit(request: Request) -> JSONResponse:
        """Queue a job: ``{"kind": "backtest", "strategy": "<YAML text>", ...}`` (see ``GET /api/schema``)."""
        body = await _json_body(request)
        kind, config = await asyncio.to_thread(validate_job, body, ctx)
        job = await asyncio.to_thread(store.create, kind, config)
        if settings.supervisor is not None:
            settings.supervisor.wake()
        return JSONResponse(_clean(job.to_dict()), status_code=201)

    @app.get("/api/jobs", tags=["jobs"])
    def jobs(state: Optional[str] = Query(None, max_length=64), kind: Optional[str] = Query(None, max_length=64),
             limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        """Jobs newest first, filtered by state and kind, paged."""
        found, total = store.list(state=state, kind=kind, limit=limit, offset=offset)
        return _clean({"jobs": [j.to_dict(config=False) for j in found], "total": total, "limit": limit,
                       "offset": offset, "counts": store.counts()})

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    async def job(job_id: str) -> Response:
        """One job: state, progress (fraction, ETA, message), heartbeat, attempts, result or error."""
        # one primary-key read on a kept connection (tens of microseconds): cheaper on the event loop than
        # a thread hop; the stored config and result are JSON already and are not decoded
        return Response(store.status_json(job_id), media_type="application/json")

    @app.post("/api/jobs/{job_id}/cancel", tags=["jobs"])
    def cancel(job_id: str) -> dict[str, Any]:
        """Cancel a queued, warming-up or running job; 409 for a finished one."""
        return _clean(store.cancel(job_id).to_dict())

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"])
    async def events(job_id: str, request: Request, after: int = Query(0, ge=0)) -> StreamingResponse:
        """Server-sent events: ``state``, ``progress`` and ``log`` events, then ``end`` when the job finished."""
        await asyncio.to_thread(store.get, job_id)
        last = request.headers.get("last-event-id")
        start = int(last) if last and last.isdigit() else after

        async def stream():
            cursor = start
            idle = 0.0
            yield "retry: 1000\n\n"
            while True:
                batch = await asyncio.to_thread(store.events, job_id, cursor)
                for event in batch:
                    cursor = event.id
                    yield f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(_clean(event.to_dict()))}\n\n"
                if not batch:
                    current = await asyncio.to_thread(store.get, job_id)
                    if current.terminal:
                        tail = await asyncio.to_thread(store.events, job_id, cursor)
                        if not tail:
                            yield f"event: end\ndata: {json.dumps({'state': current.state})}\n\n"
                            return
                        continue
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(0.2)
                    idle += 0.2
                    if idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -------------------------------------------------------------- runs
    @app.get("/api/runs", tags=["runs"])
    def runs(limit: int = Query(100, ge=1, le=10_000), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        """Saved results (backtest runs, optimizations, walk-forwards), newest first."""
        found = list_runs(ctx)
        return _clean({"runs": found[offset:offset + limit], "total": len(found)})

    @app.get("/api/runs/{run_id:path}/report", tags=["runs"], response_class=HTMLResponse)
    async def report(run_id: str) -> FileResponse:
        """The run's HTML tear sheet (written on first request, then kept in the run folder)."""
        folder = _run_folder(run_id, saved_run=True)
        path = folder / "report.html"
        if not path.is_file():
            await asyncio.to_thread(lambda: _loaded_run(folder).write_html(path))
        return FileResponse(path, media_type="text/html")

    @app.get("/api/runs/{run_id:path}/heatmap", tags=["runs"])
    def heatmap(run_id: str, x: str = Query(..., max_length=100), y: str = Query(..., max_length=100),
                metric: Optional[str] = Query(None, max_length=64)) -> dict[str, Any]:
        """An optimization's metric over two parameters (best over the others), as a Plotly figure."""
        folder = _run_folder(run_id)
        if run_kind(folder) != "optimize":
            raise HTTPException(404, f"{run_id!r} is not an optimization")
        try:
            figure = _heatmap(folder, x, y, metric)
        except BackforgeError as exc:
            raise JobValidationError(exc.message, loc=["query", exc.field or "x"]) from None
        return json.loads(figure.to_json())

    @app.get("/api/runs/{run_id:path}", tags=["runs"])
    def run(run_id: str, format: str = Query("json", pattern="^(json|parquet)$"),
            table: str = Query("trades", pattern="^(trades|equity|fills|orders|order_log|positions|signal_events|"
                                                 "trials|windows|oos_equity)$"),
            rows: int = Query(1000, ge=0, le=1_000_000)) -> Any:
        """A saved run: config, metrics, trades and equity as JSON; ``?format=parquet&table=trades`` for a table."""
        folder = _run_folder(run_id)
        if format == "parquet":
            path = folder / f"{table}.parquet"
            if not path.is_file():
                raise HTTPException(404, f"{run_id!r} has no {table} table")
            return FileResponse(path, media_type="application/vnd.apache.parquet", filename=f"{table}.parquet")
        return _clean(_run_document(folder, run_id, rows))

    @app.get("/api/compare", tags=["runs"])
    def compare(runs: str = Query(..., max_length=4000, description="run ids separated by commas")) -> dict[str, Any]:
        """Metrics of saved runs side by side, and their equity curves."""
        from backforge.results.report import HEADLINE_METRICS
        from backforge.results.result import compare_runs

        ids = [r.strip() for r in runs.split(",") if r.strip()]
        if len(ids) < 2:
            raise JobValidationError("give at least two run ids separated by commas", loc=["query", "runs"])
        loaded = [_loaded_run(_run_folder(i, saved_run=True)) for i in ids]
        table = compare_runs(loaded, keys=list(HEADLINE_METRICS))
        columns = table.columns[1:]
        metrics = [{"metric": row["metric"], "values": dict(zip(ids, [row[c] for c in columns]))}
                   for row in table.iter_rows(named=True)]
        return _clean({"runs": ids, "metrics": metrics, "equity": {i: _equity_series(r) for i, r in zip(ids, loaded)}})

    # -------------------------------------------------------------- paper sessions (read-only)
    def _session_folder(session_id: str) -> Path:
        """A session folder by its name among the sessions listed under the sessions folder (nothing else)."""
        for found in _sessions(settings.sessions):
            if Path(found["folder"]).name == session_id:
                return Path(found["folder"])
        raise HTTPException(404, f"no paper session {session_id!r} in {settings.sessions}")

    @app.get("/api/sessions", tags=["sessions"])
    def sessions() -> dict[str, Any]:
        """Paper sessions (``backforge paper``'s state folders): bars, last bar, halt state, whether a runner
        is active. Read-only: control them with ``backforge sessions halt|resume|flatten|stop``."""
        found = [_session_row(s) for s in _sessions(settings.sessions)]
        return _clean({"root": str(settings.sessions) if settings.sessions else None, "sessions": found})

    @app.get("/api/sessions/{session_id}", tags=["sessions"])
    def session(session_id: str) -> dict[str, Any]:
        """One paper session: positions, P&L, open orders, last bar, breaker state, lag and heartbeat (the
        status its runner last wrote, as ``backforge sessions status`` prints it), its equity after every bar
        and its latest fills."""
        return _clean(_session_document(session_id, _session_folder(session_id)))

    # -------------------------------------------------------------- strategies, schema, data
    @app.post("/api/strategies/validate", tags=["strategies"])
    async def validate(request: Request) -> dict[str, Any]:
        """Check a strategy: ``{"strategy": "<YAML>", "data": {...}}`` → its summary, or 422 with the path."""
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("strategy"), str):
            raise JobValidationError("send {\"strategy\": \"<the strategy file's YAML text>\"}", loc=["body", "strategy"])
        return await asyncio.to_thread(_validate_strategy, body, ctx)

    @app.get("/api/schema", tags=["strategies"])
    def schema() -> dict[str, Any]:
        """JSON Schemas: the strategy file, and each job kind's body."""
        from backforge.strategy.schema import portfolio_json_schema

        return {"strategy": portfolio_json_schema(), "jobs": job_json_schemas(), "states": list(STATES)}

    @app.get("/api/data", tags=["data"])
    def data() -> dict[str, Any]:
        """The catalog's series."""
        return {"catalog": str(ctx.catalog_root), "series": _catalog_series(ctx)}

    @app.get("/api/examples", tags=["strategies"])
    def examples() -> dict[str, Any]:
        """The example strategy files, as templates."""
        return {"examples": _examples(settings.examples)}

    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Job counts per state and the workers' status."""
        status = settings.supervisor.status() if settings.supervisor is not None else {"workers": 0}
        return {"ok": True, "jobs": store.counts(), "workers": status, "store": store.dialect}

    # -------------------------------------------------------------- pages
    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        found, total = store.list(limit=100)
        return page("index.html", jobs=[j.to_dict(config=False) for j in found], total=total,
                    runs=list_runs(ctx), examples=_examples(settings.examples), series=_catalog_series(ctx),
                    kinds=list(JOB_KINDS), sessions=[_session_row(s) for s in _sessions(settings.sessions)])

    @app.get("/runs/{run_id:path}", include_in_schema=False)
    def run_page(run_id: str) -> HTMLResponse:
        folder = _run_folder(run_id)
        kind = run_kind(folder)
        if kind == "optimize":
            summary = json.loads((folder / "summary.json").read_text())
            best = sorted(p.name for p in folder.glob("best-*"))
            return page("optimize.html", run_id=run_id, summary=summary, params=summary.get("parameters") or [],
                        metrics=summary.get("metric") or ["sharpe"], best=[f"{run_id}/{b}" for b in best])
        if kind == "walk_forward":
            import polars as pl

            summary = json.loads((folder / "summary.json").read_text())
            windows = pl.read_parquet(folder / "windows.parquet")
            equity = pl.read_parquet(folder / "oos_equity.parquet")
            return page("walkforward.html", run_id=run_id, summary=_clean(summary), columns=windows.columns,
                        rows=[[str(v) for v in r] for r in windows.iter_rows()],
                        equity=_script_json({"t": [str(t) for t in equity["timestamp"].to_list()],
                                             "v": equity["equity"].to_list()}))
        document = _run_document(folder, run_id, 500)
        judge = None
        if (folder / "judge.json").is_file():
            judge = json.loads((folder / "judge.json").read_text())
        return page("run.html", run_id=run_id, doc=_clean(document), judge=judge,
                    charts=_script_json(_run_charts(folder)))

    @app.get("/sessions/{session_id}", include_in_schema=False)
    def session_page(session_id: str) -> HTMLResponse:
        document = _clean(_session_document(session_id, _session_folder(session_id)))
        return page("session.html", s=document, chart=_script_json(document["equity_curve"]))

    @app.get("/compare", include_in_schema=False)
    def compare_page(runs: str = Query("", max_length=4000)) -> HTMLResponse:
        ids = [r.strip() for r in runs.split(",") if r.strip()]
        return page("compare.html", ids=ids, all_runs=[r for r in list_runs(ctx) if r["kind"] == "run"])

    return app


# ------------------------------------------------------------------------------------ helpers

def _script_json(value: Any) -> str:
    """JSON safe to embed in a <script> element (no '</' can close it)."""
    return json.dumps(_clean(value), allow_nan=False).replace("</", "<\\/")


def _version() -> str:
    from backforge import __version__

    return __version__


def _catalog_series(ctx: JobContext) -> list[dict[str, Any]]:
    if not ctx.catalog_root.is_dir():
        return []
    try:
        listed = ctx.catalog().list()
    except BackforgeError:
        return []
    return [{"symbol": s.symbol, "bar": s.bar, "kind": s.kind, "rows": s.rows, "start": s.start_iso, "end": s.end_iso}
            for s in listed]


def _examples(folder: Optional[Path]) -> list[dict[str, str]]:
    if folder is None or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        if "paths:" in text and "source: files" in text:
            continue  # these read files next to the example, which the service does not serve
        out.append({"name": path.stem, "text": text})
    return out


def _validate_strategy(body: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from backforge.service.jobs import DataChoice, JobRun, _market
    from backforge.strategy.compiler import compile_portfolio

    try:
        data = DataChoice.model_validate(body.get("data") or {})
    except Exception as exc:  # noqa: BLE001 - pydantic's error, reported as the field
        raise JobValidationError(str(exc).splitlines()[-1].strip(), loc=["body", "data"]) from None
    raw = check_strategy(body["strategy"], ctx, data=data)
    from backforge.service.jobs import BacktestJob

    cfg = BacktestJob(strategy=body["strategy"], data=data)
    noop = JobRun("validate", "backtest", {}, ctx, lambda f, m: None, lambda: None, lambda line: None)
    try:
        _, portfolio, market = _market(noop, cfg)
        compiled = compile_portfolio(portfolio, market, start=portfolio.data.start, end=portfolio.data.end)
    except JobValidationError:
        raise
    except BackforgeError as exc:
        from backforge.service.jobs import _path_to_loc

        raise JobValidationError(exc.message, loc=["body", "strategy", *_path_to_loc(exc.path or exc.field)]) from None
    from backforge.research.params import ParameterSpace

    return {"valid": True, "name": portfolio.name, "strategies": len(portfolio.strategies),
            "assets": len(portfolio.universe), "bars": market.n_bars, "indicator_series": int(compiled.series.shape[1]),
            "parameters": list(ParameterSpace.from_config(raw).names)}


def _sessions(root: Optional[Path]) -> list[dict[str, Any]]:
    """:func:`backforge.live.session.list_sessions` of the sessions folder (none when it does not exist)."""
    if root is None or not Path(root).is_dir():
        return []
    from backforge.live.session import list_sessions

    return list_sessions(root)


def _session_row(found: dict[str, Any]) -> dict[str, Any]:
    from backforge._time import format_ns

    last = found.get("last_bar_ts")
    return {"id": Path(found["folder"]).name, "session": found["session"], "bars": found["bars"],
            "last_bar_ts": last, "last_bar": format_ns(int(last), "second", offset=False) if last else None,
            "halted": found["halted"], "running": found["running"]}


def _session_document(session_id: str, folder: Path, *, fills: int = 100, points: int = 2000) -> dict[str, Any]:
    """The live package's own status of a session (:func:`session_status`) and tables (:func:`session_tables`)."""
    import numpy as np

    from backforge._time import format_ns
    from backforge.live.session import session_status, session_tables
    from backforge.results.report import minmax_indices

    status = session_status(folder)
    tables = session_tables(folder)
    bars = tables["bars"]
    ts = bars["ts_ns"].to_numpy() if bars.height else np.zeros(0, dtype=np.int64)
    equity = bars["equity"].to_numpy().astype(np.float64) if bars.height else np.zeros(0)
    idx = minmax_indices(equity, points) if len(equity) > 2 * points else np.arange(len(equity))
    recent = tables["fills"].tail(fills) if tables["fills"].height else tables["fills"]
    last = status.get("last_bar_ts")
    return {"id": session_id, **status, "last_bar": format_ns(int(last), "second", offset=False) if last else None,
            "equity_curve": {"t": [_iso(int(t)) for t in ts[idx]], "v": equity[idx].tolist()},
            "fills": {"total": tables["fills"].height, "rows": [_row(r) for r in recent.iter_rows(named=True)]}}


def _equity_series(run: Any, points: int = 2000) -> dict[str, list]:
    import numpy as np

    from backforge.results.report import minmax_indices

    ts = np.asarray(run.timestamps_ns)
    values = np.asarray(run.equity_values, dtype=np.float64)
    idx = minmax_indices(values, points) if len(values) > 2 * points else np.arange(len(values))
    return {"t": [_iso(int(t)) for t in ts[idx]], "v": values[idx].tolist()}


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9))


def _run_document(folder: Path, run_id: str, rows: int) -> dict[str, Any]:
    kind = run_kind(folder)
    if kind != "run":
        summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
        return {"id": run_id, "kind": kind, "summary": summary,
                "tables": sorted(p.stem for p in folder.glob("*.parquet"))}
    run = _loaded_run(folder)
    trades = run.trades
    doc = {"id": run_id, "kind": "run", "config": run.config, "metadata": run.metadata, "summary": run.summary(),
           "metrics": run.metrics(), "trades": {"total": trades.height,
                                                "rows": [_row(r) for r in trades.head(rows).iter_rows(named=True)]},
           "equity": _equity_series(run), "tables": sorted(p.stem for p in folder.glob("*.parquet")),
           "report": (folder / "report.html").is_file()}
    if (folder / "montecarlo.json").is_file():
        doc["monte_carlo"] = json.loads((folder / "montecarlo.json").read_text())
    return doc


def _row(row: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    return {k: (v.total_seconds() if isinstance(v, dt.timedelta) else v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in row.items()}


def _run_charts(folder: Path) -> dict[str, Any]:
    """Equity, drawdown and, per asset, downsampled closes with the trades' entries and exits."""
    import numpy as np
    import polars as pl

    run = _loaded_run(folder)
    eq = _equity_series(run)
    values = np.asarray(eq["v"], dtype=np.float64)
    peak = np.maximum.accumulate(values) if len(values) else values
    drawdown = (values / peak - 1.0).tolist() if len(values) else []
    prices: dict[str, Any] = {}
    chart = folder / "chart_prices.parquet"
    trades = run.trades
    if chart.is_file():
        table = pl.read_parquet(chart)
        for asset in table["asset"].unique(maintain_order=True).to_list()[:20]:
            part = table.filter(pl.col("asset") == asset)
            mine = trades.filter(pl.col("asset") == asset).head(2000) if trades.height else trades
            entry = {"t": [t.isoformat() for t in part["timestamp"].to_list()], "close": part["close"].to_list(),
                     "entries": {"t": [], "p": []}, "exits": {"t": [], "p": []}}
            if mine.height and "entry_time" in mine.columns:
                entry["entries"] = {"t": [t.isoformat() for t in mine["entry_time"].to_list()],
                                    "p": mine["entry_price"].to_list()}
                closed = mine.filter(~pl.col("is_open"))
                entry["exits"] = {"t": [t.isoformat() for t in closed["exit_time"].to_list()],
                                  "p": closed["exit_price"].to_list()}
            prices[asset] = entry
    return {"equity": eq, "drawdown": {"t": eq["t"], "v": drawdown}, "prices": prices}


def _heatmap(folder: Path, x: str, y: str, metric: Optional[str]):
    """The optimizer's own heatmap (:meth:`OptimizationResult.heatmap`) rebuilt from the saved trials."""
    import polars as pl

    from backforge.research.optimize import OptimizationResult, Trial
    from backforge.research.params import ParameterSpace

    summary = json.loads((folder / "summary.json").read_text())
    space = ParameterSpace.from_config(summary["strategy"])
    table = pl.read_parquet(folder / "trials.parquet")
    names = [c.removeprefix("param.") for c in table.columns if c.startswith("param.")]
    metrics = [c for c in table.columns if not c.startswith("param.") and c != "error"]
    if metric is not None and metric not in metrics:
        from backforge.errors import ConfigError, did_you_mean

        raise ConfigError(f"unknown metric {metric!r}{did_you_mean(metric, metrics)}", field="metric")
    trials = [Trial({n: row[f"param.{n}"] for n in names}, {m: row[m] for m in metrics if row[m] is not None}, None,
                    error=row["error"]) for row in table.iter_rows(named=True)]
    result = OptimizationResult(space, list(summary["metric"]), trials, summary["method"], summary["seed"],
                                summary["seconds"])
    return result.heatmap(x, y, metric=metric)

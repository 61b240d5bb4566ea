"""``backforge serve``: the job service (REST API, server-sent events, web page) on uvicorn."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Optional

import typer

from backforge._cli import command_app, friendly_errors

__all__ = ["app", "serve"]

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _examples_folder() -> Optional[Path]:
    candidate = Path(__file__).resolve().parents[3] / "examples"
    return candidate if candidate.is_dir() else None


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind (a non-loopback address exposes the service)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port (0: any free port, printed at start)."),
    workers: int = typer.Option(2, min=1, max=256, help="Worker processes (or concurrent Ray tasks)."),
    executor: str = typer.Option("local", help="local (worker processes) | ray (Ray tasks)."),
    ray_address: Optional[str] = typer.Option(None, help="An existing Ray cluster (default: start a local Ray)."),
    store: Optional[str] = typer.Option(None, envvar="BACKFORGE_STORE",
                                        help="Job store URL [default: sqlite:///CATALOG/service.db]; "
                                             "postgresql+psycopg://user@host/db for PostgreSQL."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", envvar="BACKFORGE_DATA",
                                           help="Data catalog folder [default: ./backforge-data]."),
    runs: Path = typer.Option(Path("backforge-runs"), help="Folder of saved runs (the CLI's default too)."),
    sessions: Optional[Path] = typer.Option(None, help="Folder of paper-session state folders, shown read-only "
                                                      "[default: backforge-sessions, as `backforge paper`]."),
    import_root: Optional[list[Path]] = typer.Option(None, "--import-root",
                                                     help="Folder(s) data files may be read from (data import jobs, "
                                                          "strategies with data files); none by default."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No token (only when binding to a loopback address)."),
    max_body: int = typer.Option(1_000_000, min=1_000, help="Largest request body in bytes (413 above)."),
    heartbeat: float = typer.Option(1.0, min=0.05, help="Seconds between a worker's heartbeats."),
    stale_after: float = typer.Option(30.0, min=0.2, help="A job whose heartbeat is older than this is taken back."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Run the job service: a persistent queue, a REST API (/docs) and a web page (/) to run and compare backtests."""
    from backforge.errors import ConfigError

    if no_auth and not is_loopback(host):
        raise ConfigError(f"--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not {host}", field="host")
    from backforge.data.catalog import DEFAULT_ROOT
    from backforge.live.cli import DEFAULT_ROOT as SESSIONS_ROOT
    from backforge.service.app import ServiceSettings, create_app
    from backforge.service.jobs import JobContext
    from backforge.service.store import JobStore, default_store_url
    from backforge.service.workers import Supervisor

    catalog_root = Path(catalog or DEFAULT_ROOT)
    job_store = JobStore(store or default_store_url(catalog_root))
    ctx = JobContext(runs, catalog_root, tuple(import_root or ()))
    ctx.runs_root.mkdir(parents=True, exist_ok=True)
    if not no_auth:
        given = os.environ.get("BACKFORGE_API_TOKEN")
        if given:
            if len(given) < 16:
                raise ConfigError("BACKFORGE_API_TOKEN must be at least 16 characters", field="BACKFORGE_API_TOKEN")
            job_store.add_token(given)
        elif not job_store.has_tokens():
            token = secrets.token_urlsafe(32)
            job_store.add_token(token)
            typer.echo(f"API token (shown once, stored hashed): {token}")
    supervisor = Supervisor(job_store, ctx, workers=workers, executor=executor, ray_address=ray_address,
                            heartbeat=heartbeat, stale_after=stale_after)
    app = create_app(ServiceSettings(store=job_store, ctx=ctx, auth=not no_auth, max_body=max_body,
                                     supervisor=supervisor, examples=_examples_folder(),
                                     sessions=Path(sessions or SESSIONS_ROOT).resolve()))
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", field="port") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"backforge serve: http://{shown}:{bound}/ (API docs /docs; {workers} {executor} workers; "
               f"store {job_store.dialect})", err=False)
    # http/loop "auto": httptools and uvloop when installed (the service extra has them) — several times the
    # request rate of the pure-Python h11 parser
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", http="auto", loop="auto",
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


app = command_app()
"""``serve``, added to the main CLI by :mod:`backforge.cli`."""
app.command()(friendly_errors(serve))

"""Fixtures of the service tests: job-store URLs (SQLite file and a real PostgreSQL server) and a
real uvicorn server on 127.0.0.1 driven over HTTP."""

from __future__ import annotations

import os
import uuid

import pytest

PG_ENV = "BACKFORGE_TEST_PG_URL"


def _pg_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{PG_ENV} is not set in CI: .ci/run must start PostgreSQL and export it")
        return None
    return url


@pytest.fixture(scope="session")
def pg_database():
    """A fresh database on the PostgreSQL server named by $BACKFORGE_TEST_PG_URL (dropped afterwards)."""
    base = _pg_url()
    if base is None:
        pytest.skip(f"{PG_ENV} is not set (CI sets it; see .ci/run)")
    import sqlalchemy as sa

    name = f"bf_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The same store tests on a SQLite file (WAL) and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url = request.getfixturevalue("pg_database")
    import sqlalchemy as sa

    from backforge.service.store import metadata

    engine = sa.create_engine(url)
    metadata.drop_all(engine)  # each test starts from empty tables
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One real server (2 local workers, SQLite store) shared by a test module."""
    from svc_server import Service

    # the workers warm up while the first tests (auth, bad input) run; jobs wait for them
    server = Service(tmp_path_factory.mktemp("service")).start(wait_for_workers=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(service):
    with service.client() as http:
        yield http

"""The API token's life: created at the first start, printed once, stored only as a digest; and
``--no-auth`` refused unless the server binds to loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from svc_server import Service

REPO = Path(__file__).resolve().parents[2]


def _serve(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "backforge.cli", "serve", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_no_auth_is_refused_off_loopback():
    done = _serve("--host", "0.0.0.0", "--no-auth", "--port", "0")
    assert done.returncode == 2
    assert "--no-auth is only allowed on a loopback address (127.0.0.1, ::1), not 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr


def test_is_loopback():
    from backforge.service.cli import is_loopback

    assert [is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost")] == [True] * 5
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com")] == [False] * 4


@pytest.mark.slow
def test_a_token_is_made_at_the_first_start_printed_once_and_stored_hashed(tmp_path):
    first = Service(tmp_path, workers=1, token=None).start(wait_for_workers=False)
    try:
        lines = [line for line in first.banner if line.startswith("API token (shown once, stored hashed): ")]
        assert len(lines) == 1
        token = lines[0].split(": ", 1)[1].strip()
        assert len(token) >= 40
        with first.client(token=token) as client:
            assert client.get("/api/jobs").status_code == 200
        with first.client(token=token[:-1]) as client:
            assert client.get("/api/jobs").status_code == 401
    finally:
        first.stop()
    assert token.encode() not in (tmp_path / "service.db").read_bytes()
    assert token not in (tmp_path / "server.log").read_text()
    second = Service(tmp_path, workers=1, token=None).start(wait_for_workers=False)
    try:
        assert not [line for line in second.banner if "API token" in line]  # printed once only
        with second.client(token=token) as client:
            assert client.get("/api/jobs").status_code == 200
    finally:
        second.stop()

"""Load: 500 jobs submitted by 20 concurrent clients all finish, none lost or duplicated, while 50
clients watch event streams at once."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from svc_server import QUICK, Service

pytestmark = pytest.mark.slow

TINY = QUICK.replace("years: 2", "years: 1")


def test_500_jobs_from_20_clients_with_50_event_watchers(tmp_path):
    server = Service(tmp_path, workers=3).start()
    try:
        def submit_many(i: int) -> list[str]:
            with server.client() as client:
                out = []
                for k in range(25):
                    response = client.post("/api/jobs", json={"kind": "backtest", "strategy": TINY, "name": f"{i}-{k}"})
                    assert response.status_code == 201, response.text
                    out.append(response.json()["id"])
                return out

        def watch(job_id: str) -> list[str]:
            states, name = [], None
            with server.client(timeout=300) as client, client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: ") and name in ("state", "end"):
                        states.append(("end:" if name == "end" else "") + json.loads(line[6:])["state"])
                        if name == "end":
                            break
            return states

        with ThreadPoolExecutor(20) as pool:
            ids = [job_id for batch in pool.map(submit_many, range(20)) for job_id in batch]
        assert len(ids) == len(set(ids)) == 500
        with ThreadPoolExecutor(50) as pool:
            watched = list(pool.map(watch, ids[-50:]))  # 50 streams open at once, to the end of their jobs
        for states in watched:
            assert states[-2:] == ["done", "end:done"] and states.count("warming_up") == 1
        with server.client() as client:
            deadline = time.monotonic() + 300
            while client.get("/api/health").json()["jobs"]["done"] < 500 and time.monotonic() < deadline:
                time.sleep(0.5)
            jobs = []
            for offset in range(0, 500, 250):
                jobs += client.get("/api/jobs", params={"limit": 250, "offset": offset}).json()["jobs"]
            counts = client.get("/api/health").json()["jobs"]
        assert counts == {"queued": 0, "warming_up": 0, "running": 0, "done": 500, "failed": 0, "cancelled": 0}
        assert sorted(j["id"] for j in jobs) == sorted(ids)  # none lost
        assert all(j["state"] == "done" and j["attempts"] == 1 for j in jobs)  # each ran exactly once
        runs = {j["result"]["run"] for j in jobs}
        assert len(runs) == 500 and {p.name for p in (tmp_path / "runs").iterdir()} == runs  # none duplicated
    finally:
        server.stop()

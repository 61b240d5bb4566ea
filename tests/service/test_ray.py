"""``--executor ray``: jobs run as tasks on a real local Ray (started by the server), with the same
heartbeats, results and cancel as local workers."""

from __future__ import annotations

import pytest
from svc_server import QUICK, SLOW, Service, wait_for

pytestmark = pytest.mark.slow


def test_jobs_run_as_ray_tasks(tmp_path):
    pytest.importorskip("ray")
    server = Service(tmp_path, workers=1, extra=("--executor", "ray")).start()
    try:
        with server.client() as client:
            assert client.get("/api/health").json()["workers"]["executor"] == "ray"
            job = client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK}).json()
            done = wait_for(client, job["id"], timeout=240)
            assert done["state"] == "done", done["error"]
            assert done["worker"].startswith("ray:")
            assert (tmp_path / "runs" / done["result"]["run"] / "metadata.json").is_file()
            slow = client.post("/api/jobs", json={"kind": "optimize", "strategy": SLOW, "top": 0}).json()
            wait_for(client, slow["id"], ("running",), timeout=240)
            assert client.post(f"/api/jobs/{slow['id']}/cancel").json()["state"] == "cancelled"
            after = wait_for(client, client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK}).json()["id"],
                             timeout=240)
            assert after["state"] == "done"  # the cancelled task let its slot go
    finally:
        server.stop()

"""Every job kind through the real server: Monte Carlo, report, judge, data import, optimize (with its
heatmap), walk-forward — each result saved in the format the CLI and the library read."""

from __future__ import annotations

import polars as pl
import pytest
from svc_server import QUICK, SLOW, wait_for
from test_api import submit

pytestmark = pytest.mark.slow


def test_every_job_kind_runs_and_saves_in_the_existing_format(service, client):
    from backforge.results.result import load_result

    base = wait_for(client, submit(client, kind="backtest", strategy=QUICK)["id"])["result"]["run"]
    (service.root / "files" / "xyz.csv").write_text(
        "date,open,high,low,close,volume\n" + "".join(
            f"2021-01-{d:02d},{10 + d},{11 + d},{9 + d},{10.5 + d},1000\n" for d in range(4, 29) if d % 7 not in (2, 3)))
    search = SLOW.replace("range: [2, 80, 1]", "choices: [5, 10]").replace("range: [100, 300, 10]", "choices: [30, 60]")
    search = search.replace("years: 10", "years: 4")
    jobs = {
        "monte_carlo": submit(client, kind="monte_carlo", strategy=QUICK, n_simulations=200, seed=1),
        "report": submit(client, kind="report", run=base, title="Quick"),
        "judge": submit(client, kind="judge", run=base, walk_forward=False),
        "data_import": submit(client, kind="data_import", path="xyz.csv", symbol="XYZ"),
        "optimize": submit(client, kind="optimize", strategy=search, top=1),
        "walk_forward": submit(client, kind="walk_forward", strategy=search, in_sample="2y", out_of_sample="1y"),
    }
    done = {kind: wait_for(client, job["id"], timeout=180) for kind, job in jobs.items()}
    for kind, job in done.items():
        assert job["state"] == "done", (kind, job["error"])
    runs = service.root / "runs"
    mc = load_result(runs / done["monte_carlo"]["result"]["run"])
    assert mc["montecarlo"]["n_simulations"] == 200 and mc["montecarlo_bands"].height > 0
    assert (runs / base / "report.html").read_text().count("Quick") >= 1
    assert (runs / base / "judge.json").is_file() and (runs / base / "judge.html").is_file()
    assert set(done["judge"]["result"]["findings"]) == {"critical", "warning", "info"}
    series = {s["symbol"]: s for s in client.get("/api/data").json()["series"]}
    assert series["XYZ"]["rows"] == done["data_import"]["result"]["rows"] > 0
    optimized = runs / done["optimize"]["result"]["run"]
    assert pl.read_parquet(optimized / "trials.parquet").height == 4
    assert load_result(runs / done["optimize"]["result"]["best_run"]).summary()["bars"] > 0
    heat = client.get(f"/api/runs/{done['optimize']['result']['run']}/heatmap", params={"x": "fast", "y": "slow"})
    assert heat.status_code == 200 and heat.json()["data"][0]["z"]["shape"].replace(" ", "") == "2,2"
    bad_axis = client.get(f"/api/runs/{done['optimize']['result']['run']}/heatmap", params={"x": "fats", "y": "slow"})
    assert bad_axis.status_code == 422 and "did you mean 'fast'" in bad_axis.json()["detail"][0]["msg"]
    walk = runs / done["walk_forward"]["result"]["run"]
    assert pl.read_parquet(walk / "windows.parquet").height == done["walk_forward"]["result"]["windows"] >= 1
    for page in (f"/runs/{base}", f"/runs/{done['optimize']['result']['run']}", f"/runs/{done['walk_forward']['result']['run']}",
                 f"/runs/{done['monte_carlo']['result']['run']}"):
        assert client.get(page).status_code == 200, page
    assert not [p for p in runs.iterdir() if p.name.startswith(".staging")]

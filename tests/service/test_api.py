"""The REST API over real HTTP against a real ``backforge serve`` (uvicorn on 127.0.0.1, 2 worker
processes, a SQLite store) shared by the module: auth, bad input, the job lifecycle with progress and
events, runs, compare, validation, paper sessions, and (slow) every job kind."""

from __future__ import annotations

import io
import json
import re

import httpx
import polars as pl
import pytest
from svc_server import QUICK, SLOW, wait_for

BAD_WINDOW = QUICK.replace("{sma: {window: 20}}}\n    action: {buy", "{sma: {window: -5}}}\n    action: {buy")


def submit(client, **body):
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def sse_events(client, job_id, timeout=60.0):
    """Read a job's event stream to its end; returns (event name, data) pairs."""
    events, name = [], None
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=timeout) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "end":
                    break
    return events


def test_every_route_answers_401_without_the_token(service, client):
    spec = client.get("/openapi.json").json()  # the API description itself is public
    routes = [(path, method) for path, methods in spec["paths"].items() for method in methods]
    assert len(routes) >= 14
    fill = {"{job_id}": "0123456789abcdef", "{run_id}": "some-run", "{session_id}": "some-session"}
    with service.client(token=None) as anonymous, service.client(token="wrong-token-wrong-token") as wrong:
        for path, method in routes:
            url = re.sub(r"\{[a-z_]+\}", lambda m: fill[m.group(0)], path)
            for http in (anonymous, wrong):
                response = http.request(method.upper(), url, params={"x": "a", "y": "b", "runs": "a,b"}, json={})
                assert response.status_code == 401, (method, url, response.status_code)
                assert response.headers["www-authenticate"] == "Bearer"
        for page in ("/", "/runs/some-run", "/compare", "/sessions/some-session"):
            assert anonymous.get(page).status_code == 401
            assert "Sign in" in anonymous.get(page).text
    assert "access-control-allow-origin" not in client.get("/api/health", headers={"Origin": "http://evil.test"}).headers


def test_bad_strategy_is_422_with_the_exact_field_path(client):
    before = client.get("/api/jobs").json()["total"]
    response = client.post("/api/jobs", json={"kind": "backtest", "strategy": BAD_WINDOW})
    assert response.status_code == 422
    assert response.json()["detail"] == [{
        "loc": ["body", "strategy", "strategies", 0, "condition", "rhs", "window"],
        "path": "body.strategy.strategies[0].condition.rhs.window", "msg": "must be > 0, got -5", "type": "value_error"}]
    broken_yaml = client.post("/api/jobs", json={"kind": "backtest", "strategy": "name: [unclosed\n"})
    assert broken_yaml.status_code == 422
    assert broken_yaml.json()["detail"][0]["loc"] == ["body", "strategy"]
    assert broken_yaml.json()["detail"][0]["msg"].startswith("not valid YAML/JSON at line")
    assert client.get("/api/jobs").json()["total"] == before  # nothing written


def test_bad_bodies_are_clear_4xx_answers(client):
    unknown = client.post("/api/jobs", json={"kind": "backtst", "strategy": QUICK})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "kind"]
    assert "unknown job kind 'backtst'; did you mean 'backtest'?" in unknown.json()["detail"][0]["msg"]
    malformed = client.post("/api/jobs", content=b'{"kind": "backtest",', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "malformed JSON at line 1" in malformed.json()["detail"][0]["msg"]
    not_json = client.post("/api/jobs", content=b"kind=backtest", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415
    extra = client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK, "strateg": 1})
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "strateg"]
    missing_data = client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK, "data": {"source": "catalog"}})
    assert missing_data.status_code == 422
    assert missing_data.json()["detail"][0]["loc"] == ["body", "strategy", "universe", 0]
    assert "'AAA' is not in the catalog" in missing_data.json()["detail"][0]["msg"]
    huge = client.post("/api/jobs", json={"kind": "backtest", "strategy": QUICK.replace("years: 2", "years: 5000, bar: 1min")})
    assert huge.status_code == 422 and huge.json()["detail"][0]["loc"] == ["body", "strategy", "data", "years"]
    no_params = client.post("/api/jobs", json={"kind": "optimize", "strategy": QUICK})
    assert no_params.status_code == 422 and "declares no parameters" in no_params.json()["detail"][0]["msg"]
    no_run = client.post("/api/jobs", json={"kind": "judge", "run": "nope"})
    assert no_run.status_code == 422 and no_run.json()["detail"][0]["loc"] == ["body", "run"]


def test_data_files_outside_the_import_roots_are_refused(client):
    reads_passwd = QUICK.replace("data: {years: 2, seed: 3}", "data: {source: files, paths: {AAA: /etc/passwd}}")
    response = client.post("/api/jobs", json={"kind": "backtest", "strategy": reads_passwd})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "strategy", "data", "paths", "AAA"]
    assert "outside the folders this server reads data from" in response.json()["detail"][0]["msg"]
    escape = client.post("/api/jobs", json={"kind": "data_import", "path": "../../../etc/passwd", "symbol": "X"})
    assert escape.status_code == 422 and escape.json()["detail"][0]["loc"] == ["body", "path"]
    # a strategy given as a file name is text, never a file read on the server
    as_path = client.post("/api/jobs", json={"kind": "backtest", "strategy": "/etc/hostname"})
    assert as_path.status_code == 422 and "must be a mapping" in as_path.json()["detail"][0]["msg"]


def test_oversized_bodies_are_refused_before_they_are_read(client):
    big = {"kind": "backtest", "strategy": "#" * 1_100_000}
    assert client.post("/api/jobs", json=big).status_code == 413

    def chunks():
        for _ in range(40):
            yield b"x" * 50_000

    chunked = client.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "too large" in chunked.json()["detail"]


def test_run_ids_cannot_leave_the_runs_folder(client):
    # encoded, so that the client sends them as they are (httpx would resolve a literal "../")
    for bad in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "%2E%2E",
                "a%2F..%2F..%2Fb", "x%00y", "quick-x%2F..%2F..%2F..%2Fetc"):
        for url in (f"/api/runs/{bad}", f"/api/runs/{bad}/report", f"/runs/{bad}"):
            response = client.get(url)
            assert response.status_code == 404, (url, response.status_code)
            assert "root:" not in response.text
    assert client.get("/api/compare", params={"runs": "../../etc/passwd,x"}).status_code == 404
    assert client.get("/api/jobs/../../etc/passwd").status_code == 404


def test_filters_with_sql_metacharacters_are_parameters(client):
    submit(client, kind="backtest", strategy=QUICK)
    submit(client, kind="backtest", strategy=QUICK)
    total = client.get("/api/jobs").json()["total"]
    for hostile in ("backtest' OR '1'='1", "x'; DROP TABLE bf_jobs; --", "\" OR 1=1 --", "%", "_"):
        for key in ("state", "kind"):
            response = client.get("/api/jobs", params={key: hostile})
            assert response.status_code == 200 and response.json()["jobs"] == [] and response.json()["total"] == 0
    assert client.get("/api/jobs").json()["total"] == total
    only = client.get("/api/jobs", params={"kind": "backtest", "limit": 2, "offset": 0}).json()
    assert len(only["jobs"]) == 2 and {j["kind"] for j in only["jobs"]} == {"backtest"}
    assert client.get("/api/jobs", params={"limit": 0}).status_code == 422


def test_lifecycle_with_progress_events_and_a_saved_run(client):
    job = submit(client, kind="backtest", strategy=QUICK)
    assert job["state"] == "queued" and job["kind"] == "backtest"
    events = sse_events(client, job["id"])
    states = [data["state"] for name, data in events if name == "state"]
    assert states == ["queued", "warming_up", "running", "done"]
    progress = [data["progress"] for name, data in events if name == "progress"]
    assert progress == sorted(progress) and 0 < progress[0] < progress[-1] < 1
    assert any(name == "log" and "backtest of" in data["line"] for name, data in events)
    assert events[-1] == ("end", {"state": "done"})
    done = client.get(f"/api/jobs/{job['id']}").json()
    assert done["progress"] == 1.0 and done["attempts"] == 1 and done["error"] is None
    run_id = done["result"]["run"]
    assert run_id == f"quick-{job['id']}"
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["kind"] == "run" and run["config"]["strategy"]["name"] == "quick"
    assert run["metrics"]["total_return"] == pytest.approx(done["result"]["summary"]["total_return"])
    closed = [t for t in run["trades"]["rows"] if not t["is_open"]]
    assert len(closed) == done["result"]["summary"]["trades"] > 0
    assert len(run["equity"]["t"]) == len(run["equity"]["v"]) == run["summary"]["bars"]
    parquet = client.get(f"/api/runs/{run_id}", params={"format": "parquet", "table": "trades"})
    assert parquet.status_code == 200
    assert pl.read_parquet(io.BytesIO(parquet.content)).height == run["trades"]["total"]
    assert run_id in [r["id"] for r in client.get("/api/runs").json()["runs"]]


def test_a_saved_run_opens_with_the_library_and_its_report_is_served(service, client):
    from backforge.results.result import load_result

    job = wait_for(client, submit(client, kind="backtest", strategy=QUICK)["id"])
    run_id = job["result"]["run"]
    saved = load_result(service.root / "runs" / run_id)  # what `backforge report/compare/explain` read
    assert saved.summary()["trades"] == job["result"]["summary"]["trades"]
    report = client.get(f"/api/runs/{run_id}/report", timeout=120)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "plotly" in report.text.lower() and (service.root / "runs" / run_id / "report.html").is_file()


def test_a_run_without_trades_is_done_not_failed(client):
    silent = "name: silent\nuniverse: [AAA]\ndata: {years: 1}\nstrategies:\n  - name: watch\n    action: {alert: {}}\n"
    job = wait_for(client, submit(client, kind="backtest", strategy=silent)["id"])
    assert job["state"] == "done", job["error"]
    assert job["result"]["summary"]["trades"] == 0
    assert client.get(f"/api/runs/{job['result']['run']}").status_code == 200


def test_cancel_in_every_state(client):
    slow = [submit(client, kind="optimize", strategy=SLOW, top=0) for _ in range(2)]  # both workers busy
    queued = submit(client, kind="backtest", strategy=QUICK)
    running = wait_for(client, slow[0]["id"], ("running",), condition=lambda j: j["progress"] > 0.05)
    assert client.get(f"/api/jobs/{queued['id']}").json()["state"] == "queued"
    assert client.post(f"/api/jobs/{queued['id']}/cancel").json()["state"] == "cancelled"
    cancelled = client.post(f"/api/jobs/{running['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    other = client.post(f"/api/jobs/{slow[1]['id']}/cancel").json()  # warming up or running
    assert other["state"] == "cancelled"
    for job in (queued, running, slow[1]):
        again = client.post(f"/api/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    # the workers let go of the cancelled jobs and take new work; no result of a cancelled job appears
    after = wait_for(client, submit(client, kind="backtest", strategy=QUICK)["id"], timeout=60)
    assert after["state"] == "done"
    assert client.post(f"/api/jobs/{after['id']}/cancel").status_code == 409
    runs = {r["id"] for r in client.get("/api/runs").json()["runs"]}
    assert not any(job["id"] in run for run in runs for job in (queued, running, slow[1]))
    assert client.post("/api/jobs/0000000000000000/cancel").status_code == 404


def test_compare_validate_schema_and_data(service, client):
    ids = [wait_for(client, submit(client, kind="backtest", strategy=s)["id"])["result"]["run"]
           for s in (QUICK, QUICK.replace("seed: 3", "seed: 4"))]
    compared = client.get("/api/compare", params={"runs": ",".join(ids)}).json()
    assert compared["runs"] == ids
    rows = {m["metric"]: m["values"] for m in compared["metrics"]}
    for run_id in ids:
        own = client.get(f"/api/runs/{run_id}").json()["metrics"]
        assert rows["total_return"][run_id] == pytest.approx(own["total_return"])
    assert rows["total_return"][ids[0]] != rows["total_return"][ids[1]]
    assert client.get("/api/compare", params={"runs": ids[0]}).status_code == 422
    valid = client.post("/api/strategies/validate", json={"strategy": SLOW}).json()
    assert valid["valid"] and valid["assets"] == 3 and valid["parameters"] == ["fast", "slow"]
    invalid = client.post("/api/strategies/validate", json={"strategy": BAD_WINDOW})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["path"] == "body.strategy.strategies[0].condition.rhs.window"
    schema = client.get("/api/schema").json()
    assert set(schema["jobs"]) == {"backtest", "optimize", "walk_forward", "monte_carlo", "judge", "report", "data_import"}
    assert "universe" in schema["strategy"]["properties"]
    from backforge.data.catalog import Catalog

    served = [(s["symbol"], s["bar"], s["rows"]) for s in client.get("/api/data").json()["series"]]
    on_disk = Catalog(service.root / "catalog").list() if (service.root / "catalog").is_dir() else []
    assert served == [(s.symbol, s.bar, s.rows) for s in on_disk]
    assert client.get("/docs").status_code == 200


def test_unknown_job_is_404(client):
    assert client.get("/api/jobs/doesnotexist").status_code == 404
    assert client.get("/api/jobs/doesnotexist/events").status_code == 404


PAPER = {"name": "paper-demo", "universe": ["AAA", "BBB"], "cash": 10_000, "data": {"years": 1, "seed": 11},
         "strategies": [{"name": "in", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_above",
                                                      "rhs": {"sma": {"window": 20}}},
                         "action": {"buy": {"allocation": {"equity_fraction": 0.4}}}},
                        {"name": "out", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_below",
                                                       "rhs": {"sma": {"window": 20}}},
                         "action": {"close": {}}}]}


def test_paper_sessions_are_served_read_only(service, client):
    from backforge._time import format_ns
    from backforge.live.session import run_paper, session_tables

    folder = service.root / "sessions" / "replay-demo"
    runner = run_paper(PAPER, state=folder, start=100)  # a real paper session on replayed synthetic bars
    tables = session_tables(folder)
    listed = {s["id"]: s for s in client.get("/api/sessions").json()["sessions"]}
    assert listed["replay-demo"]["bars"] == runner.bars_processed == tables["bars"].height > 0
    assert listed["replay-demo"]["running"] is False and listed["replay-demo"]["halted"] == ""
    last_ts = int(tables["bars"]["ts_ns"][-1])
    assert listed["replay-demo"]["last_bar"] == format_ns(last_ts, "second", offset=False)

    status = client.get("/api/sessions/replay-demo").json()
    assert status["bars"] == runner.bars_processed and status["last_bar_ts"] == last_ts
    assert status["equity_curve"]["v"] == pytest.approx(tables["bars"]["equity"].to_list())
    assert status["equity"] == pytest.approx(tables["bars"]["equity"][-1])
    assert status["pnl"] == pytest.approx(status["equity"] - 10_000)
    assert status["cash"] == pytest.approx(tables["bars"]["cash"][-1])
    fills = tables["fills"]
    assert status["fills"]["total"] == fills.height > 0
    net: dict[str, float] = {}
    for f in fills.iter_rows(named=True):  # positions from the fills, independently of the runner's state
        net[f["symbol"]] = net.get(f["symbol"], 0.0) + (f["qty"] if f["side"] == "buy" else -f["qty"])
    held = {k: v for k, v in net.items() if abs(v) > 1e-9}
    assert {k: p["qty"] for k, p in status["positions"].items()} == pytest.approx(held)
    assert len(status["open_orders"]) == status["in_flight"]
    assert status["breakers"]["halted"] is False and status["finished"] is True

    page = client.get("/sessions/replay-demo")
    assert page.status_code == 200 and "Paper session replay-demo" in page.text
    assert all(f"<td>{symbol}</td>" in page.text for symbol in held)
    assert 'href="/sessions/replay-demo"' in client.get("/").text
    for bad in ("nope", "..%2F..%2Fetc", "%2E%2E", "replay-demo%2F..%2F..%2Fruns"):
        assert client.get(f"/api/sessions/{bad}").status_code == 404, bad
        assert client.get(f"/sessions/{bad}").status_code == 404, bad


@pytest.mark.slow
def test_every_job_kind_runs_and_saves_in_the_existing_format(service, client):
    """Monte Carlo, report, judge, data import, optimize (with its heatmap), walk-forward — each result
    saved in the format the CLI and the library read."""
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

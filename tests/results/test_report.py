"""Tests of the HTML tear sheet (backforge.results.report) and the `report`/`compare` commands.

The browser test opens reports in a real headless Chromium through the DevTools protocol (over
``--remote-debugging-pipe``, standard library only): no console errors or exceptions, every chart
container rendered (an ``svg.main-svg`` inside it), a screenshot that is not blank, and the time to
the last chart. It is skipped when Chromium is not installed, unless the ``CI`` environment variable
is set (CI installs Debian's ``chromium``), where a missing browser fails the test.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from typer.testing import CliRunner

import backforge as bf
from backforge.cli import app
from backforge.errors import ConfigError, DataError
from backforge.results.report import CHART_IDS, format_metric, minmax_indices, minmax_indices_nb

runner = CliRunner()


# ============================================================================================ fixtures
@pytest.fixture(scope="module")
def strategy_result():
    """A strategy run with stops, take-profits and signal events: every section of the report has content."""
    from backforge.strategy.compiler import run_portfolio

    config = {
        "name": "sma-cross-with-stops", "universe": ["AAA", "BBB", "CCC"], "data": {"years": 4, "seed": 3},
        "costs": {"fee_rate": 0.0005},
        "strategies": [
            {"name": "enter", "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_above",
                                            "rhs": {"sma": {"window": 30}}},
             "action": {"buy": {"allocation": {"equity_fraction": 0.3}, "stop_loss": {"percent": 0.04},
                                "take_profit": {"percent": 0.08}}}},
            {"name": "exit", "condition": {"lhs": {"sma": {"window": 10}}, "op": "crosses_below",
                                           "rhs": {"sma": {"window": 30}}}, "action": {"close": {}}},
        ],
    }
    return run_portfolio(config, bf.synth(n_assets=3, years=4, seed=3, assets=("AAA", "BBB", "CCC")))


@pytest.fixture(scope="module")
def minute_result():
    """Half a year of 1-minute bars on two assets (49,140 bars): long enough to be downsampled."""
    from backforge.strategy.indicators import sma

    data = bf.synth(n_assets=2, years=0.5, bar="1min", seed=4)
    fast, slow = sma(data.close, data.timestamps, 20), sma(data.close, data.timestamps, 60)
    return bf.from_signals(data, fast > slow, fast < slow, size=0.5, fee_rate=0.0001)


def chart_specs(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="bf-charts">(.*?)</script>', html, flags=re.S)
    return json.loads(match.group(1), parse_constant=lambda name: pytest.fail(f"non-standard JSON {name}"))


def table_spec(html: str, table_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{table_id}">(.*?)</script>', html, flags=re.S)
    return json.loads(match.group(1))


def decode(values) -> np.ndarray:
    """Plotly's binary array spec (``{"dtype": "f8", "bdata": ...}``) or a list, as float64."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).astype(np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# ============================================================================================ downsampling
def slow_minmax_indices(values: np.ndarray, buckets: int) -> np.ndarray:
    """The obvious version of minmax_indices_nb: first, argmin and argmax of each bucket, last."""
    n = len(values)
    keep = [0, n - 1]
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        part = values[lo:hi]
        if part.size == 0 or np.isnan(part).all():
            continue
        keep += [lo + int(np.nanargmin(part)), lo + int(np.nanargmax(part))]
    return np.unique(keep)


@settings(max_examples=150, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(1, 400),
                         elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))),
       buckets=st.integers(1, 60))
def test_minmax_kernel_matches_the_slow_reference(values, buckets):
    np.testing.assert_array_equal(minmax_indices_nb(values, buckets), slow_minmax_indices(values, buckets))


def test_minmax_keeps_the_global_extremes_of_a_long_equity_curve():
    rng = np.random.default_rng(0)
    equity = 1e5 * np.exp(np.cumsum(rng.normal(0, 1e-3, 1_000_000)))
    equity[123_457] = equity.max() * 1.5  # a one-bar spike
    equity[987_650] = equity.min() * 0.5  # a one-bar crash
    idx = minmax_indices(equity, 2_000)
    assert len(idx) <= 4_002 and np.all(np.diff(idx) > 0)
    assert idx[0] == 0 and idx[-1] == len(equity) - 1
    assert equity[idx].max() == equity.max() and equity[idx].min() == equity.min()
    assert 123_457 in idx and 987_650 in idx


def test_minmax_short_series_and_errors():
    assert minmax_indices(np.arange(10.0), 5).tolist() == list(range(10))
    assert minmax_indices(np.zeros(0), 5).tolist() == []
    with pytest.raises(ConfigError, match="buckets must be"):
        minmax_indices(np.arange(10.0), 0)
    with pytest.raises(DataError, match="1-D"):
        minmax_indices(np.zeros((3, 3)), 2)


def test_report_charts_are_downsampled_and_keep_the_equity_extremes(minute_result):
    html = minute_result.to_html(max_points=500)
    specs = chart_specs(html)
    equity = specs["chart-equity"]["data"][0]
    y = decode(equity["y"])
    assert len(y) <= 1_002 and len(equity["x"]) == len(y)
    curve = np.r_[minute_result.initial_cash, minute_result.equity_values]
    assert y.max() == curve.max() and y.min() == curve.min()
    under = decode(specs["chart-underwater"]["data"][0]["y"])
    assert under.min() == pytest.approx(minute_result.metrics()["max_drawdown"], rel=1e-12)
    for j in range(2):
        close = decode(specs[f"chart-price-{j}"]["data"][0]["y"])
        assert len(close) <= 1_002 and close.max() == np.nanmax(minute_result.data.close[:, j])
    assert "minimum and maximum of each of 500 buckets" in html
    assert "Return distribution (daily)" in html  # intraday bars: daily returns for the distribution


# ============================================================================================ content
def test_report_is_one_self_contained_file(strategy_result):
    from plotly.offline import get_plotlyjs

    html = strategy_result.to_html()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count(get_plotlyjs()) == 1  # plotly.js embedded once
    own = html.replace(get_plotlyjs(), "")  # plotly.js mentions URLs in strings it never loads by itself
    assert "<script src" not in own and "<link" not in own and "@import" not in own
    assert not re.search(r'(src|href)="(https?:)?//', own)
    specs = chart_specs(html)
    assert set(CHART_IDS) <= set(specs) and {"chart-price-0", "chart-price-1", "chart-price-2"} <= set(specs)
    assert html.count('class="chart"') == len(specs) == int(re.search(r'data-charts="(\d+)"', html).group(1))
    for key, title in [("overview", "Total return"), ("performance", "Equity and drawdown"), ("returns", "Monthly"),
                       ("risk", "Rolling Sharpe"), ("exposure", "Exposure over time"), ("assets", "stop-loss level"),
                       ("metrics", "Profit factor"), ("trades", "Trades ("), ("drawdowns", "Drawdown periods"),
                       ("config", "sma-cross-with-stops"), ("audit", "Signal-event audit (")]:
        assert f'id="{key}"' in html and title in html, key
    assert "<title>sma-cross-with-stops · backforge report</title>" in html


def test_report_tables_trades_drawdowns_and_signal_events(strategy_result):
    html = strategy_result.to_html()
    trades = table_spec(html, "table-trades")
    assert len(trades["rows"]) == strategy_result.trades.height
    assert [c[0] for c in trades["columns"]][:3] == ["asset", "side", "qty"]
    reasons = {row[14] for row in trades["rows"]}
    assert {"stop_loss", "take_profit"} <= reasons
    drawdowns = table_spec(html, "table-drawdowns")
    assert drawdowns["rows"][0][4] == pytest.approx(strategy_result.metrics()["max_drawdown"], abs=1e-6)
    signals = table_spec(html, "table-signals")
    assert len(signals["rows"]) == strategy_result.signal_events.height
    assert {row[4] for row in signals["rows"]} == {"buy", "close"}
    price = chart_specs(html)["chart-price-0"]["data"]
    names = {trace["name"] for trace in price}
    assert {"close", "long entry", "stop-loss level", "take-profit level"} <= names


def test_long_tables_and_markers_are_capped_with_a_note(minute_result):
    html = minute_result.to_html(max_rows=100, max_markers=20, max_assets=1)
    trades = table_spec(html, "table-trades")
    total = minute_result.trades.height
    assert total > 100 and len(trades["rows"]) == 100
    pnl = sorted(minute_result.trades["pnl"].to_list())
    shown = sorted(row[7] for row in trades["rows"])
    assert shown[0] == pytest.approx(pnl[0], abs=0.01) and shown[-1] == pytest.approx(pnl[-1], abs=0.01)
    assert f"Showing 100 of {total:,} trades" in html
    assert "Showing the first 1 of 2 assets" in html and "the 20 with the largest absolute P&amp;L" in html
    entries = [t for t in chart_specs(html)["chart-price-0"]["data"] if t["name"] == "long entry"][0]
    assert len(entries["x"]) <= 21  # 20 closed trades + an open position


def test_report_from_a_saved_run_is_the_same_as_from_the_result(strategy_result, tmp_path):
    folder = strategy_result.save(tmp_path / "run")
    run = bf.load_result(folder)

    def normalized(text: str) -> str:
        return re.sub(r'<span class="generated">.*?</span>', "", text).replace("<span>run: run</span>", "")

    assert normalized(run.to_html()) == normalized(strategy_result.to_html())


def test_report_options(strategy_result):
    html = strategy_result.to_html(benchmark=None, title="No benchmark <b>", risk_free=0.02)
    assert "No benchmark &lt;b&gt;" in html and "equal-weight buy" not in html
    assert len(chart_specs(html)["chart-equity"]["data"]) == 1
    assert "risk-free rate 2.00%" in html
    with pytest.raises(ConfigError, match="max_points must be"):
        strategy_result.to_html(max_points=0)
    with pytest.raises(ConfigError, match="unknown benchmark"):
        strategy_result.to_html(benchmark="sp500")


def test_metric_formatting():
    assert format_metric("total_return", 0.1234) == "12.34%"
    assert format_metric("kelly", -math.inf) == "−∞"
    assert format_metric("avg_trade_duration_ns", 1.5 * 86_400e9) == "1d 12h"
    assert format_metric("n_trades", 12_345) == "12,345"
    assert format_metric("sharpe", float("nan")) == "–"


# ============================================================================================ CLI
def test_cli_report_and_compare(strategy_result, tmp_path):
    first = strategy_result.save(tmp_path / "first")
    data = bf.synth(n_assets=2, years=2, seed=8)
    second = bf.from_signals(data, data.close > data.open, data.close < data.open).save(tmp_path / "second")
    out = runner.invoke(app, ["report", str(first)])
    assert out.exit_code == 0, out.output
    assert "report:" in out.output and (first / "report.html").exists()
    target = tmp_path / "elsewhere" / "r.html"
    out = runner.invoke(app, ["report", str(second), "-o", str(target), "--benchmark", "none", "--title", "Two"])
    assert out.exit_code == 0, out.output
    assert "<title>Two · backforge report</title>" in target.read_text()
    out = runner.invoke(app, ["compare", str(first), str(second)])
    assert out.exit_code == 0, out.output
    assert "first" in out.output and "second" in out.output and "Sharpe" in out.output and "Max drawdown" in out.output
    out = runner.invoke(app, ["compare", "--all", str(first), str(second)])
    assert out.exit_code == 0 and "Kelly fraction" in out.output and "Ulcer index" in out.output
    out = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert out.exit_code == 2 and "no saved run here" in out.output and "Traceback" not in out.output


def test_demo_writes_the_report_and_prints_its_path(tmp_path):
    out = runner.invoke(app, ["demo", "--assets", "2", "--years", "1", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    folder = next(tmp_path.iterdir())
    assert (folder / "report.html").exists() and "report:" in out.output and "report.html" in out.output
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["seed"] == 7
    assert json.loads((folder / "config.json").read_text())["data_source"]["synthetic"]["n_assets"] == 2


# ============================================================================================ browser
def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """Headless Chromium driven over the DevTools protocol on file descriptors 3 and 4."""

    def __init__(self, binary: str, *, width: int) -> None:
        self.profile = tempfile.mkdtemp(prefix="bf-chromium-")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 (commands in) and 4 (replies out)
            commands, replies = os.dup(to_browser), os.dup(from_browser)
            os.dup2(commands, 3, inheritable=True)
            os.dup2(replies, 4, inheritable=True)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self.profile}", f"--window-size={width},1000", "--remote-debugging-pipe",
                "about:blank"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, preexec_fn=wire, close_fds=False)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from the browser")
            if select.select([self._read], [], [], remaining)[0]:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise ConnectionError("the browser closed the pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._receive(deadline))

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._receive(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError, ConnectionError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._read)
        os.close(self._write)
        shutil.rmtree(self.profile, ignore_errors=True)


_PAGE_STATE = """({
  rendered: document.body.dataset.rendered || null,
  renderMs: +document.body.dataset.renderMs || null,
  plotlyMs: +document.body.dataset.plotlyMs || null,
  firstChartMs: +document.body.dataset.firstChartMs || null,
  charts: +document.body.dataset.charts,
  errors: (window.bfErrors || []).slice(),
  containers: Array.from(document.querySelectorAll('div.chart')).map(d => d.id),
  drawn: Array.from(document.querySelectorAll('div.chart')).filter(
    d => d.querySelector('svg.main-svg') && d.querySelector('.plot-container')).map(d => d.id),
  tableRows: document.querySelectorAll('.bf-table table tbody tr').length,
  height: document.documentElement.scrollHeight
})"""


def open_in_chromium(binary: str, page: Path, screenshot: Path | None, *, width: int = 1400,
                     timeout: float = 90.0, script: str | None = None) -> dict:
    """Load ``page``, wait for its charts, screenshot the whole page (when ``screenshot`` is given);
    return the page state and the console errors, warnings and uncaught exceptions. ``script``: a
    JavaScript expression (may return a promise) evaluated once the charts are drawn, its value in
    ``state["script"]``."""
    browser = Chromium(binary, width=width)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}, session=session)
        start = time.monotonic()
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired", timeout)
        while True:
            state = browser.send("Runtime.evaluate", {"expression": _PAGE_STATE, "returnByValue": True},
                                 session=session)["result"]["value"]
            if state["rendered"] is not None or state["errors"] or time.monotonic() - start > timeout:
                break
            time.sleep(0.05)
        state["wall_seconds"] = time.monotonic() - start
        # sort the trades table by P&L (click its header twice: descending, then ascending)
        state["sorted"] = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": """(() => {
            const box = document.querySelector('.bf-table[data-src="table-trades"]');
            if (!box) return null;
            const header = Array.from(box.querySelectorAll('th')).find(th => th.textContent === 'P&L');
            const cell = () => box.querySelector('tbody tr td:nth-child(8)').textContent;
            header.click(); const high = cell(); header.click(); const low = cell();
            return [high, low, header.className];
        })()"""}, session=session)["result"].get("value")
        if script is not None:
            reply = browser.send("Runtime.evaluate", {"expression": script, "returnByValue": True, "awaitPromise": True},
                                 session=session)
            state["script"] = reply["result"].get("value")
            if "exceptionDetails" in reply:
                state["errors"].append(f"script: {reply['exceptionDetails'].get('exception', {}).get('description')}")
        browser.drain(0.3)
        if screenshot is not None:
            height = min(int(state["height"]), 16_000)
            browser.send("Emulation.setDeviceMetricsOverride",
                         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
            browser.drain(0.5)
            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                session=session, timeout=timeout)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        problems = []
        for event in browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                problems.append(f"exception: {details.get('text')} {details.get('exception', {}).get('description', '')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                problems.append(f"console.{params['type']}: " + " ".join(
                    str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                problems.append(f"log {params['entry']['level']}: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        state["problems"] = problems
        return state
    finally:
        browser.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (apt-get install chromium) but was not found")
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser test runs in CI")
    return binary


@pytest.mark.slow
def test_report_renders_in_headless_chromium(chromium, strategy_result, tmp_path):
    from PIL import Image

    page = strategy_result.write_html(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    state = open_in_chromium(chromium, page, shot)
    assert state["problems"] == [] and state["errors"] == []
    assert state["rendered"] == str(state["charts"]) and state["charts"] >= 11
    assert sorted(state["drawn"]) == sorted(state["containers"]) and len(state["containers"]) == state["charts"]
    assert state["tableRows"] > 50  # trades, drawdowns, signals and the per-asset table were built by the script
    high, low, css = state["sorted"]
    assert "asc" in css.split() and float(high.replace(",", "")) > float(low.replace(",", ""))
    # loaded within a few seconds (measured inside the page, from navigation to the last chart)
    assert state["renderMs"] < 15_000, state
    image = Image.open(shot).convert("L")
    width, height = image.size
    assert width == 1400 and height > 5_000
    pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 100  # not blank
    rows = pixels.std(axis=1)
    assert (rows > 5).mean() > 0.3  # content all the way down, not one drawn band


@pytest.mark.slow
def test_minute_report_renders_in_headless_chromium(chromium, minute_result, tmp_path):
    page = minute_result.write_html(tmp_path / "minute.html")
    state = open_in_chromium(chromium, page, None)
    assert state["problems"] == [] and state["errors"] == []
    assert state["rendered"] == str(state["charts"]) and sorted(state["drawn"]) == sorted(state["containers"])
    assert state["renderMs"] < 15_000, state


_PICK_PAIR = """(async () => {
  const gd = document.getElementById('chart-parameters');
  const click = el => el.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  const before = [gd.layout.xaxis.title.text, gd.layout.yaxis.title.text, gd.data[0].x.length];
  const header = gd.querySelector('.updatemenu-header-group');
  if (!header) return {before, names: []};
  click(header.querySelector('rect') || header);
  await new Promise(r => setTimeout(r, 400));
  const buttons = Array.from(gd.querySelectorAll('.updatemenu-dropdown-button'));
  const names = buttons.map(b => b.textContent);
  const wanted = buttons.find(b => b.textContent === 'slow × trend');
  if (!wanted) return {before, names};
  click(wanted);
  await new Promise(r => setTimeout(r, 500));
  return {before, names, after: [gd.layout.xaxis.title.text, gd.layout.yaxis.title.text, gd.data[0].x, gd.data[0].y,
          gd.data[1].x, gd.data[1].y]};
})()"""


@pytest.mark.slow
def test_parameter_heatmap_dropdown_switches_the_pair_in_chromium(chromium, tmp_path):
    """An optimization's best run: the menu offers every pair and picking one redraws the heatmap."""
    from backforge.cli import app

    strategy = tmp_path / "knobs.yaml"
    strategy.write_text("""\
name: knobs
universe: [AAPL]
strategies:
  - name: enter
    condition:
      all:
        - {lhs: {sma: {window: {param: fast, choices: [5, 10], default: 5}}}, op: ">", rhs: {sma: {window: {param: slow, choices: [30, 40], default: 30}}}}
        - {lhs: {price: {field: close}}, op: ">", rhs: {sma: {window: {param: trend, choices: [50, 100, 150], default: 50}}}}
    action: {buy: {}}
  - name: exit
    condition: {lhs: {sma: {window: {param: fast, choices: [5, 10], default: 5}}}, op: "<", rhs: {sma: {window: {param: slow, choices: [30, 40], default: 30}}}}
    action: {close: {}}
data: {source: synthetic, years: 2, bar: 1d, seed: 2}
""")
    done = CliRunner().invoke(app, ["optimize", str(strategy), "--workers", "1", "--top", "1", "--out", str(tmp_path / "o")])
    assert done.exit_code == 0, done.output
    (folder,) = [p for p in (tmp_path / "o").iterdir() if p.is_dir()]
    best = json.loads((folder / "summary.json").read_text())["best"]
    state = open_in_chromium(chromium, folder / "best-1" / "report.html", None, script=_PICK_PAIR)
    assert state["problems"] == [] and state["errors"] == []
    assert "chart-parameters" in state["drawn"]
    picked = state["script"]
    assert picked["before"] == ["fast", "slow", 2], picked
    assert picked["names"] == ["fast × slow", "fast × trend", "slow × trend"], picked
    x_title, y_title, xs, ys, star_x, star_y = picked["after"]
    assert (x_title, y_title, xs, ys) == ("slow", "trend", ["30", "40"], ["50", "100", "150"])
    assert (star_x, star_y) == ([str(best["slow"])], [str(best["trend"])])

"""The web page in Debian's headless Chromium (Playwright pointed at /usr/bin/chromium; no browser
download): sign in, submit a strategy, watch the progress bar reach done, open the run and its tear
sheet, compare two runs, look at an optimization heatmap and a paper session — no console errors,
screenshots not blank."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from svc_server import QUICK, Service, wait_for
from test_api import PAPER

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SEARCH = QUICK.replace("window: 5}", "window: {param: fast, choices: [3, 5, 8]}}").replace(
    "window: 20}", "window: {param: slow, choices: [15, 20, 30]}}")


@pytest.fixture(scope="module")
def chromium_path():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api")
    return CHROMIUM


def _not_blank(png: bytes) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    low, high = image.convert("L").getextrema()
    colours = len(image.getcolors(maxcolors=1 << 20) or [])
    assert high - low > 100 and colours > 50, (low, high, colours)


def test_submit_watch_open_report_compare_in_chromium(chromium_path, tmp_path):
    from playwright.sync_api import sync_playwright

    server = Service(tmp_path, workers=2).start()
    errors: list[str] = []
    shots = Path(os.environ.get("BACKFORGE_TEST_SHOTS") or tmp_path / "shots")  # keep them by setting it
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with server.client() as client:  # an optimization for the heatmap page, queued behind the page's jobs
            search = client.post("/api/jobs", json={"kind": "optimize", "strategy": SEARCH, "top": 1}).json()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.set_default_timeout(120_000)
            page.goto(server.url + "/login")
            page.fill("#token", "wrong")
            page.click("#login")
            assert page.inner_text("#login-error") == "wrong token"
            errors.clear()  # the 401 of the wrong token is expected
            page.fill("#token", server.token)
            page.click("#login")
            page.wait_for_selector("#submit")
            run_ids = []
            for seed in (3, 4):
                page.fill("#strategy", QUICK.replace("seed: 3", f"seed: {seed}"))
                page.wait_for_function("document.querySelector('#validation').textContent.startsWith('valid: quick')")
                page.click("#submit")
                page.wait_for_function("document.querySelector('#submit-status').textContent.startsWith('queued job')")
                job_id = page.inner_text("#submit-status").split()[-1]
                row = f"#jobs tr[data-id='{job_id}']"
                page.wait_for_selector(f"{row}[data-state='done']")
                assert page.get_attribute(f"{row} .fill", "style").replace(" ", "") == "width:100.0%"
                run_ids.append(page.inner_text(f"{row} td:nth-child(6)"))
            page.fill("#strategy", "name: x\nuniverse: [A]\nstrategies:\n  - name: s\n    condition: {lhs: {sma: {window: 0}}, op: '>', rhs: close}\n    action: {buy: {}}\n")
            page.wait_for_selector("#validation .bad")
            assert "strategies[0].condition.lhs.window" in page.inner_text("#validation")
            errors[:] = [e for e in errors if "422" not in e]  # the inline validation answered 422, as it should
            for run_id in run_ids:  # the list of saved runs follows the jobs without a reload
                page.wait_for_selector(f"#runs a[href='/runs/{run_id}']")
            assert int(page.inner_text("#runs-count")) == page.locator("#runs tbody tr").count() >= 2
            _not_blank(page.screenshot(path=str(shots / "index.png"), full_page=True))

            page.click(f"#jobs a[href='/runs/{run_ids[0]}']")
            page.wait_for_selector("#equity-chart .main-svg")
            page.wait_for_selector("#price-chart .main-svg")
            assert page.locator("#trades tbody tr").count() > 0
            _not_blank(page.screenshot(path=str(shots / "run.png"), full_page=True))
            report_url = page.get_attribute("#report-link", "href")
            page.goto(server.url + report_url)
            page.wait_for_selector(".js-plotly-plot")
            _not_blank(page.screenshot(path=str(shots / "report.png")))

            page.goto(server.url + "/")
            for run_id in run_ids:
                page.check(f"input.pick[value='{run_id}']")
            page.click("#compare")
            page.wait_for_selector("#compare-table tbody tr")
            page.wait_for_selector("#compare-chart .main-svg")
            assert page.locator("#compare-table thead th").count() == 3
            _not_blank(page.screenshot(path=str(shots / "compare.png"), full_page=True))

            with server.client() as client:
                done = wait_for(client, search["id"], timeout=120)
            assert done["state"] == "done", done
            page.goto(server.url + f"/runs/{done['result']['run']}")
            page.wait_for_selector("#heatmap .main-svg")
            page.wait_for_function("(document.querySelector('#heatmap .gtitle') || {}).textContent === 'sharpe by fast and slow'")
            page.select_option("#hm", "total_return")
            page.wait_for_function("(document.querySelector('#heatmap .gtitle') || {}).textContent === 'total_return by fast and slow'")
            _not_blank(page.screenshot(path=str(shots / "heatmap.png"), full_page=True))

            from backforge.live.session import run_paper

            run_paper(PAPER, state=server.root / "sessions" / "paper-demo", start=100)
            page.goto(server.url + "/")
            page.click("#sessions a[href='/sessions/paper-demo']")
            page.wait_for_selector("#session-chart .main-svg")
            assert page.inner_text("#session-breakers") == "ok"
            _not_blank(page.screenshot(path=str(shots / "session.png"), full_page=True))
            browser.close()
        assert errors == []
    finally:
        server.stop()

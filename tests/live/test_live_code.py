"""`backforge live file.py`: a backforge.Strategy class traded through a venue (the fake OANDA) unchanged —
the same class that backtests and paper-trades."""

from __future__ import annotations

import threading
import time

from typer.testing import CliRunner

from backforge.cli import app

CLASS = '''
import backforge as bf
from backforge.strategy.code import crossover


class FxBreakout(bf.Strategy):
    universe = ("EUR_USD",)
    level = 1.1

    def next(self):
        if crossover(self.data.close, self.level) and not self.position:
            self.buy(1000, size_type="units")
'''


def test_a_strategy_class_trades_through_a_venue(tmp_path, oanda_venue, monkeypatch):
    from backforge.live.session import session_tables
    from fakes.oanda_fake import ACCOUNT, TOKEN, candle

    monkeypatch.chdir(tmp_path)
    server, venue = oanda_venue
    minute = 60_000_000_000
    now = (time.time_ns() // minute - 10) * minute
    venue.candles["EUR_USD"] = [candle(now + i * minute, (1.09,) * 4, (1.0902,) * 4) for i in range(5)]
    monkeypatch.setenv("OANDA_API_TOKEN", TOKEN)
    monkeypatch.setenv("OANDA_ACCOUNT_ID", ACCOUNT)
    path = tmp_path / "fx.py"
    path.write_text(CLASS)
    folder = tmp_path / "state"
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=CliRunner().invoke(app, [
        "live", str(path), "--broker", "oanda", "--bar", "1min", "--warmup", "20", "--max-bars", "1",
        "--state", str(folder), "--rest-url", server.url, "--stream-url", server.url])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # generous: a cold numba cache compiles the bar step first
    while not ((folder / "events.jsonl").is_file() and "session_started" in (folder / "events.jsonl").read_text()):
        assert time.monotonic() < deadline and thread.is_alive(), result.get("r") and result["r"].output
        time.sleep(0.05)
    venue.candles["EUR_USD"].append(candle(now + 5 * minute, (1.0995, 1.101, 1.099, 1.1005),
                                           (1.0997, 1.1012, 1.0992, 1.1007)))
    thread.join(300)
    assert not thread.is_alive(), "the session did not finish"
    out = result["r"]
    assert out.exit_code == 0, out.output
    assert "FxBreakout on oanda (paper/testnet)" in out.output and "bars 1" in out.output
    (order,) = venue.orders.values()
    assert order["units"] == "1000" and order["clientExtensions"]["id"].startswith("fxbreakout-")
    assert session_tables(folder)["orders"].height == 1
    none = tmp_path / "none.py"
    none.write_text("x = 1\n")
    bad = CliRunner().invoke(app, ["live", str(none), "--broker", "oanda"])
    assert bad.exit_code == 2 and "defines no Strategy subclass" in bad.output and "Traceback" not in bad.output

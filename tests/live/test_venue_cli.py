"""`backforge live`: broker construction, the --live confirmation, --check against a fake venue, errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from backforge.cli import app
from backforge.live import BrokerError
from backforge.live.venues import make_broker, make_feed, parse_broker_spec
from fakes.alpaca_fake import KEY, SECRET

runner = CliRunner()
STRATEGY = """
name: cli-check
universe: [AAPL, MSFT]
strategies:
  - name: always
    condition: {lhs: close, op: ">", rhs: 0}
    action: {buy: {allocation: {equity_fraction: 0.5}}}
data: {source: synthetic}
"""


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch):
    """The command's default state folder (./backforge-sessions) lands in the test's folder, not the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def strategy_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STRATEGY)
    return path


@pytest.fixture
def alpaca_keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)


def test_specs_and_defaults(alpaca_keys, monkeypatch):
    assert parse_broker_spec("CCXT:Binance") == ("ccxt", "binance")
    with pytest.raises(BrokerError, match="ccxt needs an exchange"):
        parse_broker_spec("ccxt")
    broker = make_broker("alpaca", config_path="/nonexistent.toml")
    assert broker.paper and "paper-api.alpaca.markets" in broker._client._base_url
    monkeypatch.setenv("OANDA_API_TOKEN", "t" * 20)
    monkeypatch.setenv("OANDA_ACCOUNT_ID", "101-1")
    oanda = make_broker("oanda", config_path="/nonexistent.toml")
    assert oanda.practice and "fxpractice" in str(oanda._http.base_url)
    monkeypatch.setenv("BACKFORGE_BINANCE_API_KEY", "k" * 20)
    monkeypatch.setenv("BACKFORGE_BINANCE_SECRET", "s" * 20)
    binance = make_broker("ccxt:binance", config_path="/nonexistent.toml")
    assert binance.sandbox and "testnet" in binance._rest.urls["api"]["public"]
    with pytest.raises(BrokerError, match="live bars must be one of"):
        make_feed("alpaca", ["AAPL"], "7min", config_path="/nonexistent.toml")
    for thing in (broker, oanda, binance):
        thing.close()


def test_live_needs_confirmation(strategy_file, alpaca_keys):
    result = runner.invoke(app, ["live", str(strategy_file), "--broker", "alpaca", "--live"])
    assert result.exit_code == 2 and "--confirm-live" in result.output


def test_unknown_broker(strategy_file):
    result = runner.invoke(app, ["live", str(strategy_file), "--broker", "alpacca"])
    assert result.exit_code == 2 and "did you mean 'alpaca'" in result.output and "Traceback" not in result.output


def test_check_against_fake_alpaca(strategy_file, alpaca_keys, alpaca_venue):
    server, _ = alpaca_venue
    result = runner.invoke(app, ["live", str(strategy_file), "--broker", "alpaca", "--check", "--rest-url", server.url,
                                 "--stream-url", server.ws_url + "/stream"])
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output and "cash 100,000.00" in result.output and "paper" in result.output
    assert KEY not in result.output and SECRET not in result.output


def test_unknown_symbol_and_wrong_keys_exit_2(strategy_file, alpaca_keys, alpaca_venue, monkeypatch):
    server, _ = alpaca_venue
    args = ["live", str(strategy_file), "--broker", "alpaca", "--check", "--rest-url", server.url,
            "--stream-url", server.ws_url + "/stream"]
    result = runner.invoke(app, args + ["--symbol", "MSFT=MSFTT"])
    assert result.exit_code == 2 and "closest: MSFT" in result.output
    monkeypatch.setenv("APCA_API_SECRET_KEY", "not-the-secret-123")
    before = server.count("GET", "/v2/account")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "keys were refused" in result.output and "not-the-secret-123" not in result.output
    assert server.count("GET", "/v2/account") == before + 1


def test_live_session_through_the_command(tmp_path, oanda_venue, monkeypatch):
    import threading
    import time

    from backforge.live.session import session_tables
    from fakes.oanda_fake import ACCOUNT, TOKEN, candle

    server, venue = oanda_venue
    minute = 60_000_000_000
    now = (time.time_ns() // minute - 10) * minute
    venue.candles["EUR_USD"] = [candle(now + i * minute, (1.09,) * 4, (1.0902,) * 4) for i in range(5)]
    monkeypatch.setenv("OANDA_API_TOKEN", TOKEN)
    monkeypatch.setenv("OANDA_ACCOUNT_ID", ACCOUNT)
    path = tmp_path / "fx.yaml"
    path.write_text("""
name: fx-live
universe: [EUR_USD]
strategies:
  - name: breakout
    condition: {lhs: close, op: crosses_above, rhs: 1.1}
    action: {buy: {allocation: {units: 1000}}}
data: {source: synthetic}
""")
    folder = tmp_path / "state"
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=runner.invoke(app, [
        "live", str(path), "--broker", "oanda", "--bar", "1min", "--warmup", "20", "--max-bars", "1",
        "--state", str(folder), "--rest-url", server.url, "--stream-url", server.url])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # generous: a cold numba cache compiles the strategy step first
    while not ((folder / "events.jsonl").is_file() and "session_started" in (folder / "events.jsonl").read_text()):
        assert time.monotonic() < deadline and thread.is_alive(), result.get("r") and result["r"].output
        time.sleep(0.05)
    venue.candles["EUR_USD"].append(candle(now + 5 * minute, (1.0995, 1.101, 1.099, 1.1005), (1.0997, 1.1012, 1.0992, 1.1007)))
    thread.join(300)
    assert not thread.is_alive(), "the session did not finish"
    out = result["r"]
    assert out.exit_code == 0, out.output
    assert "fx-live on oanda (paper/testnet)" in out.output and "bars 1" in out.output and TOKEN not in out.output
    (order,) = venue.orders.values()
    assert order["units"] == "1000" and order["clientExtensions"]["id"].startswith("fx-live-")
    assert session_tables(folder)["orders"].height == 1

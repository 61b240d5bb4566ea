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


def test_without_check_reports_the_missing_runner(strategy_file, alpaca_keys, alpaca_venue):
    server, _ = alpaca_venue
    result = runner.invoke(app, ["live", str(strategy_file), "--broker", "alpaca", "--rest-url", server.url,
                                 "--stream-url", server.ws_url + "/stream"])
    assert result.exit_code == 2 and "runner" in result.output

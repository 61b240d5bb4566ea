"""The risk layer (issue 11): hand-computed sizing, multipliers, limits and halts; exact config errors;
hypothesis properties (caps hold at every fill, nothing enters while halted, sizing sees no later data).

Every expected figure is worked out in the test from the rule as documented, not read back from the
engine: prices are flat at 100 unless a bar says otherwise, there are no costs and quantities are
fractional (``lot_size=0``) where the arithmetic should be exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backforge as bf
from backforge.data.market import MarketData
from backforge.engine import kernels as k
from backforge.engine import risk as rk
from backforge.engine.risk import RiskConfig, describe_risk_event
from backforge.engine.simulator import Simulator
from backforge.errors import ConfigError
from backforge.strategy.compiler import run_portfolio
from backforge.strategy.schema import load_portfolio

DAY = 86_400_000_000_000
HOUR = 3_600_000_000_000
T0 = pd.Timestamp("2024-01-08", tz="UTC").value  # a Monday


def bars(n: int, n_assets: int = 1, *, step: int = DAY, start: int = T0, price: float = 100.0,
         assets: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    ts = start + step * np.arange(n, dtype=np.int64)
    flat = np.full((n, n_assets), price)
    return {"timestamps": ts, "open": flat.copy(), "high": flat.copy(), "low": flat.copy(), "close": flat.copy(),
            "assets": assets or tuple("XYZW"[:n_assets])}


def market(b: dict[str, np.ndarray]) -> MarketData:
    return MarketData.from_arrays(b["timestamps"], open=b["open"], high=b["high"], low=b["low"], close=b["close"],
                                  assets=list(b["assets"]))


def signal(n: int, at: list[int], n_assets: int = 1, asset: int = 0) -> np.ndarray:
    out = np.zeros((n, n_assets), dtype=bool)
    out[at, asset] = True
    return out


def entries_of(result) -> pl.DataFrame:
    return result.orders.filter(pl.col("role") == "entry").sort("order_id")


# ---------------------------------------------------------------------------------- configuration

BAD_PORTFOLIO_RISK = [
    ({"min_qty": 5, "max_qty": 1}, "risk", "min_qty (5.0) is above max_qty (1.0)"),
    ({"min_notional": {"A": 500}, "max_notional": {"A": 100}}, "risk", "min_notional (500.0) is above max_notional (100.0) for A"),
    ({"max_weight": -0.1}, "risk.max_weight", "must be a finite number >= 0"),
    ({"max_gross": float("inf")}, "risk.max_gross", "must be a finite multiple of equity > 0"),
    ({"daily_loss_limit": float("nan")}, "risk.daily_loss_limit", "must be a fraction between 0 and 1"),
    ({"max_drawdown": 1.0}, "risk.max_drawdown", "must be a fraction between 0 and 1 (0.2 = 20 %), got 1.0"),
    ({"max_drawdown": 1.5}, "risk.max_drawdown", "got 1.5"),
    ({"max_drawdown": 0.2, "resume_drawdown": 0.3}, "risk", "resume_drawdown (0.3) must be below max_drawdown (0.2)"),
    ({"trading_window": {"start": "9h30", "end": "16:00"}}, "risk.trading_window.start", "a time of day is written HH:MM"),
    ({"trading_window": {"start": "09:30", "end": "16:00", "timezone": "Europe/Lodnon"}}, "risk.trading_window.timezone",
     "unknown time zone 'Europe/Lodnon'; did you mean 'Europe/London'?"),
    ({"session": {"start": "25:00"}}, "risk.session.start", "not a time of day"),
    ({"session": {"timezone": "Mars/Olympus"}}, "risk.session.timezone", "unknown time zone 'Mars/Olympus'"),
    ({"drawdown_scaling": {"start": 0.2, "end": 0.1}}, "risk.drawdown_scaling", "start (0.2) must be below end (0.1)"),
    ({"losing_streak": {"losses": 0, "multiplier": 0.5}}, "risk.losing_streak.losses", "greater than or equal to 1"),
    ({"losing_streak": {"losses": 2, "multiplier": -0.5}}, "risk.losing_streak.multiplier", "greater than or equal to 0"),
    ({"cooldown": "3x"}, "risk.cooldown", "unknown duration unit 'x'"),
    ({"cooldown": 0}, "risk.cooldown", "must be > 0"),
    ({"max_weight": {"C": 0.1}}, "risk.max_weight.C", "'C' is not in the universe"),
    ({"max_drawdwn": 0.1}, "risk", "unknown field 'max_drawdwn'; did you mean 'max_drawdown'?"),
]


def _portfolio(risk=None, buy=None, strategy_risk=None) -> dict:
    strategy = {"name": "s", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 5}}},
                "action": {"buy": buy or {}}}
    if strategy_risk is not None:
        strategy["risk"] = strategy_risk
    config = {"name": "x", "universe": ["A", "B"], "strategies": [strategy]}
    if risk is not None:
        config["risk"] = risk
    return config


@pytest.mark.parametrize("risk,path,message", BAD_PORTFOLIO_RISK, ids=[str(i) for i in range(len(BAD_PORTFOLIO_RISK))])
def test_bad_risk_section_is_an_exact_path_error(risk, path, message) -> None:
    with pytest.raises(ConfigError) as err:
        load_portfolio(_portfolio(risk=risk))
    assert err.value.path == path
    assert message in err.value.message


@pytest.mark.parametrize("buy,path,message", [
    ({"allocation": {"risk": 0.01}}, "strategies[0].action", "give stop_loss"),
    ({"allocation": {"risk": 1.5}, "stop_loss": {"percent": 0.05}}, "strategies[0].action.allocation",
     "risk is a fraction of equity below 1"),
    ({"allocation": {"risk": 0.01}, "stop_loss": {"atr": 0}}, "strategies[0].action.stop_loss.atr", "greater than 0"),
    ({"allocation": {"risk": 0.01}, "stop_loss": {"atr": -2}}, "strategies[0].action.stop_loss.atr", "greater than 0"),
    ({"allocation": {"volatility_target": {"target": float("nan")}}}, "strategies[0].action.allocation.target", "finite"),
    ({"allocation": {"volatility_target": {"target": 0.1, "max": -1}}}, "strategies[0].action.allocation.max", "greater than 0"),
    ({"allocation": {"expression": {"expression": {"div": [0.2, {"stddev": {"window": 20}}]}, "min": 0.5, "max": 0.1}}},
     "strategies[0].action.allocation", "min (0.5) is above max (0.1)"),
    ({"allocation": {"kelly": {"fraction": 2}}}, "strategies[0].action.allocation.fraction", "less than or equal to 1"),
])
def test_bad_allocation_is_an_exact_path_error(buy, path, message) -> None:
    with pytest.raises(ConfigError) as err:
        load_portfolio(_portfolio(buy=buy))
    assert err.value.path == path
    assert message in err.value.message


def test_strategy_risk_errors_name_the_strategy_and_sizing_belongs_to_the_allocation() -> None:
    with pytest.raises(ConfigError) as err:
        load_portfolio(_portfolio(strategy_risk={"daily_loss_limit": -0.1}))
    assert err.value.path == "strategies[0].risk.daily_loss_limit"
    with pytest.raises(ConfigError, match="sizing is the action's allocation"):
        load_portfolio(_portfolio(risk={"sizing": {"mode": "risk", "value": 0.01}}))


def test_validate_cli_reports_risk_errors_before_loading_data(tmp_path) -> None:
    from typer.testing import CliRunner

    from backforge.cli import app

    path = tmp_path / "bad.yaml"
    # the data files do not exist: validation must fail on the risk section first
    path.write_text("name: x\nuniverse: [A]\nrisk: {max_drawdown: 1.2}\nstrategies:\n  - name: s\n"
                    "    action: {buy: {}}\ndata: {source: files, paths: {A: missing.csv}}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "risk.max_drawdown: must be a fraction between 0 and 1" in result.output
    assert "Traceback" not in result.output


def test_from_signals_risk_option_errors_have_paths() -> None:
    data = market(bars(5))
    with pytest.raises(ConfigError) as err:
        bf.from_signals(data, signal(5, [0]), risk={"max_drawdown": -0.2})
    assert err.value.path == "risk.max_drawdown"
    with pytest.raises(ConfigError) as err:
        bf.from_signals(data, signal(5, [0]), risk={"sizing": {"mode": "risk", "value": 0.01}})
    assert err.value.path == "risk.sizing" and "needs a stop" in err.value.message
    with pytest.raises(ConfigError) as err:
        bf.from_signals(data, signal(5, [0]), risk={"max_weight": {"Q": 0.5}})
    assert err.value.path == "risk.max_weight.Q"
    for field, bad, message in (("window", 0, "must be > 0, got 0"), ("atr_window", "3x", "unknown duration unit 'x'"),
                                ("window", 2.5, "whole number")):
        sizing = {"mode": "risk" if field == "atr_window" else "volatility_target", "value": 0.1, "stop_atr": 2.0, field: bad}
        with pytest.raises(ConfigError) as err:
            rk.as_risk_config({"sizing": sizing})
        assert err.value.path == f"risk.sizing.{field}" and message in err.value.message


def test_risk_section_is_in_the_json_schema() -> None:
    from backforge.strategy.schema import portfolio_json_schema

    schema = portfolio_json_schema()
    defs = schema["$defs"]
    assert {"RiskConfig", "TradingWindow", "DrawdownScaling", "LosingStreak", "VolatilityTarget",
            "ExpressionAllocation", "KellyAllocation"} <= set(defs)
    assert "risk" in defs["Strategy"]["properties"] and "risk" in schema["properties"]
    assert "max_drawdown" in defs["RiskConfig"]["properties"]


def test_kernel_constants_match_the_engine() -> None:
    assert rk.C_OVERFLOW == k.C_OVERFLOW
    assert (rk.EV_BLOCKED, rk.EV_REDUCED, rk.EV_HALTED, rk.EV_RESUMED, rk.EV_SCALED) == (
        rk.RiskEventKind.BLOCKED, rk.RiskEventKind.REDUCED, rk.RiskEventKind.HALTED, rk.RiskEventKind.RESUMED,
        rk.RiskEventKind.SCALED)
    assert (rk.SZ_RISK, rk.SZ_VOLATILITY, rk.SZ_EXPRESSION, rk.SZ_KELLY) == (
        rk.Sizing.RISK, rk.Sizing.VOLATILITY, rk.Sizing.EXPRESSION, rk.Sizing.KELLY)
    assert (rk.RULE_KELLY, rk.RULE_NO_SIZE) == (rk.RiskRule.KELLY, rk.RiskRule.NO_SIZE)


def test_messages_name_the_rule_and_values() -> None:
    assert describe_risk_event(0, 1, 0.213, 0.2, 1.0, 0.0) == "blocked: drawdown 21.3 % ≥ max_drawdown 20 %"
    assert describe_risk_event(0, 3, 2, 2, 1.0, 0.0) == "blocked: 2 orders today ≥ max_orders_per_day 2"
    assert describe_risk_event(4, 15, 3, 3, 400.0, 300.0) == "scaled 400 → 300: 3 losing trades in a row ≥ 3"


# ------------------------------------------------------------------------------- the seed's formula

def test_seed_sizing_formula_on_a_hand_computed_trade_sequence() -> None:
    """size = equity × risk_per_trade × drawdown multiplier × streak multiplier ÷ |entry − stop|
    (crypto-strategies' RiskManager.calculate_position_size), the multipliers as issue 11 defines them:
    linear between two drawdown levels, × m after N losses in a row until a win."""
    n = 13
    b = bars(n)
    for t in (2, 4, 6):  # each of these bars dips to 94: the 5 % stop (95) of the open position fills
        b["low"][t] = 94.0
    b["high"][8] = b["close"][8] = 110.0  # a winner, exited at bar 9's open (110)
    b["open"][9:] = b["high"][9:] = b["low"][9:] = b["close"][9:] = 110.0
    entries = signal(n, [0, 2, 4, 6, 10])
    exits = signal(n, [8])
    risk = {"drawdown_scaling": {"start": 0.05, "end": 0.15}, "losing_streak": {"losses": 3, "multiplier": 0.75},
            "sizing": {"mode": "risk", "value": 0.02}}
    result = bf.from_signals(market(b), entries, exits, stop_loss=0.05, lot_size=0, risk=risk)
    sizes = entries_of(result)["size"].to_list()
    equity = 100_000.0
    expected = []
    q1 = equity * 0.02 / (100 * 0.05)  # 400 units: 2 000 at risk over a 5.00 stop distance
    expected.append(q1)
    equity -= q1 * 5  # stopped at 95: 98 000, one loss
    q2 = equity * 0.02 / 5
    expected.append(q2)  # 392 (drawdown 2 % < 5 %: no scaling)
    equity -= q2 * 5  # 96 040, two losses
    q3 = equity * 0.02 / 5
    expected.append(q3)  # 384.16 (drawdown 3.96 %)
    equity -= q3 * 5  # 94 119.2, three losses
    dd = 1 - equity / 100_000  # 5.88 %: between 5 % and 15 %
    q4 = equity * 0.02 * ((0.15 - dd) / 0.10) * 0.75 / 5
    expected.append(q4)
    equity += q4 * 10  # exited at 110: a win resets the streak
    dd = 1 - equity / 100_000
    q5 = equity * 0.02 * ((0.15 - dd) / 0.10 if dd > 0.05 else 1.0) / (110 * 0.05)
    expected.append(q5)
    assert sizes == pytest.approx(expected, rel=1e-12)
    assert result.trades["pnl"].to_list()[:4] == pytest.approx([-2000.0, -1960.0, -1920.8, q4 * 10], rel=1e-12)
    # the stop sits at the documented 5 % below each fill; fills at the next open
    stops = result.orders.filter(pl.col("role") == "stop_loss")["stop_price"].to_list()
    assert stops[:4] == pytest.approx([95.0, 95.0, 95.0, 95.0])
    scaled = result.risk_events.filter(pl.col("event") == "scaled")
    assert scaled["bar"].to_list()[:2] == [6, 6]
    assert scaled["rule"].to_list()[:2] == ["drawdown_scaling", "losing_streak"]
    assert scaled["message"][1].startswith("scaled") and "3 losing trades in a row ≥ 3" in scaled["message"][1]


def test_risk_sizing_with_an_atr_stop_places_the_stop_at_that_distance() -> None:
    data = bf.synth(n_assets=1, years=1, seed=11)
    entries = np.zeros((data.n_bars, 1), dtype=bool)
    entries[[40, 120]] = True
    exits = np.zeros_like(entries)
    exits[[100]] = True
    result = bf.from_signals(data, entries, exits, lot_size=0,
                             risk={"sizing": {"mode": "risk", "value": 0.01, "stop_atr": 2.0, "atr_window": 14}})
    import talib

    atr = talib.ATR(data.high[:, 0], data.low[:, 0], data.close[:, 0], 14)
    equity = result.equity["equity"].to_numpy()
    first = entries_of(result).row(0, named=True)
    t = first["created_bar"]
    assert first["size"] == pytest.approx(equity[t] * 0.01 / (2 * atr[t]), rel=1e-9)
    stop = result.orders.filter((pl.col("role") == "stop_loss") & (pl.col("parent_id") == first["order_id"])).row(0, named=True)
    assert stop["stop_price"] == pytest.approx(first["fill_price"] - 2 * atr[t], rel=1e-9)


# ---------------------------------------------------------------------------- limits at the fill

def test_max_weight_caps_the_fill_and_logs_it() -> None:
    result = bf.from_signals(market(bars(4)), signal(4, [0]), risk={"max_weight": 0.25})
    fill = result.fills.row(0, named=True)
    assert fill["qty"] == 250.0  # 0.25 × 100 000 ÷ 100
    ev = result.risk_events.row(0, named=True)
    assert (ev["event"], ev["rule"], ev["bar"], ev["allowed"]) == ("reduced", "max_weight", 1, 250.0)
    assert ev["message"] == "reduced 1000 → 250: weight 100 % > max_weight 25 %"
    log = result.order_log.filter((pl.col("event") == "reduced"))
    assert log["reason"].to_list() == ["risk"]


def test_gross_net_quantity_and_notional_caps() -> None:
    b = bars(4, 3)
    both = np.ones((4, 3), dtype=bool)
    both[1:] = False
    # gross 0.5: the first two 0.3 entries → 300 units, then 200 (room 50 000 − 30 000), the third none
    r = bf.from_signals(market(b), both, size=0.3, risk={"max_gross": 0.5})
    assert r.fills["qty"].to_list() == [300.0, 200.0]
    assert r.orders.filter(pl.col("role") == "entry")["status"].to_list() == ["filled", "filled", "rejected"]
    assert r.orders["reason"].to_list()[2] == "risk"
    # net 0.4 with a short in between: long X 0.3, short Y 0.3 frees room, long Z up to 0.4 + 0.3 − 0.3
    short = np.zeros((4, 3), dtype=bool)
    short[0, 1] = True
    longs = both.copy()
    longs[0, 1] = False
    r = bf.from_signals(market(b), longs, short_entries=short, size=0.3, risk={"max_net": 0.4})
    assert r.fills["qty"].to_list() == [300.0, -300.0, 300.0]
    longs[0, 1] = True
    r = bf.from_signals(market(b), longs, size=0.3, risk={"max_net": 0.4})
    assert r.fills["qty"].to_list() == [300.0, 100.0]
    # per-asset quantity and notional
    r = bf.from_signals(market(b), both, size=10, size_type="units",
                        risk={"max_qty": {"X": 7}, "max_notional": {"Y": 500}, "min_notional": {"Z": 2000}})
    assert r.fills["qty"].to_list() == [7.0, 5.0]
    assert r.risk_events["rule"].to_list() == ["max_qty", "max_notional", "min_notional"]
    assert r.risk_events["message"][2] == "blocked: notional 1000 < min_notional 2000"


def test_max_positions_counts_working_entries() -> None:
    both = np.ones((4, 3), dtype=bool)
    both[1:] = False
    r = bf.from_signals(market(bars(4, 3)), both, size=0.2, risk={"max_positions": 2})
    assert r.fills["asset"].to_list() == ["X", "Y"]
    ev = r.risk_events.row(0, named=True)
    assert (ev["asset"], ev["rule"], ev["bar"]) == ("Z", "max_positions", 0)
    assert ev["message"] == "blocked: 2 open positions ≥ max_positions 2"


# ------------------------------------------------------------------------------------ day rules

def test_daily_loss_limit_blocks_until_the_next_day() -> None:
    n = 12  # two days of six hourly bars from 10:00 UTC
    b = bars(n, 2, step=HOUR, start=T0 + 10 * HOUR)
    b["timestamps"][6:] += DAY - 6 * HOUR
    b["low"][2:, 0] = b["close"][2:, 0] = 97.0  # X falls 3 % at bar 2: the day is down 3 % × 0.5
    b["open"][3:, 0] = b["high"][3:, 0] = 97.0
    x = signal(n, [0], 2, 0)
    y = signal(n, [3, 4, 7], 2, 1)
    r = bf.from_signals(market(b), x, size=0.5, lot_size=0, risk={"daily_loss_limit": 0.01})
    r = bf.from_signals(market(b), x | y, size=0.5, lot_size=0, risk={"daily_loss_limit": 0.01})
    ev = r.risk_events
    halted = ev.filter(pl.col("event") == "halted").row(0, named=True)
    assert (halted["bar"], halted["rule"]) == (2, "daily_loss_limit")
    assert halted["value"] == pytest.approx(0.015)
    assert halted["message"] == "halted: loss today 1.5 % ≥ daily_loss_limit 1 %"
    assert ev.filter(pl.col("event") == "blocked")["bar"].to_list() == [3]  # bar 4 repeats it: one event
    assert ev.filter(pl.col("event") == "resumed")["bar"].to_list() == [6]
    assert entries_of(r).filter(pl.col("asset") == "Y")["created_bar"].to_list() == [7]


def test_orders_per_day_and_trading_window_in_a_time_zone() -> None:
    both = np.ones((4, 3), dtype=bool)
    both[1:] = False
    r = bf.from_signals(market(bars(4, 3)), both, size=0.2, risk={"max_orders_per_day": 2})
    assert entries_of(r)["asset"].to_list() == ["X", "Y"]
    assert r.risk_events["message"].to_list() == ["blocked: 2 orders today ≥ max_orders_per_day 2"]
    # hourly bars from 12:00 UTC on a January day (New York is UTC−5): 09:30–16:00 New York is
    # 14:30–21:00 UTC, so a signal held from 12:00 is delayed to the 15:00 bar
    n = 10
    b = bars(n, step=HOUR, start=T0 + 12 * HOUR)
    held = np.ones((n, 1), dtype=bool)
    r = bf.from_signals(market(b), held, risk={"trading_window": {"start": "09:30", "end": "16:00",
                                                                  "timezone": "America/New_York"}})
    order = entries_of(r).row(0, named=True)
    assert pd.Timestamp(order["created"]).hour == 15 and order["created_bar"] == 3
    blocked = r.risk_events.filter(pl.col("event") == "blocked")
    assert blocked["bar"].to_list() == [0] and blocked["message"][0] == "blocked: outside the trading window"
    # in July (UTC−4) the same window opens at 13:30 UTC: the 14:00 bar
    b = bars(n, step=HOUR, start=pd.Timestamp("2024-07-08 12:00", tz="UTC").value)
    r = bf.from_signals(market(b), held, risk={"trading_window": {"start": "09:30", "end": "16:00",
                                                                  "timezone": "America/New_York"}})
    assert entries_of(r)["created_bar"].to_list() == [2]


def test_session_days_in_a_time_zone() -> None:
    ts = pd.to_datetime(["2024-01-08 21:00", "2024-01-08 22:30", "2024-01-09 21:59"], utc=True).as_unit("ns").asi8
    keys = rk.session_keys(ts, rk.Session(start="17:00", timezone="America/New_York"))
    assert keys[0] != keys[1] and keys[1] == keys[2]  # the FX day turns at 17:00 New York (22:00 UTC)


def test_cooldown_after_a_stop_out() -> None:
    n = 12
    b = bars(n)
    b["low"][2] = 94.0  # the 5 % stop fills on bar 2
    held = np.ones((n, 1), dtype=bool)
    r = bf.from_signals(market(b), held, stop_loss=0.05, risk={"cooldown": 3})
    assert entries_of(r)["created_bar"].to_list() == [0, 6]  # bars 2..5 cool down (the stop bar and 3 more)
    assert r.risk_events["message"].to_list() == ["blocked: the asset stopped out recently"]
    r = bf.from_signals(market(b), held, stop_loss=0.05, risk={"cooldown": "2d"})
    assert entries_of(r)["created_bar"].to_list() == [0, 4]  # 2 days after the stop-out bar's time


# ------------------------------------------------------------------------------------------ halts

def test_drawdown_halt_fires_flattens_and_resumes_next_day_in_one_backtest() -> None:
    n = 12
    b = bars(n, step=HOUR, start=T0 + 10 * HOUR)
    b["timestamps"][6:] += DAY - 6 * HOUR
    b["low"][2:] = b["close"][2:] = 85.0
    b["open"][3:] = b["high"][3:] = 85.0
    held = np.ones((n, 1), dtype=bool)
    r = bf.from_signals(market(b), held, risk={"max_drawdown": 0.1, "flatten_on_halt": True})
    ev = r.risk_events
    assert ev["event"].to_list() == ["halted", "blocked", "resumed"]
    assert ev["bar"].to_list() == [2, 3, 6]
    assert ev["message"][0] == "halted: drawdown 15 % ≥ max_drawdown 10 %"
    assert ev["message"][1] == "blocked: drawdown 15 % ≥ max_drawdown 10 %"
    flatten = r.orders.filter(pl.col("reason") == "risk").row(0, named=True)
    assert (flatten["created_bar"], flatten["fill_bar"], flatten["fill_price"]) == (2, 3, 85.0)
    assert entries_of(r)["created_bar"].to_list() == [0, 6]  # re-entered the new day
    assert r.state.risk.state[0]["peak"] == pytest.approx(85_000.0)  # drawdown measured from the resume


def _halt_portfolio(a_action: dict, a_risk: dict) -> dict:
    always = {"lhs": "close", "op": ">", "rhs": 0}
    far_limit = {"buy": {"allocation": {"equity_fraction": 0.2}, "order_type": "limit", "limit_offset": 0.5}}
    return {"name": "x", "universe": ["X", "Y"], "cash": 100_000, "strategies": [
        {"name": "hold", "assets": ["X"], "condition": always, "action": {"buy": {"allocation": {"equity_fraction": 0.5}}}},
        {"name": "a", "assets": ["Y"], "condition": always, "action": a_action, "risk": a_risk},
        {"name": "b", "assets": ["Y"], "condition": always, "action": far_limit}]}


def test_a_strategy_halt_cancels_that_strategys_working_entries_only() -> None:
    """X (held by 'hold', 500 units at 100) closes at 70 on bar 3: equity 85,000, a 15 % drawdown ≥ strategy
    a's max_drawdown 10 %. Strategy a halts at bar 3 and its working limit buy of Y (at 50, never reached) is
    cancelled there (reason risk); b's identical order keeps working; a owns no position, so its
    flatten_on_halt closes nothing (X belongs to 'hold')."""
    n = 7
    b = bars(n, 2)
    b["low"][3:, 0] = b["close"][3:, 0] = 70.0
    b["open"][4:, 0] = b["high"][4:, 0] = 70.0
    far_limit = {"buy": {"allocation": {"equity_fraction": 0.2}, "order_type": "limit", "limit_offset": 0.5}}
    r = run_portfolio(_halt_portfolio(far_limit, {"max_drawdown": 0.1, "flatten_on_halt": True, "resume": "manual"}),
                      market(b))
    halts = r.risk_events.filter(pl.col("event") == "halted")
    assert (halts["bar"].to_list(), halts["scope"].to_list(), halts["value"].to_list()) == ([3], ["a"], [pytest.approx(0.15)])
    orders = r.orders.sort("order_id")
    ys = orders.filter(pl.col("asset") == "Y")
    assert ys["limit_price"].to_list() == [50.0, 50.0]  # a's and b's, both placed after bar 0
    a_order, b_order = ys.row(0, named=True), ys.row(1, named=True)
    assert (a_order["status"], a_order["reason"]) == ("cancelled", "risk")
    cancelled = r.order_log.filter(pl.col("event") == "cancelled")
    assert (cancelled["order_id"].to_list(), cancelled["bar"].to_list()) == ([a_order["order_id"]], [3])
    assert b_order["status"] == "pending"
    assert r.positions["X"][-1] == 500.0  # not a's position: not flattened
    assert orders.height == 3  # a places nothing while halted


def test_a_strategy_halt_flattens_only_the_positions_it_opened() -> None:
    """Strategy a buys 250 Y at 100 (25 % of equity) and 'hold' 500 X; X falls to 70 and Y to 90 on bar 3:
    equity 100,000 - 15,000 - 2,500 = 82,500, drawdown 17.5 % ≥ 10 %: a halts and flattens its Y (market exit
    filled at the next open), 'hold''s X stays."""
    n = 7
    b = bars(n, 2)
    b["low"][3:, 0] = b["close"][3:, 0] = 70.0
    b["open"][4:, 0] = b["high"][4:, 0] = 70.0
    b["low"][3:, 1] = b["close"][3:, 1] = 90.0
    b["open"][4:, 1] = b["high"][4:, 1] = 90.0
    market_buy = {"buy": {"allocation": {"equity_fraction": 0.25}}}
    r = run_portfolio(_halt_portfolio(market_buy, {"max_drawdown": 0.1, "flatten_on_halt": True, "resume": "manual"}),
                      market(b))
    halts = r.risk_events.filter(pl.col("event") == "halted")
    assert (halts["bar"].to_list(), halts["value"].to_list()) == ([3], [pytest.approx(0.175)])
    exits = r.orders.filter((pl.col("role") == "exit") & (pl.col("reason") == "risk"))
    assert (exits["asset"].to_list(), exits["fill_bar"].to_list(), exits["fill_price"].to_list()) == (["Y"], [4], [90.0])
    assert r.positions["Y"][-1] == 0.0 and r.positions["X"][-1] == 500.0
    # b's far limit buy of Y is not a's: it keeps working
    assert r.orders.filter((pl.col("asset") == "Y") & (pl.col("order_type") == "limit"))["status"].to_list() == ["pending"]


def test_recovered_resume_and_manual_halt() -> None:
    n = 10
    b = bars(n, 2)
    b["low"][2:5, 0] = b["close"][2:5, 0] = 76.0  # X (the whole account, 1000 units) falls 24 % → 12 % drawdown at 0.5
    b["open"][3:5, 0] = b["high"][3:5, 0] = 76.0
    b["open"][5, 0] = b["low"][5, 0] = 76.0
    b["close"][5:, 0] = b["open"][6:, 0] = b["high"][5:, 0] = b["low"][6:, 0] = 92.0  # back to 4 %
    x = signal(n, [0], 2, 0)
    y = np.zeros((n, 2), dtype=bool)
    y[3:, 1] = True
    risk = {"max_drawdown": 0.1, "resume": "recovered", "resume_drawdown": 0.05}
    r = bf.from_signals(market(b), x | y, size=0.5, lot_size=0, risk=risk)
    ev = r.risk_events
    assert ev["event"].to_list() == ["halted", "blocked", "resumed"]
    assert ev["bar"].to_list() == [2, 3, 5]
    assert entries_of(r).filter(pl.col("asset") == "Y")["created_bar"].to_list() == [5]
    # manual: nothing lifts it inside the backtest
    r = bf.from_signals(market(b), x | y, size=0.5, lot_size=0, risk={**risk, "resume": "manual"} | {"resume_drawdown": None})
    assert r.risk_events["event"].to_list() == ["halted", "blocked"]
    assert entries_of(r)["asset"].to_list() == ["X"]


def test_simulator_manual_halt_and_resume_and_state_snapshot() -> None:
    sim = Simulator(["X"], cash=10_000, risk={"max_drawdown": 0.5, "resume": "manual"})
    sim.on_bar(T0, open=[100.0], high=[100.0], low=[100.0], close=[100.0])
    sim.halt()
    assert sim.halted
    assert sim.submit("X", "buy", 10) == -1
    snapshot = sim._state.risk.state.copy()
    sim.signals(long_entries=[True])
    sim.on_bar(T0 + DAY, open=[100.0], high=[100.0], low=[100.0], close=[100.0])
    assert sim.position("X") == 0.0
    assert sim.resume() and not sim.halted
    assert sim.submit("X", "buy", 10) >= 0
    sim.on_bar(T0 + 2 * DAY, open=[100.0], high=[100.0], low=[100.0], close=[100.0])
    assert sim.position("X") == 10.0
    assert snapshot[0]["halt"] == rk.RiskRule.MANUAL and snapshot[0]["manual"] == 1
    messages = sim.result().risk_events["message"].to_list()
    assert messages == ["halted: halted by hand", "blocked: halted by hand", "resumed after manual"]


def test_blocked_reversal_only_closes_and_brackets_are_cancelled_on_halt() -> None:
    n = 8
    b = bars(n)
    b["low"][2] = b["close"][2] = 80.0  # the long loses 20 % of the account: halt at bar 2
    b["open"][3:] = b["high"][3:] = b["low"][3:] = b["close"][3:] = 80.0
    longs = signal(n, [0])
    shorts = signal(n, [3])
    r = bf.from_signals(market(b), longs, short_entries=shorts, take_profit=0.5,
                        risk={"max_drawdown": 0.15, "resume": "manual"})
    entry = entries_of(r)
    assert entry["side"].to_list() == ["buy"]  # the short entry was blocked
    closing = r.orders.filter(pl.col("created_bar") == 3).row(0, named=True)
    assert (closing["role"], closing["size_type"], closing["status"]) == ("exit", "position_fraction", "filled")
    assert r.positions["X"][-1] == 0.0
    assert r.risk_events.filter(pl.col("event") == "blocked")["bar"].to_list() == [3]


# ----------------------------------------------------------------------- sizing modes (strategies)

def _annual_vol(close: pd.Series, window: int, ppy) -> pd.Series:
    return close.pct_change().rolling(window).std(ddof=0) * np.sqrt(ppy)


def trailing_bars_per_year(timestamps) -> np.ndarray:
    """Slow reference of the causal annualization: at each bar, the bars of the trailing 365.25 days
    (bar ``t`` and the earlier bars stamped after ``ts[t] - 365.25 d``) minus one, per year of their span."""
    year = 365.25 * 86_400e9
    out = np.full(len(timestamps), np.nan)
    for t, now in enumerate(timestamps):
        inside = [u for u in timestamps[: t + 1] if u > now - year]
        if len(inside) > 1:
            out[t] = (len(inside) - 1) / ((int(now) - int(inside[0])) / year)
    return out


def test_trailing_periods_per_year_matches_its_reference() -> None:
    day = 86_400 * 10**9
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.choice([1, 1, 1, 1, 3], size=700)).astype(np.int64) * day  # weekends, > 1 year
    got = rk.trailing_periods_per_year(ts)
    np.testing.assert_allclose(got, trailing_bars_per_year(ts), rtol=1e-12)
    assert np.isnan(got[0]) and 250 < got[-1] < 300  # about 5 bars per 7 days once a year is covered


def test_volatility_target_expression_and_kelly_sizes_by_hand() -> None:
    data = bf.synth(n_assets=2, years=2, seed=5, assets=("A", "B"))
    close = pd.DataFrame(data.close, columns=list(data.assets))
    ppy = trailing_bars_per_year(data.timestamps)
    base = {"name": "x", "universe": ["A", "B"], "strategies": [
        {"name": "in", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_above", "rhs": {"sma": {"window": 20}}},
         "action": {"buy": {}}},
        {"name": "out", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_below", "rhs": {"sma": {"window": 20}}},
         "action": {"close": {}}}]}
    config = {**base}
    config["strategies"] = [dict(base["strategies"][0]), base["strategies"][1]]
    config["strategies"][0]["action"] = {"buy": {"allocation": {"volatility_target": {"target": 0.1, "window": 20, "max": 0.6}}}}
    r = run_portfolio(config, data)
    vol = close.apply(lambda c: _annual_vol(c, 20, ppy))
    buys = r.signal_events.filter(pl.col("action") == "buy")
    assert buys.height > 5
    for row in buys.iter_rows(named=True):
        assert row["value"] == pytest.approx(min(0.6, 0.1 / vol[row["asset"]].iloc[row["bar"]]), rel=1e-9)
    # an expression allocation, clamped to [0.1, 0.5]
    config["strategies"][0]["action"] = {"buy": {"allocation": {"expression": {
        "expression": {"div": [0.004, {"stddev": {"window": 20, "of": {"pct_change": {"window": 1}}}}]}, "min": 0.1, "max": 0.5}}}}
    r = run_portfolio(config, data)
    raw = close.apply(lambda c: 0.004 / c.pct_change().rolling(20).std(ddof=0))
    values = []
    for row in r.signal_events.filter(pl.col("action") == "buy").iter_rows(named=True):
        expected = float(np.clip(raw[row["asset"]].iloc[row["bar"]], 0.1, 0.5))
        assert row["value"] == pytest.approx(expected, rel=1e-9)
        values.append(expected)
    assert min(values) < 0.5 and max(values) > 0.1 or len(set(values)) > 1
    # capped Kelly from the strategy's own closed trades: fallback until 3 trades have closed
    config["strategies"][0]["action"] = {"buy": {"allocation": {"kelly": {"fraction": 0.5, "max": 0.3, "min_trades": 3,
                                                                           "fallback": 0.1}}}}
    r = run_portfolio(config, data)
    trades = r.trades.filter(~pl.col("is_open"))
    checked = 0
    for row in r.signal_events.filter(pl.col("action") == "buy").iter_rows(named=True):
        done = trades.filter(pl.col("exit_bar") <= row["bar"])
        wins = done.filter(pl.col("pnl") > 0)["return"].to_numpy()
        losses = -done.filter(pl.col("pnl") < 0)["return"].to_numpy()
        if len(wins) + len(losses) < 3:
            expected = 0.1
        elif len(wins) == 0:
            continue  # Kelly 0: no order is sent, so no buy event exists
        else:
            w = len(wins) / (len(wins) + len(losses))
            f = 1.0 if len(losses) == 0 else max(0.0, w - (1 - w) / (wins.mean() / losses.mean()))
            expected = min(0.3, 0.5 * f)
        assert row["value"] == pytest.approx(expected, rel=1e-9)
        checked += 1
    assert checked > 5


def test_per_strategy_risk_counts_only_that_strategys_trades_and_positions() -> None:
    data = bf.synth(n_assets=3, years=2, seed=9, assets=("A", "B", "C"))
    config = {"name": "x", "universe": ["A", "B", "C"], "strategies": [
        {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 10}}},
         "action": {"buy": {"allocation": {"equity_fraction": 0.2}}}, "risk": {"max_positions": 1}},
        {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 10}}},
         "action": {"close": {}}}]}
    r = run_portfolio(config, data)
    positions = r.positions.select(["A", "B", "C"]).to_numpy()
    assert ((positions != 0).sum(axis=1) <= 1).all()
    blocked = r.risk_events.filter(pl.col("event") == "blocked")
    assert blocked.height > 0 and set(blocked["scope"]) == {"in"} and set(blocked["rule"]) == {"max_positions"}


# ------------------------------------------------------------------------ audit: explain and report

def test_explain_at_a_halt_and_the_report_show_the_risk_events(tmp_path) -> None:
    """`backforge explain --at` names the halt at its bar and while it is in force; the HTML report marks
    every halt of the run on the equity chart."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from backforge.cli import app

    path = Path(__file__).resolve().parents[2] / "examples" / "trend_drawdown_halt.yaml"
    cli = CliRunner()
    assert cli.invoke(app, ["run", str(path), "--out", str(tmp_path)]).exit_code == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    portfolio = load_portfolio(path)
    from backforge.strategy.compiler import load_data

    data = load_data(portfolio, base=path.parent)
    result = run_portfolio(portfolio, data, start=portfolio.data.start, end=portfolio.data.end)
    events = result.risk_events
    halts = events.filter(pl.col("event") == "halted")
    assert halts.height >= 1
    halt = halts.row(0, named=True)
    at = str(halt["timestamp"])[:19]
    shown = cli.invoke(app, ["explain", str(folder), "--at", at])
    assert shown.exit_code == 0, shown.output
    assert "risk rules" in shown.output and halt["message"] in shown.output
    resumed = events.filter((pl.col("event") == "resumed") & (pl.col("bar") > halt["bar"]))["bar"]
    later = halt["bar"] + 1
    if resumed.len() == 0 or resumed[0] > later:  # the next bar, still halted
        during = cli.invoke(app, ["explain", str(folder), "--at", str(pd.Timestamp(int(data.timestamps[later]), tz="UTC"))[:19]])
        assert f"portfolio: {halt['message']}" in during.output and "since" in during.output
    html = result.to_html()
    assert "Risk halt" in html and f"Risk halts ✕ ({halts.height})" in html
    assert json.dumps(f"portfolio: {halt['message']}")[1:-1] in html  # the marker's hover text (chart JSON)


# --------------------------------------------------------------------------- no rules: no change

def test_non_binding_rules_leave_every_example_bit_identical() -> None:
    """The risk path, active but never binding, changes nothing on every example. The path without rules
    is pinned by independent implementations rather than by stored hashes (bit patterns may differ across
    CPUs): tests/engine/test_oracles.py (backtesting.py, backtrader, vectorbt on GOOG) and the examples'
    hand checks in tests/strategy/test_examples.py."""
    from pathlib import Path

    from backforge.strategy.compiler import load_data
    from backforge.strategy.schema import dump_portfolio

    root = Path(__file__).resolve().parents[2] / "examples"
    checked = 0
    for path in sorted(root.glob("*.yaml")):
        if "../../shared/data/" in path.read_text() and not (root.parent.parent / "shared" / "data").is_dir():
            continue
        portfolio = load_portfolio(path)
        if portfolio.risk is not None or any(s.risk is not None for s in portfolio.strategies):
            continue
        sized = any(getattr(getattr(s.action, "allocation", None), "type", "equity_fraction") not in
                    ("equity_fraction", "cash_fraction", "units", "notional") for s in portfolio.strategies)
        if sized:
            continue
        data = load_data(portfolio, base=path.parent)
        plain = run_portfolio(portfolio, data, start=portfolio.data.start, end=portfolio.data.end)
        config = load_portfolio(dump_portfolio(portfolio)).model_dump(mode="json")
        config["risk"] = {"max_drawdown": 0.999, "max_gross": 1000.0, "max_orders_per_day": 10**9}
        guarded = run_portfolio(config, data, start=portfolio.data.start, end=portfolio.data.end)
        assert guarded.state.risk.on[0] == 1
        assert np.array_equal(plain.equity_values, guarded.equity_values), path.stem
        assert plain.fills.equals(guarded.fills), path.stem
        assert plain.signal_events.equals(guarded.signal_events), path.stem
        assert guarded.risk_events.height == 0
        checked += 1
    assert checked >= 12


# ---------------------------------------------------------------------------------- properties

@st.composite
def scenarios(draw):
    seed = draw(st.integers(0, 10_000))
    n_assets = draw(st.integers(1, 3))
    rng = np.random.default_rng(seed)
    data = bf.synth(n_assets=n_assets, years=0.5, seed=seed)
    T = data.n_bars
    entries = rng.random((T, n_assets)) < draw(st.floats(0.02, 0.3))
    exits = rng.random((T, n_assets)) < draw(st.floats(0.02, 0.3))
    shorts = rng.random((T, n_assets)) < 0.05
    risk = {"max_weight": draw(st.floats(0.05, 0.9)), "max_gross": draw(st.floats(0.1, 1.5)),
            "max_drawdown": draw(st.floats(0.01, 0.3))}
    flatten = draw(st.booleans())
    risk["flatten_on_halt"] = flatten
    risk["resume"] = "next_day" if flatten else draw(st.sampled_from(["next_day", "recovered"]))
    for name, values in (("max_net", st.floats(0.05, 1.0)), ("max_qty", st.floats(50.0, 2_000.0)),
                         ("max_notional", st.floats(5_000.0, 60_000.0)), ("daily_loss_limit", st.floats(0.002, 0.05))):
        if draw(st.booleans()):
            risk[name] = draw(values)
    return data, entries, exits, shorts, risk, draw(st.floats(0.1, 1.0))


def _equity_at_fills(result, data) -> list[tuple[dict, np.ndarray, float]]:
    """(fill, positions after it, equity at the fill before its commission) for every fill, in order."""
    position = np.zeros(data.n_assets)
    out = []
    for fill in result.fills.iter_rows(named=True):
        a = data.assets.index(fill["asset"])
        position[a] = fill["position_after"]
        marks = data.open[fill["bar"]].copy()
        marks[a] = fill["price"]
        equity = fill["cash_after"] + fill["fee"] + float(np.dot(position, marks))
        out.append((fill, position.copy(), equity, marks))
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_caps_hold_at_every_fill_and_nothing_enters_while_halted(scenario) -> None:
    data, entries, exits, shorts, risk, size = scenario
    r = bf.from_signals(data, entries, exits, short_entries=shorts, size=size, fee_rate=0.001, risk=risk)
    for fill, position, equity, marks in _equity_at_fills(r, data):
        if fill["role"] != "entry":
            continue
        a = data.assets.index(fill["asset"])
        before = fill["position_after"] - fill["qty"]
        if abs(fill["position_after"]) <= abs(before) + 1e-12:
            continue
        assert abs(position[a] * marks[a]) <= risk["max_weight"] * equity * (1 + 1e-9) + 1e-6
        assert np.sum(np.abs(position * marks)) <= risk["max_gross"] * equity * (1 + 1e-9) + 1e-6
        if "max_qty" in risk:
            assert abs(position[a]) <= risk["max_qty"] * (1 + 1e-12)
        if "max_notional" in risk:
            assert abs(position[a]) * fill["price"] <= risk["max_notional"] * (1 + 1e-9) + 1e-6
        net_after = float(np.dot(position, marks))
        net_before = net_after - fill["qty"] * marks[a]
        if "max_net" in risk and abs(net_after) > abs(net_before):
            assert abs(net_after) <= risk["max_net"] * equity * (1 + 1e-9) + 1e-6
    ev = r.risk_events
    entries_made = entries_of(r)
    for rule in ("max_drawdown", "daily_loss_limit"):
        halts = ev.filter((pl.col("event") == "halted") & (pl.col("rule") == rule))["bar"].to_list()
        resumes = ev.filter((pl.col("event") == "resumed") & (pl.col("rule") == rule))["bar"].to_list()
        for i, h in enumerate(halts):
            end = resumes[i] if i < len(resumes) else data.n_bars
            decided = entries_made.filter((pl.col("created_bar") >= h) & (pl.col("created_bar") < end))
            assert decided.height == 0, f"an entry was decided while halted by {rule} (bars {h}..{end})"
            filled = r.fills.filter((pl.col("role") == "entry") & (pl.col("bar") > h) & (pl.col("bar") <= end))
            assert filled.height == 0, f"an entry filled while halted by {rule}"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.sampled_from(["risk", "volatility_target", "kelly"]), st.integers(30, 100))
def test_property_sizing_never_uses_data_after_the_decision_bar(seed, mode, cut) -> None:
    data = bf.synth(n_assets=2, years=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    entries = rng.random((data.n_bars, 2)) < 0.15
    exits = rng.random((data.n_bars, 2)) < 0.15
    sizing = {"mode": mode, "value": 0.02 if mode == "risk" else 0.3, "stop_atr": 2.0 if mode == "risk" else None,
              "min_trades": 2, "fallback": 0.05, "max": 0.5}
    risk = {"sizing": sizing, "drawdown_scaling": {"start": 0.02, "end": 0.3},
            "losing_streak": {"losses": 2, "multiplier": 0.5}}
    base = bf.from_signals(data, entries, exits, stop_loss=0.05, lot_size=0, risk=risk)
    scale = np.ones((data.n_bars, 1))
    scale[cut + 1:] = rng.uniform(0.5, 1.5, size=(data.n_bars - cut - 1, 1))
    wider = np.where(np.arange(data.n_bars)[:, None] > cut, 0.01, 0.0)  # later bars also get a wider range
    changed = MarketData.from_arrays(data.timestamps, open=data.open * scale, high=data.high * scale * (1 + wider),
                                     low=data.low * scale * (1 - wider), close=data.close * scale, assets=list(data.assets))
    other = bf.from_signals(changed, entries, exits, stop_loss=0.05, lot_size=0, risk=risk)
    mine = base.orders.filter((pl.col("role") == "entry") & (pl.col("created_bar") <= cut))
    theirs = other.orders.filter((pl.col("role") == "entry") & (pl.col("created_bar") <= cut))
    assert mine["size"].to_list() == theirs["size"].to_list()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.integers(25, 120), st.sampled_from(["risk", "volatility_target", "kelly"]))
def test_property_truncating_the_data_after_t_leaves_every_decision_up_to_t(seed, cut, mode) -> None:
    """Sizing never uses later bars, timestamps included: the run on the data cut after bar ``cut``
    sends exactly the orders (sizes, stops) the full run decided up to ``cut``."""
    data = bf.synth(n_assets=2, years=0.6, seed=seed)
    rng = np.random.default_rng(seed)
    entries = rng.random((data.n_bars, 2)) < 0.15
    exits = rng.random((data.n_bars, 2)) < 0.15
    entries[16], exits[16] = True, False  # at least one sized entry before the cut (ATR and volatility known)
    risk = {"sizing": {"mode": mode, "value": 0.02 if mode == "risk" else 0.3, "stop_atr": 2.0 if mode == "risk" else None,
                       "min_trades": 2, "fallback": 0.05, "max": 0.5, "window": 10},
            "drawdown_scaling": {"start": 0.02, "end": 0.3}, "max_weight": 0.4}
    full = bf.from_signals(data, entries, exits, stop_loss=0.05, lot_size=0, risk=risk)
    short = bf.from_signals(data.rows(0, cut + 1), entries[: cut + 1], exits[: cut + 1], stop_loss=0.05, lot_size=0,
                            risk=risk)
    columns = ["created_bar", "asset", "role", "size", "stop_price"]
    mine = full.orders.filter(pl.col("created_bar") <= cut - 1).select(columns)
    theirs = short.orders.filter(pl.col("created_bar") <= cut - 1).select(columns)
    assert mine.height > 0 and mine.equals(theirs)
    from backforge.engine.simulator import realized_volatility

    vol_full = realized_volatility(data.close, data.timestamps, 10)
    vol_short = realized_volatility(data.close[: cut + 1], data.timestamps[: cut + 1], 10)
    assert np.array_equal(vol_full[: cut + 1], vol_short, equal_nan=True)


def test_brackets_still_protect_positions_while_halted() -> None:
    n = 8
    b = bars(n)
    b["low"][2] = b["close"][2] = 85.0  # 15 % drawdown on the whole account: halt (manual)
    b["open"][3:] = b["high"][3:] = b["close"][3:] = 85.0
    b["low"][3] = 85.0
    b["low"][4:] = 79.0  # the 20 % stop-loss (80) fills on bar 4, during the halt
    b["close"][4:] = 79.5
    b["open"][4:] = 84.0
    held = np.ones((n, 1), dtype=bool)
    r = bf.from_signals(market(b), held, stop_loss=0.2, risk={"max_drawdown": 0.1, "resume": "manual"})
    stop = r.orders.filter(pl.col("role") == "stop_loss").row(0, named=True)
    assert (stop["status"], stop["fill_bar"], stop["fill_price"]) == ("filled", 4, 80.0)
    assert entries_of(r)["created_bar"].to_list() == [0]  # the signal stays on; no re-entry while halted
    assert r.risk_events["event"].to_list() == ["halted", "blocked"]
    assert r.risk_events["bar"].to_list() == [2, 4]


def test_bar_by_bar_driver_applies_the_same_risk_rules_as_the_batch() -> None:
    """The live runner's circuit breakers are the backtest's: stepping bars through `Simulator` with
    risk rules equals `from_signals` bit for bit, risk events included."""
    data = bf.synth(n_assets=3, years=2, bar="1d", seed=11)
    rng = np.random.default_rng(4)
    le, lx, se = (rng.random(data.close.shape) < p for p in (0.1, 0.08, 0.04))
    risk = {"max_weight": 0.3, "max_gross": 0.8, "max_drawdown": 0.08, "losing_streak": {"losses": 2, "multiplier": 0.5},
            "daily_loss_limit": 0.02, "max_positions": 2, "cooldown": 2}
    options = dict(size=0.35, stop_loss=0.03, fee_rate=0.001, capacity=16)
    batch = bf.from_signals(data, le, lx, se, risk=risk, **{k_: v for k_, v in options.items() if k_ != "capacity"})
    sim = bf.Simulator(data.assets, risk=risk, **options)
    for t in range(data.n_bars):
        sim.on_bar(int(data.timestamps[t]), open=data.open[t], high=data.high[t], low=data.low[t], close=data.close[t])
        sim.signals(le[t], lx[t], se[t])
    live = sim.result()
    assert np.array_equal(batch.equity_values, live.equity_values)
    for table in ("fills", "orders", "order_log", "trades", "risk_events"):
        assert getattr(batch, table).equals(getattr(live, table)), table
    assert set(batch.risk_events["event"]) >= {"halted", "blocked", "scaled"}


def test_bar_by_bar_driver_applies_sessions_and_trading_windows_as_the_batch() -> None:
    """Hourly bars: a trading window in New York time (winter and summer), a session day that turns at
    noon New York (inside the bars' hours) for the daily loss limit and the order count — stepped through
    `Simulator` bar by bar, the same as `from_signals`, and the window and the day limits do bind."""
    data = bf.synth(n_assets=2, years=0.5, bar="1h", seed=12)
    rng = np.random.default_rng(7)
    le, lx = (rng.random(data.close.shape) < p for p in (0.25, 0.2))
    risk = {"trading_window": {"start": "09:30", "end": "15:00", "timezone": "America/New_York"},
            "session": {"start": "12:00", "timezone": "America/New_York"}, "daily_loss_limit": 0.004,
            "max_orders_per_day": 2, "max_weight": 0.4}
    options = dict(size=0.3, fee_rate=0.001)
    batch = bf.from_signals(data, le, lx, risk=risk, **options)
    sim = bf.Simulator(data.assets, risk=risk, capacity=16, **options)
    for t in range(data.n_bars):
        sim.on_bar(int(data.timestamps[t]), open=data.open[t], high=data.high[t], low=data.low[t], close=data.close[t])
        sim.signals(le[t], lx[t])
    live = sim.result()
    assert np.array_equal(batch.equity_values, live.equity_values)
    for table in ("fills", "orders", "order_log", "trades", "risk_events"):
        assert getattr(batch, table).equals(getattr(live, table)), table
    reasons = set(batch.risk_events["rule"].to_list())
    assert {"trading_window", "max_orders_per_day", "daily_loss_limit"} <= reasons, reasons
    # by hand: the session day of a bar is its New York date after moving the clock back 12 hours; a
    # daily loss halt lasts until the first bar of a later session day, and no bar in between starts one
    local = pd.to_datetime(data.timestamps, utc=True).tz_convert("America/New_York")
    fx_day = np.asarray((local - pd.Timedelta(hours=12)).date)
    ev = batch.risk_events.filter(pl.col("rule") == "daily_loss_limit")
    halts = ev.filter(pl.col("event") == "halted")["bar"].to_list()
    resumes = ev.filter(pl.col("event") == "resumed")["bar"].to_list()
    assert len(halts) >= 3 and len(resumes) >= len(halts) - 1
    for halt, resume in zip(halts, resumes):
        assert fx_day[resume] > fx_day[halt] and (fx_day[halt:resume] == fx_day[halt]).all()
    utc_days = bf.from_signals(data, le, lx, risk={**risk, "session": {"start": "00:00", "timezone": "UTC"}}, **options)
    assert not utc_days.risk_events.equals(batch.risk_events)  # the session is what set those days


def test_volatility_target_over_a_duration_window() -> None:
    """window: 30d — the annualized volatility of the one-bar returns of the trailing 30 calendar days
    (by hand: pandas rolling('30D'), population std, × √ the causal bars per year); no entry until a full
    30 days are behind the bar; from_signals and the strategy file size alike."""
    data = bf.synth(n_assets=2, years=2, seed=5, assets=("A", "B"))
    idx = pd.to_datetime(data.timestamps, utc=True)
    close = pd.DataFrame(data.close, columns=list(data.assets), index=idx)
    ref = close.pct_change().rolling("30D").std(ddof=0).to_numpy() * np.sqrt(trailing_bars_per_year(data.timestamps))[:, None]
    fast, slow = (pd.DataFrame(data.close).rolling(n).mean().to_numpy() for n in (5, 20))
    diff = fast - slow
    prev = np.vstack([np.full((1, 2), np.nan), diff[:-1]])
    up, down = (prev <= 0) & (diff > 0), (prev >= 0) & (diff < 0)
    sizing = {"mode": "volatility_target", "value": 0.1, "window": "30d", "max": 0.6}
    mine = bf.from_signals(data, up, down, risk={"sizing": sizing})
    entries = mine.orders.filter(pl.col("role") == "entry")
    assert entries.height > 5
    first = int(np.searchsorted(data.timestamps, data.timestamps[0] + 30 * 86_400 * 10**9))
    for row in entries.iter_rows(named=True):
        j = list(data.assets).index(row["asset"])
        assert row["created_bar"] >= first - 1
        assert row["size"] == pytest.approx(min(0.6, 0.1 / ref[row["created_bar"], j]), rel=1e-9)
    config = {"name": "x", "universe": ["A", "B"], "strategies": [
        {"name": "in", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_above", "rhs": {"sma": {"window": 20}}},
         "action": {"buy": {"allocation": {"volatility_target": {"target": 0.1, "window": "30d", "max": 0.6}}}}},
        {"name": "out", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_below", "rhs": {"sma": {"window": 20}}},
         "action": {"close": {}}}]}
    cols = ["bar", "asset", "qty", "price", "fee"]
    assert mine.fills.select(cols).equals(run_portfolio(config, data).fills.select(cols))


def test_expression_sizing_in_from_signals_is_the_strategy_files() -> None:
    """risk.sizing mode 'expression' of from_signals: each entry's weight is the expression's value at the
    decision bar clamped to [min, max] (by hand: pandas), the same orders and fills as the strategy file
    with that allocation; bad expressions name their path under risk.sizing.expression."""
    data = bf.synth(n_assets=2, years=2, seed=5, assets=("A", "B"))
    close = pd.DataFrame(data.close, columns=list(data.assets))
    expression = {"div": [0.004, {"stddev": {"window": 20, "of": {"pct_change": {"window": 1}}}}]}
    fast, slow = (pd.DataFrame(data.close).rolling(n).mean().to_numpy() for n in (5, 20))
    diff = fast - slow
    prev = np.vstack([np.full((1, 2), np.nan), diff[:-1]])
    up, down = (prev <= 0) & (diff > 0), (prev >= 0) & (diff < 0)
    sizing = {"sizing": {"mode": "expression", "expression": expression, "min": 0.1, "max": 0.5}}
    mine = bf.from_signals(data, up, down, risk=sizing)
    entries = mine.orders.filter(pl.col("role") == "entry")
    raw = close.apply(lambda c: 0.004 / c.pct_change().rolling(20).std(ddof=0))
    assert entries.height > 5
    for row in entries.iter_rows(named=True):
        expected = float(np.clip(raw[row["asset"]].iloc[row["created_bar"]], 0.1, 0.5))
        assert row["size"] == pytest.approx(expected, rel=1e-9) and row["size_type"] == "equity_fraction"
    config = {"name": "x", "universe": ["A", "B"], "strategies": [
        {"name": "in", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_above", "rhs": {"sma": {"window": 20}}},
         "action": {"buy": {"allocation": {"expression": {"expression": expression, "min": 0.1, "max": 0.5}}}}},
        {"name": "out", "condition": {"lhs": {"sma": {"window": 5}}, "op": "crosses_below", "rhs": {"sma": {"window": 20}}},
         "action": {"close": {}}}]}
    theirs = run_portfolio(config, data)
    cols = ["bar", "asset", "qty", "price", "fee"]
    assert mine.fills.select(cols).equals(theirs.fills.select(cols))
    with pytest.raises(bf.ConfigError, match=r"risk\.sizing\.expression\.args: List should have at least 2"):
        bf.from_signals(data, up, down, risk={"sizing": {"mode": "expression", "expression": {"div": [1.0]}}})
    with pytest.raises(bf.ConfigError, match="needs an expression"):
        bf.from_signals(data, up, down, risk={"sizing": {"mode": "expression"}})
    with pytest.raises(bf.ConfigError, match="below 1"):
        bf.from_signals(data, up, down, stop_loss=0.05, risk={"sizing": {"mode": "risk", "value": 1.5}})
    with pytest.raises(bf.ConfigError, match="min .* is above max"):
        bf.from_signals(data, up, down, risk={"sizing": {"mode": "expression", "expression": expression,
                                                         "min": 0.6, "max": 0.5}})

"""Parity: a data set replayed through a paper session gives bit-identical orders, fills, equity and signal
events to `backforge run` on the same data — for every example, and for random strategies (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_helpers import EXAMPLES, assert_parity, backtest_and_paper

from backforge.data.synth import gbm
from backforge.live.session import open_replay
from backforge.strategy.schema import load_portfolio

EXAMPLE_FILES = [p.name for p in sorted(EXAMPLES.glob("*.yaml"))]


def test_every_example_is_covered():
    assert len(EXAMPLE_FILES) >= 14


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_replay_equals_backtest(name, tmp_path):
    portfolio, feed = open_replay(EXAMPLES / name)
    market = feed.data
    market = market.rows(max(0, market.n_bars - 420), market.n_bars)  # the last 420 bars: 300 warm-up, 120 traded
    result, runner, broker, tables = backtest_and_paper(portfolio, market, market.n_bars - 120, tmp_path)
    assert_parity(result, runner, broker, tables)
    assert broker.submit_counts and set(broker.submit_counts.values()) == {1} or not broker.submit_counts


def test_an_example_trades_in_the_parity_window(tmp_path):
    """Guard against a parity test that compares empty sessions."""
    portfolio, feed = open_replay(EXAMPLES / "sma_cross.yaml")
    market = feed.data.rows(feed.data.n_bars - 420, feed.data.n_bars)
    result, runner, broker, tables = backtest_and_paper(portfolio, market, 300, tmp_path)
    assert tables["fills"].height >= 4 and tables["signals"].height >= 4


_INDICATORS = st.sampled_from([
    lambda w: {"sma": {"window": w}}, lambda w: {"ema": {"window": w}}, lambda w: {"rsi": {"window": w}},
    lambda w: {"rolling_max": {"window": w}}, lambda w: {"wma": {"window": w}}, lambda w: {"zscore": {"window": w}},
])


@st.composite
def _portfolios(draw):
    lhs = draw(_INDICATORS)(draw(st.integers(2, 12)))
    rhs = draw(_INDICATORS)(draw(st.integers(3, 30)))
    op = draw(st.sampled_from(["crosses_above", "crosses_below", ">", "<"]))
    entry = {"buy": {"allocation": {"equity_fraction": draw(st.sampled_from([0.2, 0.5]))}}}
    if draw(st.booleans()):
        entry["buy"]["stop_loss"] = {"percent": 0.03}
    strategies = [
        {"name": "in", "condition": {"lhs": lhs, "op": op, "rhs": rhs}, "action": entry},
        {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": draw(st.integers(3, 20))}}},
         "action": {"close": {}}},
    ]
    if draw(st.booleans()):
        strategies.append({"name": "held", "condition": {"lhs": {"position_qty": {}}, "op": ">", "rhs": 0},
                           "action": {"kind": "alert"}})
    costs = {"fee_rate": draw(st.sampled_from([0.0, 0.001])), "slippage_bps": draw(st.sampled_from([0.0, 2.0]))}
    return {"name": "h", "universe": ["AAA", "BBB"], "cash": 50_000, "costs": costs, "strategies": strategies}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=_portfolios(), seed=st.integers(0, 10_000))
def test_random_strategies_replay_equals_backtest(spec, seed, tmp_path_factory):
    portfolio = load_portfolio(spec)
    market = gbm(2, 0.5, seed=seed, assets=("AAA", "BBB"))
    result, runner, broker, tables = backtest_and_paper(portfolio, market, 40, tmp_path_factory.mktemp("h"))
    assert_parity(result, runner, broker, tables)

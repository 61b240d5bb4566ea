"""The paper venue applies the strategy's fill-time risk caps (weight, exposure, quantity, notional) exactly
as the backtest's fill does; the other rules (halts, limits, multipliers) stay with the strategy."""

from __future__ import annotations

import numpy as np
import pytest

from backforge.engine.risk import RiskConfig, lower_fill_caps
from backforge.live.broker import BarEvent, OrderRequest
from backforge.live.paper import PaperBroker
from backforge.strategy.schema import load_portfolio


def _bar(ts: int, price: float) -> BarEvent:
    p = np.array([price, price])
    return BarEvent(ts, p, p, p, p, np.array([1e6, 1e6]))


def test_a_weight_cap_cuts_the_paper_fill() -> None:
    """Equity 10,000, max_weight 25 %: a buy of 100 units at 100 fills 25 (2,500 = 25 % of equity); the
    second asset's 10-unit buy (1,000) is inside the cap and fills whole."""
    broker = PaperBroker(["A", "B"], cash=10_000.0, risk=RiskConfig(max_weight=0.25, max_drawdown=0.1))
    broker.on_bar(_bar(1, 100.0))
    broker.submit(OrderRequest("o1", "A", "buy", 100.0))
    broker.submit(OrderRequest("o2", "B", "buy", 10.0))
    broker.on_bar(_bar(2, 100.0))
    positions = broker.positions()
    assert positions["A"].qty == pytest.approx(25.0) and positions["B"].qty == 10.0
    events = broker.state.risk.events[: int(broker.state.risk.n_events[0])]
    assert events["rule"].tolist() == [7] and events["allowed"].tolist() == [pytest.approx(25.0)]


def test_without_caps_the_venue_fills_in_full_and_halts_stay_with_the_strategy() -> None:
    assert lower_fill_caps(RiskConfig(max_drawdown=0.1, losing_streak={"losses": 2, "multiplier": 0.5}), ("A",)) is None
    broker = PaperBroker(["A", "B"], cash=10_000.0, risk=RiskConfig(max_drawdown=0.1))
    broker.on_bar(_bar(1, 100.0))
    broker.submit(OrderRequest("o1", "A", "buy", 90.0))
    broker.on_bar(_bar(2, 100.0))
    broker.on_bar(_bar(3, 50.0))  # a 45 % drawdown: the venue neither halts nor flattens
    broker.on_bar(_bar(4, 50.0))
    assert broker.positions()["A"].qty == 90.0
    assert int(broker.state.risk.on[0]) == 0


def test_for_portfolio_takes_the_portfolio_and_strategy_caps() -> None:
    portfolio = load_portfolio({"name": "x", "universe": ["A", "B"], "cash": 50_000, "risk": {"max_gross": 0.5},
                                "strategies": [{"name": "s", "action": {"buy": {}}, "risk": {"max_qty": {"B": 3}}}]})
    broker = PaperBroker.for_portfolio(portfolio, ["B", "A"])  # the venue's symbol order
    book = broker.state.risk
    assert broker.config.cash == 50_000 and float(book.rules[0]["max_gross"]) == 0.5
    assert np.isnan(book.assets[1, 1]["max_qty"]) and book.assets[1, 0]["max_qty"] == 3.0  # row 1 + s, column B

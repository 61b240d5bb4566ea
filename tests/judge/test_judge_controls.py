"""Clean controls and the judge's false alarms (issue 10, items 19–24).

Sound runs — a long-horizon strategy with brackets and costs, a buy-and-hold, an FX run on bid/ask
quotes — must get no warning or critical finding for look-ahead, costs or activity; runs with a real
flaw of the same family (an entry filled on its decision bar, a record of two trades) still must.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

import backforge as bf
from backforge.data.market import MarketData, Quotes
from backforge.judge import judge
from backforge.judge.evidence import build_evidence
from backforge.judge.runs import open_run
from backforge.strategy.compiler import run_portfolio

FAMILIES = ("lookahead.", "costs.", "activity.")


def _ids(verdict) -> dict[str, object]:
    return {f.id: f for f in verdict.findings}


def _alarms(verdict) -> list[str]:
    """Warnings and criticals of the look-ahead, cost and activity families."""
    return sorted(f.id for f in verdict.findings if f.id.startswith(FAMILIES) and f.severity != "info")


def _with_quotes(data: MarketData, half_spread: float) -> MarketData:
    """Bid/ask bars around the synthetic mid prices (a relative half spread)."""
    mids = (data.open, data.high, data.low, data.close)
    bid = Quotes(*(m * (1.0 - half_spread) for m in mids))
    ask = Quotes(*(m * (1.0 + half_spread) for m in mids))
    return MarketData.from_arrays(data.timestamps, open=data.open, high=data.high, low=data.low, close=data.close,
                                  volume=data.volume, assets=list(data.assets), bid=bid, ask=ask)


BRACKETED = {
    "name": "long-horizon", "universe": ["AAA", "BBB"], "costs": {"fee_rate": 0.0005, "slippage_bps": 2},
    "strategies": [
        {"name": "enter", "condition": {"lhs": {"sma": {"window": 20}}, "op": "crosses_above",
                                        "rhs": {"sma": {"window": 100}}},
         "action": {"buy": {"allocation": {"equity_fraction": 0.45}, "stop_loss": {"percent": 0.03},
                            "take_profit": {"percent": 0.25}}}},
        {"name": "exit", "condition": {"lhs": {"sma": {"window": 20}}, "op": "crosses_below",
                                       "rhs": {"sma": {"window": 100}}}, "action": {"close": {}}},
    ],
}


@pytest.fixture(scope="module")
def bracketed_run():
    data = bf.synth(n_assets=2, years=8, seed=21, assets=("AAA", "BBB"), annual_volatility=(0.35, 0.5))
    return run_portfolio(BRACKETED, data)


def test_a_stop_filled_in_its_entry_bar_is_not_look_ahead(bracketed_run):
    fills = bracketed_run.fills.join(bracketed_run.orders.select("order_id", "created_bar"), on="order_id")
    same_bar = fills.filter((pl.col("role") == "stop_loss") & (pl.col("bar") == pl.col("created_bar")))
    assert same_bar.height > 0  # the control really has brackets born and filled inside one bar
    pack = build_evidence(bracketed_run, n_simulations=100, walk_forward=False, sensitivity=False)
    assert pack.get("lookahead.fills_at_or_before_decision_bar") == 0
    assert pack.get("lookahead.engine_orders_filled_on_their_creation_bar") >= same_bar.height


def test_long_horizon_bracketed_control_raises_no_alarm(bracketed_run):
    verdict = judge(bracketed_run, n_simulations=200, walk_forward=False)
    assert _alarms(verdict) == []


def test_an_entry_filled_on_its_decision_bar_is_still_flagged(tmp_path, bracketed_run):
    folder = bracketed_run.save(tmp_path / "run")
    orders = pl.read_parquet(folder / "orders.parquet")
    first_entry = orders.filter((pl.col("role") == "entry") & (pl.col("fill_bar") >= 0))["order_id"][0]
    # plant the flaw: the entry was "decided" on the bar it filled on
    orders = orders.with_columns(pl.when(pl.col("order_id") == first_entry).then(pl.col("fill_bar"))
                                 .otherwise(pl.col("created_bar")).alias("created_bar"))
    orders.write_parquet(folder / "orders.parquet")
    found = _ids(judge(folder, n_simulations=100, walk_forward=False))
    hit = found["lookahead.fill_on_decision_bar"]
    assert hit.severity == "critical" and hit.numbers["fills_at_or_before_decision_bar"] == 1


def test_buy_and_hold_is_not_a_run_without_trades():
    data = bf.synth(n_assets=1, years=6, seed=22, assets=("AAA",))
    config = {"name": "hold", "universe": ["AAA"], "costs": {"fee_rate": 0.0005},
              "strategies": [{"name": "buy", "condition": {"lhs": "close", "op": ">", "rhs": 0},
                              "action": {"buy": {"allocation": {"equity_fraction": 0.95}}}}]}
    result = run_portfolio(config, data)
    assert result.metrics()["n_trades"] == 0 and result.summary()["open_positions"] == 1
    verdict = judge(result, n_simulations=200, walk_forward=False)
    found = _ids(verdict)
    assert "activity.no_trades" not in found
    assert found["activity.buy_and_hold_in_disguise"].numbers["max_bars_held_share_of_period"] > 0.95
    assert _alarms(verdict) == []


def test_a_run_with_neither_trades_nor_positions_is_still_flagged():
    data = bf.synth(n_assets=1, years=2, seed=23, assets=("AAA",))
    config = {"name": "never", "universe": ["AAA"], "costs": {"fee_rate": 0.0005},
              "strategies": [{"name": "buy", "condition": {"lhs": "close", "op": "<", "rhs": 0}, "action": {"buy": {}}}]}
    found = _ids(judge(run_portfolio(config, data), n_simulations=100, walk_forward=False))
    assert found["activity.no_trades"].severity == "critical"


@pytest.fixture(scope="module")
def quote_data():
    base = bf.synth(n_assets=1, years=3, seed=24, assets=("EURUSD",), annual_volatility=(0.3, 0.35))
    return _with_quotes(base, 0.0004)


QUOTED = {
    "name": "fx-quotes", "universe": ["EURUSD"], "costs": {"lot_size": 0},
    "strategies": [
        {"name": "enter", "condition": {"lhs": "mid", "op": "crosses_above", "rhs": {"sma": {"window": 50, "of": "mid"}}},
         "action": {"buy": {"allocation": {"equity_fraction": 0.5}, "stop_loss": {"percent": 0.02}}}},
        {"name": "exit", "condition": {"lhs": "mid", "op": "crosses_below", "rhs": {"sma": {"window": 50, "of": "mid"}}},
         "action": {"close": {}}},
    ],
}


def test_a_quote_run_pays_its_spread_and_the_stress_widens_it(quote_data):
    result = run_portfolio(QUOTED, quote_data)
    verdict = judge(result, n_simulations=200, walk_forward=False)
    costs = verdict.evidence.get("cost_sensitivity")
    assert costs["spread_from_quotes"] is True and "spread" in costs["costs_modelled"]
    assert "at_assumed_costs" not in costs  # no bar-data spread is added on top of the real one
    by_k = {row["multiplier"]: row["total_return"] for row in costs["runs"]}
    assert by_k[1.0] > by_k[2.0] > by_k[5.0]  # the quoted spread is scaled, so the rows differ
    found = _ids(verdict)
    assert "costs.none_modelled" not in found and "costs.realistic_kills_edge" not in found
    assert _alarms(verdict) == [f for f in _alarms(verdict) if f in ("costs.edge_vanishes_2x", "costs.fragile_5x")]


def test_scaling_the_quoted_spread_keeps_the_mid(quote_data):
    from backforge.judge.runs import scale_quoted_spread

    wide = scale_quoted_spread(quote_data, 3.0)
    for side_b, side_a, wb, wa in zip(quote_data.bid, quote_data.ask, wide.bid, wide.ask):
        np.testing.assert_allclose(0.5 * (wb + wa), 0.5 * (side_b + side_a), rtol=1e-12)
        np.testing.assert_allclose(wa - wb, 3.0 * (side_a - side_b), rtol=1e-9)
    assert scale_quoted_spread(quote_data, 1.0) is quote_data
    plain = bf.synth(n_assets=1, years=1, seed=1)
    assert scale_quoted_spread(plain, 2.0) is plain


def test_two_trades_in_ten_years_are_judged_whatever_the_sharpe():
    data = bf.synth(n_assets=1, years=10, seed=25, annual_drift=(0.05, 0.06), annual_volatility=(0.3, 0.35))
    entries = np.zeros_like(data.close, dtype=bool)
    exits = np.zeros_like(entries)
    entries[3], exits[1200], entries[1210], exits[-5] = True, True, True, True
    result = bf.from_signals(data, entries, exits, fee_rate=0.0005)
    metrics = result.metrics()
    assert metrics["n_trades"] == 2 and metrics["sharpe"] < 1.0
    hit = _ids(judge(result, n_simulations=200, walk_forward=False))["stats.few_trades_for_sharpe"]
    assert hit.severity == "warning" and hit.numbers["n_trades"] == 2


def test_pbo_of_a_single_run_says_what_was_computed():
    from backforge.judge.evidence import EvidencePack
    from backforge.judge.rules import review

    pack = EvidencePack({"run": {"mode": "strategy"}, "overfitting": {"pbo": {
        "value": 0.7, "source": "the chosen parameters and 6 neighbours (CSCV, 16 blocks)"}}}, "single")
    hit = next(f for f in review(pack) if f.id == "stats.pbo_high")
    assert hit.severity == "info"
    assert "no parameter search was recorded" in hit.message and "6 neighbours" in hit.message


OPTIMIZED = """\
name: winner
universe: [AAA]
costs: {fee_rate: 0.0005}
constraints: ["fast < slow"]
strategies:
  - name: enter
    condition:
      lhs: {sma: {window: {param: fast, choices: [5, 10, 20], default: 5}}}
      op: crosses_above
      rhs: {sma: {window: {param: slow, choices: [30, 60], default: 30}}}
    action: {buy: {}}
  - name: exit
    condition:
      lhs: {sma: {window: {param: fast, choices: [5, 10, 20], default: 5}}}
      op: crosses_below
      rhs: {sma: {window: {param: slow, choices: [30, 60], default: 30}}}
    action: {close: {}}
data: {source: synthetic, years: 4, bar: 1d, seed: 13}
"""


def test_a_search_winner_keeps_its_declared_parameters(tmp_path):
    from typer.testing import CliRunner

    from backforge.cli import app

    strategy = tmp_path / "winner.yaml"
    strategy.write_text(OPTIMIZED)
    out = CliRunner().invoke(app, ["optimize", str(strategy), "--workers", "1", "--top", "3",
                                   "--out", str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    (search,) = (tmp_path / "runs").iterdir()
    # some winner ran with values other than the file's defaults (fast 5, slow 30)
    for best in sorted(search.glob("best-*")):
        view = open_run(best)
        assert not [n for n in view.notes if "changed" in n], view.notes
        raw = view.rerunner.raw_config
        assert raw is not None  # the declared parameters survive: walk-forward and neighbours can use them
        from backforge.research.params import ParameterSpace

        chosen = ParameterSpace.from_config(raw).defaults()
        params = __import__("json").loads((best / "config.json").read_text())["data_source"]["parameters"]
        assert chosen == params

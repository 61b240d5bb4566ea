"""The batched runtime: every combination bit-identical to run_compiled + score_result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backforge as bf
from backforge.engine import kernels as k
from backforge.research.optimize import METRICS, evaluate_params
from backforge.research.params import ParameterSpace
from backforge.strategy import batch as B
from backforge.strategy.batch import BatchEvaluator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _assert_identical(raw: dict, data, combos: list[dict], *, start=None, end=None, fundamentals=None,
                      expect_batched: bool = True, **options) -> BatchEvaluator:
    batch = BatchEvaluator(raw, data, start=start, end=end, fundamentals=fundamentals, **options)
    outcomes = batch.evaluate(combos, keep_returns=len(combos))
    for values, outcome in zip(combos, outcomes):
        if not outcome.batched:
            assert not expect_batched, (values, outcome.reason)
            continue
        metrics, returns = evaluate_params(raw, values, data, start=start, end=end, fundamentals=fundamentals,
                                           keep_returns=True)
        assert outcome.metrics == metrics, values  # exact: same floats, bit for bit (NaN never occurs)
        assert outcome.returns.dtype == returns.dtype and np.array_equal(outcome.returns, returns), values
    return batch


def _examples_with_parameters() -> list[Path]:
    return [p for p in sorted(EXAMPLES.glob("*.yaml")) if ParameterSpace.from_config(yaml.safe_load(p.read_text()))]


def test_score_metrics_are_the_optimizer_metrics():
    assert B.SCORE_METRICS == METRICS


def test_reset_accounts_for_every_field_of_the_engine_state():
    # a field added to State must be reset between combinations (or shown not to need it)
    assert set(B._STATE_FIELDS) == set(k.State._fields)


@pytest.mark.parametrize("path", _examples_with_parameters(), ids=lambda p: p.stem)
def test_every_example_with_parameters_is_bit_identical(path):
    raw = yaml.safe_load(path.read_text())
    portfolio_assets = tuple(raw["universe"])
    data = bf.synth(n_assets=len(portfolio_assets), years=3, seed=11, assets=portfolio_assets)
    space = ParameterSpace.from_config(raw)
    combos = space.sample(24, seed=2)
    batch = _assert_identical(raw, data, combos, threads=2)
    assert batch.numeric  # e.g. the stop level of optimize_sma_cross is patched, not recompiled
    # a later period (warm-up bars before start, end before the last bar), as walk-forward runs it
    _assert_identical(raw, data, combos[:8], start=200, end=600, threads=1)


def test_a_rebalance_with_structural_parameters_only_is_batched_per_group():
    assets = tuple(f"S{i:02d}" for i in range(12))
    raw = {"name": "rotation", "universe": list(assets), "costs": {"fee_rate": 0.0005},
           "strategies": [{"name": "rotate", "schedule": "month_start", "action": {"rebalance": {
               "weights": "equal", "sort_by": {"returns": {"window": {"param": "lookback", "range": [20, 120, 50]}}},
               "top": {"param": "top", "choices": [2, 4]},
               "max_weight": {"param": "cap", "choices": [0.3, 0.5]},
               "filter": {"lhs": {"rsi": {"window": 14}}, "op": "<", "rhs": {"param": "rsi_max", "choices": [70, 90]}}}}}]}
    data = bf.synth(n_assets=12, years=2, seed=5, assets=assets)
    combos = list(ParameterSpace.from_config(raw).grid())
    batch = _assert_identical(raw, data, combos, threads=2)
    assert batch.numeric == ["cap"] and set(batch.structural) == {"lookback", "top", "rsi_max"}


def test_fixed_weights_and_state_thresholds_are_patched():
    raw = {"name": "mix", "universe": ["AAA", "BBB"], "strategies": [
        {"name": "breaker", "condition": {"lhs": {"drawdown": {}}, "op": "<", "rhs": {"param": "dd", "choices": [-0.05, -0.1, -0.2]}},
         "action": {"close": {}}},
        {"name": "mix", "schedule": "month_end", "action": {"rebalance": {
            "weights": {"AAA": {"param": "w", "choices": [0.3, 0.6, 0.9]}, "BBB": 0.1}}}}]}
    data = bf.synth(n_assets=2, years=3, seed=4, assets=("AAA", "BBB"))
    batch = _assert_identical(raw, data, list(ParameterSpace.from_config(raw).grid()), threads=2)
    assert batch.numeric == ["dd", "w"] and batch.structural == []


def test_values_that_change_the_program_fall_back_and_chunks_stay_identical():
    # a take-profit of 0 is refused by validation: those combinations are left to the per-trial path
    raw = {"name": "x", "universe": ["AAA"], "strategies": [
        {"name": "in", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}},
         "action": {"buy": {"take_profit": {"percent": {"param": "tp", "choices": [0.05, 0.1, 0.0]}}}}},
        {"name": "out", "condition": {"lhs": "close", "op": "<", "rhs": {"sma": {"window": 50}}}, "action": {"close": {}}}]}
    data = bf.synth(n_assets=1, years=2, seed=3, assets=("AAA",))
    combos = [{"tp": 0.05}, {"tp": 0.0}, {"tp": 0.1}]
    batch = BatchEvaluator(raw, data, max_batch_bytes=1)  # one combination per kernel call
    outcomes = batch.evaluate(combos)
    assert [o.batched for o in outcomes] == [True, False, True]
    assert "changes the program" in outcomes[1].reason
    for values, outcome in zip(combos, outcomes):
        if outcome.batched:
            assert outcome.metrics == evaluate_params(raw, values, data)[0]


def test_a_threshold_inside_a_data_only_condition_is_structural():
    raw = {"name": "x", "universe": ["AAA"], "strategies": [
        {"name": "in", "condition": {"lhs": {"rsi": {"window": 14}}, "op": "<", "rhs": {"param": "lo", "choices": [30, 40]}},
         "action": {"buy": {}}},
        {"name": "out", "condition": {"lhs": {"rsi": {"window": 14}}, "op": ">", "rhs": 70}, "action": {"close": {}}}]}
    data = bf.synth(n_assets=1, years=2, seed=8, assets=("AAA",))
    batch = _assert_identical(raw, data, [{"lo": 30}, {"lo": 40}])
    assert batch.structural == ["lo"] and "beyond a float constant" in batch.reasons["lo"]


_FLOATS = st.sampled_from([0.01, 0.02, 0.03, 0.05, 0.08, 0.12])


@st.composite
def _configs(draw):
    """A random two-asset strategy with numeric and structural parameters in different places."""
    fast = draw(st.lists(st.sampled_from([5, 10, 15]), min_size=1, max_size=2, unique=True))
    slow = draw(st.lists(st.sampled_from([30, 40, 60]), min_size=1, max_size=2, unique=True))
    cond = lambda op: {"lhs": {"sma": {"window": {"param": "fast", "choices": fast}}}, "op": op,  # noqa: E731
                       "rhs": {"sma": {"window": {"param": "slow", "choices": slow}}}}
    buy: dict = {"allocation": {"equity_fraction": {"param": "size", "choices": draw(st.lists(st.sampled_from([0.2, 0.4, 0.5]), min_size=1, max_size=2, unique=True))}}}
    for name in draw(st.lists(st.sampled_from(["stop_loss", "take_profit", "trailing_stop"]), max_size=3, unique=True)):
        buy[name] = {"percent": {"param": name, "choices": draw(st.lists(_FLOATS, min_size=1, max_size=3, unique=True))}}
    if draw(st.booleans()):
        buy.update(order_type="limit", limit_offset={"param": "offset", "choices": draw(st.lists(_FLOATS, min_size=1, max_size=2, unique=True))},
                   time_in_force="gtn", gtn_bars=3)
    strategies = [{"name": "in", "condition": cond("crosses_above"), "action": {"buy": buy}},
                  {"name": "out", "condition": cond("crosses_below"), "action": {"close": {}}}]
    if draw(st.booleans()):
        strategies.insert(0, {"name": "take", "condition": {"lhs": {"unrealized_pnl_pct": {}}, "op": ">",
                                                            "rhs": {"param": "exit_gain", "choices": [0.04, 0.1]}},
                              "action": {"close": {}}})
    raw = {"name": "h", "universe": ["AAA", "BBB"], "costs": {"fee_rate": 0.001}, "strategies": strategies}
    if draw(st.booleans()):
        raw["risk"] = {"max_weight": {"param": "max_weight", "choices": [0.3, 0.6]}}
    return raw, draw(st.integers(0, 50))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_configs())
def test_random_configs_are_bit_identical(case):
    raw, seed = case
    data = bf.synth(n_assets=2, years=2, seed=seed, assets=("AAA", "BBB"))
    combos = ParameterSpace.from_config(raw).sample(12, seed=seed)
    _assert_identical(raw, data, combos, threads=2)


def test_compiled_groups_are_kept_within_the_byte_budget():
    def cond(op: str) -> dict:
        return {"lhs": {"sma": {"window": {"param": "fast", "choices": [5, 10, 15]}}}, "op": op,
                "rhs": {"sma": {"window": {"param": "slow", "choices": [30, 40, 60]}}}}

    raw = {"name": "x", "universe": ["AAA"], "strategies": [
        {"name": "in", "condition": cond("crosses_above"),
         "action": {"buy": {"stop_loss": {"percent": {"param": "stop", "choices": [0.02, 0.05]}}}}},
        {"name": "out", "condition": cond("crosses_below"), "action": {"close": {}}}]}
    data = bf.synth(n_assets=1, years=2, seed=6, assets=("AAA",))
    budget = 20 * 1024  # two groups' programs (504 bars × 2 series)
    combos = list(ParameterSpace.from_config(raw).grid())
    batch = _assert_identical(raw, data, combos + combos[::-1], max_batch_bytes=budget)
    assert batch._group_bytes <= budget and 1 <= len(batch._groups) <= 2

"""The batched runtime: every combination bit-identical to run_compiled + score_result."""

from __future__ import annotations

from dataclasses import replace
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
    # one program for all: the top N is an integer patch, the windows and the threshold choose columns
    assert batch.numeric == ["top", "cap"] and batch.columns == ["lookback", "rsi_max"] and batch.structural == []
    assert len(batch._kept) == 1


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


def test_a_threshold_inside_a_data_only_condition_chooses_columns():
    raw = {"name": "x", "universe": ["AAA"], "strategies": [
        {"name": "in", "condition": {"lhs": {"rsi": {"window": 14}}, "op": "<", "rhs": {"param": "lo", "choices": [30, 40]}},
         "action": {"buy": {}}},
        {"name": "out", "condition": {"lhs": {"rsi": {"window": 14}}, "op": ">", "rhs": 70}, "action": {"close": {}}}]}
    data = bf.synth(n_assets=1, years=2, seed=8, assets=("AAA",))
    batch = _assert_identical(raw, data, [{"lo": 30}, {"lo": 40}])
    assert batch.columns == ["lo"] and batch.structural == [] and "indicator columns" in batch.reasons["lo"]


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
    assert batch.columns == ["fast", "slow"]  # the table of their columns does not fit: one program per pair
    assert batch._kept_bytes <= budget and 1 <= len(batch._kept) <= 2


def _sma_cross(fast: list[int], slow: list[int]) -> dict:
    def cond(op: str) -> dict:
        return {"lhs": {"sma": {"window": {"param": "fast", "choices": fast}}}, "op": op,
                "rhs": {"sma": {"window": {"param": "slow", "choices": slow}}}}

    return {"name": "x", "universe": ["AAA"], "strategies": [
        {"name": "in", "condition": cond("crosses_above"),
         "action": {"buy": {"stop_loss": {"atr": {"param": "k", "choices": [1.5, 3.0]}}}}},
        {"name": "out", "condition": cond("crosses_below"), "action": {"close": {}}}]}


def test_windows_choose_columns_of_one_program_and_a_full_table_starts_over():
    raw = _sma_cross([5, 10, 15], [30, 40, 60])
    data = bf.synth(n_assets=1, years=2, seed=6, assets=("AAA",))
    combos = list(ParameterSpace.from_config(raw).grid())
    batch = _assert_identical(raw, data, combos, threads=2)
    assert batch.numeric == ["k"] and batch.columns == ["fast", "slow"] and batch.structural == []
    (comp,) = batch._components  # both windows feed both crossings: their values are taken together
    assert comp.names == ("fast", "slow") and comp.columns.size == 2
    (group,) = batch._kept.values()
    assert group.columns and len(group.offsets) == 8  # every (fast, slow) pair but the group's own

    # a budget with room for the group's columns and two pairs' blocks: the table is emptied between calls
    cp = batch._base_cp
    T, K = cp.series.shape
    small = BatchEvaluator(raw, data, threads=1)
    small.max_batch_bytes = B._entry_bytes(replace(group, table=None)) + 8 * T * (K + 2 * comp.columns.size)
    outcomes = small.evaluate(combos)
    (group,) = small._kept.values()
    assert group.table.shape[1] == K + 2 * comp.columns.size and len(group.offsets) <= 2
    for values, outcome in zip(combos, outcomes):
        assert outcome.batched and outcome.metrics == evaluate_params(raw, values, data)[0], values


def test_column_parameters_are_batched_in_every_structural_group_and_bad_values_fall_back():
    assets = ("AAA", "BBB", "CCC")
    raw = {"name": "rot", "universe": list(assets), "strategies": [{"name": "r",
           "schedule": {"param": "when", "choices": ["month_start", "weekly"]},
           "action": {"rebalance": {"weights": "equal", "top": 2,
                      "sort_by": {"returns": {"window": {"param": "lookback", "choices": [10, 20, 0]}}}}}}]}
    data = bf.synth(n_assets=3, years=2, seed=5, assets=assets)
    combos = list(ParameterSpace.from_config(raw).grid())
    batch = _assert_identical(raw, data, combos, expect_batched=False, threads=2)
    assert batch.structural == ["when"] and batch.columns == ["lookback"]
    outcomes = batch.evaluate(combos)
    assert [o.batched for o in outcomes] == [True, True, False] * 2  # a window of 0 does not compile
    assert all(g.columns for key, g in batch._kept.items() if key[1] == ("when",))


def test_the_indicator_cache_tells_apart_data_sharing_timestamps_and_fundamentals_tables():
    # one process, one cache: a what-if copy of the data with other prices but the same timestamps array, and
    # one data set with two fundamentals tables, each get their own indicators (not the first one's)
    from backforge.data.fundamentals import Fundamentals
    from backforge.data.market import MarketData
    from backforge.data.synth import synthetic_fundamentals
    from backforge.strategy.compiler import compile_portfolio
    from backforge.strategy.schema import load_portfolio

    assets = ("AAA", "BBB")
    data = bf.synth(n_assets=2, years=2, seed=3, assets=assets)
    other = MarketData(data.timestamps, data.open * 1.5, data.high * 1.5, data.low * 1.5, data.close[::-1].copy() * 1.5,
                       data.volume, data.assets, None, None)
    raw = {"name": "x", "universe": list(assets), "strategies": [{"name": "in", "condition": {
        "all": [{"lhs": "close", "op": ">", "rhs": {"sma": {"window": 20}}},
                {"lhs": {"fundamental": {"field": "eps"}}, "op": ">", "rhs": 0}]}, "action": {"buy": {}}}]}
    portfolio = load_portfolio(raw)
    f1 = Fundamentals.from_frame(synthetic_fundamentals(assets, 2, seed=1))
    f2 = Fundamentals.from_frame(synthetic_fundamentals(assets, 2, seed=2))
    cache: dict = {}
    for d, f in ((data, f1), (other, f1), (data, f2)):
        shared = compile_portfolio(portfolio, d, fundamentals=f, cache=cache).series
        alone = compile_portfolio(portfolio, d, fundamentals=f).series
        assert np.array_equal(shared, alone, equal_nan=True)
    assert not np.array_equal(compile_portfolio(portfolio, data, fundamentals=f1).series,
                              compile_portfolio(portfolio, other, fundamentals=f1).series, equal_nan=True)

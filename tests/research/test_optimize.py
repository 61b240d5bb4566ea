"""Parameter spaces, grid/random/genetic search, executors (local processes and a real local Ray),
walk-forward windows and efficiency."""

from __future__ import annotations

import numpy as np
import pytest

import backforge as bf
from backforge.errors import ConfigError
from backforge.research.optimize import LocalExecutor, RayExecutor, _dominates, _objectives, evaluate_params, optimize
from backforge.research.params import ParameterSpace, resolve_parameters
from backforge.research.walkforward import walk_forward, windows
from backforge.strategy.schema import load_portfolio


def sma_cross(fast=(5, 30, 5), slow=(20, 40, 60), stop=(0.03, 0.06)) -> dict:
    return {
        "name": "x", "universe": ["AAPL", "MSFT"], "constraints": ["fast < slow"],
        "strategies": [
            {"name": "in",
             "condition": {"lhs": {"sma": {"window": {"param": "fast", "range": list(fast)}}}, "op": "crosses_above",
                           "rhs": {"sma": {"window": {"param": "slow", "choices": list(slow)}}}},
             "action": {"buy": {"allocation": {"equity_fraction": 0.5},
                                "stop_loss": {"percent": {"param": "stop", "choices": list(stop)}}}}},
            {"name": "out",
             "condition": {"lhs": {"sma": {"window": {"param": "fast", "range": list(fast)}}}, "op": "crosses_below",
                           "rhs": {"sma": {"window": {"param": "slow", "choices": list(slow)}}}},
             "action": {"close": {}}},
        ],
    }


@pytest.fixture(scope="module")
def data():
    return bf.synth(n_assets=2, years=4, seed=1)


def test_parameter_space_grid_constraints_and_defaults():
    space = ParameterSpace.from_config(sma_cross())
    assert space.names == ["fast", "slow", "stop"]
    assert space.total() == 6 * 3 * 2
    grid = list(space.grid())
    assert all(v["fast"] < v["slow"] for v in grid)
    assert len(grid) == space.size() == (3 + 6 + 6) * 2  # slow 20 admits fast 5, 10, 15; 40 and 60 admit all six
    assert space.defaults() == {"fast": 5, "slow": 20, "stop": 0.03}
    assert resolve_parameters({"w": {"param": "a", "range": [1, 9, 2], "default": 7}}) == {"w": 7}
    assert ParameterSpace.from_config({"a": {"param": "x", "range": [0.1, 0.3, 0.1]}}).parameters[0].values == (0.1, 0.2, 0.3)


@pytest.mark.parametrize(("raw", "message"), [
    ({"a": {"param": "x", "range": [10, 5]}}, "range is inverted: start 10 > stop 5"),
    ({"a": {"param": "x", "range": [1, 5, 0]}}, "range step must be > 0"),
    ({"a": {"param": "x", "choices": []}}, "choices must be a non-empty list"),
    ({"a": {"param": "x"}}, "either range"),
    ({"a": {"param": "x", "range": [1, 2]}, "constraints": ["x > 5"]}, "exclude every combination"),
    ({"a": {"param": "x", "range": [1, 2]}, "constraints": ["y > 5"]}, "unknown parameter 'y'"),
    ({"a": {"param": "x", "range": [1, 2]}, "constraints": ["__import__('os')"]}, "may only compare"),
    ({"a": {"param": "x", "range": [1, 2]}, "b": {"param": "x", "range": [1, 3]}}, "declared twice"),
])
def test_bad_parameter_declarations(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ParameterSpace.from_config(raw)


def test_load_portfolio_uses_defaults_and_given_values():
    p = load_portfolio(sma_cross())
    assert p.strategies[0].condition.lhs.window == 5
    p = load_portfolio(sma_cross(), parameters={"fast": 15, "slow": 60})
    assert (p.strategies[0].condition.lhs.window, p.strategies[1].condition.rhs.window) == (15, 60)
    with pytest.raises(ConfigError, match="unknown parameter 'fats'; did you mean 'fast'"):
        load_portfolio(sma_cross(), parameters={"fats": 15})


@pytest.mark.slow
def test_grid_is_the_same_on_one_or_two_workers(data):
    one = optimize(sma_cross(), data, method="grid", executor=LocalExecutor(1))
    with LocalExecutor(2) as pool:
        two = optimize(sma_cross(), data, method="grid", executor=pool)
        again = optimize(sma_cross(), data, method="grid", executor=pool)  # the warm pool is reused
    assert again.table.equals(two.table)
    assert one.n_trials == two.n_trials == ParameterSpace.from_config(sma_cross()).size()
    assert one.table.equals(two.table)
    assert one.best.params == two.best.params
    # the table's best row equals an independent evaluation of those parameters
    metrics, _ = evaluate_params(sma_cross(), one.best.params, data)
    assert metrics["sharpe"] == one.best.metrics["sharpe"]
    assert one.overfitting["n_trials"] == one.n_trials
    assert 0.0 <= one.overfitting["deflated_sharpe"]["dsr"] <= 1.0


def test_random_and_genetic_are_deterministic(data):
    a = optimize(sma_cross(), data, method="random", samples=7, seed=4, executor=LocalExecutor(1))
    b = optimize(sma_cross(), data, method="random", samples=7, seed=4, executor=LocalExecutor(1))
    assert a.n_trials == 7 and a.table.equals(b.table)
    g1 = optimize(sma_cross(), data, method="genetic", population=8, generations=4, seed=2, executor=LocalExecutor(1))
    g2 = optimize(sma_cross(), data, method="genetic", population=8, generations=4, seed=2, executor=LocalExecutor(1))
    assert g1.table.equals(g2.table) and g1.generations == g2.generations
    # elitism: the best value never gets worse from one generation to the next
    values = [g["best_value"] for g in g1.generations]
    assert values == sorted(values)
    # every distinct genome is evaluated once: trials == distinct parameter sets
    assert len({tuple(t.params.values()) for t in g1.trials}) == g1.n_trials


def test_multi_objective_returns_a_pareto_front(data):
    res = optimize(sma_cross(), data, metric=["sharpe", "max_drawdown"], method="genetic", population=8,
                   generations=3, seed=1, executor=LocalExecutor(1))
    front = [t for t in res.trials if t.params in res.pareto]
    assert front
    objs = [_objectives(t, ["sharpe", "max_drawdown"]) for t in res.trials if t.error is None]
    for t in front:
        mine = _objectives(t, ["sharpe", "max_drawdown"])
        assert not any(_dominates(o, mine) for o in objs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"metric": "sharp"}, "unknown metric 'sharp'; did you mean 'sharpe'"),
    ({"method": "anneal"}, "unknown method 'anneal'"),
    ({"method": "genetic", "population": 2}, "population >= 4"),
])
def test_bad_requests_fail_before_any_work(data, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        optimize(sma_cross(), data, executor=LocalExecutor(1), **kwargs)


def test_window_longer_than_data_fails_before_any_work():
    short = bf.synth(n_assets=2, years=0.1, seed=1)  # 25 bars
    with pytest.raises(ConfigError, match="longer than the data"):
        optimize(sma_cross(), short, executor=LocalExecutor(1))


def test_unreachable_ray_address_is_a_clear_error(data):
    with pytest.raises(ConfigError, match="does not answer"):
        optimize(sma_cross(), data, executor=RayExecutor("127.0.0.1:1"))


@pytest.mark.slow
def test_ray_gives_the_same_results_as_local(data):
    pytest.importorskip("ray")
    local = optimize(sma_cross(), data, method="random", samples=6, seed=3, executor=LocalExecutor(1))
    executor = RayExecutor(workers=2)
    try:
        remote = optimize(sma_cross(), data, method="random", samples=6, seed=3, executor=executor)
    finally:
        executor.close()
    assert local.table.equals(remote.table)


def test_walk_forward_windows():
    ts = np.arange(100, dtype=np.int64) * 86_400_000_000_000
    assert windows(ts, 40, 20) == [(0, 40, 60), (20, 60, 80), (40, 80, 100)]
    assert windows(ts, "40d", "20d", anchored=True) == [(0, 40, 60), (0, 60, 80), (0, 80, 100)]
    with pytest.raises(ConfigError, match="too short"):
        windows(ts, 100, 10)


def test_walk_forward_stitches_out_of_sample(data):
    wf = walk_forward(sma_cross(), data, in_sample=504, out_of_sample=126, executor=LocalExecutor(1))
    assert wf.windows.height == 4
    assert wf.equity.height == data.n_bars - 504
    # each window's out-of-sample figures equal an independent run of its chosen parameters
    row = wf.windows.row(1, named=True)
    params = {k.removeprefix("param."): v for k, v in row.items() if k.startswith("param.")}
    metrics, _ = evaluate_params(sma_cross(), params, data, start=630, end=756)
    assert metrics["sharpe"] == pytest.approx(row["oos_sharpe"])
    oos, is_ = wf.windows["oos_annual_return"].to_numpy(), wf.windows["is_annual_return"].to_numpy()
    assert wf.efficiency == pytest.approx(oos.mean() / is_.mean())
    assert set(wf.stability) == {"fast", "slow", "stop"}

"""optimize, walk-forward and the executors on the batched runtime (issue 16): the same trials as one
backtest per trial, bit for bit, and a search says which runtime it used."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from typer.testing import CliRunner

import backforge as bf
from backforge.cli import app
from backforge.research.optimize import LocalExecutor, evaluate_params, optimize
from backforge.research.walkforward import walk_forward
from backforge.strategy.compiler import compile_portfolio, run_compiled
from backforge.strategy.schema import load_portfolio


def cross(stops: list[float]) -> dict:
    def cond(op: str) -> dict:
        return {"lhs": {"sma": {"window": {"param": "fast", "choices": [5, 10]}}}, "op": op,
                "rhs": {"sma": {"window": {"param": "slow", "choices": [30, 50]}}}}

    return {"name": "cross", "universe": ["AAPL"], "constraints": ["fast < slow"], "strategies": [
        {"name": "in", "condition": cond("crosses_above"),
         "action": {"buy": {"stop_loss": {"percent": {"param": "stop", "choices": stops}}}}},
        {"name": "out", "condition": cond("crosses_below"), "action": {"close": {}}}]}


@pytest.fixture(scope="module")
def data():
    return bf.synth(n_assets=1, years=3, seed=12)


def _same_trials(a, b) -> None:
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    for x, y in zip(a.trials, b.trials):
        assert x.metrics == y.metrics and x.error == y.error, x.params
        assert (x.returns is None) == (y.returns is None)
        if x.returns is not None:
            assert np.array_equal(x.returns, y.returns)


@pytest.mark.parametrize("method", ["grid", "random", "genetic"])
def test_every_method_gives_the_per_trial_trials_and_says_it_was_batched(data, method):
    raw = cross([0.02, 0.05, 0.1])
    options = dict(method=method, samples=6, population=6, generations=2, seed=4, executor=LocalExecutor(1))
    fast = optimize(raw, data, **options)
    slow = optimize(raw, data, batched=False, **options)
    _same_trials(fast, slow)
    assert fast.overfitting == slow.overfitting
    assert fast.runtime == "batched" and all(t.runtime == "batched" for t in fast.trials)
    assert "patched: stop" in fast.runtime_detail and "indicator columns chosen per trial: fast, slow" in fast.runtime_detail
    assert slow.runtime == "per-trial" and "switched off" in slow.runtime_detail


def test_values_the_batch_cannot_prove_run_one_by_one_with_their_own_error(data):
    raw = cross([0.02, 0.0, 0.05])  # a stop of 0 % (not a corner, which is probed up front) is refused: per trial
    fast = optimize(raw, data, method="grid", executor=LocalExecutor(1))
    slow = optimize(raw, data, method="grid", executor=LocalExecutor(1), batched=False)
    _same_trials(fast, slow)
    errors = [t for t in fast.trials if t.error is not None]
    assert errors and all(t.params["stop"] == 0.0 and t.runtime == "per-trial" for t in errors)
    assert fast.runtime == "mixed" and "one by one" in fast.runtime_detail


def test_returns_are_kept_for_at_most_keep_returns_trials(data):
    res = optimize(cross([0.02, 0.05, 0.1]), data, method="grid", keep_returns=4, executor=LocalExecutor(1))
    assert sum(t.returns is not None for t in res.trials) == 4 and res.n_trials == 12


def test_walk_forward_is_the_same_batched_or_not(data):
    raw = cross([0.02, 0.05])
    options = dict(in_sample=300, out_of_sample=150, method="grid", executor=LocalExecutor(1))
    a = walk_forward(raw, data, **options)
    b = walk_forward(raw, data, batched=False, **options)
    assert a.windows.equals(b.windows) and a.equity.equals(b.equity) and a.efficiency == b.efficiency
    assert a.summary()["runtime"] == "batched" and "patched: stop" in a.summary()["runtime_detail"]
    assert b.summary()["runtime"] == "per-trial" and "switched off" in b.summary()["runtime_detail"]


@pytest.mark.slow
def test_the_indicator_cache_never_serves_another_datas_indicators():
    # data of the same shape allocated one after the other (a freed buffer's address is reused)
    raw = cross([0.05])
    values = {"fast": 5, "slow": 30, "stop": 0.05}
    for seed in range(4):
        market = bf.synth(n_assets=1, years=2, seed=seed)
        cached, _ = evaluate_params(raw, values, market)
        fresh = run_compiled(compile_portfolio(load_portfolio(raw, parameters=values), market), audit=False)
        assert cached["final_equity"] == float(fresh.equity_values[-1])
        del market
        gc.collect()


@pytest.mark.slow
def test_worker_processes_give_the_in_process_trials(data):
    raw = cross([0.02, 0.05, 0.1])
    with LocalExecutor(2) as pool:
        pooled = optimize(raw, data, method="grid", executor=pool)
    alone = optimize(raw, data, method="grid", executor=LocalExecutor(1))
    _same_trials(pooled, alone)
    assert pooled.runtime == "batched"


def test_the_cli_says_which_runtime_ran_and_refuses_a_billion_combination_grid(tmp_path):
    strategy = tmp_path / "cross.yaml"
    import yaml

    strategy.write_text(yaml.safe_dump({**cross([0.02, 0.05]), "data": {"source": "synthetic", "years": 2, "seed": 3}}))
    result = CliRunner().invoke(app, ["optimize", str(strategy), "--workers", "1", "--top", "0",
                                      "--out", str(tmp_path / "out")], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "batched runtime: 8 trials (patched: stop; indicator columns chosen per trial: fast, slow)" in text
    huge = {"name": "huge", "universe": ["AAPL"], "data": {"source": "synthetic", "years": 1}, "strategies": [
        {"name": "in", "condition": {"all": [{"lhs": {"sma": {"window": {"param": f"p{i}", "range": [2, 1001]}}},
                                              "op": ">", "rhs": 0} for i in range(3)]}, "action": {"buy": {}}}]}
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(huge))
    result = CliRunner().invoke(app, ["optimize", str(tmp_path / "huge.yaml"), "--workers", "1",
                                      "--out", str(tmp_path / "out")], terminal_width=200)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "1,000,000,000 combinations" in text and "use method random" in text
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_ray_workers_run_the_batched_runtime_and_give_the_local_trials(data):
    pytest.importorskip("ray")
    from backforge.research.optimize import RayExecutor

    raw = cross([0.02, 0.05, 0.1])
    local = optimize(raw, data, method="grid", executor=LocalExecutor(1))
    executor = RayExecutor(workers=2)
    try:
        remote = optimize(raw, data, method="grid", executor=executor)
        again = optimize(raw, data, method="random", samples=5, seed=1, executor=executor)  # the workers' cached data
    finally:
        executor.close()
    _same_trials(remote, local)
    assert remote.runtime == "batched" and all(t.runtime == "batched" for t in remote.trials)
    assert again.runtime == "batched" and again.n_trials == 5


def test_a_billion_combination_grid_is_refused_before_any_allocation(data):
    import time
    import tracemalloc

    from backforge.errors import ConfigError

    raw = {"name": "huge", "universe": ["AAPL"], "strategies": [
        {"name": "in", "condition": {"all": [{"lhs": {"sma": {"window": {"param": f"p{i}", "range": [2, 1001]}}},
                                              "op": ">", "rhs": 0} for i in range(3)]}, "action": {"buy": {}}}]}
    tracemalloc.start()
    started = time.perf_counter()
    try:
        for call in (lambda: optimize(raw, data, method="grid", executor=LocalExecutor(1)),
                     lambda: walk_forward(raw, data, in_sample=300, out_of_sample=150, method="grid",
                                          executor=LocalExecutor(1))):
            with pytest.raises(ConfigError, match=r"1,000,000,000 combinations .*use method random .* or genetic"):
                call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5 and peak < 20 * 1024**2  # counted, never enumerated or compiled

"""Tests of backforge.research.montecarlo: a pure-Python oracle of the whole sampler (SplitMix64 streams
included), invariants of each method, analytical expectations, determinism across chunkings and
thread counts, the Politis-White block length, and bad input."""

from __future__ import annotations

import math

import numba
import numpy as np
import polars as pl
import pytest

import backforge as bf
from backforge.errors import ConfigError, DataError
from backforge.research import montecarlo
from backforge.research.montecarlo import monte_carlo, optimal_block_length, step_quantiles_nb
from backforge.results.metrics import equity_metrics, periods_per_year_for, returns_from_equity

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


# ====================================================================== pure-Python oracle
def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def path_state(seed: int, path: int) -> int:
    return mix((mix((seed + GOLDEN) & MASK) + path * GOLDEN) & MASK)


def next_uniform(state: int) -> tuple[int, float]:
    state = (state + GOLDEN) & MASK
    return state, (mix(state) >> 11) * 2.0**-53


def uniform_index(u: float, n: int) -> int:
    return min(int(u * n), n - 1)


def reference_indices(method: str, n: int, seed: int, path: int, block_length: float = 1.0) -> list[int]:
    """The indices a path takes, written plainly (Fisher-Yates / uniform draws / stationary bootstrap)."""
    state = path_state(seed, path)
    out = []
    if method == "reshuffle":
        order = list(range(n))
        for step in range(n):
            state, u = next_uniform(state)
            j = step + uniform_index(u, n - step)
            order[step], order[j] = order[j], order[step]
            out.append(order[step])
    elif method == "bootstrap":
        for _ in range(n):
            state, u = next_uniform(state)
            out.append(uniform_index(u, n))
    else:
        previous = -1
        for step in range(n):
            state, coin = next_uniform(state)
            state, u = next_uniform(state)
            index = uniform_index(u, n) if (step == 0 or coin < 1.0 / block_length) else (previous + 1) % n
            out.append(index)
            previous = index
    return out


def reference_path(values: np.ndarray, indices: list[int], start: float, additive: bool) -> np.ndarray:
    path = [start]
    equity = start
    for index in indices:
        if equity > 0:
            equity = equity + values[index] if additive else equity * (1.0 + values[index])
            equity = max(equity, 0.0)
        path.append(equity)
    return np.array(path)


@pytest.fixture(scope="module")
def run() -> bf.Result:
    data = bf.synth(n_assets=1, years=2, seed=3)
    return bf.from_signals(data, data.close > data.open, data.close < data.open)


# ================================================================== the kernel vs the oracle
@pytest.mark.parametrize(
    ("method", "trade_model", "block_length"),
    [("reshuffle", "compound", None), ("reshuffle", "additive", None), ("bootstrap", "compound", None),
     ("bootstrap", "additive", None), ("block_bootstrap", "compound", 4.0)],
)
def test_simulation_matches_the_python_oracle(method, trade_model, block_length):
    rng = np.random.default_rng(9)
    additive = trade_model == "additive"
    values = rng.normal(30.0, 400.0, size=37) if additive else rng.normal(0.01, 0.05, size=37)
    start = 10_000.0 if additive else 1.0
    mc = monte_carlo(values, method=method, n_simulations=70, seed=12, trade_model=trade_model,
                     block_length=block_length, initial_equity=start, periods_per_year=52.0, keep_paths=True)
    paths = np.array([reference_path(values, reference_indices(method, 37, 12, p, block_length or 1.0), start,
                                     additive) for p in range(70)])
    # same draws, same arithmetic: the paths agree to the last bit
    np.testing.assert_array_equal(mc.final_equity, paths[:, -1])
    np.testing.assert_array_equal(mc.paths, paths.astype(np.float32))
    reference = equity_metrics(paths, periods_per_year=52.0)
    np.testing.assert_allclose(mc.max_drawdown, reference["max_drawdown"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mc.sharpe, reference["sharpe"], rtol=1e-9)
    bands = np.quantile(paths, mc.quantiles, axis=0).T
    np.testing.assert_allclose(mc.bands.select(["p5", "p25", "p50", "p75", "p95"]).to_numpy(), bands, rtol=1e-13)
    assert mc.probability_of_ruin == np.mean(reference["max_drawdown"] <= -0.5)


def test_step_quantiles_match_numpy_on_awkward_rows():
    rng = np.random.default_rng(0)
    levels = np.array([0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
    rows = [
        rng.normal(size=1001),
        np.round(rng.normal(size=1000), 1),  # many ties
        np.full(500, 1.2345),  # constant
        np.r_[rng.normal(size=999), 1e12],  # one far outlier
        np.r_[np.zeros(990), rng.normal(size=10)],  # a huge atom
        np.array([3.0]),
        np.array([2.0, 1.0]),
        rng.lognormal(0.0, 2.0, size=777),
    ]
    for row in rows:
        got = step_quantiles_nb(row[np.newaxis, :].copy(), levels, 2)[0]
        np.testing.assert_allclose(got, np.quantile(row, levels), rtol=1e-14, atol=0.0)
    block = rng.normal(size=(37, 301))
    np.testing.assert_allclose(step_quantiles_nb(block, levels, 2), np.quantile(block, levels, axis=1).T,
                               rtol=1e-14)


# =============================================================================== invariants
def test_reshuffle_preserves_final_equity_while_drawdowns_vary():
    rng = np.random.default_rng(1)
    trades = rng.normal(0.004, 0.03, size=200)
    mc = monte_carlo(trades, method="reshuffle", n_simulations=3000, seed=5)
    product = np.prod(1.0 + trades)
    np.testing.assert_allclose(mc.final_equity, product, rtol=1e-12)  # same trades, same product
    assert np.ptp(mc.max_drawdown) > 0.05  # the order matters for the path
    np.testing.assert_allclose(mc.sharpe, mc.sharpe[0], rtol=1e-9)  # same returns, same Sharpe
    summary = mc.summary()
    assert summary["final_equity"]["p5"] == pytest.approx(product, rel=1e-12)
    assert 0.0 <= summary["original_percentile"]["max_drawdown"] <= 1.0
    additive = monte_carlo(trades * 1000, method="reshuffle", n_simulations=500, trade_model="additive",
                           initial_equity=100_000.0)
    np.testing.assert_allclose(additive.final_equity, 100_000.0 + np.sum(trades * 1000), rtol=1e-12)


def test_bootstrap_mean_final_equity_matches_its_expectation():
    rng = np.random.default_rng(2)
    trades = rng.normal(0.003, 0.02, size=60)
    mc = monte_carlo(trades, method="bootstrap", n_simulations=40_000, seed=1)
    # independent draws: E[prod(1 + r_i)] = (1 + mean(r)) ** n
    expected = (1.0 + trades.mean()) ** 60
    standard_error = mc.final_equity.std(ddof=1) / math.sqrt(40_000)
    assert abs(mc.final_equity.mean() - expected) < 4 * standard_error
    pnl = trades * 1e4
    additive = monte_carlo(pnl, method="bootstrap", n_simulations=40_000, seed=2, trade_model="additive",
                           initial_equity=1e6)
    standard_error = additive.final_equity.std(ddof=1) / math.sqrt(40_000)
    assert abs(additive.final_equity.mean() - (1e6 + 60 * pnl.mean())) < 4 * standard_error


def test_block_bootstrap_with_blocks_of_one_is_the_iid_bootstrap():
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, size=500)
    iid = monte_carlo(returns, method="bootstrap", n_simulations=20_000, seed=1)
    blocks = monte_carlo(returns, method="block_bootstrap", block_length=1, n_simulations=20_000, seed=2)
    for name in ("final_equity", "max_drawdown", "sharpe"):
        a, b = getattr(iid, name), getattr(blocks, name)
        spread = a.std(ddof=1)
        assert abs(a.mean() - b.mean()) < 5 * spread / math.sqrt(10_000)
        np.testing.assert_allclose(np.quantile(a, [0.05, 0.5, 0.95]), np.quantile(b, [0.05, 0.5, 0.95]),
                                   atol=0.06 * spread)


def test_long_blocks_keep_the_autocorrelation_and_blocks_of_one_remove_it():
    rng = np.random.default_rng(4)
    noise = rng.normal(0.0, 0.01, size=3000)
    returns = np.empty(3000)
    returns[0] = noise[0]
    for t in range(1, 3000):
        returns[t] = 0.5 * returns[t - 1] + noise[t]

    def lag_one(mc) -> float:
        simulated = returns_from_equity(mc.paths.astype(np.float64))
        centred = simulated - simulated.mean(axis=1, keepdims=True)
        return float(np.mean(np.sum(centred[:, 1:] * centred[:, :-1], axis=1) / np.sum(centred**2, axis=1)))

    long_blocks = monte_carlo(returns, method="block_bootstrap", block_length=100, n_simulations=50, keep_paths=True)
    single = monte_carlo(returns, method="block_bootstrap", block_length=1, n_simulations=50, keep_paths=True)
    assert lag_one(long_blocks) == pytest.approx(0.5, abs=0.06)
    assert abs(lag_one(single)) < 0.03
    default = monte_carlo(returns, method="block_bootstrap", n_simulations=10)
    assert default.block_length == pytest.approx(max(optimal_block_length(returns), optimal_block_length(returns**2)))
    assert default.block_length > 3


def test_probability_of_ruin_is_monotone_in_the_threshold():
    rng = np.random.default_rng(5)
    trades = rng.normal(0.0, 0.08, size=150)
    mc = monte_carlo(trades, method="bootstrap", n_simulations=5000, ruin_drawdown=0.4)
    thresholds = np.linspace(0.05, 1.0, 20)
    probabilities = [mc.probability_of_ruin_at(level) for level in thresholds]
    assert all(b <= a for a, b in zip(probabilities, probabilities[1:]))
    assert probabilities[0] == 1.0 and probabilities[-1] == 0.0
    assert mc.probability_of_ruin == mc.probability_of_ruin_at(0.4) == np.mean(mc.max_drawdown <= -0.4)
    assert 0.0 < mc.probability_of_ruin < 1.0


def test_a_ruined_account_stays_at_zero():
    trades = np.array([0.1, -1.0, 0.2, 0.3])
    mc = monte_carlo(trades, method="reshuffle", n_simulations=200, seed=3, keep_paths=True)
    assert (mc.final_equity == 0.0).all()
    assert (mc.max_drawdown == -1.0).all()
    assert mc.probability_of_ruin == 1.0
    after = np.argmax(mc.paths == 0.0, axis=1)
    assert all((row[index:] == 0.0).all() for row, index in zip(mc.paths, after))


# ============================================================================== determinism
def test_same_seed_same_bits_different_seed_different_draws():
    returns = np.random.default_rng(6).normal(0.0003, 0.01, size=400)
    for method in ("reshuffle", "bootstrap", "block_bootstrap"):
        first = monte_carlo(returns, method=method, n_simulations=300, seed=42)
        again = monte_carlo(returns, method=method, n_simulations=300, seed=42)
        other = monte_carlo(returns, method=method, n_simulations=300, seed=43)
        for name in ("final_equity", "max_drawdown", "sharpe"):
            np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
        assert first.bands.equals(again.bands)
        assert not np.array_equal(first.max_drawdown, other.max_drawdown)


@pytest.mark.parametrize("method", ["reshuffle", "bootstrap", "block_bootstrap"])
def test_results_do_not_depend_on_chunking_or_threads(method, monkeypatch):
    returns = np.random.default_rng(7).normal(0.0003, 0.01, size=250)
    whole = monte_carlo(returns, method=method, n_simulations=130, seed=9, block_length=7.0 if method ==
                        "block_bootstrap" else None, keep_paths=True)
    monkeypatch.setattr(montecarlo, "_BUFFER_BYTES", 8 * 130 * 17)  # chunks of 17 steps
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        chunked = monte_carlo(returns, method=method, n_simulations=130, seed=9, block_length=7.0 if method ==
                              "block_bootstrap" else None, keep_paths=True)
    finally:
        numba.set_num_threads(threads)
    for name in ("final_equity", "max_drawdown", "sharpe", "paths"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))
    assert whole.bands.equals(chunked.bands)


# ====================================================================== from a backtest Result
def test_trade_methods_use_the_closed_trades_of_a_result(run):
    trades = run.trades.filter(~pl.col("is_open"))
    equity = run.equity_values
    cash = run.sim_config.cash
    entry = trades["entry_bar"].to_numpy()
    before = np.where(entry >= 1, equity[np.maximum(entry - 1, 0)], cash)
    account_returns = trades["pnl"].to_numpy() / before
    mc = monte_carlo(run, method="reshuffle", n_simulations=400, seed=1)
    assert mc.n_steps == trades.height and mc.initial_equity == cash
    np.testing.assert_allclose(mc.final_equity, cash * np.prod(1 + account_returns), rtol=1e-12)
    assert mc.original["final_equity"] == pytest.approx(cash * np.prod(1 + account_returns), rel=1e-12)
    years = (run.data.timestamps[-1] - run.data.timestamps[0]) / (365.25 * 86_400e9)
    assert mc.periods_per_year == pytest.approx(trades.height / years)
    additive = monte_carlo(run, method="reshuffle", trade_model="additive", n_simulations=50)
    np.testing.assert_allclose(additive.final_equity, cash + trades["pnl"].sum(), rtol=1e-12)
    assert mc.bands["original"].to_numpy()[-1] == pytest.approx(mc.original["final_equity"], rel=1e-12)


def test_block_bootstrap_of_a_result_resamples_its_bar_returns(run):
    mc = monte_carlo(run, method="block_bootstrap", n_simulations=300, block_length=20, seed=2)
    cash = run.sim_config.cash
    assert mc.n_steps == run.equity_values.shape[0]
    assert mc.periods_per_year == periods_per_year_for(run.data.timestamps)
    assert mc.original["final_equity"] == run.equity_values[-1]
    reference = equity_metrics(np.r_[cash, run.equity_values], periods_per_year=mc.periods_per_year)
    assert mc.original["max_drawdown"] == pytest.approx(float(reference["max_drawdown"]), rel=1e-12)
    assert mc.original["sharpe"] == pytest.approx(float(reference["sharpe"]), rel=1e-12)
    assert mc.bands.height == mc.n_steps + 1 and mc.bands["p50"][0] == cash
    summary = mc.summary()
    assert summary["method"] == "block_bootstrap" and summary["block_length"] == 20.0
    assert set(summary) >= {"final_equity", "total_return", "max_drawdown", "sharpe", "original",
                            "probability_of_ruin"}


def test_a_result_without_closed_trades_is_rejected():
    data = bf.synth(n_assets=1, years=1, seed=4)
    never = np.zeros_like(data.close, dtype=bool)
    result = bf.from_signals(data, never, never)
    with pytest.raises(DataError, match="no closed trades"):
        monte_carlo(result, method="bootstrap")
    assert monte_carlo(result, method="block_bootstrap", n_simulations=20).probability_of_ruin == 0.0


# ================================================================================ block length
def test_optimal_block_length_follows_the_dependence():
    rng = np.random.default_rng(8)
    noise = rng.normal(size=20_000)
    assert optimal_block_length(noise) < 3.0
    ar = np.empty(20_000)
    ar[0] = noise[0]
    for t in range(1, 20_000):
        ar[t] = 0.7 * ar[t - 1] + noise[t]
    # Politis-White's optimum for an AR(1): b = (G / g) ** (2/3) n ** (1/3), G / g = 2 phi / (1 - phi^2)
    theory = (2 * 0.7 / (1 - 0.49)) ** (2 / 3) * 20_000 ** (1 / 3)
    assert optimal_block_length(ar) == pytest.approx(theory, rel=0.25)
    assert optimal_block_length(np.ones(100)) == 1.0
    assert optimal_block_length(np.arange(5.0)) == 1.0
    assert optimal_block_length(ar[:90]) <= math.ceil(min(3 * math.sqrt(90), 30))


# ================================================================================= bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n_simulations=0), ConfigError, "n_simulations must be a whole number >= 1"),
        (dict(n_simulations=-5), ConfigError, "n_simulations"),
        (dict(n_simulations=2.5), ConfigError, "n_simulations"),
        (dict(method="bootstrapp"), ConfigError, "did you mean 'bootstrap'"),
        (dict(trade_model="compund"), ConfigError, "did you mean 'compound'"),
        (dict(seed=-1), ConfigError, "seed"),
        (dict(ruin_drawdown=0.0), ConfigError, "ruin_drawdown"),
        (dict(ruin_drawdown=1.5), ConfigError, "ruin_drawdown"),
        (dict(quantiles=(0.5, 0.05)), ConfigError, "increasing"),
        (dict(quantiles=(0.5, 1.5)), ConfigError, "increasing"),
        (dict(block_length=5.0), ConfigError, "only applies to method='block_bootstrap'"),
        (dict(method="block_bootstrap", block_length=0.5), ConfigError, "block_length must be >= 1"),
        (dict(method="block_bootstrap", trade_model="additive"), ConfigError, "trade_model only applies"),
        (dict(initial_equity=0.0), ConfigError, "initial_equity"),
        (dict(periods_per_year=-1.0), ConfigError, "periods_per_year"),
    ],
)
def test_bad_settings_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        monte_carlo(np.array([0.01, -0.02, 0.03]), **kwargs)


def test_bad_data_is_rejected():
    with pytest.raises(DataError, match="got nan at index 2"):
        monte_carlo(np.array([0.01, 0.02, np.nan, 0.01]), method="bootstrap")
    with pytest.raises(DataError, match="returns must be finite"):
        monte_carlo(np.array([0.01, np.inf]), method="block_bootstrap")
    with pytest.raises(DataError, match="nothing to resample"):
        monte_carlo(np.array([]), method="reshuffle")
    with pytest.raises(DataError, match="need at least 2"):
        monte_carlo(np.array([0.01]), method="block_bootstrap")
    with pytest.raises(DataError, match="1-D"):
        monte_carlo(np.zeros((3, 3)), method="bootstrap")
    with pytest.raises(DataError, match="optimal|finite"):
        optimal_block_length([0.1, np.nan])

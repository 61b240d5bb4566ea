"""Tests of backforge.research.stats: published examples, hand-computed values, a brute-force CSCV
oracle, properties of PSR / MinTRL / DSR / PBO, determinism and bad input."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import polars as pl
import pytest

from backforge.errors import ConfigError, DataError
from backforge.research.stats import (
    EULER_GAMMA,
    binomial_table_nb,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    minimum_track_record_length,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_statistics,
    unrank_combinations_nb,
)

PHI = NormalDist()


def psr_by_hand(sr: float, n: int, skew: float = 0.0, kurt: float = 3.0, benchmark: float = 0.0) -> float:
    return PHI.cdf((sr - benchmark) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr * sr))


DOC = Path(__file__).resolve().parents[2] / "docs" / "research-statistics.md"


# ================================================================================ PSR / MinTRL
def test_psr_matches_the_formula_by_hand():
    assert probabilistic_sharpe_ratio(0.1, 250) == pytest.approx(PHI.cdf(0.1 * math.sqrt(249) / math.sqrt(1.005)),
                                                                 rel=1e-12)
    assert probabilistic_sharpe_ratio(0.1, 250, -1.0, 8.0, 0.02) == pytest.approx(
        psr_by_hand(0.1, 250, -1.0, 8.0, 0.02), rel=1e-12)
    # normal returns: the denominator is sqrt(1 + SR^2 / 2) (Lo 2002)
    assert probabilistic_sharpe_ratio(0.3, 40) == pytest.approx(
        PHI.cdf(0.3 * math.sqrt(39) / math.sqrt(1 + 0.045)), rel=1e-12)


def test_psr_is_a_half_at_the_benchmark_and_broadcasts():
    assert probabilistic_sharpe_ratio(0.05, 100, benchmark_sharpe=0.05) == 0.5
    values = probabilistic_sharpe_ratio(np.array([[0.0], [0.1]]), np.array([50, 500]))
    assert values.shape == (2, 2)
    assert values[0].tolist() == [0.5, 0.5]
    expected = [psr_by_hand(0.1, 50), psr_by_hand(0.1, 500)]
    np.testing.assert_allclose(values[1], expected, rtol=1e-12)
    assert isinstance(probabilistic_sharpe_ratio(0.1, 10), float)


def test_psr_is_monotone_in_sharpe_and_track_record_length():
    sharpes = np.linspace(-0.2, 0.4, 61)
    by_sharpe = probabilistic_sharpe_ratio(sharpes, 250, skew=-0.5, kurtosis=5.0)
    assert (np.diff(by_sharpe) > 0).all()
    lengths = np.arange(10, 2000, 10)
    assert (np.diff(probabilistic_sharpe_ratio(0.05, lengths)) > 0).all()  # above the benchmark: more is better
    assert (np.diff(probabilistic_sharpe_ratio(-0.05, lengths)) < 0).all()  # below it: more is worse
    # fat left tails lower the confidence in a positive Sharpe ratio
    assert probabilistic_sharpe_ratio(0.1, 250, -2.0, 10.0) < probabilistic_sharpe_ratio(0.1, 250)


def test_minimum_track_record_length_by_hand_and_consistent_with_psr():
    # Sharpe 1 a year on monthly returns, normal: 1 + (1 + SR^2/2) (z_0.95 / SR)^2 months
    sr = 1 / math.sqrt(12)
    z = PHI.inv_cdf(0.95)
    expected = 1 + (1 + sr * sr / 2) * (z / sr) ** 2
    assert minimum_track_record_length(sr) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(34.82, abs=0.005)  # ~2.9 years
    # at n = MinTRL the PSR is exactly the confidence level
    for sharpe, skew, kurt, benchmark, level in [(0.1, -1.0, 8.0, 0.0, 0.95), (0.3, 0.5, 4.0, 0.1, 0.99),
                                                  (0.05, 0.0, 3.0, -0.02, 0.9)]:
        length = minimum_track_record_length(sharpe, skew, kurt, benchmark, level)
        assert probabilistic_sharpe_ratio(sharpe, length, skew, kurt, benchmark) == pytest.approx(level, abs=1e-12)


def test_minimum_track_record_length_is_infinite_at_or_below_the_benchmark():
    assert minimum_track_record_length(0.1, benchmark_sharpe=0.1) == math.inf
    lengths = minimum_track_record_length(np.array([-0.1, 0.0, 0.2]))
    assert lengths[0] == math.inf and lengths[1] == math.inf and math.isfinite(lengths[2])
    # more confidence, fatter tails or a smaller edge need a longer record
    assert minimum_track_record_length(0.1, confidence=0.99) > minimum_track_record_length(0.1)
    assert minimum_track_record_length(0.1, -1.0, 8.0) > minimum_track_record_length(0.1)
    assert minimum_track_record_length(0.05) > minimum_track_record_length(0.1)


# ============================================================================ E[max] and DSR
def test_expected_max_sharpe_formula_and_properties():
    n, variance = 100, 0.5 / 250
    by_hand = math.sqrt(variance) * ((1 - EULER_GAMMA) * PHI.inv_cdf(1 - 1 / n)
                                     + EULER_GAMMA * PHI.inv_cdf(1 - 1 / (n * math.e)))
    assert expected_max_sharpe(n, variance) == pytest.approx(by_hand, rel=1e-12)
    assert expected_max_sharpe(1, 4.0) == 0.0
    assert expected_max_sharpe(50, 0.0) == 0.0
    values = [expected_max_sharpe(n, 1.0) for n in (2, 5, 10, 100, 1000, 10**6, 10**12)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0), rel=1e-12)


def test_expected_max_sharpe_approximates_the_simulated_maximum():
    rng = np.random.default_rng(11)
    for n in (10, 100, 1000):
        simulated = rng.standard_normal((4000, n)).max(axis=1).mean()
        assert expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.03)


def test_deflated_sharpe_reproduces_the_papers_numerical_example():
    # Bailey & Lopez de Prado (2014), section "A numerical example": annualized SR 2.5 over 5 years of
    # daily returns (T = 1250, 250 a year), skew -3, kurtosis 10, N = 100 trials, V[SR] = 1/2 a year:
    # SR0 = 0.1132 per day and DSR = 0.9004.
    result = deflated_sharpe_ratio(sharpe=2.5, n_obs=1250, skew=-3.0, kurtosis=10.0, n_trials=100,
                                   sharpe_variance=0.5, periods_per_year=250)
    assert result.benchmark_sharpe == pytest.approx(0.1132, abs=5e-5)
    assert result.deflated_sharpe == pytest.approx(0.9004, abs=5e-5)
    assert result.sharpe == pytest.approx(2.5 / math.sqrt(250), rel=1e-12)
    assert result.sharpe_variance == pytest.approx(0.5 / 250, rel=1e-12)
    assert float(result) == result.deflated_sharpe
    assert result.deflated_sharpe == pytest.approx(PHI.cdf(result.z_score), rel=1e-12)
    assert result.probabilistic_sharpe > result.deflated_sharpe
    assert set(result.summary()) >= {"deflated_sharpe", "benchmark_sharpe", "n_trials", "z_score"}


def test_deflated_sharpe_decreases_with_more_trials_and_more_dispersed_trials():
    common = dict(sharpe=0.1, n_obs=1000, skew=-0.5, kurtosis=6.0)
    by_trials = [deflated_sharpe_ratio(**common, n_trials=n, sharpe_variance=0.001).deflated_sharpe
                 for n in (1, 2, 10, 100, 1000, 10_000)]
    assert all(b < a for a, b in zip(by_trials, by_trials[1:]))
    by_variance = [deflated_sharpe_ratio(**common, n_trials=100, sharpe_variance=v).deflated_sharpe
                   for v in (0.0, 0.0005, 0.001, 0.004)]
    assert all(b < a for a, b in zip(by_variance, by_variance[1:]))
    # one trial, or trials that all agree: nothing to deflate, DSR = PSR(0)
    psr = probabilistic_sharpe_ratio(0.1, 1000, -0.5, 6.0)
    assert by_trials[0] == pytest.approx(psr, rel=1e-12)
    assert by_variance[0] == pytest.approx(psr, rel=1e-12)


def test_deflated_sharpe_from_returns_and_trial_sharpes():
    rng = np.random.default_rng(3)
    trials = rng.normal(0.0, 0.01, size=(750, 40))
    sharpes = trials.mean(axis=0) / trials.std(axis=0, ddof=1)
    best = trials[:, sharpes.argmax()]
    from_returns = deflated_sharpe_ratio(best, trial_sharpes=sharpes)
    moments = sharpe_statistics(best)
    from_stats = deflated_sharpe_ratio(sharpe=moments.sharpe, n_obs=750, skew=moments.skew,
                                       kurtosis=moments.kurtosis, n_trials=40,
                                       sharpe_variance=float(np.var(sharpes, ddof=1)))
    assert from_returns == from_stats
    assert from_returns.sharpe == pytest.approx(sharpes.max(), rel=1e-9)
    # the honest count of trials only lowers it
    honest = deflated_sharpe_ratio(best, trial_sharpes=sharpes, n_trials=400)
    assert honest.deflated_sharpe < from_returns.deflated_sharpe
    # annualized trial Sharpe ratios with periods_per_year give the same answer
    annual = deflated_sharpe_ratio(best, trial_sharpes=sharpes * math.sqrt(252), periods_per_year=252)
    assert annual.deflated_sharpe == pytest.approx(from_returns.deflated_sharpe, rel=1e-12)


def test_sharpe_statistics_match_numpy_and_pandas():
    rng = np.random.default_rng(5)
    returns = rng.standard_t(4, size=500) * 0.01 + 0.0005
    result = sharpe_statistics(returns)
    series = pd.Series(returns)
    assert result.sharpe == pytest.approx(returns.mean() / returns.std(ddof=1), rel=1e-9)
    assert result.skew == pytest.approx(series.skew(), rel=1e-9)
    assert result.kurtosis == pytest.approx(series.kurt() + 3.0, rel=1e-9)
    assert result.n_obs == 500


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: probabilistic_sharpe_ratio(0.1, 250, 0.0, 0.0), ConfigError, "excess kurtosis"),
        (lambda: probabilistic_sharpe_ratio(0.1, 1), ConfigError, "n_obs must be >= 2"),
        (lambda: probabilistic_sharpe_ratio(math.nan, 100), ConfigError, "sharpe must be finite"),
        (lambda: minimum_track_record_length(0.1, confidence=1.0), ConfigError, "confidence"),
        (lambda: minimum_track_record_length(0.1, skew=2.0, kurtosis=4.0), ConfigError, "at least"),
        (lambda: expected_max_sharpe(0, 1.0), ConfigError, "n_trials"),
        (lambda: expected_max_sharpe(2.5, 1.0), ConfigError, "n_trials"),
        (lambda: expected_max_sharpe("many", 1.0), ConfigError, "n_trials"),
        (lambda: expected_max_sharpe(10, -1.0), ConfigError, "sharpe_variance"),
        (lambda: deflated_sharpe_ratio(n_trials=10, sharpe_variance=1.0), ConfigError, "either returns"),
        (lambda: deflated_sharpe_ratio(np.ones(5) * 0.01, sharpe=0.1, n_trials=2, sharpe_variance=1.0),
         ConfigError, "either returns"),
        (lambda: deflated_sharpe_ratio(sharpe=0.1, n_trials=10, sharpe_variance=1.0), ConfigError, "n_obs"),
        (lambda: deflated_sharpe_ratio(sharpe=0.1, n_obs=100, n_trials=10), ConfigError, "sharpe_variance or"),
        (lambda: deflated_sharpe_ratio(sharpe=0.1, n_obs=100, sharpe_variance=0.1), ConfigError, "n_trials"),
        (lambda: deflated_sharpe_ratio(sharpe=0.1, n_obs=100, trial_sharpes=[0.1, 0.2, 0.0], n_trials=2),
         ConfigError, "cannot be smaller"),
        (lambda: deflated_sharpe_ratio(sharpe=0.1, n_obs=100, trial_sharpes=[0.1]), ConfigError, "at least 2"),
        (lambda: sharpe_statistics([0.01, math.nan, 0.02]), DataError, "index 1"),
        (lambda: sharpe_statistics([0.01, -1.5, 0.02]), DataError, "> -1"),
        (lambda: sharpe_statistics([0.01]), DataError, "at least 2"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ======================================================================================= PBO
def pbo_reference(matrix: np.ndarray, n_splits: int, metric: str) -> dict[str, np.ndarray]:
    """The CSCV procedure of Bailey et al. written plainly: rows sliced per combination, pandas ranks."""
    n_rows, n_strategies = matrix.shape
    block = n_rows // n_splits
    used = matrix[n_rows - n_splits * block:]
    blocks = [used[i * block:(i + 1) * block] for i in range(n_splits)]

    def score(rows: np.ndarray) -> np.ndarray:
        if metric == "mean":
            return rows.mean(axis=0)
        std = rows.std(axis=0, ddof=1)
        return np.where(std > 1e-13, rows.mean(axis=0) / np.where(std > 0, std, 1.0), 0.0)

    out: dict[str, list] = {"best": [], "is": [], "oos": [], "omega": [], "logit": []}
    for combination in itertools.combinations(range(n_splits), n_splits // 2):
        rest = [i for i in range(n_splits) if i not in combination]
        in_sample = score(np.vstack([blocks[i] for i in combination]))
        out_sample = score(np.vstack([blocks[i] for i in rest]))
        best = int(np.argmax(in_sample))
        rank = pd.Series(out_sample).rank(method="average").iloc[best]
        omega = rank / (n_strategies + 1)
        out["best"].append(best)
        out["is"].append(in_sample[best])
        out["oos"].append(out_sample[best])
        out["omega"].append(omega)
        out["logit"].append(math.log(omega / (1 - omega)))
    return {key: np.asarray(value) for key, value in out.items()}


@pytest.mark.parametrize("metric", ["sharpe", "mean"])
def test_pbo_matches_a_brute_force_reference(metric):
    rng = np.random.default_rng(21)
    matrix = rng.normal(0.0002, 0.01, size=(63, 7)) + rng.normal(0, 0.002, size=(1, 7))
    matrix[:, 3] = matrix[:, 2]  # ties
    result = probability_of_backtest_overfitting(matrix, n_splits=6, metric=metric)
    reference = pbo_reference(matrix, 6, metric)
    assert result.n_combinations == 20 and not result.sampled and result.n_rows_used == 60
    np.testing.assert_array_equal(result.best, reference["best"])
    np.testing.assert_allclose(result.is_performance, reference["is"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(result.oos_performance, reference["oos"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(result.relative_ranks, reference["omega"], rtol=1e-12)
    np.testing.assert_allclose(result.logits, reference["logit"], rtol=1e-9, atol=1e-12)
    assert result.pbo == np.mean(reference["logit"] <= 0)
    assert result.probability_of_loss == np.mean(reference["oos"] < 0)
    slope, intercept = np.polyfit(reference["is"], reference["oos"], 1)
    assert result.degradation_slope == pytest.approx(slope, rel=1e-7)
    assert result.degradation_intercept == pytest.approx(intercept, rel=1e-7, abs=1e-12)


def test_pbo_is_zero_when_one_strategy_dominates_every_period():
    rng = np.random.default_rng(1)
    matrix = rng.normal(0.0, 0.01, size=(800, 30))
    matrix[:, 11] = matrix.max(axis=1) + 0.0005
    for metric in ("sharpe", "mean"):
        result = probability_of_backtest_overfitting(matrix, n_splits=16, metric=metric)
        assert result.pbo == 0.0
        assert (result.best == 11).all()
        assert (result.relative_ranks == 30 / 31).all()


def test_pbo_of_skill_less_strategies_averages_one_half():
    rng = np.random.default_rng(2)
    values = [probability_of_backtest_overfitting(rng.normal(size=(240, 20)), n_splits=8).pbo for _ in range(150)]
    assert np.mean(values) == pytest.approx(0.5, abs=0.05)


def test_pbo_is_one_when_in_sample_winners_must_lose_out_of_sample():
    # every strategy sums to zero: the in-sample best is the out-of-sample worst (mean) and degradation
    # is perfect (slope -1)
    rng = np.random.default_rng(4)
    noise = rng.normal(0.0, 0.01, size=(480, 25))
    zero_sum = noise - noise.mean(axis=0)
    result = probability_of_backtest_overfitting(zero_sum, n_splits=12, metric="mean")
    assert result.pbo == 1.0
    assert (result.relative_ranks == 1 / 26).all()
    assert result.degradation_slope == pytest.approx(-1.0, rel=1e-9)
    assert result.probability_of_loss == 1.0
    assert probability_of_backtest_overfitting(zero_sum, n_splits=12).pbo > 0.9


def test_pbo_drops_leading_rows_that_do_not_fill_a_block_and_accepts_polars():
    rng = np.random.default_rng(6)
    matrix = rng.normal(size=(103, 5))
    result = probability_of_backtest_overfitting(matrix, n_splits=10)
    trimmed = probability_of_backtest_overfitting(matrix[3:], n_splits=10)
    assert result.n_rows_used == 100 and result.block_rows == 10
    np.testing.assert_array_equal(result.logits, trimmed.logits)
    frame = pl.DataFrame({f"fast_{i}": matrix[:, i] for i in range(5)})
    from_frame = probability_of_backtest_overfitting(frame, n_splits=10)
    np.testing.assert_array_equal(from_frame.logits, result.logits)
    assert from_frame.columns == tuple(f"fast_{i}" for i in range(5))
    assert from_frame.summary()["n_combinations"] == math.comb(10, 5)


def test_pbo_samples_combinations_deterministically_when_capped():
    rng = np.random.default_rng(8)
    matrix = rng.normal(size=(400, 12))
    first = probability_of_backtest_overfitting(matrix, n_splits=20, max_combinations=500, seed=3)
    again = probability_of_backtest_overfitting(matrix, n_splits=20, max_combinations=500, seed=3)
    other = probability_of_backtest_overfitting(matrix, n_splits=20, max_combinations=500, seed=4)
    assert first.sampled and first.n_combinations == 500 and first.n_combinations_total == math.comb(20, 10)
    np.testing.assert_array_equal(first.logits, again.logits)
    assert first.pbo == again.pbo
    assert not np.array_equal(first.logits, other.logits)
    # without a cap, every combination, in lexicographic order
    full = probability_of_backtest_overfitting(matrix, n_splits=8)
    assert not full.sampled and full.n_combinations == 70


def test_unranking_matches_itertools_order():
    combinations = np.array(list(itertools.combinations(range(10), 5)))
    ranks = np.arange(len(combinations), dtype=np.int64)
    np.testing.assert_array_equal(unrank_combinations_nb(ranks, 10, 5, binomial_table_nb(10)), combinations)
    table = binomial_table_nb(64)
    assert table[64, 32] == math.comb(64, 32)
    last = unrank_combinations_nb(np.array([math.comb(64, 32) - 1], dtype=np.int64), 64, 32, table)
    assert last[0].tolist() == list(range(32, 64))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(n_splits=7), ConfigError, "even"),
        (dict(n_splits=0), ConfigError, "even"),
        (dict(n_splits=66), ConfigError, "from 2 to 64"),
        (dict(metric="sharp"), ConfigError, "did you mean 'sharpe'"),
        (dict(max_combinations=0), ConfigError, "max_combinations"),
        (dict(seed=-1), ConfigError, "seed"),
        (dict(n_splits=64), DataError, "too few"),
    ],
)
def test_pbo_rejects_bad_settings(kwargs, error, match):
    matrix = np.random.default_rng(0).normal(size=(100, 4))
    with pytest.raises(error, match=match):
        probability_of_backtest_overfitting(matrix, **kwargs)


def test_pbo_rejects_bad_matrices():
    with pytest.raises(DataError, match="row 5, column 1"):
        matrix = np.zeros((50, 3))
        matrix[5, 1] = np.nan
        probability_of_backtest_overfitting(matrix, n_splits=4)
    with pytest.raises(DataError, match="at least 2 trials"):
        probability_of_backtest_overfitting(np.zeros((50, 1)), n_splits=4)
    with pytest.raises(DataError, match="2-D"):
        probability_of_backtest_overfitting(np.zeros(50), n_splits=4)

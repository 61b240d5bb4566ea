"""Synthetic data: gbm() output pinned bit-for-bit; the per-asset generator, jumps, regimes, fundamentals."""

from __future__ import annotations

import numpy as np
import pytest

from backforge.data.synth import gbm, synthetic_fundamentals, synthetic_market, synthetic_series
from backforge.errors import ConfigError

# gbm() is the default data of demos and benchmarks across backforge: its output must never change
PINNED = {
    (3, 2, "1d", 7, "equities"): "d0a5234a027dba1d9b836aeec73154aa7c41baa5a559ddbbc61514c6759243e4",
    (100, 2, "1d", 7, "equities"): "bbd9908366b66034013029af262664581e5b54d9cc70ef3f6e0c7444d7f70f9a",
    (2, 1, "1h", 7, "equities"): "3eb8a687beaf5ced0bc859de71e5b3322d76a699b12bf7673bcf2669496a9b9e",
    (5, 3, "5min", 11, "crypto"): "888085c54af443b71995fc99dcb55dc45e74771f0a96107b9a322ad4ae9fe80f",
}


@pytest.mark.parametrize("args", list(PINNED), ids=str)
def test_gbm_output_is_pinned(args) -> None:
    n, years, bar, seed, calendar = args
    assert gbm(n, years, bar=bar, seed=seed, calendar=calendar).fingerprint() == PINNED[args]


@pytest.mark.slow
def test_gbm_benchmark_workload_is_pinned() -> None:
    md = gbm(7, 10, bar="1min", seed=7)
    assert md.n_bars * md.n_assets == 6_879_600
    assert md.fingerprint() == "79ba063933a8493cde519f6fb29c34d7c889c63e24ba76fb2cacc7af72bfe8e0"


def test_synthetic_assets_are_independent_of_the_asset_count() -> None:
    small = synthetic_market(2, 1, bar="1h", seed=3)
    large = synthetic_market(5, 1, bar="1h", seed=3)
    np.testing.assert_array_equal(small.close, large.close[:, :2])
    np.testing.assert_array_equal(synthetic_series(4, 1, bar="1h", seed=3).close[:, 0], large.close[:, 4])
    assert synthetic_market(2, 1, seed=3).fingerprint() == synthetic_market(2, 1, seed=3).fingerprint()
    assert synthetic_market(2, 1, seed=3).fingerprint() != synthetic_market(2, 1, seed=4).fingerprint()


def test_jumps_and_regimes_change_returns_but_keep_the_base_draws() -> None:
    base = synthetic_series(0, 4, seed=9)
    jumpy = synthetic_series(0, 4, seed=9, jump_intensity=6, jump_mean=-0.05, jump_volatility=0.02)
    calm_stormy = synthetic_series(0, 4, seed=9, volatility_regimes=(0.5, 3.0), regime_duration="120d")
    for md in (base, jumpy, calm_stormy):
        md.validate()
    r0, r1 = (np.diff(np.log(m.close[:, 0])) for m in (base, jumpy))
    jumps = np.abs(r1 - r0) > 1e-12
    assert 10 <= jumps.sum() <= 45  # about 6 a year over 4 years
    assert np.median((r1 - r0)[jumps]) < -0.02
    np.testing.assert_array_equal(base.volume, jumpy.volume)  # same base draws
    r2 = np.diff(np.log(calm_stormy.close[:, 0]))
    rolling = np.array([r2[i:i + 20].std() for i in range(0, len(r2) - 20, 20)])
    assert rolling.max() / rolling.min() > 3  # distinct volatility regimes


def test_invalid_parameters() -> None:
    with pytest.raises(ConfigError, match="jump_intensity"):
        synthetic_series(0, 1, jump_intensity=-1)
    with pytest.raises(ConfigError, match="regime multipliers"):
        synthetic_series(0, 1, volatility_regimes=(1.0, 0.0))
    with pytest.raises(ConfigError, match="n_assets"):
        synthetic_market(0, 1)


def test_synthetic_fundamentals_are_quarterly_and_lagged() -> None:
    f = synthetic_fundamentals(3, 2, seed=5)
    assert f.height == 3 * 5 * 8
    lag = (f["published_at"] - f["period_end"]).dt.total_days()
    assert lag.min() >= 20 and lag.max() <= 51
    assert f.equals(synthetic_fundamentals(3, 2, seed=5))
    eps = f.filter(f["field"] == "eps")["value"].to_numpy()
    assert np.isfinite(eps).all()

"""The sweep takes the engine's SimConfig (the same account as from_signals) and the engine's rules."""

from __future__ import annotations

import numpy as np
import pytest

import backforge as bf
from backforge.engine import kernels
from backforge.research import sweep
from backforge.research.sweep import SWEEP_CONFIG, sweep_sma_cross
from backforge.results import metrics


@pytest.fixture(scope="module")
def data() -> bf.MarketData:
    return bf.synth(n_assets=2, years=2, bar="1d", seed=8)


def test_a_config_gives_the_same_table_as_the_shorthands(data: bf.MarketData) -> None:
    grid = dict(fast=[5, 10], slow=[20, 40], stop_loss=[float("nan"), 0.05], asset=data.assets[1])
    shorthand = sweep_sma_cross(data, fee_rate=0.001, slippage_bps=2.0, lot_size=1.0, cash=20_000.0, **grid)
    config = bf.SimConfig(fee_rate={data.assets[1]: 0.001}, slippage_bps=2.0, cash=20_000.0)  # lot_size 1: whole units
    configured = sweep_sma_cross(data, config=config, **grid)
    assert configured.equals(shorthand)
    # a shorthand overrides the config's field
    assert sweep_sma_cross(data, config=config, lot_size=0.0, **grid).equals(
        sweep_sma_cross(data, fee_rate=0.001, slippage_bps=2.0, cash=20_000.0, **grid))
    assert SWEEP_CONFIG.lot_size == 0.0  # no config: fractional units, the documented default


def test_fields_a_sweep_does_not_model_are_refused(data: bf.MarketData) -> None:
    with pytest.raises(bf.ConfigError, match="leverage must keep its default") as info:
        sweep_sma_cross(data, fast=[5], slow=[20], asset=data.assets[0], config=bf.SimConfig(leverage=2.0))
    assert info.value.field == "config.leverage"
    with pytest.raises(bf.ConfigError, match="must be a SimConfig"):
        sweep_sma_cross(data, fast=[5], slow=[20], asset=data.assets[0], config={"cash": 1.0})


def test_the_sweep_uses_the_engine_and_metrics_definitions() -> None:
    assert sweep.round_lot_nb is kernels.round_lot_nb and sweep.EPS is kernels.EPS
    assert sweep.ratio_nb is metrics.ratio_nb
    names = sweep.SWEEP_METRIC_NAMES
    assert names[sweep.ROW_SHARPE] == metrics.EQUITY_METRIC_NAMES[metrics.SHARPE] == "sharpe"
    assert names[sweep.ROW_MAX_DRAWDOWN] == metrics.EQUITY_METRIC_NAMES[metrics.MAX_DRAWDOWN]
    assert sweep.N_METRICS == len(names) == 12
    assert not hasattr(sweep, "_ratio_nb")
    assert np.isinf(metrics.ratio_nb(1.0, 0.0, 1.0))

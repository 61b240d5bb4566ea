"""Options visible in the signatures, configs as one argument, and OHLCV frames accepted directly."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

import backforge as bf
from backforge.engine.config import SIGNAL_OPTIONS, SIM_OPTIONS
from backforge.strategy.compiler import run_portfolio


@pytest.fixture(scope="module")
def data() -> bf.MarketData:
    return bf.synth(n_assets=1, years=1, seed=4)


def signals(data: bf.MarketData):
    close = data.close[:, 0]
    fast = np.convolve(close, np.ones(5) / 5)[: len(close)]
    return fast > close, fast < close


@pytest.mark.parametrize(("function", "names"), [
    (bf.from_signals, SIM_OPTIONS + SIGNAL_OPTIONS + ("config", "signal_config")),
    (bf.Simulator, SIM_OPTIONS + SIGNAL_OPTIONS + ("config", "signal_config")),
    (bf.simulate, SIM_OPTIONS + ("config",)),
])
def test_every_config_field_is_a_keyword_of_the_signature(function, names) -> None:
    parameters = inspect.signature(function).parameters
    missing = [name for name in names if name not in parameters]
    assert not missing
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in names)


def test_a_config_and_keyword_overrides_give_the_same_run(data: bf.MarketData) -> None:
    up, down = signals(data)
    plain = bf.from_signals(data, up, down, fee_rate=0.001, cash=5_000, stop_loss=0.05)
    configured = bf.from_signals(data, up, down, config=bf.SimConfig(fee_rate=0.001, cash=1), cash=5_000,
                                 signal_config=bf.SignalConfig(stop_loss=0.05))
    assert np.array_equal(plain.equity_values, configured.equity_values)
    assert plain.sim_config == configured.sim_config and plain.signal_config == configured.signal_config
    assert configured.fills.height > 0


def test_unknown_options_and_wrong_configs_are_named(data: bf.MarketData) -> None:
    up, down = signals(data)
    with pytest.raises(bf.ConfigError, match="unknown option 'fee_rat'; did you mean 'fee_rate'"):
        bf.from_signals(data, up, down, config=bf.SimConfig(), fee_rat=0.1)
    with pytest.raises(bf.ConfigError, match="unknown option 'stop_los'; did you mean 'stop_loss'"):
        bf.Simulator(["X"], stop_los=0.1)
    with pytest.raises(bf.ConfigError, match="must be a SimConfig, got dict") as info:
        bf.from_signals(data, up, down, config={"cash": 1})
    assert info.value.field == "config"
    with pytest.raises(bf.ConfigError, match="belong on each program.submit"):
        bf.simulate(data, bf.OrderProgram(), stop_loss=0.05)


def test_pandas_and_polars_frames_run_like_market_data(data: bf.MarketData) -> None:
    up, down = signals(data)
    reference = bf.from_signals(data, up, down, fee_rate=0.001)
    polars_frame = data.to_polars()
    if "symbol" in polars_frame.columns:
        polars_frame = polars_frame.drop("symbol")
    pandas_frame = polars_frame.to_pandas().set_index("timestamp")
    pandas_frame.columns = [c.capitalize() for c in pandas_frame.columns]  # backtesting.py's spelling
    for frame in (polars_frame, pandas_frame):
        result = bf.from_signals(frame, up, down, fee_rate=0.001)
        assert np.array_equal(result.equity_values, reference.equity_values)
        assert result.data.assets == ("asset",)
    program = bf.OrderProgram()
    program.submit(bar=0, asset=0, side="buy", size=3)
    assert bf.simulate(pandas_frame, program).fills["qty"].to_list() == [3.0]


def test_a_long_frame_and_the_strategy_runner(data: bf.MarketData) -> None:
    two = bf.synth(n_assets=2, years=1, seed=5)
    long = two.to_polars()
    assert "symbol" in long.columns
    assert bf.data.market.MarketData.coerce(long).assets == two.assets
    portfolio = {"name": "x", "universe": list(two.assets), "strategies": [{"name": "s", "condition": {
        "lhs": "close", "op": ">", "rhs": {"sma": {"window": 10}}}, "action": {"buy": {}}}]}
    from_frame = run_portfolio(portfolio, long)
    from_data = run_portfolio(portfolio, two)
    assert np.array_equal(from_frame.equity_values, from_data.equity_values)


def test_other_inputs_are_refused_with_the_fix(data: bf.MarketData) -> None:
    with pytest.raises(bf.DataError, match="expected MarketData or a pandas/Polars OHLCV DataFrame, got Series"):
        bf.from_signals(pd.Series([1.0, 2.0]), [True, False])

"""``backforge.strategy.inputs``: a strategy file checked against its data without computing an indicator.

* the validity masks equal where the compiled indicators have values, for random nested indicators
  (bar and duration windows, every warm-up rule) on data with gaps (hypothesis), and the hand-counted
  warm-ups of ``docs/indicators.md``;
* ``check_portfolio`` gives ``compile_portfolio``'s verdict on every example file (the fuzz tests of
  ``test_language.py`` hold the two to the same error on random and mutated files);
* ``backforge validate`` loads no numba, and a nested warm-up longer than the data is one line, exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backforge.data.market import MarketData
from backforge.errors import BackforgeError
from backforge.strategy.compiler import _Compiler, compile_portfolio
from backforge.strategy.inputs import Masks, check_portfolio, load_data
from backforge.strategy.schema import load_portfolio

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400 * 10**9
ASSETS = ("AAA", "BBB", "CCC")


def _market(n_bars: int, gaps: np.ndarray, seed: int) -> MarketData:
    """Positive daily bars (weekends skipped) with each asset missing where ``gaps`` is True."""
    rng = np.random.default_rng(seed)
    days = np.flatnonzero(np.arange(n_bars * 2) % 7 < 5)[:n_bars]
    ts = (days + 18_000).astype(np.int64) * DAY
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, len(ASSETS))), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0.001, 0.01, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.001, 0.01, close.shape))
    volume = rng.uniform(1e3, 1e4, close.shape)
    arrays = [a.copy() for a in (open_, high, low, close, volume)]
    for a in arrays:
        a[gaps] = np.nan
    o, h, lo, c, v = arrays
    return MarketData.from_arrays(ts, open=o, high=h, low=lo, close=c, volume=v, assets=ASSETS)


def _node(config: dict):
    portfolio = load_portfolio({"name": "m", "universe": list(ASSETS), "strategies": [
        {"name": "s", "condition": {"lhs": config, "op": ">", "rhs": 0}, "action": {"buy": {}}}]})
    return portfolio, portfolio.strategies[0].condition.lhs


BAR_WINDOWS = st.integers(2, 12)
DURATIONS = st.sampled_from(["3d", "5d", "8d", "12d"])
WINDOWS = st.one_of(BAR_WINDOWS, DURATIONS)
# Values that are NaN for a reason of value, not of warm-up (a z-score of a flat window, a return on a zero
# base) are kept out: those kinds read prices or smooth averages of prices only (positive and random), and
# every window holds at least 2 bars.
WINDOWED = ("sma", "ema", "wma", "stddev", "rolling_max", "rolling_min", "lag", "rsi")
VALUE_NAN = ("zscore", "returns", "rate_of_change", "pct_change")
PRICES = st.sampled_from(["close", "open", "high", {"price": {"field": "close", "asset": "BBB"}}])
LEAVES = st.one_of(PRICES, st.just({"const": 2.0}))
SMOOTH = st.one_of(PRICES, st.builds(lambda kind, w, of: {kind: {"window": w, "of": of}}, st.sampled_from(["sma", "ema"]),
                                     WINDOWS, PRICES))


def _nodes(children):
    windowed = st.one_of(
        st.builds(lambda kind, w, of: {kind: {"window": w, "of": of}}, st.sampled_from(WINDOWED), WINDOWS, children),
        st.builds(lambda kind, w, of: {kind: {"window": w, "of": of}}, st.sampled_from(VALUE_NAN[1:]), WINDOWS, SMOOTH),
        # a duration can hold a single bar (a Monday's "3d"), whose z-score is NaN: bar windows only
        st.builds(lambda w, of: {"zscore": {"window": w, "of": of}}, BAR_WINDOWS, SMOOTH))
    macd_bars = st.builds(lambda f, extra, sig, out, of: {"macd": {"fast": f, "slow": f + extra, "signal": sig,
                                                                   "output": out, "of": of}},
                          st.integers(2, 5), st.integers(1, 5), st.integers(2, 5),
                          st.sampled_from(["line", "signal", "histogram"]), children)
    macd_durations = st.builds(lambda out, of: {"macd": {"fast": "3d", "slow": "6d", "signal": "4d", "output": out,
                                                         "of": of}},
                               st.sampled_from(["line", "signal", "histogram"]), children)
    bollinger = st.builds(lambda w, out, of: {"bollinger": {"window": w, "output": out, "of": of}}, WINDOWS,
                          st.sampled_from(["upper", "middle", "lower"]), children)
    arithmetic = st.builds(lambda kind, a, b: {kind: {"args": [a, b]}}, st.sampled_from(["add", "sub", "mul", "min", "max"]),
                           children, children)
    unary = st.builds(lambda kind, of: {kind: {"of": of}}, st.sampled_from(["abs", "neg", "rank", "percentile"]), children)
    return st.one_of(windowed, macd_bars, macd_durations, bollinger, arithmetic, unary)


BAR_DATA = st.one_of(
    st.builds(lambda kind, w, asset: {kind: {"window": w, **({"asset": asset} if asset else {})}},
              st.sampled_from(["atr", "vwap", "volume_average"]), WINDOWS, st.sampled_from([None, "CCC"])))
NODES = st.recursive(st.one_of(LEAVES, BAR_DATA), _nodes, max_leaves=4)


@settings(deadline=None, database=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(config=NODES, n_bars=st.integers(30, 90), gap_rate=st.sampled_from([0.0, 0.1, 0.3]), seed=st.integers(0, 10**6))
def test_masks_are_where_the_compiled_indicators_have_values(config, n_bars, gap_rate, seed) -> None:
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(size=(n_bars, len(ASSETS))) < gap_rate
    gaps[:3] = False  # every asset has bars
    market = _market(n_bars, gaps, seed)
    portfolio, node = _node(config)
    try:
        values = _Compiler(portfolio, market).value(node, "x")
    except BackforgeError:
        return  # a window longer than the data: both refuse it (test_language's fuzz tests hold them equal)
    mask = Masks(portfolio, market).value(node, "x")
    expected = ~np.isnan(values)
    assert mask.dtype == bool and mask.shape == values.shape
    assert np.array_equal(mask, expected), (config, np.argwhere(mask != expected)[:5].tolist())


@pytest.mark.parametrize(("config", "hidden"), [
    ({"sma": {"window": 10}}, 9), ({"ema": {"window": 10}}, 9), ({"rsi": {"window": 14}}, 14),
    ({"returns": {"window": 5}}, 5), ({"lag": {"window": 3}}, 3), ({"atr": {"window": 14}}, 14),
    ({"vwap": {"window": 10}}, 9), ({"bollinger": {"window": 20}}, 19),
    ({"macd": {"fast": 12, "slow": 26, "signal": 9}}, 33),  # TA-Lib's MACD lookback, docs/indicators.md
    ({"sma": {"window": 20, "of": {"sma": {"window": 10}}}}, 28),  # nested warm-ups add up
    ({"rsi": {"window": 5, "of": {"lag": {"window": 2}}}}, 7),
])
def test_hand_counted_warm_ups_on_gapless_data(config, hidden) -> None:
    market = _market(120, np.zeros((120, 3), dtype=bool), seed=1)
    portfolio, node = _node(config)
    mask = Masks(portfolio, market).value(node, "x")
    assert (~mask).sum(axis=0).tolist() == [hidden] * 3
    assert not mask[:hidden].any() and mask[hidden:].all()


def test_a_gap_does_not_count_as_a_bar_of_the_window() -> None:
    gaps = np.zeros((40, 3), dtype=bool)
    gaps[2:6, 0] = True  # AAA misses 4 bars inside SMA(5)'s first window
    market = _market(40, gaps, seed=2)
    portfolio, node = _node({"sma": {"window": 5}})
    mask = Masks(portfolio, market).value(node, "x")
    assert np.flatnonzero(mask[:, 0])[0] == 8  # bars 0, 1, 6, 7, 8 are its first five
    assert np.flatnonzero(mask[:, 1])[0] == 4


def _example_configs():
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        if "events" in (config.get("data") or {}):
            continue
        yield pytest.param(path, id=path.stem)


@pytest.mark.parametrize("path", list(_example_configs()))
def test_every_example_checks_as_it_compiles(path: Path) -> None:
    portfolio = load_portfolio(path)
    data = load_data(portfolio, base=path.parent)
    compiled = compile_portfolio(portfolio, data, start=portfolio.data.start, end=portfolio.data.end)
    checked = check_portfolio(portfolio, data, start=portfolio.data.start, end=portfolio.data.end)
    assert (checked.n_strategies, checked.n_assets, checked.n_bars) == (len(portfolio.strategies), compiled.series.shape[0] and
                                                                        len(portfolio.universe), compiled.data.n_bars)
    assert checked.n_indicators == len(compiled.nodes)  # the same data-only nodes, visited once each


def test_validate_loads_no_numba_and_refuses_a_nested_warm_up_in_one_line(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "nested.yaml"
    bad.write_text(yaml.safe_dump({"name": "nested", "universe": ["AAA"], "data": {"years": 1}, "strategies": [
        {"name": "s", "condition": {"lhs": {"sma": {"window": 200, "of": {"sma": {"window": 200}}}}, "op": ">",
                                    "rhs": 0}, "action": {"buy": {}}}]}))
    script = ("import sys\nfrom backforge.cli import main\nsys.argv = ['backforge', 'validate', sys.argv[1]]\n"
              "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
              "print('numba' in sys.modules, code)")
    proc = subprocess.run([sys.executable, "-c", script, str(bad)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.stdout.split() == ["False", "2"], proc.stdout + proc.stderr  # exit 2, and numba never loaded
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: strategies[0].condition.lhs.window: window of 200 bars is longer than its input's 53 valid "
        "bars (the inner indicator's warm-up leaves 53 of 252)"], proc.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_mistake_the_data_reveals_names_the_file(command: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from backforge.cli import app

    bad = tmp_path / "long.yaml"
    bad.write_text(yaml.safe_dump({"name": "long", "universe": ["AAA"], "data": {"years": 1}, "strategies": [
        {"name": "s", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 500}}},
         "action": {"buy": {}}}]}))
    extra = ["--out", str(tmp_path / "runs")] if command == "run" else []
    result = CliRunner().invoke(app, [command, str(bad), *extra])
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (f"error: {bad}: strategies[0].condition.rhs.window: window of 500 bars is "
                                               "longer than the data (252 bars)")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing half-written

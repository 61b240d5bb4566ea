"""Streaming indicators equal the batch kernels bit for bit — every kind, bar windows and duration windows, on
data with NaN holes and irregular timestamps, pushed one bar at a time and in random blocks — and a ring
buffer holds the window only (memory bounded by the window, not by the data's length)."""

from __future__ import annotations

import numpy as np
import pytest

from backforge.strategy import indicators as ind
from backforge.strategy.streaming import STREAMING_KINDS, WindowStream

MIN = 60_000_000_000


def _data(n: int, seed: int, *, holes: float = 0.15):
    rng = np.random.default_rng(seed)
    gaps = rng.choice([1, 1, 1, 2, 5, 30], size=n)  # irregular timestamps: minutes, with gaps
    ts = np.cumsum(gaps).astype(np.int64) * MIN
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(n, 3)), axis=0))
    close[:, 2] = np.round(close[:, 2])  # flat runs (exact zero variance, equal extremes)
    high = close * (1 + rng.uniform(0, 0.01, size=close.shape))
    low = close * (1 - rng.uniform(0, 0.01, size=close.shape))
    volume = rng.integers(0, 1000, size=close.shape).astype(float)
    hole = rng.random(close.shape) < holes
    hole[:5, 1] = True  # an asset that starts late
    for a in (close, high, low, volume):
        a[hole] = np.nan
    close[rng.random(close.shape) < 0.02] = np.nan  # a few bars with high/low but no close
    return ts, high, low, close, volume


def _batch(kind, window, ts, h, l, c, v, num_std=2.0):
    if kind == "atr":
        return ind.atr(h, l, c, ts, window)
    if kind == "vwap":
        return ind.vwap(h, l, c, v, ts, window)
    if kind == "macd":
        return np.stack(ind.macd(c, ts, *window))
    if kind == "bollinger":
        return np.stack(ind.bollinger(c, ts, window, num_std=num_std))
    fn = {"sma": ind.sma, "rolling_sum": ind.rolling_sum, "volume_average": ind.volume_average, "ema": ind.ema,
          "wma": ind.wma, "rsi": ind.rsi, "stddev": ind.stddev, "zscore": ind.zscore, "rolling_max": ind.rolling_max,
          "rolling_min": ind.rolling_min, "lag": ind.lag, "returns": ind.returns, "rate_of_change": ind.rate_of_change,
          "pct_change": ind.pct_change}[kind]
    return fn(v if kind == "volume_average" else c, ts, window)


def _stream(kind, window, ts, h, l, c, v, blocks, num_std=2.0):
    s = WindowStream(kind, window, c.shape[1], num_std=num_std)
    parts = []
    for lo, hi in zip(blocks[:-1], blocks[1:]):
        sl = slice(lo, hi)
        if kind == "atr":
            parts.append(s.push(h[sl], ts[sl], l[sl], c[sl]))
        elif kind == "vwap":
            parts.append(s.push(h[sl], ts[sl], l[sl], c[sl], v[sl]))
        else:
            parts.append(s.push((v if kind == "volume_average" else c)[sl], ts[sl]))
    return np.concatenate(parts, axis=-2), s


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Same NaNs and bit-identical numbers (not merely close)."""
    na, nb = np.isnan(a), np.isnan(b)
    return a.shape == b.shape and np.array_equal(na, nb) and np.array_equal(a[~na].view(np.int64), b[~nb].view(np.int64))


WINDOWED = ["sma", "rolling_sum", "volume_average", "ema", "wma", "rsi", "stddev", "zscore", "bollinger", "rolling_max",
            "rolling_min", "lag", "returns", "rate_of_change", "pct_change", "atr", "vwap"]
CASES = [(k, w) for k in WINDOWED for w in (1 if k not in ("rsi",) else 2, 7, "45min", "1d")]
CASES += [("macd", (3, 7, 4)), ("macd", (12, 26, 9)), ("macd", ("20min", "1h", "30min")), ("macd", ("1h", "1d", "2h"))]


@pytest.mark.parametrize(("kind", "window"), CASES, ids=[f"{k}-{w}" for k, w in CASES])
def test_streaming_equals_batch(kind, window):
    ts, h, l, c, v = _data(1400, seed=hash((kind, str(window))) % 1000)
    expected = _batch(kind, window, ts, h, l, c, v)
    one_by_one, _ = _stream(kind, window, ts, h, l, c, v, list(range(len(ts) + 1)))
    assert _identical(one_by_one, expected)
    rng = np.random.default_rng(7)
    cuts = np.unique(np.concatenate([[0, len(ts)], rng.integers(0, len(ts), 12)]))
    in_blocks, _ = _stream(kind, window, ts, h, l, c, v, list(cuts))
    assert _identical(in_blocks, expected)


@pytest.mark.parametrize("kind", ["sma", "stddev", "wma", "vwap", "rolling_max"])
def test_exact_recomputation_points_match(kind):
    """Past the 1024-update recomputation of the running sums, on a long duration window (ring growth)."""
    ts, h, l, c, v = _data(5000, seed=3, holes=0.05)
    expected = _batch(kind, "2d", ts, h, l, c, v)
    got, stream = _stream(kind, "2d", ts, h, l, c, v, list(range(0, len(ts), 1)) + [len(ts)])
    assert _identical(got, expected)
    assert stream.rt.shape[1] <= 4096  # the ring grew to the window's bars, not to the data's length


def test_ring_is_bounded_by_the_window():
    ts, h, l, c, v = _data(20_000, seed=5, holes=0.0)
    s = WindowStream("sma", 20, 3)
    for i in range(0, len(ts), 500):
        s.push(c[i:i + 500], ts[i:i + 500])
    assert s.rt.shape[1] == 32


def test_every_windowed_kind_is_listed():
    assert set(WINDOWED) | {"macd"} <= set(STREAMING_KINDS)


def test_bollinger_num_std():
    ts, h, l, c, v = _data(300, seed=11)
    got, _ = _stream("bollinger", 10, ts, h, l, c, v, list(range(301)), num_std=1.5)
    assert _identical(got, _batch("bollinger", 10, ts, h, l, c, v, num_std=1.5))


# ---------------------------------------------------------------------------------------- whole node trees

def _holey_market(seed: int = 4):
    from backforge.data.market import MarketData, Quotes
    from backforge.data.synth import gbm

    d = gbm(3, 1.2, seed=seed, assets=("AAA", "BBB", "CCC"))
    rng = np.random.default_rng(seed)
    arrays = [np.array(a, dtype=float) for a in (d.open, d.high, d.low, d.close, d.volume)]
    hole = rng.random(arrays[3].shape) < 0.1
    hole[:20, 2] = True  # CCC lists late
    for a in arrays:
        a[hole] = np.nan
    keep = np.sort(rng.choice(d.n_bars, size=int(d.n_bars * 0.8), replace=False))  # irregular calendar
    arrays = [a[keep] for a in arrays]
    spread = np.abs(arrays[3]) * 0.001
    bid = Quotes(*(a - spread for a in arrays[:4]))
    ask = Quotes(*(a + spread for a in arrays[:4]))
    return MarketData(d.timestamps[keep], *arrays, d.assets, bid, ask)


NODE_TREES = [
    {"lhs": "close", "op": ">", "rhs": {"sma": {"window": "30d"}}},
    {"lhs": {"ema": {"window": 9}}, "op": "crosses_above", "rhs": {"wma": {"window": "20d"}}},
    {"lhs": {"rsi": {"window": "14d"}}, "op": "<", "rhs": 30},
    {"lhs": {"zscore": {"window": 20, "of": {"returns": {"window": 1}}}}, "op": ">", "rhs": 1},
    {"lhs": {"rolling_max": {"window": "10d", "of": "high"}}, "op": "crosses_below", "rhs": {"rolling_min": {"window": 5}}},
    {"lhs": {"atr": {"window": "10d"}}, "op": ">", "rhs": {"stddev": {"window": 10}}},
    {"lhs": {"vwap": {"window": 15}}, "op": ">=", "rhs": {"bollinger": {"window": "25d", "output": "percent_b"}}},
    {"lhs": {"macd": {"fast": 5, "slow": 13, "signal": 4, "output": "histogram"}}, "op": ">", "rhs": 0},
    {"lhs": {"macd": {"fast": "5d", "slow": "15d", "signal": "6d", "output": "signal"}}, "op": "<",
     "rhs": {"macd": {"fast": "5d", "slow": "15d", "signal": "6d"}}},
    {"lhs": {"rank": {"of": {"rate_of_change": {"window": "7d"}}}}, "op": "==", "rhs": 1},
    {"lhs": {"percentile": {"of": {"pct_change": {"window": 3}}}}, "op": ">", "rhs": 0.5},
    {"lhs": {"div": {"args": [{"lag": {"window": "3d"}}, {"lag": {"window": 2}}]}}, "op": ">", "rhs": 1},
    {"lhs": {"min": {"args": ["close", {"sma": {"window": 4, "of": {"price": {"field": "mid"}}}}]}}, "op": "<",
     "rhs": {"max": {"args": [{"neg": {"of": {"price": {"field": "spread"}}}}, {"abs": {"of": {"returns": {"window": 2}}}}]}}},
    {"lhs": {"volume_average": {"window": "5d"}}, "op": ">", "rhs": {"volume_average": {"window": 20}}},
    {"lhs": {"sma": {"window": 10, "of": {"price": {"field": "close", "asset": "BBB"}}}}, "op": ">",
     "rhs": {"ema": {"window": "8d", "of": {"price": {"asset": "AAA"}}}}},
    {"kind": "held_for", "window": "5d", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 10}}}},
    {"kind": "held_for", "window": 3, "condition": {"kind": "any", "conditions": [
        {"lhs": "close", "op": "<", "rhs": {"lag": {"window": 1}}}, {"lhs": "volume", "op": ">", "rhs": 500}]}},
    {"kind": "not", "condition": {"kind": "at_least", "n": 2, "conditions": [
        {"lhs": {"rsi": {"window": 7}}, "op": ">", "rhs": 50}, {"lhs": "open", "op": "<", "rhs": "close"},
        {"kind": "all", "conditions": [{"lhs": "high", "op": ">", "rhs": {"rolling_max": {"window": 3}}}]}]}},
]


def test_compiled_series_stream_bit_for_bit():
    """Every data-only series column of a compiled portfolio (all node kinds, nested, pinned, quotes), evaluated
    bar by bar by the streaming evaluator, equals the compiler's batch column at every bar."""
    from backforge.strategy.compiler import compile_portfolio
    from backforge.strategy.schema import load_portfolio
    from backforge.strategy.streaming import StreamingEvaluator

    market = _holey_market()
    spec = {"name": "trees", "universe": list(market.assets),
            "strategies": [{"name": f"s{i}", "condition": c, "action": {"kind": "alert"}} for i, c in enumerate(NODE_TREES)]}
    portfolio = load_portfolio(spec)
    cp = compile_portfolio(portfolio, market, start_bar=0)
    assert len(cp.series_keys) == len(NODE_TREES) * 3
    ev = StreamingEvaluator(market.assets, market.assets)
    got = np.zeros(cp.series.shape)
    fields = {name: getattr(market, name) for name in ("open", "high", "low", "close", "volume")}
    fields["bid"], fields["ask"] = market.bid.close, market.ask.close
    for t in range(market.n_bars):
        ev.push(market.timestamps[t:t + 1], {name: a[t:t + 1] for name, a in fields.items()})
        for i, (key, j) in enumerate(cp.series_keys):
            node, kind = cp.nodes[key]
            got[t, i] = (ev.value(node, key) if kind == "value" else ev.condition(node, key))[0, j]
    assert _identical(got, np.asarray(cp.series, dtype=np.float64))


def test_evaluator_snapshot_restores_the_states():
    from backforge.live.store import pack_arrays, unpack_arrays
    from backforge.strategy.compiler import compile_portfolio
    from backforge.strategy.schema import load_portfolio
    from backforge.strategy.streaming import StreamingEvaluator

    market = _holey_market(5)
    cond = {"lhs": {"ema": {"window": "9d"}}, "op": "crosses_above", "rhs": {"rolling_max": {"window": "6d"}}}
    portfolio = load_portfolio({"name": "x", "universe": list(market.assets),
                                "strategies": [{"name": "s", "condition": cond, "action": {"kind": "alert"}}]})
    cp = compile_portfolio(portfolio, market, start_bar=0)
    key, _ = cp.series_keys[0]
    node = cp.nodes[key][0]
    fields = {name: getattr(market, name) for name in ("open", "high", "low", "close", "volume")}
    half = market.n_bars // 2

    def run(ev, lo, hi):
        out = []
        for t in range(lo, hi):
            ev.push(market.timestamps[t:t + 1], {n: a[t:t + 1] for n, a in fields.items()})
            out.append(ev.condition(node, key)[0])
        return np.array(out)

    whole = StreamingEvaluator(market.assets, market.assets)
    expected = run(whole, 0, market.n_bars)
    first = StreamingEvaluator(market.assets, market.assets)
    run(first, 0, half)
    saved = unpack_arrays(pack_arrays(first.state_arrays()))
    second = StreamingEvaluator(market.assets, market.assets)
    empty = {n: a[:0] for n, a in fields.items()}

    def build():
        second.push(market.timestamps[:0], empty)
        second.condition(node, key)

    second.restore(saved, build)
    assert np.array_equal(run(second, half, market.n_bars), expected[half:])
    assert np.array_equal(expected[:, 0], cp.series[:, 0].astype(bool))

"""Independent accounts in one call (issue 17): each asset, or each group of assets, trades with its own
cash; every account equals a separate from_signals run on its assets, and the combined result is their sum."""

from __future__ import annotations

import numpy as np
import pytest

import backforge as bf
from backforge.data.market import MarketData
from backforge.engine import kernels as k

OPTIONS = dict(fee_rate=0.001, stop_loss=0.04, take_profit=0.08, allow_short=True)


@pytest.fixture(scope="module")
def data() -> MarketData:
    return bf.synth(n_assets=3, years=2, seed=12)


def signals(data: MarketData):
    close = data.close
    fast = np.vstack([np.full((4, close.shape[1]), np.nan), np.lib.stride_tricks.sliding_window_view(
        close, 5, axis=0).mean(axis=2)])
    with np.errstate(invalid="ignore"):
        return fast > close, fast < close


def columns(data: MarketData, names: list[str]) -> MarketData:
    idx = [data.assets.index(n) for n in names]
    return MarketData(data.timestamps, *(x[:, idx] for x in (data.open, data.high, data.low, data.close, data.volume)),
                      tuple(names))


def assert_same_run(got, want) -> None:
    assert np.array_equal(got.equity_values, want.equity_values)
    for name in ("fills", "trade_records"):
        a, b = getattr(got, name), getattr(want, name)
        assert len(a) == len(b) and len(a) > 0
    assert np.array_equal(got.state.fills[: got.state.counters[1]], want.state.fills[: want.state.counters[1]])


def test_each_asset_is_its_own_account(data: MarketData) -> None:
    up, down = signals(data)
    result = bf.from_signals(data, up, down, down, up, cash=30_000, cash_sharing=False, **OPTIONS)
    assert list(result.accounts) == list(data.assets)
    total = np.zeros(data.n_bars)
    n_fills = 0
    for j, name in enumerate(data.assets):
        alone = bf.from_signals(columns(data, [name]), up[:, [j]], down[:, [j]], down[:, [j]], up[:, [j]],
                                cash=10_000, **OPTIONS)
        assert_same_run(result.accounts[name], alone)
        total += alone.equity_values
        n_fills += alone.fills.height
    np.testing.assert_allclose(result.equity_values, total, rtol=1e-12)
    assert result.fills.height == n_fills
    # the combined records point at the right orders and assets
    fills = result.state.fills[: result.state.counters[1]]
    orders = result.state.orders[: result.state.counters[0]]
    assert np.array_equal(orders["id"], np.arange(len(orders)))
    assert np.array_equal(orders["asset"][fills["order_id"]], fills["asset"])
    assert np.all(np.diff(fills["bar"]) >= 0)


def test_groups_share_cash_inside_and_not_across(data: MarketData) -> None:
    up, down = signals(data)
    a, b, c = data.assets
    result = bf.from_signals(data, up, down, groups={"first": [a, c], "second": [b]}, cash=20_000, size=0.5,
                             **OPTIONS)
    pair = bf.from_signals(columns(data, [a, c]), up[:, [0, 2]], down[:, [0, 2]], cash=10_000, size=0.5, **OPTIONS)
    single = bf.from_signals(columns(data, [b]), up[:, [1]], down[:, [1]], cash=10_000, size=0.5, **OPTIONS)
    assert_same_run(result.accounts["first"], pair)
    assert_same_run(result.accounts["second"], single)
    assert result.accounts["first"].data.assets == (a, c)
    np.testing.assert_allclose(result.equity_values, pair.equity_values + single.equity_values, rtol=1e-12)


def test_bad_groups_are_refused(data: MarketData) -> None:
    up, down = signals(data)
    a, b, c = data.assets
    cases = [
        ({"x": [a, b + "Z"], "y": [c]}, "unknown asset", "groups.x"),
        ({"x": [a, b], "y": [b, c]}, f"asset '{b}' is in groups 'x' and 'y'", "groups.y"),
        ({"x": [a, a], "y": [b, c]}, "twice in this group", "groups.x"),
        ({"x": [a, b]}, f"asset '{c}' is in no group", "groups"),
        ({"x": [], "y": [a, b, c]}, "non-empty list", "groups.x"),
        ("abc", "must map group names", "groups"),
    ]
    for groups, message, field in cases:
        with pytest.raises(bf.ConfigError, match=message) as info:
            bf.from_signals(data, up, down, groups=groups)
        assert info.value.field == field
    with pytest.raises(bf.ConfigError, match="risk rules need one shared account"):
        bf.from_signals(data, up, down, cash_sharing=False, risk={"max_gross": 1.0})


@pytest.mark.parametrize("groups", [None, "reordered"])
def test_fast_merge_is_the_reference_merge_field_for_field(data: MarketData, groups) -> None:
    """``merge_account_states`` (compiled, one pass) equals ``merge_states`` (the NumPy reference) in
    every field of the combined State, records and order included."""
    from backforge.engine import accounts as ac

    up, down = signals(data)
    a, b, c = data.assets
    captured = {}
    original = ac.merge_account_states

    def spy(states, sizes, indices, n_assets, per_account):
        captured["reference"] = ac.merge_states(per_account, indices, n_assets)
        return original(states, sizes, indices, n_assets, per_account)

    ac.merge_account_states = spy
    try:
        result = bf.from_signals(data, up, down, down, up, cash=30_000, cash_sharing=False,
                                 groups={"x": [c, a], "y": [b]} if groups else None, **OPTIONS)
    finally:
        ac.merge_account_states = original
    reference = captured["reference"]
    merged = result._state  # fields are merged when first read: equity and trades need nothing else
    assert isinstance(merged, ac.MergedState)
    assert result.equity_values.tobytes() == reference.equity.tobytes()
    assert result.trade_records.tobytes() == reference.trades[: reference.counters[k.C_TRADES]].tobytes()
    assert not {"orders", "fills", "events", "positions", "cash_history"} & set(vars(merged))
    for name in reference._fields:
        if name == "risk":
            continue
        got, want = getattr(result.state, name), getattr(reference, name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), name
    assert result.state.fills.shape[0] > 0 and result.state.trades.shape[0] > 0

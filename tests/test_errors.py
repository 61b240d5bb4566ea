"""Bad input is a feature: every mistake becomes a BackforgeError naming asset, row and field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import backforge as bf
from backforge.errors import BackforgeError, DataError

TS = np.arange(4, dtype=np.int64) * 86_400_000_000_000


@pytest.mark.parametrize(("field", "value", "message"), [
    ("close", np.nan, "present while close is NaN"),
    ("open", np.inf, "must be finite and > 0"),
    ("low", 0.0, "must be finite and > 0"),
    ("high", -1.0, "must be finite and > 0"),
])
def test_bad_prices_name_asset_row_field(field, value, message):
    arrays = dict(open=[[10.0], [11.0], [12.0], [13.0]], high=[[11.0], [12.0], [13.0], [14.0]],
                  low=[[9.0], [10.0], [11.0], [12.0]], close=[[10.5], [11.5], [12.5], [13.5]])
    arrays[field][2] = [value]
    with pytest.raises(bf.DataError) as info:
        bf.MarketData.from_arrays(TS, assets=["GOOG"], **arrays)
    err = info.value
    assert err.asset == "GOOG" and err.row == 2
    assert err.field in (field, "open", "high", "low", "close")
    assert "GOOG" in str(err) and "row 2" in str(err) and message in str(err)


def test_high_below_low():
    with pytest.raises(bf.DataError, match="row 1.*field high.*low 10.0 is above high 9.0"):
        bf.MarketData.from_arrays(TS, assets=["GOOG"], open=[[10.0]] * 4, high=[[11.0], [9.0], [11.0], [11.0]],
                                  low=[[9.0], [10.0], [9.0], [9.0]], close=[[10.0]] * 4)


def test_unsorted_and_duplicate_timestamps():
    with pytest.raises(bf.DataError, match="row 2.*out-of-order"):
        bf.MarketData.from_arrays(TS[[0, 2, 1, 3]], close=[[1.0]] * 4, assets=["X"])
    with pytest.raises(bf.DataError, match="row 1.*duplicate"):
        bf.MarketData.from_arrays(TS[[0, 0, 1, 2]], close=[[1.0]] * 4, assets=["X"])
    frame = pd.DataFrame({"close": [1.0, 2.0]}, index=pd.to_datetime(["2020-01-02", "2020-01-01"]))
    with pytest.raises(bf.DataError, match="asset Z, row 1, field timestamp"):
        bf.MarketData.from_frames({"Z": frame})


def test_mismatched_shapes():
    with pytest.raises(bf.DataError, match="expected shape \\(4, 1\\)"):
        bf.MarketData.from_arrays(TS, close=[[1.0]] * 3, assets=["X"])


def test_signals_of_the_wrong_length_or_width():
    data = bf.synth(n_assets=2, years=1, seed=1)
    with pytest.raises(bf.DataError, match="signals have 10 rows but the data has 252 bars"):
        bf.from_signals(data, np.ones((10, 2), dtype=bool))
    with pytest.raises(bf.DataError, match="1 column but the data has 2 assets"):
        bf.from_signals(data, np.ones(252, dtype=bool))


@pytest.mark.parametrize(("options", "message"), [
    ({"cash": -5}, "cash: Input should be greater than 0, got -5"),
    ({"size": 0}, "size: Value error, must be a finite number > 0, got 0"),
    ({"fee_rate": -0.1}, "fee_rate: Value error, must be a finite number >= 0"),
    ({"stop_loss": float("nan")}, "stop_loss"),
    ({"leverage": 0}, "leverage"),
    ({"fee_rte": 0.1}, "unknown option 'fee_rte'; did you mean 'fee_rate'"),
    ({"size_type": "equity"}, "size_type"),
    ({"lot_size": {"GOOGL": 1}}, "unknown asset 'GOOGL'"),
])
def test_impossible_options(options, message):
    data = bf.synth(n_assets=1, years=1, seed=1, assets=("GOOG",))
    with pytest.raises(bf.ConfigError) as info:
        bf.from_signals(data, data.close > data.open, **options)
    assert message in str(info.value)


def test_program_errors():
    data = bf.synth(n_assets=1, years=1, seed=1)
    program = bf.OrderProgram()
    program.submit(bar=300, asset=0, side="buy", size=1)
    with pytest.raises(bf.ConfigError, match=r"program\[0\].bar.*outside the data"):
        bf.simulate(data, program)
    with pytest.raises(bf.ConfigError, match="side must be 'buy' or 'sell'"):
        bf.OrderProgram().submit(bar=0, asset=0, side="hold", size=1)
    with pytest.raises(bf.ConfigError, match="did you mean 'limit'"):
        bf.OrderProgram().submit(bar=0, asset=0, side="buy", size=1, order_type="limitt")


def test_not_market_data():
    with pytest.raises(bf.DataError, match="expected MarketData"):
        bf.from_signals(np.ones((3, 1)), np.ones((3, 1), dtype=bool))


# ================================================================================ error codes
def _codes_used_in_source() -> set[str]:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "backforge"
    found: set[str] = set()
    for path in root.rglob("*.py"):
        found |= set(re.findall(r'code="(BF-[A-Z0-9-]+)"', path.read_text()))
    return found


def test_every_code_used_is_registered_and_documented():
    from pathlib import Path

    import backforge.judge.errors  # noqa: F401 - registers nothing, but its classes carry codes
    import backforge.live.broker  # noqa: F401
    from backforge.errors import ERROR_CODES

    used = _codes_used_in_source()
    assert used and used <= set(ERROR_CODES), sorted(used - set(ERROR_CODES))
    page = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    missing = [c for c in ERROR_CODES if c != "BF-EXAMPLE-DEMO" and f"`{c}`" not in page]
    assert not missing, f"codes missing from docs/errors.md: {missing}"


def test_an_unregistered_code_is_refused():
    with pytest.raises(ValueError, match="unregistered error code"):
        DataError("x", code="BF-NOT-A-CODE")


@pytest.mark.parametrize("make, code", [
    (lambda: bf.MarketData.from_arrays(np.array([0, 1]), close=np.array([[1.0], [-1.0]]), assets=["X"]),
     "BF-DATA-BAD-PRICE"),
    (lambda: bf.MarketData.from_arrays(np.array([1, 0]), close=np.array([[1.0], [1.0]]), assets=["X"]),
     "BF-DATA-UNSORTED"),
    (lambda: bf.MarketData.from_arrays(np.array([0]), close=np.array([[1.0]]), high=np.array([[0.5]]), assets=["X"]),
     "BF-DATA-OHLC-ORDER"),
    (lambda: bf.synth(n_assets=1, years=1).select(["NOPE"]), "BF-DATA-UNKNOWN-ASSET"),
    (lambda: bf.from_signals(bf.synth(n_assets=1, years=1), None, cahs=1), "BF-CONFIG-UNKNOWN-OPTION"),
    (lambda: bf.from_signals(bf.synth(n_assets=1, years=1), None, cash=-5), "BF-CONFIG-INVALID"),
    (lambda: bf.from_signals(bf.synth(n_assets=1, years=1), None, cash=float("inf")), "BF-CONFIG-INVALID"),
    (lambda: __import__("backforge._time", fromlist=["x"]).parse_duration("5 fortnights"), "BF-CONFIG-DURATION"),
    (lambda: bf.load_portfolio({"name": "x", "universe": ["A"], "strategies": [], "cahs": 1}),
     "BF-CONFIG-UNKNOWN-OPTION"),
])
def test_errors_carry_their_codes(make, code):
    with pytest.raises(BackforgeError) as caught:
        make()
    assert caught.value.code == code, caught.value


def test_broker_errors_are_coded_by_failure_class():
    from backforge.live.broker import BrokerError

    assert [BrokerError("x", kind=k).code for k in ("retryable", "ambiguous", "final", "auth")] == [
        "BF-BROKER-RETRYABLE", "BF-BROKER-AMBIGUOUS", "BF-BROKER-FINAL", "BF-BROKER-AUTH"]

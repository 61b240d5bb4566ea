"""Data paths in strategy files resolve through one function that honours ``BACKFORGE_SHARED_DATA``
(issue 10, item 18): the examples run from any layout once the variable names the shared folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backforge.data.paths import resolve_data_path
from backforge.errors import ConfigError
from backforge.strategy.compiler import load_data
from backforge.strategy.schema import load_portfolio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_example_names_shared_files_through_the_variable():
    for example in sorted(EXAMPLES.glob("*.yaml")):
        text = example.read_text()
        assert "../../shared/data/" not in text.replace("${BACKFORGE_SHARED_DATA:-../../shared/data}", ""), example


def test_an_example_in_another_layout_runs_on_the_folder_the_variable_names(tmp_path, monkeypatch, shared):
    elsewhere = tmp_path / "deep" / "strategies"  # ../../shared/data does not exist from here
    elsewhere.mkdir(parents=True)
    for name in ("bollinger_breakout.yaml", "fx_breakout_usdjpy.yaml"):
        shutil.copy(EXAMPLES / name, elsewhere / name)
    (tmp_path / "moved").symlink_to(shared)  # the shared data under another name
    monkeypatch.setenv("BACKFORGE_SHARED_DATA", str(tmp_path / "moved"))
    portfolio = load_portfolio(elsewhere / "bollinger_breakout.yaml")
    market = load_data(portfolio, base=elsewhere)
    monkeypatch.delenv("BACKFORGE_SHARED_DATA")
    reference = load_data(load_portfolio(EXAMPLES / "bollinger_breakout.yaml"), base=EXAMPLES) if \
        (EXAMPLES / "../../shared/data").resolve().is_dir() else market
    assert market.assets == ("GOOG",) and market.n_bars == 2148 and market.fingerprint() == reference.fingerprint()
    monkeypatch.setenv("BACKFORGE_SHARED_DATA", str(tmp_path / "moved"))
    quotes = load_data(load_portfolio(elsewhere / "fx_breakout_usdjpy.yaml"), base=elsewhere)  # bid and ask files too
    assert quotes.assets == ("USDJPY",) and quotes.n_bars > 10_000


def test_an_unset_variable_without_default_names_the_config_path(tmp_path, monkeypatch):
    monkeypatch.delenv("EXAMPLE_MARKET_DIR", raising=False)
    portfolio = load_portfolio({"name": "x", "universe": ["GOOG"], "strategies": [{"name": "s", "action": {"kind": "alert"}}],
                                "data": {"source": "files", "paths": {"GOOG": "${EXAMPLE_MARKET_DIR}/GOOG.csv"}}})
    with pytest.raises(ConfigError, match=r"data\.paths\.GOOG: the data path .* uses \$EXAMPLE_MARKET_DIR, which is not set"):
        load_data(portfolio, base=tmp_path)
    assert resolve_data_path("~/x.csv") == Path.home() / "x.csv"

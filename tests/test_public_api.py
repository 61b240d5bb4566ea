"""The public surface is small and pinned; README and docstring examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import backforge

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_pinned():
    assert sorted(backforge.__all__) == [
        "BackforgeError", "ConfigError", "DataError", "MarketData", "OrderProgram", "Quotes", "Result",
        "RiskConfig", "SignalConfig", "SimConfig", "SimulationError", "Simulator", "Strategy", "__version__", "backtest",
        "compile_portfolio", "crossover",
        "from_signals", "indicators", "judge", "load_data", "load_portfolio", "load_result", "monte_carlo", "optimize",
        "run_portfolio", "simulate", "sweep_signals", "sweep_sma_cross", "synth", "walk_forward",
    ]
    for name in backforge.__all__:
        assert getattr(backforge, name) is not None, name
    with pytest.raises(AttributeError):
        backforge.not_a_name  # noqa: B018


@pytest.mark.parametrize("package", ["backforge.engine", "backforge.research"])
def test_subpackages_export_their_entry_points(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__all__ and all(getattr(module, name) is not None for name in module.__all__)


def test_results_render_in_notebooks():
    data = backforge.synth(n_assets=2, years=1, seed=3)
    result = backforge.from_signals(data, data.close > data.open, data.close < data.open)
    page = result._repr_html_()
    assert "<svg" in page and "Sharpe" in page and "total return" in page
    assert "<svg" in data._repr_html_() and "MarketData" in data._repr_html_()
    figure = result.plot()
    assert [trace.name for trace in figure.data][:2] == ["Strategy", "Equal weight"] or figure.data[0].name == "Strategy"
    with pytest.raises(backforge.ConfigError, match="unknown chart"):
        result.plot("nope")


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "sma-cross" / "trades.parquet").exists()


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    assert "backforge demo" in blocks[0] and "pytest" in blocks[1]
    assert text.index(blocks[1]) < text.index("```python")
    assert "README.md" in (ROOT / ".ci" / "run").read_text()

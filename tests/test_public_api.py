"""The public surface is small and pinned; README and docstring examples run."""

from __future__ import annotations

import re
from pathlib import Path


import backforge

ROOT = Path(__file__).resolve().parents[1]


def test_public_names_are_pinned():
    assert sorted(backforge.__all__) == [
        "BackforgeError", "ConfigError", "DataError", "MarketData", "OrderProgram", "Quotes", "Result",
        "RiskConfig", "SignalConfig", "SimConfig", "SimulationError", "Simulator", "__version__", "from_signals",
        "load_result", "simulate", "synth",
    ]


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

"""Fixtures of the judge tests: saved runs made by the real CLI, and a loopback LLM server."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from fake_llm import FakeLLMServer  # noqa: E402

STRATEGY = """\
name: judge-sma
universe: [AAPL, MSFT]
cash: 100000
costs: {fee_rate: 0.0005, slippage_bps: 1}
strategies:
  - name: enter
    condition: {lhs: {sma: {window: 10}}, op: crosses_above, rhs: {sma: {window: 30}}}
    action: {buy: {allocation: {equity_fraction: 0.5}}}
  - name: exit
    condition: {lhs: {sma: {window: 10}}, op: crosses_below, rhs: {sma: {window: 30}}}
    action: {close: {}}
data: {source: synthetic, years: 4, bar: 1d, seed: 5}
"""

PARAMETER_STRATEGY = """\
name: judge-params
universe: [AAPL]
cash: 100000
costs: {fee_rate: 0.0005}
constraints: ["fast < slow"]
strategies:
  - name: enter
    condition:
      lhs: {sma: {window: {param: fast, choices: [5, 10, 15], default: 10}}}
      op: crosses_above
      rhs: {sma: {window: {param: slow, choices: [30, 40], default: 30}}}
    action: {buy: {}}
  - name: exit
    condition:
      lhs: {sma: {window: {param: fast, choices: [5, 10, 15], default: 10}}}
      op: crosses_below
      rhs: {sma: {window: {param: slow, choices: [30, 40], default: 30}}}
    action: {close: {}}
data: {source: synthetic, years: 4, bar: 1d, seed: 8}
"""


def _run(strategy: Path, out: Path) -> Path:
    from backforge.cli import app

    result = CliRunner().invoke(app, ["run", str(strategy), "--out", str(out)])
    assert result.exit_code == 0, result.output
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1
    return folders[0]


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("judge-runs")


@pytest.fixture(scope="session")
def strategy_file(runs_root) -> Path:
    path = runs_root / "judge_sma.yaml"
    path.write_text(STRATEGY)
    return path


@pytest.fixture(scope="session")
def strategy_run(runs_root, strategy_file) -> Path:
    """A run saved by `backforge run` (re-runnable: config and data source are saved)."""
    return _run(strategy_file, runs_root / "sma")


@pytest.fixture(scope="session")
def parameter_run(runs_root) -> Path:
    """A run of a strategy that declares parameters (walk-forward and declared neighbours apply)."""
    path = runs_root / "judge_params.yaml"
    path.write_text(PARAMETER_STRATEGY)
    return _run(path, runs_root / "params")


@pytest.fixture(scope="session")
def signal_run(runs_root) -> Path:
    """A run made from signal arrays (reviewable, not re-runnable)."""
    import backforge as bf

    data = bf.synth(n_assets=2, years=3, seed=4)
    result = bf.from_signals(data, data.close > data.open, data.close < data.open, fee_rate=0.0005)
    return result.save(runs_root / "signals" / "from-signals")


@pytest.fixture
def copy_run(tmp_path):
    """Copy a saved run into a fresh folder (tests that write into the run or damage it)."""

    counter = iter(range(1000))

    def copy(folder: Path) -> Path:
        target = tmp_path / f"copy{next(counter)}" / folder.name
        shutil.copytree(folder, target)
        return target

    return copy


@pytest.fixture(scope="session")
def llm_server():
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    with FakeLLMServer(api_key="test-key") as server:
        yield server


@pytest.fixture
def fake_llm(llm_server, monkeypatch, tmp_path):
    """The loopback server, reset, with the environment pointing the judge at it (OpenAI wire format)."""
    llm_server.reset()
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "BACKFORGE_LLM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("BACKFORGE_LLM_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("BACKFORGE_LLM_PROVIDER", "openai")
    monkeypatch.setenv("BACKFORGE_LLM_MODEL", "reviewer-small")
    monkeypatch.setenv("BACKFORGE_LLM_API_KEY", "test-key")
    monkeypatch.setenv("BACKFORGE_LLM_BASE_URL", llm_server.openai_url)
    monkeypatch.setenv("BACKFORGE_LLM_CACHE", str(tmp_path / "llm-cache"))
    monkeypatch.setenv("BACKFORGE_LLM_TIMEOUT", "5")
    monkeypatch.setenv("BACKFORGE_LLM_MAX_RETRIES", "1")
    yield llm_server
    llm_server.reset()


@pytest.fixture
def no_llm_env(monkeypatch, tmp_path):
    """An environment with no LLM configured at all."""
    for name in list(__import__("os").environ):
        if name.startswith("BACKFORGE_LLM_") or name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))

"""Plain English → strategy: validated against the schema and the data, errors fed back, escalated, and the
saved YAML runs with `backforge run`."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from backforge.cli import app
from backforge.judge import InvalidAnswerError, generate_strategy
from backforge.judge.llm import LLMConfig
from backforge.strategy.schema import load_portfolio
from fake_llm import Reply, last_user_text

runner = CliRunner()

GOLDEN = {"name": "golden-cross", "universe": ["SPY"], "costs": {"fee_rate": 0.0005}, "strategies": [
    {"name": "enter", "condition": {"lhs": {"sma": {"window": 50}}, "op": "crosses_above", "rhs": {"sma": {"window": 200}}},
     "action": {"buy": {"allocation": {"equity_fraction": 0.9}, "stop_loss": {"percent": 0.1}}}},
    {"name": "exit", "condition": {"lhs": {"sma": {"window": 50}}, "op": "crosses_below", "rhs": {"sma": {"window": 200}}},
     "action": {"close": {}}}]}


def _with(**changes):
    document = json.loads(json.dumps(GOLDEN))
    for path, value in changes.items():
        node = document
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[parts[-1]] = value
    return json.dumps(document)


def _config(server, provider="openai", model="writer", **extra):
    url = server.openai_url if provider == "openai" else server.url
    return LLMConfig(provider=provider, model=model, api_key="test-key", base_url=url, cache_dir=None, **extra)


def test_errors_against_the_data_are_fed_back_with_their_path(fake_llm):
    too_long = _with(**{"strategies.0.condition.rhs.sma": {"window": 5000}})
    fake_llm.script("writer", "```json\n" + too_long + "\n```", json.dumps(GOLDEN))
    generated = generate_strategy("buy SPY on a golden cross, sell on the death cross", _config(fake_llm),
                                  assets=["SPY", "QQQ"])
    assert generated.portfolio.name == "golden-cross" and [c.outcome[:7] for c in generated.calls] == ["invalid", "valid"]
    feedback = last_user_text(fake_llm.requests[1]["body"])
    assert "strategies[0].condition.rhs.window: window of 5000 bars is longer than the data" in feedback
    system = fake_llm.requests[0]["body"]["messages"][0]["content"]
    assert "SPY, QQQ" in system and "JSON Schema" in system and "crosses_above" in system


@pytest.mark.parametrize("answer, message", [
    (_with(universe=["SPX"]), "'SPX' is not an available asset; did you mean 'SPY'?"),
    (_with(**{"strategies.0.action": {"buy": {"allocation": {"equity_fraction": -1}}}}), "strategies[0].action.allocation.value"),
    (_with(**{"strategies.0.condition.op": "above"}), "strategies[0].condition.op"),
    (json.dumps({"name": "alerts", "universe": ["SPY"], "strategies": [{"name": "a", "action": {"alert": {}}}]}),
     "no strategy trades"),
])
def test_each_kind_of_mistake_is_explained(fake_llm, answer, message):
    fake_llm.script("writer", answer, json.dumps(GOLDEN))
    generate_strategy("golden cross", _config(fake_llm), assets=["SPY"])
    assert message in last_user_text(fake_llm.requests[1]["body"])


def test_escalation_and_failure(fake_llm):
    fake_llm.script("writer", "no idea", "still prose")
    fake_llm.script("writer-large", json.dumps(GOLDEN))
    config = _config(fake_llm, escalate=_config(fake_llm, model="writer-large"))
    generated = generate_strategy("golden cross", config, assets=["SPY"], retries=1)
    assert [c.model for c in generated.calls] == ["writer", "writer", "writer-large"]
    fake_llm.fallback = lambda body, api: Reply(content="{}")
    with pytest.raises(InvalidAnswerError, match="no valid answer from openai:writer, openai:writer-large after 4"):
        generate_strategy("golden cross", config, assets=["SPY"], retries=1)


def test_parallel_generation_plans_then_writes_parts_concurrently(fake_llm):
    plan = {"name": "golden-cross", "description": "trend following", "universe": ["SPY"],
            "rules": [{"name": "enter", "role": "entry", "condition": "the 50-day average crosses above the 200-day",
                       "action": "buy 90% of equity with a 10% stop"},
                      {"name": "exit", "role": "exit", "condition": "the 50-day average crosses below the 200-day",
                       "action": "close the position"}]}

    def answer(body, api):
        system = body.get("system") if api == "anthropic" else body["messages"][0]["content"]
        text = last_user_text(body)
        if system.startswith("You plan"):
            return Reply(content=json.dumps(plan))
        rule = "enter" if "'enter'" in text else "exit"
        if "one condition" in system:
            op = "crosses_above" if rule == "enter" else "crosses_below"
            if rule == "exit" and "Your previous answer" not in text:  # the first exit condition is wrong
                return Reply(content=json.dumps({"condition": {"lhs": {"sma": {"window": 9999}}, "op": op,
                                                               "rhs": {"sma": {"window": 200}}}}), delay=0.4)
            return Reply(content=json.dumps({"condition": {"lhs": {"sma": {"window": 50}}, "op": op,
                                                           "rhs": {"sma": {"window": 200}}}}), delay=0.4)
        action = {"buy": {"allocation": {"equity_fraction": 0.9}}} if rule == "enter" else {"close": {}}
        return Reply(content=json.dumps({"action": action}), delay=0.4)

    import anthropic  # noqa: F401 - import the SDK before timing (its first import takes seconds)

    fake_llm.fallback = answer
    started = time.perf_counter()
    generated = generate_strategy("golden cross on SPY", _config(fake_llm, "anthropic"), assets=["SPY"], parallel=True)
    elapsed = time.perf_counter() - started
    assert generated.mode == "parallel"
    assert [s.name for s in generated.portfolio.strategies] == ["enter", "exit"]
    purposes = sorted(c.purpose for c in generated.calls)
    assert purposes.count("generate:condition:exit") == 2  # fed back once (window too long for the data)
    assert elapsed < 4 * 0.4 + 1.0  # five 0.4 s answers, four of them concurrent


def test_generate_cli_writes_a_file_that_runs(fake_llm, tmp_path):
    fake_llm.script("reviewer-small", json.dumps(GOLDEN))
    output = tmp_path / "golden.yaml"
    result = runner.invoke(app, ["generate", "buy SPY on a golden cross", "-o", str(output), "--asset", "SPY"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "enter: buy when sma(50) crosses above sma(200)" in result.output
    assert load_portfolio(output).name == "golden-cross"
    assert output.read_text().startswith("# Generated by `backforge generate` from:\n#   buy SPY on a golden cross")
    ran = runner.invoke(app, ["run", str(output), "--out", str(tmp_path / "runs")])
    assert ran.exit_code == 0, ran.output


def test_generate_cli_with_data_files(fake_llm, tmp_path):
    import backforge as bf

    data = bf.synth(n_assets=1, years=3, seed=2, assets=("SPY",))
    name = data.assets[0]
    frame = data.to_polars().drop("symbol")
    files = tmp_path / "files"
    files.mkdir()
    frame.write_csv(files / f"{name}.csv")
    fake_llm.script("reviewer-small", json.dumps({**GOLDEN, "universe": [name]}))
    output = tmp_path / "strategies" / "golden.yaml"
    result = runner.invoke(app, ["generate", "golden cross", "-o", str(output), "--data", str(files / f"{name}.csv")])
    assert result.exit_code == 0, result.output
    spec = load_portfolio(output).data
    assert spec.source == "files" and spec.paths[name] == f"../files/{name}.csv"
    ran = runner.invoke(app, ["run", str(output), "--out", str(tmp_path / "runs")])
    assert ran.exit_code == 0, ran.output


def test_generate_without_a_model_says_how_to_configure_one(no_llm_env, tmp_path):
    output = tmp_path / "x.yaml"
    result = runner.invoke(app, ["generate", "buy the dip", "-o", str(output)])
    assert result.exit_code == 2
    assert "no LLM is configured: set BACKFORGE_LLM_MODEL" in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert not output.exists()


def test_generate_never_half_writes(fake_llm, tmp_path):
    fake_llm.fallback = lambda body, api: Reply(content="not a strategy")
    output = tmp_path / "x.yaml"
    result = runner.invoke(app, ["generate", "buy the dip", "-o", str(output), "--retries", "0"])
    assert result.exit_code == 2 and "no valid answer" in result.output
    assert result.output.strip().count("\n") == 0
    assert not output.exists() and not [p for p in tmp_path.rglob("*") if p.is_file()]

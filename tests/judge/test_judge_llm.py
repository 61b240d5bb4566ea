"""LLM reviewers end to end through the real ``openai`` and ``anthropic`` SDKs against a loopback server
speaking both wire formats: valid answers, invalid JSON, schema violations, unusable recommendations,
slow answers, 429/500/401, retries with feedback, escalation, timeouts and the cache."""

from __future__ import annotations

import json

import pytest

from backforge.judge import InvalidAnswerError, NotConfiguredError, ProviderError, build_evidence, load_llm_config, review
from backforge.judge.llm import LLMClient, LLMConfig
from backforge.judge.reviewer import llm_review
from fake_llm import Reply, last_user_text

RECOMMENDATIONS = [
    {"type": "change_parameter", "path": "strategies[enter].condition.rhs.window",
     "also": ["strategies[exit].condition.rhs.window"], "values": [40, 50],
     "rationale": "the 30-bar average whipsaws", "expected_effect": "fewer trades, Sharpe at 2x costs above 0.3"},
    {"type": "add_filter", "strategy": "enter", "condition": {"lhs": "close", "op": ">", "rhs": {"sma": {"window": 100}}},
     "rationale": "losses cluster in down-trends", "expected_effect": "smaller drawdowns"},
    {"type": "change_risk", "stop_loss": {"percent": 0.08}, "rationale": "worst trade is large",
     "expected_effect": "worst trade near -8%"},
    {"type": "run_test", "test": "monte_carlo", "n_simulations": 500, "rationale": "few trades",
     "expected_effect": "a band of outcomes"},
]
VALID = json.dumps({"verdict": "fragile", "summary": "A thin edge: DSR below 0.95 and costs matter.",
                    "agrees_with": ["stats.dsr_low"], "disputes": [], "concerns": ["only two assets"],
                    "recommendations": RECOMMENDATIONS})
BAD_PATH = json.dumps({"verdict": "fragile", "summary": "x", "recommendations": [
    {"type": "change_parameter", "path": "strategies[0].condition.rhs.windw", "value": 40, "rationale": "r",
     "expected_effect": "e"}]})
SCHEMA_VIOLATION = json.dumps({"verdict": "excellent", "summary": "x"})


@pytest.fixture(scope="module")
def pack(strategy_run):
    return build_evidence(strategy_run, n_simulations=200)


@pytest.fixture(scope="module")
def findings(pack):
    return review(pack)


def _config(server, provider: str, model: str = "reviewer-small", **extra) -> LLMConfig:
    url = server.openai_url if provider == "openai" else server.url
    settings = {"provider": provider, "model": model, "api_key": "test-key", "base_url": url, "cache_dir": None,
                "timeout": 5.0, "max_retries": 1, **extra}
    return LLMConfig(**settings)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_valid_review_is_parsed_validated_and_recorded(fake_llm, pack, findings, provider):
    fake_llm.script("reviewer-small", VALID)
    config = _config(fake_llm, provider, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
    result = llm_review(pack, findings, config)
    assert result.review.verdict == "fragile" and len(result.review.recommendations) == 4
    assert result.model == f"{provider}:reviewer-small"
    (call,) = result.calls
    assert (call.input_tokens, call.output_tokens, call.outcome, call.cached) == (1200, 300, "valid", False)
    assert call.cost_usd == pytest.approx((1200 * 1.0 + 300 * 2.0) / 1e6)
    (request,) = fake_llm.requests
    assert request["api"] == provider
    body = json.dumps(request["body"])
    assert "EVIDENCE PACK" in body and "RULE FINDINGS" in body and "change_parameter" in body  # schema and pack
    assert "test-key" not in body


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_invalid_answers_are_fed_back_until_valid(fake_llm, pack, findings, provider):
    fake_llm.script("reviewer-small", "Sure! Here is my review: {verdict: fragile", BAD_PATH, VALID)
    result = llm_review(pack, findings, _config(fake_llm, provider))
    assert [c.outcome.split(":")[0] for c in result.calls] == ["invalid", "invalid", "valid"]
    second, third = (last_user_text(r["body"]) for r in fake_llm.requests[1:])
    assert "not valid JSON" in second
    assert "recommendations[0] (change_parameter)" in third and "no field 'windw'" in third and "window" in third
    messages = fake_llm.requests[2]["body"]["messages"]
    roles = [m["role"] for m in messages if m["role"] != "system"]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert any(m["role"] == "assistant" and "windw" in json.dumps(m) for m in messages)


def test_schema_violations_escalate_to_the_stronger_model(fake_llm, pack, findings):
    fake_llm.script("reviewer-small", SCHEMA_VIOLATION, SCHEMA_VIOLATION)
    fake_llm.script("reviewer-large", VALID)
    config = _config(fake_llm, "openai", attempts=2, escalate=_config(fake_llm, "openai", "reviewer-large"))
    result = llm_review(pack, findings, config)
    assert [(c.model, c.outcome.split(":")[0]) for c in result.calls] == [
        ("reviewer-small", "invalid"), ("reviewer-small", "invalid"), ("reviewer-large", "valid")]
    assert "verdict: Input should be" in result.calls[0].outcome
    assert result.model == "openai:reviewer-large"


def test_a_model_that_never_answers_validly_fails_with_one_clear_line(fake_llm, pack, findings):
    fake_llm.fallback = lambda body, api: Reply(content="I think the strategy is fine.")
    config = _config(fake_llm, "anthropic", attempts=2, escalate=_config(fake_llm, "anthropic", "reviewer-large",
                                                                          attempts=2))
    with pytest.raises(InvalidAnswerError) as info:
        llm_review(pack, findings, config)
    message = str(info.value)
    assert "no valid answer from anthropic:reviewer-small, anthropic:reviewer-large after 4 invalid" in message
    assert "\n" not in message and "rule-based reviewer" in message
    assert len(fake_llm.requests) == 4


def test_slow_answers_time_out_and_escalate(fake_llm, pack, findings):
    fake_llm.script("reviewer-small", Reply(content=VALID, delay=2.0), Reply(content=VALID, delay=2.0))
    fake_llm.script("reviewer-large", VALID)
    config = _config(fake_llm, "openai", timeout=0.4, max_retries=1,
                     escalate=_config(fake_llm, "openai", "reviewer-large"))
    result = llm_review(pack, findings, config)
    assert result.calls[0].outcome.startswith("error:") and "did not answer within 0.4 s (2 attempts)" in result.calls[0].outcome
    assert result.model == "openai:reviewer-large"


def test_timeouts_without_escalation_fail_clearly(fake_llm, pack, findings):
    fake_llm.script("reviewer-small", Reply(content=VALID, delay=2.0))
    with pytest.raises(ProviderError, match=r"did not answer within 0.3 s \(1 attempts\); raise BACKFORGE_LLM_TIMEOUT"):
        llm_review(pack, findings, _config(fake_llm, "anthropic", timeout=0.3, max_retries=0))


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_rate_limits_are_retried_by_the_sdk(fake_llm, pack, findings, provider):
    fake_llm.script("reviewer-small", Reply(status=429, message="slow down"), VALID)
    result = llm_review(pack, findings, _config(fake_llm, provider, max_retries=2))
    assert result.review.verdict == "fragile" and len(fake_llm.requests) == 2


@pytest.mark.parametrize("status, pattern", [(500, "failed with HTTP 500"), (429, "rate-limited \\(429\\)")])
def test_persistent_server_errors_fail_clearly(fake_llm, pack, findings, status, pattern):
    fake_llm.fallback = lambda body, api: Reply(status=status)
    with pytest.raises(ProviderError, match=pattern) as info:
        llm_review(pack, findings, _config(fake_llm, "openai", max_retries=1))
    assert "after 2 attempts" in str(info.value)


@pytest.mark.parametrize("provider, variable", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_a_wrong_key_fails_at_once_without_showing_it(fake_llm, pack, findings, provider, variable):
    config = _config(fake_llm, provider, api_key="sk-wrong-secret",
                     escalate=_config(fake_llm, provider, "reviewer-large", api_key="sk-wrong-secret"))
    with pytest.raises(ProviderError) as info:
        llm_review(pack, findings, config)
    message = str(info.value)
    assert "rejected the API key" in message and "401" in message and variable in message
    assert "sk-wrong-secret" not in message
    assert len(fake_llm.requests) == 1  # no retry, no escalation: the fix is the configuration


def test_an_unreachable_provider_fails_clearly(pack, findings):
    config = LLMConfig(model="m", api_key="k", base_url="http://127.0.0.1:9/v1", cache_dir=None, max_retries=0)
    with pytest.raises(ProviderError, match="cannot reach the LLM provider .* check BACKFORGE_LLM_BASE_URL"):
        llm_review(pack, findings, config)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_answers_are_cached_by_the_hash_of_their_input(fake_llm, pack, findings, provider, tmp_path):
    fake_llm.script("reviewer-small", VALID)
    config = _config(fake_llm, provider, cache_dir=str(tmp_path / "cache"))
    first = llm_review(pack, findings, config)
    again = llm_review(pack, findings, config)
    assert len(fake_llm.requests) == 1
    assert again.calls[0].cached and again.calls[0].cost_usd == 0.0 and again.review == first.review
    cached = list((tmp_path / "cache").glob("*.json"))
    assert len(cached) == 1 and "test-key" not in cached[0].read_text()
    fake_llm.script("reviewer-small", VALID)
    llm_review(pack, findings, config.model_copy(update={"max_tokens": 1000}))  # another input: a new call
    assert len(fake_llm.requests) == 2


def test_invalid_answers_are_not_cached(fake_llm, pack, findings, tmp_path):
    fake_llm.script("reviewer-small", "not json", VALID)
    config = _config(fake_llm, "openai", cache_dir=str(tmp_path / "cache"))
    llm_review(pack, findings, config)
    again = llm_review(pack, findings, config)
    assert len(fake_llm.requests) == 2  # the corrected answer is cached under the original request too
    assert [c.cached for c in again.calls] == [True]
    texts = [f.read_text() for f in (tmp_path / "cache").glob("*.json")]
    assert texts and all("not json" not in t for t in texts)


def test_client_reuse_and_totals(fake_llm, pack, findings):
    fake_llm.script("reviewer-small", "{", VALID)
    with LLMClient(_config(fake_llm, "openai")) as client:
        llm_review(pack, findings, client)
        totals = client.totals()
    assert totals == {"calls": 2, "cached": 0, "input_tokens": 2400, "output_tokens": 600, "cost_usd": 0.0}


def test_configuration_from_environment_and_file(tmp_path, monkeypatch):
    env = {"BACKFORGE_LLM_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": "sk-env", "BACKFORGE_LLM_TIMEOUT": "30",
           "HOME": str(tmp_path)}
    config = load_llm_config(environ=env)
    assert (config.provider, config.model, config.timeout, config.api_key.get_secret_value()) == \
           ("openai", "gpt-4o-mini", 30.0, "sk-env")
    assert "sk-env" not in repr(config) and "sk-env" not in config.model_dump_json()
    assert config.prices() == (0.15, 0.60)
    file = tmp_path / "llm.yaml"
    file.write_text("provider: anthropic\nmodel: claude-3-5-haiku-latest\napi_key_env: MY_KEY\n"
                    "escalate: {model: claude-sonnet-4-0}\n")
    config = load_llm_config(file, environ={"MY_KEY": "sk-file", "HOME": str(tmp_path)})
    assert [c.describe() for c in config.chain()] == ["anthropic:claude-3-5-haiku-latest", "anthropic:claude-sonnet-4-0"]
    assert config.escalate.api_key.get_secret_value() == "sk-file"
    strategy = tmp_path / "strategy.yaml"
    strategy.write_text("name: x\nuniverse: [A]\nstrategies: []\nmodel: gpt-4o\n")
    with pytest.raises(Exception, match="never from a strategy file"):
        load_llm_config(strategy, environ={"HOME": str(tmp_path)})
    with pytest.raises(NotConfiguredError, match="no LLM is configured: set BACKFORGE_LLM_MODEL"):
        load_llm_config(environ={"HOME": str(tmp_path)})
    with pytest.raises(Exception, match="unknown LLM provider 'opnai'; did you mean 'openai'"):
        load_llm_config(environ={"HOME": str(tmp_path), "BACKFORGE_LLM_PROVIDER": "opnai", "BACKFORGE_LLM_MODEL": "m"})

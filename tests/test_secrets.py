"""Configured secrets never reach a message, a log line or a file (issue 10, item 2).

The LLM path goes through the real ``openai`` and ``anthropic`` SDKs against the loopback fake server of
the judge tests, whose 5xx error bodies echo the API key back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from backforge import _secrets
from backforge._cli import friendly_errors
from backforge._secrets import redact, redact_data, register_secret, unregister_secret
from backforge.errors import BackforgeError

sys.path.insert(0, str(Path(__file__).parent / "judge"))
from fake_llm import FakeLLMServer, Reply  # noqa: E402

KEY = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc"


def _leaks(text: str, secret: str = KEY) -> bool:
    """True when ``text`` holds the secret or any 10-character piece of its random part."""
    body = secret[8:]
    return secret in text or any(body[i:i + 10] in text for i in range(len(body) - 9))


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(api_key=KEY) as fake:
        yield fake


@pytest.mark.parametrize("provider", ["openai", pytest.param("anthropic", marks=pytest.mark.slow)])
@pytest.mark.parametrize("padding", [0, 120])  # 120: the key straddles the 160-character cut of the detail
def test_a_5xx_body_that_echoes_the_key_does_not_show_it(server, provider, padding):
    from backforge.judge import ProviderError
    from backforge.judge.llm import LLMClient, LLMConfig

    server.reset()
    server.fallback = lambda body, api: Reply(status=503, message="x" * padding + f" upstream refused key {KEY} (retry)")
    url = server.openai_url if provider == "openai" else server.url
    config = LLMConfig(provider=provider, model="m", api_key=KEY, base_url=url, cache_dir=None, max_retries=0, timeout=5)
    client = LLMClient(config)
    with pytest.raises(ProviderError) as info:
        client.ask("review", "system", "user", parse=lambda text: text)
    message = str(info.value)
    assert "HTTP 503" in message, message
    if not padding:
        assert "upstream refused key *** (retry)" in message, message
    assert not _leaks(message), message
    assert not any(_leaks(record.outcome) for record in client.calls)


def test_friendly_errors_redact_registered_and_environment_secrets(monkeypatch):
    app = typer.Typer()

    @app.command()
    @friendly_errors
    def fail(which: str) -> None:
        raise BackforgeError(f"the broker said: bad credentials {which}")

    monkeypatch.setenv("EXAMPLE_BROKER_SECRET", "env-only-secret-value-123")
    result = CliRunner().invoke(app, ["env-only-secret-value-123"])
    assert result.exit_code == 2 and "env-only-secret-value-123" not in result.output and "***" in result.output
    register_secret("registered-secret-456")
    try:
        result = CliRunner().invoke(app, ["registered-secret-456"])
        assert result.exit_code == 2 and result.output.strip() == "error: the broker said: bad credentials ***"
    finally:
        unregister_secret("registered-secret-456")
    assert redact("registered-secret-456") == "registered-secret-456"


def test_encoded_forms_short_values_and_nested_data():
    register_secret("p@ss/word:with\"quotes")
    try:
        assert redact("url=https://h/?k=p%40ss%2Fword%3Awith%22quotes") == "url=https://h/?k=***"
        assert redact('{"key": "p@ss/word:with\\"quotes"}') == '{"key": "***"}'
        assert redact_data({"a": ("p@ss/word:with\"quotes", 1)}) == {"a": ("***", 1)}
    finally:
        unregister_secret("p@ss/word:with\"quotes")
    register_secret("abc")  # too short to redact without destroying unrelated text
    assert redact("abcdef") == "abcdef" and "abc" not in _secrets._registered


def test_environment_names_that_count_as_secrets():
    names = {"OPENAI_API_KEY": True, "ANTHROPIC_API_KEY": True, "BACKFORGE_LLM_API_KEY": True, "ALPACA_SECRET_KEY": True,
             "OANDA_TOKEN": True, "BROKER_PASSWORD": True, "AWS_SECRET_ACCESS_KEY": True,
             "BACKFORGE_LLM_MAX_TOKENS": False, "BACKFORGE_LLM_MODEL": False, "PATH": False, "KEYBOARD": False}
    for name, secret in names.items():
        assert bool(_secrets.SECRET_ENVIRONMENT_NAME.search(name)) is secret, name

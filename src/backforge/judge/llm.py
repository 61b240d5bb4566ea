"""LLM providers and structured answers: configuration, calls, validation with retries, escalation,
token and cost accounting, and a cache keyed by the hash of each call's input.

Two wire formats, through their official SDKs:

* ``provider: openai`` — OpenAI-compatible chat completions (the ``openai`` SDK with a configurable base
  URL), which also covers local servers: Ollama (``http://localhost:11434/v1``), vLLM, llama.cpp;
* ``provider: anthropic`` — Anthropic messages (the ``anthropic`` SDK).

Configuration comes from the environment or a config file, never from a strategy file; the API key is a
secret (never printed, logged, cached or saved in a run):

==============================  ===========================================================
environment variable            meaning
==============================  ===========================================================
``BACKFORGE_LLM_PROVIDER``      ``openai`` or ``anthropic`` (default: openai, or anthropic when
                                only ``ANTHROPIC_API_KEY`` is set)
``BACKFORGE_LLM_MODEL``         the model name (required)
``BACKFORGE_LLM_API_KEY``       the key (else ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``)
``BACKFORGE_LLM_BASE_URL``      the server (else the SDK's default or ``OPENAI_BASE_URL``...)
``BACKFORGE_LLM_TIMEOUT``       seconds per request (default 120)
``BACKFORGE_LLM_MAX_RETRIES``   the SDK's retries on 429, 5xx and timeouts (default 2)
``BACKFORGE_LLM_ATTEMPTS``      answers tried per model before escalating (default 3)
``BACKFORGE_LLM_PRICE_INPUT``   USD per million input tokens (for the cost of each call)
``BACKFORGE_LLM_PRICE_OUTPUT``  USD per million output tokens
``BACKFORGE_LLM_ESCALATE_MODEL``  a stronger model tried when the first never answers validly
``BACKFORGE_LLM_ESCALATE_PROVIDER``, ``..._API_KEY``, ``..._BASE_URL``  its provider, key, server
``BACKFORGE_LLM_CACHE``         cache folder (default ``~/.cache/backforge/llm``), ``off`` to disable
``BACKFORGE_LLM_CONFIG``        a YAML/TOML file with the same settings (see :func:`load_llm_config`)
==============================  ===========================================================

Examples
--------
>>> config = load_llm_config(environ={"BACKFORGE_LLM_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": "sk-secret"})
>>> config.provider, config.model, "sk-secret" in repr(config)
('openai', 'gpt-4o-mini', False)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from backforge._paths import cache_dir, config_dir

from backforge._secrets import redact, register_secret
from backforge.errors import ConfigError
from backforge.judge.errors import InvalidAnswerError, NotConfiguredError, ProviderError

__all__ = [
    "LLMConfig",
    "load_llm_config",
    "CallRecord",
    "Completion",
    "AnswerError",
    "LLMClient",
    "parse_json_answer",
    "extract_json",
    "validation_feedback",
    "KNOWN_PRICES",
    "HOW_TO_CONFIGURE",
]

T = TypeVar("T")

KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}
"""USD per million (input, output) tokens of a few models, matched by name prefix, as published in
2025; set ``price_input_per_mtok``/``price_output_per_mtok`` (or the environment variables) for others.
Calls to a loopback server (a local model) cost 0 unless prices are set."""

HOW_TO_CONFIGURE = (
    "no LLM is configured: set BACKFORGE_LLM_MODEL (e.g. gpt-4o-mini or claude-sonnet-4-0) and an API key "
    "(BACKFORGE_LLM_API_KEY, OPENAI_API_KEY or ANTHROPIC_API_KEY), or BACKFORGE_LLM_BASE_URL for a local server "
    "such as Ollama (http://localhost:11434/v1); BACKFORGE_LLM_PROVIDER=anthropic for Claude; or pass --llm-config "
    "FILE (see docs/judge.md)"
)


class LLMConfig(BaseModel):
    """One model to call: provider, model, key, server, limits and prices (frozen; the key is secret).

    Examples
    --------
    >>> LLMConfig(provider="anthropic", model="claude-sonnet-4-0", api_key="k").api_key
    SecretStr('**********')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["openai", "anthropic"] = "openai"
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    attempts: int = Field(3, ge=1, le=10, description="answers tried before escalating")
    max_tokens: int = Field(4096, ge=16)
    temperature: float = Field(0.0, ge=0, le=2)
    json_mode: bool = Field(True, description="ask OpenAI-compatible servers for a JSON object response")
    price_input_per_mtok: float | None = Field(None, ge=0)
    price_output_per_mtok: float | None = Field(None, ge=0)
    cache_dir: str | None = None
    escalate: "LLMConfig | None" = None

    def model_post_init(self, __context: Any) -> None:
        register_secret(self.api_key)  # redacted from every message, log line and file from now on

    def chain(self) -> list["LLMConfig"]:
        """This model and the models it escalates to, in order."""
        out, node = [], self
        while node is not None and len(out) < 5:
            out.append(node)
            node = node.escalate
        return out

    def prices(self) -> tuple[float, float] | None:
        """USD per million input and output tokens, or None when unknown."""
        if self.price_input_per_mtok is not None or self.price_output_per_mtok is not None:
            return float(self.price_input_per_mtok or 0.0), float(self.price_output_per_mtok or 0.0)
        for prefix, prices in sorted(KNOWN_PRICES.items(), key=lambda item: -len(item[0])):
            if self.model.startswith(prefix) and not _is_loopback(self.base_url):
                return prices
        if _is_loopback(self.base_url):
            return 0.0, 0.0
        return None

    def describe(self) -> str:
        """``"openai:gpt-4o-mini"`` (no key, no URL)."""
        return f"{self.provider}:{self.model}"


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = re.sub(r"^[a-z]+://", "", url.strip().lower()).split("/")[0].split(":")[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


class _LLMEnvironment(BaseSettings):
    """The ``BACKFORGE_LLM_*`` variables, read and typed by pydantic-settings (empty values are unset).

    Examples
    --------
    >>> _LLMEnvironment.read({"BACKFORGE_LLM_MODEL": "m", "BACKFORGE_LLM_TIMEOUT": "30", "OTHER": "x"}).timeout
    30.0
    """

    model_config = SettingsConfigDict(env_prefix="BACKFORGE_LLM_", case_sensitive=False, env_ignore_empty=True,
                                      extra="ignore", frozen=True)

    provider: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    attempts: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    price_input: float | None = None
    price_output: float | None = None
    cache: str | None = None
    config: str | None = None
    escalate_model: str | None = None
    escalate_provider: str | None = None
    escalate_api_key: SecretStr | None = None
    escalate_base_url: str | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_MappingEnvSource(settings_cls),)

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> "_LLMEnvironment":
        """The variables of ``environ`` (a mapping, not necessarily ``os.environ``)."""
        token = _ENVIRON.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            err = exc.errors()[0]
            name = f"BACKFORGE_LLM_{str(err['loc'][0]).upper()}"
            raise ConfigError(f"{name} must be a number, got {err['input']!r}", field=name) from None
        finally:
            _ENVIRON.reset(token)


_ENVIRON: ContextVar[Mapping[str, str]] = ContextVar("backforge_llm_environ")


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over the mapping given to :func:`load_llm_config`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # exact, upper-case names only (the mapping is matched case-insensitively by pydantic-settings)
        environ = {key: value for key, value in _ENVIRON.get().items()
                   if key.startswith("BACKFORGE_LLM_") and key == key.upper()}
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


# LLMConfig field <- _LLMEnvironment field, for the numbers
_ENV_NUMBERS = {"timeout": "timeout", "max_retries": "max_retries", "attempts": "attempts", "max_tokens": "max_tokens",
                "temperature": "temperature", "price_input_per_mtok": "price_input",
                "price_output_per_mtok": "price_output"}


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError("LLM config file not found", path=str(path))
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error means a bad file
        raise ConfigError(f"cannot parse the LLM config file: {str(exc).splitlines()[0]}", path=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("an LLM config file must be a mapping (provider, model, ...)", path=str(path))
    if "strategies" in data or "universe" in data:
        raise ConfigError("this is a strategy file; LLM settings come from the environment or their own file, never "
                          "from a strategy file", path=str(path))
    return data


def _section_config(data: Mapping[str, Any], environ: Mapping[str, str], *, where: str,
                    inherit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Normalize one config mapping (file section) into LLMConfig fields."""
    out: dict[str, Any] = dict(inherit or {})
    out.pop("escalate", None)
    for key, value in data.items():
        if key == "escalate":
            continue
        if key == "api_key_env":
            if not isinstance(value, str) or not environ.get(value):
                raise ConfigError(f"api_key_env names {value!r}, which is not set in the environment", path=where)
            out["api_key"] = environ[value]
        else:
            out[key] = value
    return out


def load_llm_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                    provider: str | None = None, model: str | None = None, base_url: str | None = None,
                    required: bool = True) -> LLMConfig | None:
    """The LLM configuration from arguments, the environment and an optional config file.

    Precedence: the arguments, then ``BACKFORGE_LLM_*`` variables, then the file (``path``, else
    ``$BACKFORGE_LLM_CONFIG``, else ``$XDG_CONFIG_HOME/backforge/llm.yaml`` when it exists). A file holds
    the fields of :class:`LLMConfig` (``api_key_env: NAME`` reads the key from the environment) and an
    optional ``escalate:`` section for the stronger model (whose missing fields are inherited).

    Parameters
    ----------
    path
        A YAML or TOML file.
    environ
        The environment (default ``os.environ``).
    provider, model, base_url
        Overrides (e.g. from command-line options).
    required
        Raise :class:`~backforge.judge.errors.NotConfiguredError` (saying how to configure one) when
        no model is configured; otherwise return None.

    Returns
    -------
    LLMConfig or None

    Examples
    --------
    >>> env = {"BACKFORGE_LLM_PROVIDER": "anthropic", "BACKFORGE_LLM_MODEL": "claude-3-5-haiku-latest",
    ...        "ANTHROPIC_API_KEY": "k", "BACKFORGE_LLM_ESCALATE_MODEL": "claude-sonnet-4-0"}
    >>> [c.describe() for c in load_llm_config(environ=env).chain()]
    ['anthropic:claude-3-5-haiku-latest', 'anthropic:claude-sonnet-4-0']
    >>> load_llm_config(environ={}, required=False) is None
    True
    """
    env = os.environ if environ is None else environ
    settings = _LLMEnvironment.read(env)
    file_data: dict[str, Any] = {}
    where = None
    if path is None and settings.config:
        path = settings.config
    if path is None:
        default = config_dir(env) / "llm.yaml"
        if default.is_file():
            path = default
    if path is not None:
        where = str(path)
        file_data = _read_file(Path(path).expanduser())
    fields = _section_config(file_data, env, where=where or "config")
    if settings.provider:
        fields["provider"] = settings.provider.strip().lower()
    if settings.model:
        fields["model"] = settings.model.strip()
    if settings.base_url:
        fields["base_url"] = settings.base_url.strip()
    if settings.api_key:
        fields["api_key"] = settings.api_key.get_secret_value()
    for name, variable in _ENV_NUMBERS.items():
        if getattr(settings, variable) is not None:
            fields[name] = getattr(settings, variable)
    cache = settings.cache
    if cache:
        fields["cache_dir"] = None if cache.strip().lower() in ("off", "0", "false", "no") else cache
        fields["_cache_off"] = cache.strip().lower() in ("off", "0", "false", "no")
    if provider:
        fields["provider"] = provider.strip().lower()
    if model:
        fields["model"] = model.strip()
    if base_url:
        fields["base_url"] = base_url.strip()
    if "provider" not in fields:
        fields["provider"] = "anthropic" if env.get("ANTHROPIC_API_KEY") and not env.get("OPENAI_API_KEY") else "openai"
    if fields["provider"] not in ("openai", "anthropic"):
        from backforge.errors import did_you_mean

        raise ConfigError(f"unknown LLM provider {fields['provider']!r}{did_you_mean(fields['provider'], ['openai', 'anthropic'])}"
                          " (openai covers every OpenAI-compatible server: Ollama, vLLM, llama.cpp)",
                          field="BACKFORGE_LLM_PROVIDER")
    if not fields.get("model"):
        if not required:
            return None
        raise NotConfiguredError(HOW_TO_CONFIGURE)
    cache_off = fields.pop("_cache_off", False)
    if "cache_dir" not in fields and not cache_off:
        fields["cache_dir"] = str(cache_dir(env) / "llm")
    if "api_key" not in fields:
        fallback = "ANTHROPIC_API_KEY" if fields["provider"] == "anthropic" else "OPENAI_API_KEY"
        if env.get(fallback):
            fields["api_key"] = env[fallback]
    escalate_data = dict(file_data.get("escalate") or {})
    if settings.escalate_model:
        escalate_data["model"] = settings.escalate_model.strip()
    for name, value in (("provider", settings.escalate_provider), ("base_url", settings.escalate_base_url),
                        ("api_key", settings.escalate_api_key)):
        if value:
            escalate_data[name] = (value.get_secret_value() if isinstance(value, SecretStr) else value).strip()
    try:
        if escalate_data.get("model"):
            inherited = {k: v for k, v in fields.items() if k != "model"}
            if escalate_data.get("provider") and escalate_data["provider"] != fields["provider"]:
                inherited.pop("api_key", None)
                inherited.pop("base_url", None)
                other = "ANTHROPIC_API_KEY" if escalate_data["provider"] == "anthropic" else "OPENAI_API_KEY"
                if env.get(other):
                    inherited["api_key"] = env[other]
            for name in ("price_input_per_mtok", "price_output_per_mtok"):
                inherited.pop(name, None)
            fields["escalate"] = LLMConfig(**_section_config(escalate_data, env, where=where or "escalate",
                                                             inherit=inherited))
        return LLMConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid LLM setting {loc or ''}: {err['msg']}", path=where, field=loc or None) from None


# ========================================================================================== calls
@dataclass(frozen=True)
class Completion:
    """The text of one model answer and its token usage."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    model: str


@dataclass(frozen=True)
class CallRecord:
    """One call (or cache hit): what it was for, which model, tokens, cost, time and outcome.

    Never holds the key or the server's address.
    """

    purpose: str
    provider: str
    model: str
    attempt: int
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    seconds: float
    cached: bool
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict."""
        return asdict(self)


class AnswerError(Exception):
    """An answer that does not parse or validate; its message is fed back to the model."""


def extract_json(text: str) -> Any:
    """The JSON object in a model's answer (Markdown fences and surrounding prose are ignored).

    Examples
    --------
    >>> extract_json('Here you go:\\n```json\\n{"a": 1}\\n```')
    {'a': 1}
    """
    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", stripped, flags=re.S)
    candidates = [fenced.group(1).strip()] if fenced else []
    candidates.append(stripped)
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        candidates.append(stripped[first:last + 1])
    error = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError as exc:
            error = error or exc
    if error is None or first < 0:
        raise AnswerError("the answer holds no JSON object; answer with one JSON object only, no prose")
    raise AnswerError(f"the answer is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                      "answer with one JSON object only")


def validation_feedback(exc: ValidationError, *, limit: int = 8) -> str:
    """A compact list of pydantic validation errors (path: problem, got value) for the model.

    Examples
    --------
    >>> from pydantic import BaseModel
    >>> class M(BaseModel):
    ...     x: int
    >>> try:
    ...     M.model_validate({"x": "a"})
    ... except ValidationError as e:
    ...     print(validation_feedback(e))
    x: Input should be a valid integer, unable to parse string as an integer (got "a")
    """
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        got = err.get("input")
        shown = json.dumps(got)[:120] if isinstance(got, (dict, list, str, int, float, bool)) else repr(got)[:120]
        lines.append(f"{loc}: {err['msg']} (got {shown})")
    more = len(exc.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return "; ".join(lines)


def parse_json_answer(text: str, model: type[BaseModel], check: Callable[[Any], list[str]] | None = None) -> Any:
    """Parse and validate an answer: JSON, then the pydantic ``model``, then ``check`` (problems found).

    Raises :class:`AnswerError` with a message fit to send back to the model.

    Examples
    --------
    >>> from backforge.judge.recommendations import Review
    >>> parse_json_answer('{"verdict": "fragile", "summary": "thin edge"}', Review).verdict
    'fragile'
    >>> try:
    ...     parse_json_answer('{"verdict": "great"}', Review)
    ... except AnswerError as e:
    ...     print(str(e)[:59])
    the answer does not match the schema: verdict: Input should
    """
    data = extract_json(text)
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        raise AnswerError(f"the answer does not match the schema: {validation_feedback(exc)}") from None
    if check is not None:
        problems = check(value)
        if problems:
            raise AnswerError("the answer is valid JSON but cannot be used: " + "; ".join(problems[:8]))
    return value


def _sdk_error(exc: Exception, config: LLMConfig) -> ProviderError:
    """One clear message for an SDK exception (no key, no URL in it)."""
    module = type(exc).__module__.split(".")[0]
    sdk: Any
    if module == "anthropic":
        import anthropic as sdk
    else:
        import openai as sdk
    tries = config.max_retries + 1
    who = f"{config.provider} model {config.model!r}"
    env_key = "ANTHROPIC_API_KEY" if config.provider == "anthropic" else "OPENAI_API_KEY"
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(f"{who} did not answer within {config.timeout:g} s ({tries} attempts); raise "
                             "BACKFORGE_LLM_TIMEOUT or use a faster model", escalate=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(f"cannot reach the LLM provider for {who} (connection failed); check "
                             "BACKFORGE_LLM_BASE_URL and that the server is running")
    status = getattr(exc, "status_code", None)
    detail = _error_detail(exc)
    if isinstance(exc, sdk.AuthenticationError) or status == 401:
        return ProviderError(f"the LLM provider rejected the API key for {who} (401 unauthorized); set a valid key in "
                             f"BACKFORGE_LLM_API_KEY or {env_key}")
    if isinstance(exc, sdk.PermissionDeniedError) or status == 403:
        return ProviderError(f"the API key may not use {who} (403 forbidden){detail}; check the key's permissions")
    if isinstance(exc, sdk.NotFoundError) or status == 404:
        return ProviderError(f"the provider does not know {who} (404){detail}; check BACKFORGE_LLM_MODEL (and the base "
                             "URL's /v1 suffix for OpenAI-compatible servers)")
    if isinstance(exc, sdk.RateLimitError) or status == 429:
        return ProviderError(f"{who} is rate-limited (429) after {tries} attempts{detail}; wait and retry, or set a "
                             "fallback with BACKFORGE_LLM_ESCALATE_MODEL", escalate=True)
    if status is not None and status >= 500:
        return ProviderError(f"the LLM provider failed with HTTP {status} for {who} after {tries} attempts{detail}; "
                             "retry later", escalate=True)
    if status is not None:
        return ProviderError(f"the LLM provider refused the request for {who} (HTTP {status}){detail}", escalate=True)
    return ProviderError(f"the call to {who} failed: {type(exc).__name__}{detail}", escalate=True)


def _error_detail(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else str(inner)
    if not message:
        return ""
    text = " ".join(redact(message).split())[:160]  # redact before cutting: half a key would not match
    return f": {text}"


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


class _OpenAIProvider:
    def __init__(self, config: LLMConfig) -> None:
        import openai

        key = _secret(config.api_key)
        if key is None and (config.base_url or os.environ.get("OPENAI_BASE_URL")):
            key = "not-needed"  # local OpenAI-compatible servers ignore the key
        if key is None:
            raise ProviderError(f"no API key for openai model {config.model!r}: set BACKFORGE_LLM_API_KEY or "
                                "OPENAI_API_KEY (a local server needs BACKFORGE_LLM_BASE_URL instead)")
        self.config = config
        self.sdk = openai
        self.client = openai.OpenAI(api_key=key, base_url=config.base_url, timeout=config.timeout,
                                    max_retries=config.max_retries)

    def complete(self, system: str, messages: list[dict[str, str]]) -> Completion:
        kwargs: dict[str, Any] = {"model": self.config.model, "max_tokens": self.config.max_tokens,
                                  "temperature": self.config.temperature,
                                  "messages": [{"role": "system", "content": system}, *messages]}
        if self.config.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = self.client.chat.completions.create(**kwargs)
        except self.sdk.OpenAIError as exc:
            raise _sdk_error(exc, self.config) from None
        choices = getattr(response, "choices", None) or []
        text = (choices[0].message.content or "") if choices else ""
        usage = getattr(response, "usage", None)
        return Completion(text=text, input_tokens=getattr(usage, "prompt_tokens", None),
                          output_tokens=getattr(usage, "completion_tokens", None),
                          model=getattr(response, "model", None) or self.config.model)


class _AnthropicProvider:
    def __init__(self, config: LLMConfig) -> None:
        import anthropic

        key = _secret(config.api_key)
        if key is None and config.base_url:
            key = "not-needed"
        if key is None:
            raise ProviderError(f"no API key for anthropic model {config.model!r}: set BACKFORGE_LLM_API_KEY or "
                                "ANTHROPIC_API_KEY")
        self.config = config
        self.sdk = anthropic
        self.client = anthropic.Anthropic(api_key=key, base_url=config.base_url, timeout=config.timeout,
                                          max_retries=config.max_retries)
        import inspect

        # recent SDKs dropped the temperature argument of messages.create; send it only where it exists
        self._takes_temperature = "temperature" in inspect.signature(self.client.messages.create).parameters

    def complete(self, system: str, messages: list[dict[str, str]]) -> Completion:
        kwargs: dict[str, Any] = {"model": self.config.model, "max_tokens": self.config.max_tokens, "system": system,
                                  "messages": messages}
        if self._takes_temperature:
            kwargs["temperature"] = self.config.temperature
        try:
            response = self.client.messages.create(**kwargs)
        except self.sdk.AnthropicError as exc:
            raise _sdk_error(exc, self.config) from None
        text = "".join(getattr(block, "text", "") for block in (response.content or [])
                       if getattr(block, "type", None) == "text")
        usage = getattr(response, "usage", None)
        return Completion(text=text, input_tokens=getattr(usage, "input_tokens", None),
                          output_tokens=getattr(usage, "output_tokens", None),
                          model=getattr(response, "model", None) or self.config.model)


def _provider(config: LLMConfig) -> Any:
    try:
        if config.provider == "anthropic":
            return _AnthropicProvider(config)
        return _OpenAIProvider(config)
    except ImportError:
        raise ProviderError(f"the {config.provider} package is not installed: pip install {config.provider}") from None


_RETRY_PROMPT = ("Your previous answer was rejected: {error}\nReturn the corrected answer: a single JSON object that "
                 "follows the schema, with nothing before or after it.")


class LLMClient:
    """Calls a configured model for structured answers, with validation, retries, escalation, a cache,
    and a record of every call.

    For each request, up to ``attempts`` answers are asked from the first model; an answer that does
    not parse or validate is sent back with the error so the model can correct it. When the attempts
    run out (or the provider times out, rate-limits or fails), the next model of the chain
    (``escalate``) is tried the same way. A wrong key, an unknown model or an unreachable server fail
    at once with one clear message. Valid answers are cached by the SHA-256 of the request (model,
    messages, settings) — a corrected answer also under the original request — so the same request
    later costs nothing. Invalid answers are never cached.

    Parameters
    ----------
    config
        The model (and its escalation chain).

    Examples
    --------
    >>> client = LLMClient(LLMConfig(model="gpt-4o-mini", api_key="k", cache_dir=None))
    >>> client.totals()
    {'calls': 0, 'cached': 0, 'input_tokens': 0, 'output_tokens': 0, 'cost_usd': 0.0}
    """

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.calls: list[CallRecord] = []
        self._providers: dict[int, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    def _provider_for(self, config: LLMConfig) -> Any:
        with self._lock:
            key = id(config)
            if key not in self._providers:
                self._providers[key] = _provider(config)
            return self._providers[key]

    @staticmethod
    def _cache_key(config: LLMConfig, system: str, messages: list[dict[str, str]]) -> str:
        payload = {"provider": config.provider, "model": config.model, "base_url": config.base_url or "",
                   "max_tokens": config.max_tokens, "temperature": config.temperature, "json_mode": config.json_mode,
                   "system": system, "messages": messages}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _cache_get(self, config: LLMConfig, key: str) -> Completion | None:
        if not config.cache_dir:
            return None
        file = Path(config.cache_dir).expanduser() / f"{key}.json"
        try:
            data = json.loads(file.read_text())
            return Completion(text=data["text"], input_tokens=data.get("input_tokens"),
                              output_tokens=data.get("output_tokens"), model=data.get("model", config.model))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _cache_put(self, config: LLMConfig, key: str, completion: Completion) -> None:
        if not config.cache_dir:
            return
        folder = Path(config.cache_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_text(json.dumps({"text": completion.text, "input_tokens": completion.input_tokens,
                                       "output_tokens": completion.output_tokens, "model": completion.model}))
            os.replace(tmp, folder / f"{key}.json")
        except OSError:
            pass  # a cache that cannot be written only costs a repeated call

    def _record(self, purpose: str, config: LLMConfig, attempt: int, completion: Completion | None, seconds: float,
                cached: bool, outcome: str) -> None:
        cost = None
        if completion is not None and not cached:
            prices = config.prices()
            if prices is not None:
                cost = ((completion.input_tokens or 0) * prices[0] + (completion.output_tokens or 0) * prices[1]) / 1e6
        elif cached:
            cost = 0.0
        record = CallRecord(purpose=purpose, provider=config.provider, model=config.model, attempt=attempt,
                            input_tokens=None if completion is None else completion.input_tokens,
                            output_tokens=None if completion is None else completion.output_tokens,
                            cost_usd=cost, seconds=round(seconds, 3), cached=cached, outcome=redact(outcome)[:300])
        with self._lock:
            self.calls.append(record)

    # ------------------------------------------------------------------ public
    def ask(self, purpose: str, system: str, user: str, parse: Callable[[str], T]) -> T:
        """Ask for a structured answer and return what ``parse`` makes of it.

        Parameters
        ----------
        purpose
            A label recorded with each call (``"review"``, ``"generate:plan"``...).
        system, user
            The system prompt and the user message.
        parse
            Turns the answer's text into a value; raises :class:`AnswerError` when it is unusable (its
            message is sent back to the model).

        Raises
        ------
        ProviderError
            The provider cannot be used (one clear message saying what to do).
        InvalidAnswerError
            No model of the chain gave a valid answer.
        """
        failures: list[str] = []
        invalid_answers = 0
        last_provider_error: ProviderError | None = None
        for config in self.config.chain():
            messages: list[dict[str, str]] = [{"role": "user", "content": user}]
            first_key = self._cache_key(config, system, messages)
            for attempt in range(1, config.attempts + 1):
                key = self._cache_key(config, system, messages)
                started = time.perf_counter()
                completion = self._cache_get(config, key)
                cached = completion is not None
                if completion is None:
                    try:
                        completion = self._provider_for(config).complete(system, messages)
                    except ProviderError as exc:
                        self._record(purpose, config, attempt, None, time.perf_counter() - started, False,
                                     f"error: {exc.message}")
                        if not exc.escalate:
                            raise
                        last_provider_error = exc
                        failures.append(f"{config.describe()}: {exc.message}")
                        break
                try:
                    value = parse(completion.text)
                except AnswerError as exc:
                    invalid_answers += 1
                    self._record(purpose, config, attempt, completion, time.perf_counter() - started, cached,
                                 f"invalid: {exc}")
                    failures.append(f"{config.describe()} attempt {attempt}: {exc}")
                    messages = [*messages, {"role": "assistant", "content": completion.text or "(empty)"},
                                {"role": "user", "content": _RETRY_PROMPT.format(error=exc)}]
                    continue
                self._record(purpose, config, attempt, completion, time.perf_counter() - started, cached, "valid")
                if not cached:
                    self._cache_put(config, key, completion)
                if key != first_key:  # the same request later gets the corrected answer at once
                    self._cache_put(config, first_key, completion)
                return value
        models = ", ".join(c.describe() for c in self.config.chain())
        if last_provider_error is not None and invalid_answers == 0:
            raise last_provider_error
        last = redact(failures[-1]) if failures else "no answer"
        raise InvalidAnswerError(f"no valid answer from {models} after {invalid_answers} invalid answer(s) (last: "
                                 f"{last[:300]}); try a stronger model (BACKFORGE_LLM_ESCALATE_MODEL) or the rule-based "
                                 "reviewer")

    def close(self) -> None:
        """Close the HTTP connections of the providers used so far."""
        with self._lock:
            providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            try:
                provider.client.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def totals(self) -> dict[str, Any]:
        """Calls, cache hits, tokens and cost so far (cost counts only calls with known prices)."""
        with self._lock:
            calls = list(self.calls)
        return {
            "calls": sum(1 for c in calls if not c.cached), "cached": sum(1 for c in calls if c.cached),
            "input_tokens": sum(c.input_tokens or 0 for c in calls if not c.cached),
            "output_tokens": sum(c.output_tokens or 0 for c in calls if not c.cached),
            "cost_usd": round(float(sum(c.cost_usd or 0.0 for c in calls)), 6),
        }

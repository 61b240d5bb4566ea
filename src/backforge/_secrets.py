"""One place that keeps configured secrets out of every message, log line and file.

Anything that holds a secret (an LLM API key, a broker key or password) registers it once with
:func:`register_secret`; anything that shows or stores text a secret might have reached — an error
message, a log record, a provider's error body, a JSON file — passes it through :func:`redact` (or
:func:`redact_data` for nested JSON-like values). Each registered value is replaced by ``***`` wherever it
occurs, also in its URL-encoded and JSON-escaped forms. Values of environment variables whose names
say they are secrets (``*_API_KEY``, ``*_SECRET``, ``*_TOKEN``, ``*_PASSWORD``, ...) are redacted too,
without registration, so a key that only lives in the environment is covered as well.

Redact *before* shortening text: a key cut in half by ``text[:160]`` no longer matches.

Values shorter than :data:`MIN_SECRET_LENGTH` characters are not registered: replacing them would mangle
unrelated text, and no real key is that short.

Examples
--------
>>> register_secret("sk-live-0123456789abcdef")
>>> redact("HTTP 500: upstream refused key sk-live-0123456789abcdef")
'HTTP 500: upstream refused key ***'
>>> redact("url-encoded: sk-live-0123456789abcdef%21") == "url-encoded: ***%21"
True
>>> redact_data({"error": ["sk-live-0123456789abcdef"], "n": 3})
{'error': ['***'], 'n': 3}
>>> unregister_secret("sk-live-0123456789abcdef")
>>> redact("sk-live-0123456789abcdef")
'sk-live-0123456789abcdef'
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any, Iterable, Mapping
from urllib.parse import quote

__all__ = ["REDACTED", "MIN_SECRET_LENGTH", "register_secret", "unregister_secret", "redact", "redact_data",
           "RedactingFilter", "SECRET_ENVIRONMENT_NAME"]

REDACTED = "***"
MIN_SECRET_LENGTH = 6
SECRET_ENVIRONMENT_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|SECRET(?:_ACCESS)?(?:_KEY)?|ACCESS_KEY(?:_ID)?|PRIVATE_KEY|TOKEN|PASSWORD|PASSWD|PASSPHRASE)$",
    re.IGNORECASE,
)

_lock = threading.Lock()
_registered: dict[str, int] = {}  # value -> registration count
_pattern_source: tuple[frozenset[str], re.Pattern[str] | None] = (frozenset(), None)


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)  # pydantic SecretStr / SecretBytes
    text = getter() if callable(getter) else value
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return str(text)


def register_secret(value: Any) -> None:
    """Redact ``value`` (a ``str``, ``bytes`` or pydantic ``SecretStr``) from everything passed to :func:`redact`.

    ``None`` and values shorter than :data:`MIN_SECRET_LENGTH` are ignored. Registering the same value
    twice is harmless; each registration is undone by one :func:`unregister_secret`.
    """
    text = _plain(value)
    if text is None or len(text) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _registered[text] = _registered.get(text, 0) + 1


def unregister_secret(value: Any) -> None:
    """Undo one :func:`register_secret` of ``value`` (e.g. when a broker session with that key is closed)."""
    text = _plain(value)
    with _lock:
        if text in _registered:
            _registered[text] -= 1
            if _registered[text] <= 0:
                del _registered[text]


def _environment_secrets(environ: Mapping[str, str]) -> Iterable[str]:
    for name, value in environ.items():
        if value and len(value) >= MIN_SECRET_LENGTH and SECRET_ENVIRONMENT_NAME.search(name):
            yield value


def _forms(value: str) -> set[str]:
    forms = {value, quote(value, safe=""), json.dumps(value)[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _pattern() -> re.Pattern[str] | None:
    global _pattern_source
    with _lock:
        values = frozenset([*_registered, *_environment_secrets(os.environ)])
        cached_values, cached = _pattern_source
        if values == cached_values:
            return cached
        forms = sorted({f for v in values for f in _forms(v)}, key=len, reverse=True)  # longest first
        pattern = re.compile("|".join(map(re.escape, forms))) if forms else None
        _pattern_source = (values, pattern)
        return pattern


def redact(text: Any) -> str:
    """``text`` (made a string) with every registered or environment secret replaced by ``***``.

    Examples
    --------
    >>> import os
    >>> os.environ["EXAMPLE_BROKER_API_KEY"] = "AKIA-EXAMPLE-42"
    >>> redact("auth failed for AKIA-EXAMPLE-42")
    'auth failed for ***'
    >>> del os.environ["EXAMPLE_BROKER_API_KEY"]
    """
    text = str(text)
    pattern = _pattern()
    return pattern.sub(REDACTED, text) if pattern is not None else text


def redact_data(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings) with :func:`redact` applied to every string,
    keys included; other values are returned as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact(k) if isinstance(k, str) else k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's formatted message (attach it to a handler or logger).

    Examples
    --------
    >>> import logging, io
    >>> register_secret("hunter2-password")
    >>> stream = io.StringIO(); handler = logging.StreamHandler(stream); handler.addFilter(RedactingFilter())
    >>> log = logging.getLogger("backforge.example"); log.addHandler(handler); log.propagate = False
    >>> log.warning("login with %s failed", "hunter2-password")
    >>> stream.getvalue()
    'login with *** failed\\n'
    >>> log.removeHandler(handler); unregister_secret("hunter2-password")
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.msg, record.args = cleaned, None
        return True

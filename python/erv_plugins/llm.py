"""One request path for OpenAI-compatible chat APIs: the ``openai`` judge and ``erv augment``.

``ChatClient.ask`` sends one prompt and returns the reply text, or the last error once
its retries are spent; it never raises for a single bad exchange:

- retried with exponential backoff and jitter (a server's ``Retry-After`` wins, within
  ``backoff_max_s``): timeouts, dropped connections, HTTP 408, 409, 429 and 5xx, and a 200
  whose body is not a chat completion (truncated JSON, an HTML page, no ``choices``, no
  message content) - each a failed attempt, counted by kind in ``stats.errors``;
- not retried: other 4xx (the same request again would not help); raised at once as
  ``ChatRefused``: 401, 403 (the key) and 404 (the model), which would fail every request;
- the API key, any ``Authorization`` value and any password in ``base_url`` are replaced by
  ``***`` in every error and every reply text the client hands back (a server may echo
  the header in an error body), and in the log records of ``openai``/``httpx``.

Thread-safe: the judge asks from a pool of threads, ``erv augment`` likewise.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from erv_plugins.errors import ErvError

RETRIED_STATUS = frozenset({408, 409, 429})
REFUSED_STATUS = {401: "AuthenticationError", 403: "PermissionDeniedError",
                  404: "NotFoundError"}
MASK = "***"
_AUTH_VALUE = re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)([^\"'\r\n,}]+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret, ``Authorization`` value and bearer token masked."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _AUTH_VALUE.sub(lambda m: m.group(1) + MASK, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


class _RedactingFilter(logging.Filter):
    """Masks the secrets of every live client in log records of the HTTP libraries."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            secrets = tuple(self.secrets)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format: leave it alone
            return True
        clean = redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactingFilter()
for _name in ("openai", "httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_FILTER)


class ChatRefused(ErvError):
    """The API refused the key (401, 403) or does not know the model (404): no retry
    would help and every other request would fail the same way."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.kind = kind
        self.detail = message


class ChatStopped(Exception):
    """``ask`` was stopped (Ctrl-C, a fatal error elsewhere) before an answer."""


@dataclass
class ChatReply:
    """The reply text (None when every attempt failed, with the last ``error``)."""

    text: str | None
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatStats:
    requests: int = 0  # HTTP requests, retries included
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # by kind: 429, 500, timeout ...
    prompt_tokens: int = 0
    completion_tokens: int = 0


def parse_chat_body(content: bytes, content_type: str = "") -> tuple[str | None, dict[str, int], str | None]:
    """``(text, usage, problem)`` of a 200 reply's body; ``problem`` says why it is not a
    chat completion (then ``text`` is None)."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        kind = content_type.split(";")[0].strip() or "no content type"
        snippet = content[:80].decode("utf-8", "replace").replace("\n", " ")
        return None, {}, f"a body that is not JSON ({kind}: {snippet!r})"
    if not isinstance(body, dict):
        return None, {}, f"a JSON {type(body).__name__} instead of an object"
    usage: dict[str, int] = {}
    raw_usage = body.get("usage")
    if isinstance(raw_usage, dict):
        for key in ("prompt_tokens", "completion_tokens"):
            value = raw_usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                usage[key] = value
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None, usage, "no choices in the body"
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        return None, usage, "no message content in the body"
    return text, usage, None


def _retry_after(exc: Exception) -> float:
    """Seconds a Retry-After header asks for (0 when absent or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(getattr(exc, "message", None) or exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


class ChatClient:
    """Asks one model at one OpenAI-compatible endpoint, robustly (see the module doc)."""

    def __init__(self, *, model: str, api_key: str, base_url: str | None = None,
                 timeout_s: float = 60.0, retries: int = 5, backoff_s: float = 1.0,
                 backoff_max_s: float = 30.0, temperature: float | None = None,
                 max_tokens: int | None = None) -> None:
        import openai

        if retries < 0:
            raise ErvError(f"retries must be >= 0, got {retries}")
        if timeout_s <= 0:
            raise ErvError(f"timeout_s must be > 0, got {timeout_s}")
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.params: dict[str, Any] = {}
        if temperature is not None:
            self.params["temperature"] = temperature
        if max_tokens is not None:
            self.params["max_tokens"] = max_tokens
        password = urlsplit(base_url).password if base_url else None
        self._secrets = tuple(s for s in (api_key, password) if s)
        with _FILTER.lock:
            _FILTER.secrets.update(self._secrets)
        # The client's own retries are off: ours are counted, bounded and backed off.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                     max_retries=0)
        self.stats = ChatStats()
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for key, n in deltas.items():
                setattr(self.stats, key, getattr(self.stats, key) + n)

    def _error(self, kind: str) -> None:
        with self._lock:
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    def ask(self, prompt: str, stop: threading.Event | None = None) -> ChatReply:
        """The reply to ``prompt`` (one user message), or the last error after all
        attempts. Raises ``ChatRefused`` (401/403/404) and ``ChatStopped``."""
        import openai

        error, retry_after = "", 0.0
        tokens = {"prompt_tokens": 0, "completion_tokens": 0}
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                delay = min(self.backoff_max_s, max(delay, retry_after))
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)
            if stop is not None and stop.is_set():
                raise ChatStopped
            self._count(requests=1, retries=1 if attempt else 0)
            retry_after = 0.0
            try:
                raw = self._client.chat.completions.with_raw_response.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}],
                    **self.params)
                response = raw.http_response
                text, usage, problem = parse_chat_body(
                    response.content, response.headers.get("content-type", ""))
            except openai.APIStatusError as exc:
                status = exc.status_code
                detail = self.redact(_short(exc))
                if status in REFUSED_STATUS:
                    raise ChatRefused(status, REFUSED_STATUS[status], detail) from None
                kind, error = str(status), f"HTTP {status}: {detail}"
                retry_after = _retry_after(exc)
                if status not in RETRIED_STATUS and status < 500:
                    self._error(kind)
                    return ChatReply(None, error, attempt + 1, **tokens)
            except openai.APITimeoutError:
                kind, error = "timeout", f"no reply within {self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                kind, error = "connection", f"connection failed: {self.redact(_short(exc))}"
            else:
                for key, value in usage.items():
                    tokens[key] += value
                self._count(**usage)
                if problem is None:
                    assert text is not None
                    return ChatReply(self.redact(text), None, attempt + 1, **tokens)
                kind, error = "bad body", f"HTTP 200 with {self.redact(problem)}"
            self._error(kind)
        return ChatReply(None, f"{error} (after {self.retries + 1} attempts)",
                         self.retries + 1, **tokens)

    def close(self) -> None:
        self._client.close()

"""The LLM judge of paper section 4.2: any server that speaks OpenAI's chat-completions API.

The paper's judge is GPT-4.1-mini; vLLM, Ollama or llama.cpp servers work the same way
through ``base_url``. Each explanation is asked with the Figure-3 prompt, the dataset's
labels freshly permuted per sample (seeded), one request per sample, ``concurrency`` at a
time. Transient failures (timeouts, dropped connections, 408/409/429, 5xx, empty replies)
are retried ``retries`` times with exponential backoff and jitter; a sample still failing
after that comes back as a failed ``Verdict``, never as a label. An API key that the
server refuses (401/403) or a model it does not know (404) stops the evaluation at once.

The API key is read from the environment variable named by ``api_key_env`` when the judge
is built; it lives only in the client object and is never logged, cached or written.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, ClassVar

import msgspec

from erv_plugins.errors import ErvError
from erv_plugins.judges.base import (
    JudgeContext,
    JudgeRequest,
    Verdict,
    judge_prompt,
    match_reply,
    permuted_labels,
)
from erv_plugins.judges.cache import ReplyCache, cache_key, default_cache_dir
from erv_plugins.labels import LabelSpace

CACHE_FILE = "judge-cache.sqlite"


class OpenAIJudgeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``openai`` judge (recipe ``[eval.judge.options]``)."""

    model: str = "gpt-4.1-mini"
    base_url: str | None = None  # None: the client's default (api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"  # the variable's NAME; the key never enters a file
    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    temperature: float = 0.0
    max_tokens: int | None = 16
    seed: int = 0  # seeds the per-sample permutation of the label list
    # True: send neither temperature nor max_tokens (the server's defaults), as the
    # release's helper does (tools/utils.py gpt_response: model and messages only).
    server_defaults: bool = False
    cache: str | None = None  # SQLite file; None: <cache dir>/judge-cache.sqlite
    use_cache: bool = True


class _Fatal(Exception):
    """A failure that no retry fixes and that would hit every sample (bad key, bad model)."""


class _Stopped(Exception):
    """The evaluation was interrupted: no further attempts."""


class OpenAIJudge:
    """Asks an OpenAI-compatible chat model which emotion an explanation argues for."""

    name: ClassVar[str] = "openai"
    Options: ClassVar[type[OpenAIJudgeOptions]] = OpenAIJudgeOptions

    def __init__(self, options: OpenAIJudgeOptions | None = None, *,
                 context: JudgeContext | None = None) -> None:
        self.options = o = options or OpenAIJudgeOptions()
        where = "judge 'openai'"
        if o.concurrency < 1:
            raise ErvError(f"{where}: concurrency must be >= 1, got {o.concurrency}")
        if o.retries < 0:
            raise ErvError(f"{where}: retries must be >= 0, got {o.retries}")
        if o.timeout_s <= 0:
            raise ErvError(f"{where}: timeout_s must be > 0, got {o.timeout_s}")
        key = os.environ.get(o.api_key_env) if o.api_key_env else None
        if not key:
            raise ErvError(
                f"{where}: environment variable {o.api_key_env or '(api_key_env is empty)'} "
                "holds no API key (a local server that needs none: set it to any value, "
                "e.g. EMPTY)"
            )
        import openai

        # The client's own retries are off: ours are counted, bounded and backed off.
        self._client = openai.OpenAI(api_key=key, base_url=o.base_url, timeout=o.timeout_s,
                                     max_retries=0)
        del key
        decoding = ("server defaults",) if o.server_defaults else (o.temperature, o.max_tokens)
        self.cache_key = cache_key("openai", o.model, *decoding, o.seed)
        # What metrics.json records about the judge (never the key).
        self.info = {"model": o.model, "base_url": _without_credentials(o.base_url),
                     "temperature": None if o.server_defaults else o.temperature,
                     "max_tokens": None if o.server_defaults else o.max_tokens,
                     "seed": o.seed}
        self.cache: ReplyCache | None = None
        if o.use_cache:
            if o.cache:
                path = Path(o.cache)
            else:
                base = context.cache_dir if context and context.cache_dir else default_cache_dir()
                path = base / CACHE_FILE
            self.cache = ReplyCache(path)
        self._lock = threading.Lock()
        # Set when the consumer stops (Ctrl-C, a fatal error): workers make no new attempt
        # and cut their backoff short, so an interruption waits for one request at most.
        self._stop = threading.Event()
        self.stats: dict[str, int] = {"requests": 0, "retries": 0, "cache_hits": 0,
                                      "answered": 0, "failed": 0}

    # -- one request ---------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def _reply_key(self, prompt: str) -> str:
        o = self.options
        if o.server_defaults:
            return cache_key(o.model, "server defaults", prompt)
        return cache_key(o.model, o.temperature, o.max_tokens, prompt)

    def _ask(self, prompt: str) -> str:
        """The model's reply to ``prompt``; raises the last error when retries run out."""
        import openai

        o = self.options
        params: dict[str, Any] = {}
        if not o.server_defaults:
            params["temperature"] = o.temperature
            if o.max_tokens is not None:
                params["max_tokens"] = o.max_tokens
        retry_after = 0.0
        for attempt in range(o.retries + 1):
            if attempt:
                delay = o.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                # A server's Retry-After (429/503) wins over our guess, within backoff_max_s.
                self._stop.wait(min(o.backoff_max_s, max(delay, retry_after)))
            if self._stop.is_set():
                raise _Stopped
            if attempt:
                self._count("retries")
            self._count("requests")
            try:
                response = self._client.chat.completions.create(
                    model=o.model, messages=[{"role": "user", "content": prompt}], **params)
            except (openai.AuthenticationError, openai.PermissionDeniedError,
                    openai.NotFoundError) as exc:
                raise _Fatal(f"{exc.status_code} {_short(exc)}") from None
            except openai.APIStatusError as exc:
                error = f"HTTP {exc.status_code}: {_short(exc)}"
                retry_after = _retry_after(exc)
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    raise RuntimeError(error) from None  # e.g. 400: the same again won't help
            except openai.APITimeoutError:
                error = f"no reply within {o.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                error = f"connection failed: {_short(exc)}"
            else:
                choices = getattr(response, "choices", None) or []
                content = choices[0].message.content if choices else None
                if content is not None:
                    return content
                error = "reply without content"
        raise RuntimeError(f"{error} (after {o.retries + 1} attempts)")

    def _one(self, request: JudgeRequest, prompt: str, key: str,
             label_space: LabelSpace) -> Verdict:
        try:
            reply = self._ask(prompt)
        except (_Fatal, _Stopped):
            raise
        except Exception as exc:  # noqa: BLE001 - reported per sample, never counted
            self._count("failed")
            return Verdict(request.id, None, error=str(exc))
        if self.cache is not None:
            self.cache.put(key, reply)
        self._count("answered")
        label, in_list = match_reply(reply, label_space)
        return Verdict(request.id, label, reply=reply, in_list=in_list)

    # -- the Judge protocol --------------------------------------------------------------
    def prompt_for(self, request: JudgeRequest, label_space: LabelSpace) -> str:
        order = request.labels or permuted_labels(label_space.labels, self.options.seed,
                                                  request.id)
        return judge_prompt(request.explanation, order)

    def judge(self, requests: Sequence[JudgeRequest], label_space: LabelSpace
              ) -> Iterator[Verdict]:
        pending: list[tuple[JudgeRequest, str, str]] = []
        for request in requests:
            prompt = self.prompt_for(request, label_space)
            key = self._reply_key(prompt)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                self._count("cache_hits")
                label, in_list = match_reply(hit, label_space)
                yield Verdict(request.id, label, reply=hit, in_list=in_list, cached=True)
            else:
                pending.append((request, prompt, key))
        if not pending:
            return
        self._stop.clear()
        pool = ThreadPoolExecutor(max_workers=self.options.concurrency,
                                  thread_name_prefix="erv-judge")
        try:
            futures: set[Future[Verdict]] = {
                pool.submit(self._one, r, p, k, label_space) for r, p, k in pending}
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        yield future.result()
                    except _Fatal as exc:
                        where = self.options.base_url or "api.openai.com"
                        raise ErvError(
                            f"judge 'openai' ({where}, model {self.options.model!r}) refused "
                            f"the request: {exc}; check the model name and the key in "
                            f"${self.options.api_key_env}. Judged samples are kept; rerun "
                            "to continue."
                        ) from None
        finally:
            # Interrupted or failed: drop what has not started; running requests end after
            # their current attempt, and their verdicts are not reported (never written).
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)


def _retry_after(exc: Exception) -> float:
    """Seconds a Retry-After header asks for (0 when absent or not a number)."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


def _without_credentials(url: str | None) -> str:
    """The base URL as recorded in metrics.json: any user:password@ part removed."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return "https://api.openai.com/v1"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(getattr(exc, "message", None) or exc).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."

"""The LLM judge of paper section 4.2: any server that speaks OpenAI's chat-completions API.

The paper's judge is GPT-4.1-mini; vLLM, Ollama or llama.cpp servers work the same way
through ``base_url``. Each explanation is asked with the Figure-3 prompt, the dataset's
labels freshly permuted per sample (seeded), one request per sample, ``concurrency`` at a
time, through the request path ``erv augment`` uses too (``erv_plugins.llm``). Transient
failures (timeouts, dropped connections, 408/409/429, 5xx, a 200 whose body is not a chat
completion) are retried ``retries`` times with exponential backoff and jitter; a sample
still failing after that comes back as a failed ``Verdict``, never as a label. An API key
that the server refuses (401/403) or a model it does not know (404) stops the evaluation
at once.

The API key is read from the environment variable named by ``api_key_env`` when the judge
is built; it lives only in the client object and is never logged, cached or written (a
server that echoes it back has it masked in every error and reply).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from erv_plugins.errors import ErvError
from erv_plugins.judges.base import (
    JudgeRequest,
    Verdict,
    judge_prompt,
    match_reply,
    permuted_labels,
)
from erv_plugins.judges.cache import ReplyCache, cache_key, default_cache_dir
from erv_plugins.labels import LabelSpace
from erv_plugins.llm import ChatClient, ChatRefused, ChatStopped

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext
from erv_plugins.recipe import NonNegative, NonNegativeFloat, Positive, PositiveFloat

CACHE_FILE = "judge-cache.sqlite"


class OpenAIJudgeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``openai`` judge (recipe ``[eval.judge.options]``)."""

    model: str = "gpt-4.1-mini"
    base_url: str | None = None  # None: the client's default (api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"  # the variable's NAME; the key never enters a file
    concurrency: Positive = 8
    timeout_s: PositiveFloat = 60.0
    retries: NonNegative = 5
    backoff_s: NonNegativeFloat = 1.0
    backoff_max_s: NonNegativeFloat = 30.0
    temperature: NonNegativeFloat = 0.0
    max_tokens: Positive | None = 16
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
                 context: BuildContext | None = None) -> None:
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
        self._client = ChatClient(model=o.model, api_key=key, base_url=o.base_url,
                                  timeout_s=o.timeout_s, retries=o.retries,
                                  backoff_s=o.backoff_s, backoff_max_s=o.backoff_max_s,
                                  temperature=None if o.server_defaults else o.temperature,
                                  max_tokens=None if o.server_defaults else o.max_tokens)
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
        try:
            reply = self._client.ask(prompt, stop=self._stop)
        except ChatRefused as exc:
            raise _Fatal(f"{exc.status} {exc.detail}") from None
        except ChatStopped:
            raise _Stopped from None
        finally:
            with self._lock:  # the client's counts are this judge's (one client per judge)
                self.stats["requests"] = self._client.stats.requests
                self.stats["retries"] = self._client.stats.retries
        if reply.text is None:
            raise RuntimeError(reply.error)
        return reply.text

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
                        where = _without_credentials(self.options.base_url)
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


def _without_credentials(url: str | None) -> str:
    """The base URL as recorded in metrics.json: any user:password@ part removed."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return "https://api.openai.com/v1"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))

"""Asking an OpenAI-compatible chat API many questions, safely and resumably.

- bounded concurrency (a fixed pool of worker threads), a timeout per request, retries
  with exponential backoff and jitter on 408/409/429, 5xx, timeouts, connection errors and
  200 replies whose body is not a chat completion (the server's ``Retry-After`` is
  honoured), an abort on authentication or model-not-found errors: the request path of
  ``erv_plugins.llm``, shared with the openai judge;
- every answer is appended to a JSONL file as it arrives (one ``write`` and ``flush`` per
  line), so an interrupted run resumes without asking for anything twice: ids already in
  the results or the rejects file are skipped; a torn last line is cut off;
- replies the caller's parser refuses go to a rejects side file with the reason, requests
  that fail after all retries to a failures file (asked again on the next run);
- token counts and the cost (from prices the user gives, USD per million tokens) are kept;
- a run in which every request failed is an error (exit code 2), not a quiet success.

The API key is read from an environment variable and never printed or written (a server
that echoes it back has it masked in every error and reply kept).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from erv_plugins.errors import ErvError


class AugmentError(ErvError):
    """An augmentation run that cannot start or must stop (bad key, unknown model, bad input)."""


@dataclass
class ChatSettings:
    """Where and how to ask. ``base_url`` None = the ``openai`` default / ``OPENAI_BASE_URL``."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    temperature: float | None = None
    max_tokens: int | None = None
    price_in: float = 0.0  # USD per 1M prompt tokens (your provider's price list)
    price_out: float = 0.0  # USD per 1M completion tokens

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        base = self.base_url or os.environ.get("OPENAI_BASE_URL")
        if base and any(h in base for h in ("127.0.0.1", "localhost", "[::1]")):
            return "local-no-key"  # local servers (vLLM, llama.cpp) usually need none
        raise AugmentError(f"no API key: set the environment variable {self.api_key_env} "
                           "(or --api-key-env NAME) for the chat API")


@dataclass(frozen=True)
class Job:
    """One question: its id (the resume key), the prompt and what to keep with the answer."""

    id: str
    prompt: str
    payload: dict[str, Any] = field(default_factory=dict)


# A handler turns a reply into a result record (accepted) or a reason (rejected).
Handler = Callable[[Job, str], "tuple[dict[str, Any] | None, str | None]"]


@dataclass
class RunStats:
    total: int = 0  # jobs this run was given
    skipped: int = 0  # already answered by an earlier run
    pending: int = 0  # asked in this run
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0  # HTTP requests, retries included
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # by kind: 429, 500, timeout, ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    last_error: str = ""  # of the last failed request (the key masked)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 6)
        out["seconds"] = round(self.seconds, 2)
        return out

    def line(self) -> str:
        return (f"{self.accepted} accepted, {self.rejected} rejected, {self.failed} failed, "
                f"{self.skipped} already done; {self.requests} requests ({self.retries} "
                f"retries); tokens {self.prompt_tokens} in / {self.completion_tokens} out; "
                f"cost ${self.cost_usd:.4f}")


def side_files(out: Path) -> tuple[Path, Path]:
    """The rejects and failures files beside a results file."""
    stem = out.name.removesuffix(".jsonl")
    return out.with_name(f"{stem}.rejects.jsonl"), out.with_name(f"{stem}.failures.jsonl")


def read_jsonl_ids(path: Path, *, repair: bool = True) -> list[dict[str, Any]]:
    """Rows of a results file. A torn last line (a crash mid-write) is cut off when
    ``repair``; a bad line elsewhere is an error naming the line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows: list[dict[str, Any]] = []
    offset = 0
    for n, raw in enumerate(lines, 1):
        tail = n == len(lines)  # text after the last newline: torn if it does not parse
        if raw.strip():
            try:
                row = json.loads(raw)
                if not isinstance(row, dict) or "id" not in row:
                    raise ValueError("no id")
            except (ValueError, RecursionError):
                if tail and repair:
                    with path.open("r+b") as f:
                        f.truncate(offset)
                    return rows
                raise AugmentError(f"{path}:{n}: not a JSON object with an id; fix or remove "
                                   "the line before resuming") from None
            rows.append(row)
        offset += len(raw) + 1
    if lines[-1].strip() and repair:  # a complete last row without its newline
        with path.open("ab") as f:
            f.write(b"\n")
    return rows


class _Appender:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _ask(client: Any, settings: ChatSettings, job: Job, stats: RunStats, stop: threading.Event,
         lock: threading.Lock) -> tuple[str | None, str | None]:
    """The reply text, or None and the last error after all retries."""
    from erv_plugins.llm import ChatRefused

    try:
        reply = client.ask(job.prompt, stop=stop)
    except ChatRefused as exc:
        if exc.status == 404:
            raise AugmentError(f"the chat API at {_shown_url(settings.base_url)} does not "
                               f"know model {settings.model!r} (HTTP 404)") from None
        raise AugmentError(f"the chat API refused the credentials ({exc.kind}, HTTP "
                           f"{exc.status}); check ${settings.api_key_env}") from None
    with lock:
        stats.prompt_tokens += reply.prompt_tokens
        stats.completion_tokens += reply.completion_tokens
        stats.cost_usd += (reply.prompt_tokens * settings.price_in
                           + reply.completion_tokens * settings.price_out) / 1e6
    return reply.text, reply.error


def _shown_url(url: str | None) -> str:
    from erv_plugins.judges.chat import _without_credentials

    return _without_credentials(url) if url else "the default URL"


def _run(jobs: Sequence[Job], settings: ChatSettings, handle: Handler, out: Path,
         stats: RunStats, progress: bool, desc: str) -> None:
    from tqdm.auto import tqdm

    from erv_plugins.llm import ChatClient, ChatStopped

    client = ChatClient(model=settings.model, api_key=settings.api_key(),
                        base_url=settings.base_url, timeout_s=settings.timeout_s,
                        retries=settings.max_retries, backoff_s=settings.backoff_s,
                        backoff_max_s=settings.max_backoff_s,
                        temperature=settings.temperature, max_tokens=settings.max_tokens)
    rejects_path, failures_path = side_files(out)
    results, rejects, failures = _Appender(out), _Appender(rejects_path), _Appender(failures_path)
    todo: queue.SimpleQueue[Job] = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    bar = tqdm(total=len(jobs), desc=desc, unit="req", disable=not progress)
    lock = threading.Lock()
    # Set on Ctrl-C or a fatal error: workers take no new job and cut their backoff short.
    stop = threading.Event()
    fatal: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                reply, error = _ask(client, settings, job, stats, stop, lock)
            except ChatStopped:
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                with lock:
                    fatal.append(exc)
                stop.set()
                return
            with lock:  # one line per answer, in the order they arrive
                if reply is None:
                    stats.failed += 1
                    stats.last_error = error or ""
                    failures.write({"id": job.id, "error": error, "time": time.time()})
                else:
                    record, reason = handle(job, reply)
                    if record is not None:
                        stats.accepted += 1
                        results.write({"id": job.id, **record})
                    else:
                        stats.rejected += 1
                        rejects.write({"id": job.id, **job.payload, "reply": reply,
                                       "reason": reason})
                bar.update(1)
                bar.set_postfix(ok=stats.accepted, rejected=stats.rejected,
                                failed=stats.failed, refresh=False)

    threads = [threading.Thread(target=worker, name=f"erv-augment-{i}", daemon=True)
               for i in range(max(1, min(settings.concurrency, len(jobs))))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # short joins: Ctrl-C reaches the main thread at once
    finally:
        stop.set()
        for t in threads:  # a request in flight ends within its timeout; its answer is kept
            t.join()
        bar.close()
        for f in (results, rejects, failures):
            f.close()
        client.close()
        with lock:
            stats.requests += client.stats.requests
            stats.retries += client.stats.retries
            for kind, n in client.stats.errors.items():
                stats.errors[kind] = stats.errors.get(kind, 0) + n
    if fatal:
        raise fatal[0]


def done_ids(out: Path) -> set[str]:
    """Ids answered by earlier runs: in the results or in the rejects file."""
    rejects_path, _ = side_files(out)
    return {str(r["id"]) for p in (out, rejects_path) for r in read_jsonl_ids(p)}


def run_jobs(jobs: Iterable[Job], settings: ChatSettings, handle: Handler, out: str | os.PathLike[str],
             *, limit: int | None = None, progress: bool = True, desc: str = "augment"
             ) -> RunStats:
    """Ask every job not answered yet (at most ``limit`` of them) and append the answers."""
    if settings.concurrency < 1:
        raise AugmentError(f"concurrency must be >= 1, got {settings.concurrency}")
    out_path = Path(out)
    from erv_plugins.locking import hold

    with hold(out_path, "erv augment", directory=False):  # one writer per output file
        return _run_pending(list(jobs), settings, handle, out_path, limit, progress, desc)


def _run_pending(all_jobs: list[Job], settings: ChatSettings, handle: Handler, out_path: Path,
                 limit: int | None, progress: bool, desc: str) -> RunStats:
    ids = [j.id for j in all_jobs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise AugmentError(f"two inputs share the id {dup!r}; ids must be unique to resume")
    done = done_ids(out_path)
    pending = [j for j in all_jobs if j.id not in done]
    if limit is not None:
        pending = pending[:limit]
    stats = RunStats(total=len(all_jobs), skipped=sum(j.id in done for j in all_jobs),
                     pending=len(pending))
    start = time.perf_counter()
    if pending:
        _run(pending, settings, handle, out_path, stats, progress, desc)
    stats.seconds = time.perf_counter() - start
    return stats

"""A scripted OpenAI-compatible chat server on 127.0.0.1, for testing judges for real.

Real HTTP on loopback, so the ``openai`` client, its timeouts and connection handling are
exercised as against vLLM or the OpenAI API. Each request's explanation (the text after
``Reason:`` in the Figure-3 prompt) selects a script: a list of actions played one per
attempt, the last one repeating. Without a script the server answers with the first label
word that occurs in the explanation, else "neutral"::

    with ScriptedChatServer({"it was awful": [Status(429), Reply("disgust")]}) as server:
        judge = OpenAIJudge(OpenAIJudgeOptions(base_url=server.base_url, ...))
        ...
        assert server.attempts("it was awful") == 2
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """Answer 200 with this text as the assistant message."""

    text: str


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error status (429, 500, 401, ...), optionally a Retry-After."""

    code: int
    retry_after: float | None = None


@dataclass(frozen=True)
class Slow:
    """Answer ``text`` only after ``seconds`` (longer than the client's timeout)."""

    seconds: float
    text: str = "neutral"


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


Action = Reply | Status | Slow | Drop

_REASON = re.compile(r"\nReason: (.*)\nAnswer Emotion:\Z", re.DOTALL)
_LABELS = re.compile(r"appropriate emotion in (.*?)\. Reply with only")


def keyword_reply(reason: str, labels: Sequence[str]) -> str:
    """The label word that occurs first in the explanation, else "neutral"."""
    found = [(m.start(), lab) for lab in labels
             for m in [re.search(rf"\b{re.escape(lab)}\b", reason.lower())] if m]
    return min(found)[1] if found else "neutral"


class ScriptedChatServer:
    """``POST /v1/chat/completions`` answered from scripts keyed by explanation."""

    def __init__(self, scripts: Mapping[str, Sequence[Action]] | None = None, *,
                 default: Callable[[str, Sequence[str]], Action] | None = None) -> None:
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.default = default or (lambda reason, labels: Reply(keyword_reply(reason, labels)))
        self.prompts: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict[str, Any]] = []
        self._attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server was answering at once
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- bookkeeping ---------------------------------------------------------------------
    def attempts(self, reason: str | None = None) -> int:
        """Requests received for one explanation (all of them with ``None``)."""
        with self._lock:
            return sum(self._attempts.values()) if reason is None else self._attempts[reason]

    def _next_action(self, prompt: str) -> tuple[str, Action]:
        m = _REASON.search(prompt)
        reason = m.group(1) if m else prompt
        lm = _LABELS.search(prompt)
        labels = lm.group(1).split(", ") if lm else []
        with self._lock:
            n = self._attempts[reason]
            self._attempts[reason] += 1
            self.prompts.append(prompt)
        script = self.scripts.get(reason)
        if script:
            return reason, script[min(n, len(script) - 1)]
        return reason, self.default(reason, labels)

    # -- serving -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ScriptedChatServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with owner._lock:
                    owner.headers.append(dict(self.headers))
                    owner.bodies.append(body)
                prompt = body["messages"][-1]["content"]
                _, action = owner._next_action(prompt)
                with owner._lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    if isinstance(action, Drop):
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if isinstance(action, Status):
                        extra = ({"Retry-After": f"{action.retry_after:g}"}
                                 if action.retry_after is not None else {})
                        self._send(action.code, {"error": {"message": f"scripted {action.code}",
                                                           "type": "scripted"}}, extra)
                        return
                    if isinstance(action, Slow):
                        time.sleep(action.seconds)
                    text = action.text
                    self._send(200, {
                        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
                        "model": body.get("model", ""),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                  "total_tokens": 2}})
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True  # the client gave up (timeout): fine
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            def _send(self, code: int, payload: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Misbehaving chat servers, survived by both LLM clients (the openai judge behind
``erv eval`` and ``erv augment``), which share one request path (``erv_plugins.llm``).

A real HTTP server on 127.0.0.1 answers each attempt from a script: a 200 whose body is
truncated JSON, an HTML page, JSON without ``choices``; error bodies and replies that echo
the request's ``Authorization`` header back. Each case states the exit code and the exact
line the user sees; in every case no file written and no output holds the API key.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

KEY = "sk-erv-ECHOED-SECRET-7f3a9c"
ECHO = "{auth}"  # replaced by the request's Authorization header


def completion(text: str) -> bytes:
    return json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 1,
                                 "total_tokens": 8}}).encode()


# Actions: (status, content type, body); ECHO in a body becomes the Authorization header.
TRUNCATED = (200, "application/json", b'{"id": "c", "choices": [{"message": {"cont')
HTML = (200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>")
NO_CHOICES = (200, "application/json", b'{"id": "c", "object": "chat.completion"}')
NULL_CONTENT = (200, "application/json",
                b'{"choices": [{"message": {"role": "assistant", "content": null}}]}')
ARRAY = (200, "application/json", b"[1, 2, 3]")
ECHO_400 = (400, "application/json",
            b'{"error": {"message": "bad request from Authorization: {auth}"}}')
ECHO_500 = (500, "application/json", b'{"error": {"message": "crashed serving {auth}"}}')
ECHO_401 = (401, "application/json", b'{"error": {"message": "key {auth} is invalid"}}')


def OK(text: str) -> tuple[int, str, bytes]:  # noqa: N802
    return (200, "application/json", completion(text))


def ECHO_200() -> tuple[int, str, bytes]:  # noqa: N802 - a reply that repeats the header
    return (200, "application/json", completion("sadness. (you sent {auth})"))


class Server:
    """Plays ``script`` (one action per attempt, the last repeating) for every prompt."""

    def __init__(self, script: list[tuple[int, str, bytes]]) -> None:
        self.script = script
        self.attempts: Counter[str] = Counter()
        self.auth: set[str] = set()
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                auth = self.headers.get("Authorization", "")
                with server.lock:
                    n = server.attempts[prompt]
                    server.attempts[prompt] += 1
                    server.auth.add(auth)
                    server.bodies.append(body)
                status, ctype, data = server.script[min(n, len(server.script) - 1)]
                data = data.replace(b"{auth}", auth.encode())
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERV_TEST_ECHO_KEY", KEY)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the HTTP libraries, at DEBUG."""
    for name in ("openai", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def assert_no_key(tmp_path: Path, *texts: str, logs: pytest.LogCaptureFixture) -> None:
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    for text in texts:
        assert KEY not in text
    assert not [r for r in logs.records if KEY in r.getMessage()]


# -- the judge: erv eval ---------------------------------------------------------------------

PREDICTIONS = [
    {"id": "a", "completion": "<think>Her tears show sadness.</think><answer>sadness</answer>",
     "label": "sadness"},
    {"id": "b", "completion": "<think>He shouts in anger.</think><answer>anger</answer>",
     "label": "anger"},
    {"id": "c", "completion": "<think>A wide smile.</think><answer>happiness</answer>",
     "label": "happiness"},
]

NOT_JSON_HTML = ("HTTP 200 with a body that is not JSON (text/html: '<html><body><h1>502 Bad "
                 "Gateway</h1></body></html>') (after 2 attempts)")
NOT_JSON_CUT = ("HTTP 200 with a body that is not JSON (application/json: '{\"id\": \"c\", "
                "\"choices\": [{\"message\": {\"cont') (after 2 attempts)")

FAILED_ALL = "erv: error: the judge answered for none of the 3 samples; first error: "

# (id, script, exit code, last stderr line or None, attempts per sample, replies kept)
JUDGE_CASES = [
    ("truncated-json", [TRUNCATED], 2, FAILED_ALL + NOT_JSON_CUT, 2, None),
    ("html", [HTML], 2, FAILED_ALL + NOT_JSON_HTML, 2, None),
    ("no-choices", [NO_CHOICES], 2,
     FAILED_ALL + "HTTP 200 with no choices in the body (after 2 attempts)", 2, None),
    ("null-content", [NULL_CONTENT], 2,
     FAILED_ALL + "HTTP 200 with no message content in the body (after 2 attempts)", 2, None),
    ("json-array", [ARRAY], 2,
     FAILED_ALL + "HTTP 200 with a JSON list instead of an object (after 2 attempts)", 2, None),
    ("bad-body-then-answer", [HTML, OK("sadness")], 0, None, 2, {"sadness"}),
    ("echo-in-400", [ECHO_400], 2,
     FAILED_ALL + "HTTP 400: Error code: 400 - bad request from Authorization: ***", 1, None),
    ("echo-in-500", [ECHO_500], 2,
     FAILED_ALL + "HTTP 500: Error code: 500 - crashed serving Bearer *** (after 2 attempts)",
     2, None),
    ("echo-in-401", [ECHO_401], 2,
     "erv: error: judge 'openai' ({url}, model 'judge-model') refused the request: 401 Error "
     "code: 401 - key Bearer *** is invalid; check the model name and the key in "
     "$ERV_TEST_ECHO_KEY. Judged samples are kept; rerun to continue.", None, None),
    ("echo-in-reply", [ECHO_200()], 0, None, 1, {"sadness. (you sent Bearer ***)"}),
]


def judge_predictions(capsys, tmp_path: Path, server: Server, *options: str) -> Any:
    """`erv eval` of PREDICTIONS with the openai judge at ``server`` (a fast backoff, a cache
    of this test's own), plus ``options``."""
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(p) + "\n" for p in PREDICTIONS))
    return run_cli(capsys, [
        "eval", "--predictions", str(preds), "--dataset", "mafw", "--judge", "openai",
        "--base-url", server.url, "--api-key-env", "ERV_TEST_ECHO_KEY", *options,
        "--judge-option", "backoff_s=0.01", "--judge-option",
        f"cache={tmp_path / 'cache.sqlite'}", "--out", str(tmp_path / "out"),
        "--bootstrap", "0", "--no-progress"])


@pytest.mark.parametrize(("script", "code", "last", "attempts", "replies"),
                         [pytest.param(*c[1:], id=c[0]) for c in JUDGE_CASES])
def test_judge_survives_the_server(tmp_path, capsys, logs, script, code, last, attempts,
                                   replies):
    with Server(script) as server:
        r = judge_predictions(capsys, tmp_path, server, "--model", "judge-model",
                              "--judge-option", "retries=1", "--judge-option", "concurrency=1")
    assert server.auth == {f"Bearer {KEY}"}  # the key did go to the server
    assert r.code == code, r.err
    if last is not None:
        assert r.err.splitlines()[-1] == last.replace("{url}", server.url)
    if attempts is not None:
        assert set(server.attempts.values()) == {attempts}
    if code == 0:
        metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
        assert metrics["judged"] == 3
        assert metrics["judge_stats"]["retries"] == 3 * (attempts - 1)
        rows = [json.loads(x) for x in (tmp_path / "out" / "judgements.jsonl").open()]
        assert {row["judge_reply"] for row in rows} == replies
    assert_no_key(tmp_path, r.out, r.err, logs=logs)


@pytest.mark.parametrize(("script", "reply", "failed"), [
    pytest.param([ECHO_500, ECHO_500, OK("sadness")], "sadness", 0, id="third-attempt-answers"),
    pytest.param([ECHO_500, ECHO_500, ECHO_500, OK("sadness")], None, 3, id="three-failures"),
])
def test_the_release_protocol_asks_as_the_authors_client(tmp_path, capsys, script, reply,
                                                         failed):
    """No judge options: under --protocol release (the default) the request is the authors'
    (tools/utils.py): model and messages only, and openai-python's default client, which
    tries a transient failure three times before their helper returns 'None' (neutral)."""
    import openai

    with Server(script) as server:
        r = judge_predictions(capsys, tmp_path, server)
    assert r.code == (0 if failed == 0 else 2), r.err
    assert openai.DEFAULT_MAX_RETRIES == 2
    assert sorted(server.attempts.values()) == [3, 3, 3]
    assert {tuple(sorted(b)) for b in server.bodies} == {("messages", "model")}
    assert {b["model"] for b in server.bodies} == {"gpt-4.1-mini"}
    if failed:  # every sample failed: a broken setup, not metrics (erv stops there)
        assert r.err.splitlines()[-1] == FAILED_ALL + (
            "HTTP 500: Error code: 500 - crashed serving Bearer *** (after 3 attempts)")
        return
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["n"], metrics["failed"], metrics["judge_stats"]["retries"]) == (3, 0, 6)
    rows = [json.loads(x) for x in (tmp_path / "out" / "judgements.jsonl").open()]
    assert {row["judge_reply"] for row in rows} == {reply}


# -- erv augment -----------------------------------------------------------------------------

EXPLANATIONS = [{"id": f"s{i}", "text": f"Sample {i}: tears and sadness."} for i in range(3)]

AUGMENT_FAILED = "erv: error: {out}: all 3 requests failed (last: "
CHECK = "); check the server at {url} and rerun (the failed ones are asked again)"

# (id, script, exit code, a line shown, accepted, rejected, failed, errors by kind)
AUGMENT_CASES = [
    ("truncated-json", [TRUNCATED], 2, AUGMENT_FAILED + NOT_JSON_CUT + CHECK, 0, 0, 3,
     {"bad body": 6}),
    ("html", [HTML], 2, AUGMENT_FAILED + NOT_JSON_HTML + CHECK, 0, 0, 3, {"bad body": 6}),
    ("no-choices", [NO_CHOICES], 2,
     AUGMENT_FAILED + "HTTP 200 with no choices in the body (after 2 attempts)" + CHECK,
     0, 0, 3, {"bad body": 6}),
    ("bad-body-then-answer", [TRUNCATED, OK("Sadness.")], 0,
     "{out}: 3 accepted, 0 rejected, 0 failed, 0 already done; 6 requests (3 retries); tokens "
     "21 in / 3 out; cost $0.0000", 3, 0, 0, {"bad body": 3}),
    ("echo-in-400", [ECHO_400], 2,
     AUGMENT_FAILED + "HTTP 400: Error code: 400 - bad request from Authorization: ***" + CHECK,
     0, 0, 3, {"400": 3}),
    ("echo-in-500-then-answer", [ECHO_500, OK("sadness")], 0, None, 3, 0, 0, {"500": 3}),
    ("echo-in-401", [ECHO_401], 2,
     "erv: error: the chat API refused the credentials (AuthenticationError, HTTP 401); "
     "check $ERV_TEST_ECHO_KEY", 0, 0, 0, None),
    # A reply that repeats the header: not a label list, so rejected and kept, masked.
    ("echo-in-reply", [ECHO_200()], 0, None, 0, 3, 0, {}),
]


@pytest.mark.parametrize(("script", "code", "last", "accepted", "rejected", "failed",
                          "errors"), [pytest.param(*c[1:], id=c[0]) for c in AUGMENT_CASES])
def test_augment_survives_the_server(tmp_path, capsys, logs, script, code, last, accepted,
                                     rejected, failed, errors):
    inputs = tmp_path / "r1omni.jsonl"
    inputs.write_text("".join(json.dumps(e) + "\n" for e in EXPLANATIONS))
    out = tmp_path / "pseudo.jsonl"
    with Server(script) as server:
        r = run_cli(capsys, ["augment", "label", str(inputs), "--out", str(out), "--base-url",
                             server.url, "--api-key-env", "ERV_TEST_ECHO_KEY", "--retries",
                             "1", "--backoff", "0.01", "--concurrency", "1", "--quiet"])
    assert server.auth == {f"Bearer {KEY}"}
    assert r.code == code, r.err
    shown = (r.out + r.err).splitlines()
    if last is not None:
        assert last.replace("{out}", str(out)).replace("{url}", server.url) in shown, shown
    if errors is not None:
        summary = json.loads((tmp_path / "pseudo.summary.json").read_text())
        assert (summary["accepted"], summary["rejected"], summary["failed"],
                summary["errors"]) == (accepted, rejected, failed, errors)
    if rejected:
        rejects = [json.loads(x) for x in (tmp_path / "pseudo.rejects.jsonl").open()]
        assert {row["reply"] for row in rejects} == {"sadness. (you sent Bearer ***)"}
    assert_no_key(tmp_path, r.out, r.err, logs=logs)


def test_the_shared_request_path_masks_every_form_of_the_secret():
    from erv_plugins.llm import redact

    secret = "sk-abc-123"
    assert redact(f"got {secret} and {secret}x", [secret]) == "got *** and ***x"
    assert redact('{"Authorization": "Basic dXNlcjpwdw=="}') == '{"Authorization": "***"}'
    assert redact("authorization=Token t0k3n, next") == "authorization=***, next"
    assert redact("header: Bearer eyJhbGciOi.J9.x") == "header: Bearer ***"
    assert redact("no secret here", [secret]) == "no secret here"

"""``erv augment`` against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server is scripted by markers in each prompt: ``#429`` (one rate-limit reply first),
``#500x2`` (two server errors first), ``#slow`` (first reply later than the client's
timeout), ``#malformed`` (a sentence instead of labels), ``#three`` (three labels),
``#dead`` (always 500). Otherwise it answers with the label words found in the reason.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from erv_plugins.augment.prompts import LABEL_PROMPT, parse_label_reply
from erv_plugins.augment.runner import ChatSettings, side_files
from erv_plugins.augment.tasks import complement, pseudo_label
from erv_plugins.errors import ErvError
from erv_plugins.labels import MAFW_LABELS


class ScriptedLLM:
    """What the server saw and answered, per sample key ``[sNN]``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, int]] = []  # (key, HTTP status)
        self.prompts: dict[str, str] = {}
        self.auth: list[str] = []
        self.models: list[str] = []
        self.short_sent = False

    def seen(self, key: str) -> int:
        return sum(1 for k, _ in self.requests if k == key)

    def answered(self) -> Counter[str]:
        return Counter(k for k, status in self.requests if status == 200)

    def reply(self, prompt: str) -> tuple[int, str, float]:
        """(status, content, delay) for one request."""
        m = re.search(r"\[(s\d+|c[^\]]*)\]", prompt)
        key = m.group(1) if m else prompt[-40:]
        with self.lock:
            n = self.seen(key)
            self.prompts.setdefault(key, prompt)
        status, content, delay = 200, "", 0.0
        if "#dead" in prompt or ("#429" in prompt and n == 0):
            status = 500 if "#dead" in prompt else 429
        elif "#500x2" in prompt and n < 2:
            status = 500
        elif "#slow" in prompt and n == 0:
            delay = 3.0
        if status == 200:
            if "Target Emotion:" in prompt:
                emotion = prompt.rsplit("Target Emotion:", 1)[1].strip()
                with self.lock:  # the very first fear request gets a too-short reply
                    short = emotion == "fear" and not self.short_sent
                    self.short_sent = self.short_sent or short
                content = "ok" if short else f"A vivid scene of {emotion}: the face tightens."
            elif "#malformed" in prompt:
                content = "The emotion is clearly anger, I think."
            elif "#three" in prompt:
                content = "anger, fear, sadness"
            else:
                reason = prompt.split("Reason:", 1)[1]
                words = [w for w in MAFW_LABELS if re.search(rf"\b{w}\b", reason)]
                content = ", ".join(w.capitalize() for w in words) + "."
        with self.lock:  # a reply later than the client's timeout is logged as 0 (late)
            self.requests.append((key, 0 if delay else status))
        return status, content, delay


@pytest.fixture
def llm() -> Iterator[tuple[ScriptedLLM, str]]:
    script = ScriptedLLM()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script.auth.append(self.headers.get("Authorization", ""))
            script.models.append(body["model"])
            if self.headers.get("Authorization") == "Bearer bad-key":
                return self._send(401, {"error": {"message": "invalid key"}})
            prompt = body["messages"][-1]["content"]
            status, content, delay = script.reply(prompt)
            time.sleep(delay)
            if status != 200:
                return self._send(status, {"error": {"message": f"scripted {status}"}},
                                  {"Retry-After": "0"} if status == 429 else {})
            self._send(200, {
                "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})

        def _send(self, status: int, payload: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield script, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _settings(url: str, **kw: Any) -> ChatSettings:
    return ChatSettings(model="gpt-test", base_url=url, concurrency=4, timeout_s=1.5,
                        max_retries=3, backoff_s=0.01, price_in=2.0, price_out=8.0, **kw)


def _explanations(path: Path, n: int = 24) -> Path:
    marks = {1: "#429", 2: "#500x2", 3: "#slow", 4: "#malformed", 5: "#dead", 6: "#two",
             7: "#three"}
    with path.open("w") as f:
        for i in range(n):
            words = ["sadness", "fear"] if i == 6 else [MAFW_LABELS[i % 11]]
            text = f"[s{i:02d}] {marks.get(i, '')} The face shows {' and '.join(words)}."
            f.write(json.dumps({"id": f"s{i:02d}", "text": text}) + "\n")
    return path


def _ids(path: Path) -> list[str]:
    return [json.loads(x)["id"] for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []


def test_reply_parsing_is_strict():
    assert parse_label_reply(" Anger, sadness. ", MAFW_LABELS).labels == ("anger", "sadness")
    assert parse_label_reply('"fear"', MAFW_LABELS).labels == ("fear",)
    assert parse_label_reply("anger, anger", MAFW_LABELS).labels == ("anger",)
    assert parse_label_reply("anger, fear, sadness", MAFW_LABELS).error == (
        "3 labels, at most 2 allowed")
    assert parse_label_reply("I think it is anger", MAFW_LABELS).error == (
        "not in the label list: i think it is anger")
    assert parse_label_reply("", MAFW_LABELS).error == "empty reply"
    assert parse_label_reply("anger,", MAFW_LABELS).error == "empty item in the list"


def test_pseudo_labelling_survives_errors_and_resumes_without_asking_twice(
        llm: tuple[ScriptedLLM, str], tmp_path: Path):
    script, url = llm
    inputs = _explanations(tmp_path / "r1omni.jsonl")
    out = tmp_path / "pseudo.jsonl"

    # An "interrupted" first run: a budget of 10 questions.
    first = pseudo_label([inputs], out, _settings(url), limit=10, progress=False)
    # s01: one 429, s02: two 500s, s03: one timeout, each then answered; s04 and s07
    # rejected (a sentence, three labels); s05: four 500s, given up.
    assert (first.pending, first.accepted, first.rejected, first.failed) == (10, 7, 2, 1)
    assert first.errors == {"429": 1, "500": 6, "timeout": 1}
    assert first.requests == 10 + 1 + 2 + 1 + 3 and first.retries == 7
    second = pseudo_label([inputs], out, _settings(url), progress=False)
    # Answered and rejected samples are skipped; the failed s05 is asked again.
    assert (second.skipped, second.pending, second.accepted, second.failed) == (9, 15, 14, 1)

    rejects, failures = side_files(out)
    accepted = _ids(out)
    assert sorted(accepted) == [f"s{i:02d}" for i in range(24) if i not in (4, 5, 7)]
    assert sorted(_ids(rejects)) == ["s04", "s07"]
    assert _ids(failures) == ["s05", "s05"]  # asked again on resume, failed again
    # No sample lost: every input is accepted, rejected or failed.
    assert set(accepted) | set(_ids(rejects)) | set(_ids(failures)) == {
        f"s{i:02d}" for i in range(24)}
    # None requested twice once answered: exactly one 200 per answered sample.
    assert script.answered() == Counter({f"s{i:02d}": 1 for i in range(24) if i != 5})
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["s06"]["labels"] == ["fear", "sadness"]  # the reply's order: "Fear, Sadness."
    assert rows["s13"] == {"id": "s13", "text": "[s13]  The face shows fear.",
                           "labels": ["fear"], "source": "pseudo"}
    reject = json.loads(rejects.read_text().splitlines()[0])
    assert reject["reason"] in {"not in the label list: the emotion is clearly anger, i think",
                                "3 labels, at most 2 allowed"}
    # Tokens and cost are counted per answered request (10 in, 2 out at $2 / $8 per 1M).
    answered = first.prompt_tokens // 10 + second.prompt_tokens // 10
    assert answered == 23
    assert first.cost_usd + second.cost_usd == pytest.approx(23 * (10 * 2 + 2 * 8) / 1e6)
    # Figure 6 prompt with a per-sample permutation of MAFW's labels.
    lists = []
    for key in ("s00", "s08", "s13"):
        m = re.match(re.escape(LABEL_PROMPT.split("{emotion_list}")[0]) + r"(.*?)\. Primarily",
                     script.prompts[key])
        assert m, script.prompts[key]
        lists.append(m.group(1).split(", "))
        assert sorted(lists[-1]) == sorted(MAFW_LABELS)
    assert len({tuple(x) for x in lists}) == 3


def test_a_torn_last_line_is_cut_and_its_sample_asked_again(llm: tuple[ScriptedLLM, str],
                                                              tmp_path: Path):
    script, url = llm
    inputs = _explanations(tmp_path / "r1omni.jsonl", n=3)
    out = tmp_path / "pseudo.jsonl"
    out.write_text('{"id": "s00", "text": "x", "labels": ["anger"], "source": "pseudo"}\n'
                   '{"id": "s01", "text": "[s01] #429 The face sh')  # crash mid-write
    stats = pseudo_label([inputs], out, _settings(url), progress=False)
    assert (stats.skipped, stats.accepted) == (1, 2)
    assert sorted(_ids(out)) == ["s00", "s01", "s02"]
    assert "s00" not in script.answered()


def test_complement_reaches_the_target_per_emotion(llm: tuple[ScriptedLLM, str],
                                                   tmp_path: Path):
    script, url = llm
    pseudo = tmp_path / "pseudo.jsonl"
    rows = [("d1", "disgust"), ("d2", "disgust"), ("d3", "disgust"), ("f1", "fear"),
            ("f2", "fear")]
    pseudo.write_text("".join(
        json.dumps({"id": i, "text": f"[c-{e}-{i}] she recoils in {e}.",
                    "labels": [e]}) + "\n" for i, e in rows))
    out = tmp_path / "complemented.jsonl"
    stats = complement([pseudo], out, _settings(url), emotions=("disgust", "fear"), target=5,
                       progress=False)
    made = [json.loads(x) for x in out.read_text().splitlines()]
    assert Counter(r["labels"][0] for r in made) == {"disgust": 2, "fear": 3}
    assert all(r["source"] == "complemented" and len(r["exemplars"]) == 2 for r in made)
    assert all(set(r["exemplars"]) <= {"f1", "f2"} for r in made if r["labels"] == ["fear"])
    # The first fear reply was too short: rejected, and a fresh id asked in round 2.
    assert stats.rejected == 1 and stats.accepted == 5
    assert json.loads(side_files(out)[0].read_text())["reason"] == "shorter than 20 characters"
    again = complement([pseudo], out, _settings(url), emotions=("disgust", "fear"), target=5,
                       progress=False)
    assert again.pending == 0


def test_cli_reads_the_key_from_the_environment_and_never_prints_it(
        llm: tuple[ScriptedLLM, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from erv_plugins.cli import build_cli

    script, url = llm
    inputs = _explanations(tmp_path / "r1omni.jsonl", n=3)
    out = tmp_path / "pseudo.jsonl"
    monkeypatch.setenv("MY_LLM_KEY", "sk-secret-123")
    result = CliRunner().invoke(build_cli(), [
        "augment", "label", str(inputs), "--out", str(out), "--base-url", url,
        "--api-key-env", "MY_LLM_KEY", "--backoff", "0.01", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 accepted, 0 rejected, 0 failed" in result.output
    assert set(script.auth) == {"Bearer sk-secret-123"}
    for f in tmp_path.iterdir():
        assert "sk-secret-123" not in f.read_text(), f
    assert "sk-secret-123" not in result.output
    summary = json.loads((tmp_path / "pseudo.summary.json").read_text())
    assert summary["accepted"] == 3 and summary["prompt_tokens"] == 30


def test_cli_takes_the_api_settings_from_the_recipe(llm: tuple[ScriptedLLM, str],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    from erv_plugins.cli import build_cli

    script, url = llm
    monkeypatch.setenv("RECIPE_LLM_KEY", "sk-from-env")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "aug"
stages = ["train_verifier"]

[train_verifier]
base = "tiny"

[train_verifier.augment]
base_url = "{url}"
complement_model = "small-writer"
api_key_env = "RECIPE_LLM_KEY"
concurrency = 2
price_in = 1.0
price_out = 1.0
""")
    pseudo = tmp_path / "pseudo.jsonl"
    pseudo.write_text('{"text": "[c-1] She wrinkles her nose in disgust.", "labels": ["disgust"]}\n'
                      '{"text": "[c-2] He gags and turns away.", "labels": ["disgust"]}\n')
    out = tmp_path / "complemented.jsonl"
    result = CliRunner().invoke(build_cli(), [
        "augment", "complement", "--pseudo", str(pseudo), "--out", str(out), "--emotions",
        "disgust", "--target", "4", "--recipe", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 accepted, 0 rejected, 0 failed" in result.output
    assert "cost $0.0000" in result.output  # 2 x 12 tokens at $1 per 1M
    assert set(script.models) == {"small-writer"}
    assert set(script.auth) == {"Bearer sk-from-env"}
    assert sorted(json.loads(x)["id"] for x in out.read_text().splitlines()) == [
        "complement:disgust:00000", "complement:disgust:00001"]


def test_a_refused_key_stops_the_run_with_a_clear_error(llm: tuple[ScriptedLLM, str],
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    _, url = llm
    monkeypatch.setenv("OPENAI_API_KEY", "bad-key")
    with pytest.raises(ErvError, match=r"refused the credentials \(AuthenticationError, HTTP "
                       r"401\); check \$OPENAI_API_KEY"):
        pseudo_label([_explanations(tmp_path / "in.jsonl", n=2)], tmp_path / "o.jsonl",
                     _settings(url), progress=False)

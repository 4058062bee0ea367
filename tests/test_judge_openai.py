"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 with scripted replies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from erv_plugins.errors import ErvError
from erv_plugins.judges.base import JUDGE_PROMPT, JudgeRequest, match_reply, permuted_labels
from erv_plugins.judges.chat import OpenAIJudge, OpenAIJudgeOptions
from erv_plugins.testing.judges import Drop, Reply, ScriptedChatServer, Slow, Status
from erv_plugins.labels import DFEW, MAFW
from erv_plugins.plugins import get_plugins

KEY = "sk-test-NEVER-WRITE-ME-4242"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", KEY)


def make_judge(server: ScriptedChatServer, tmp_path: Path, **kw: object) -> OpenAIJudge:
    options = dict(model="judge-model", base_url=server.base_url, api_key_env="ERV_TEST_JUDGE_KEY",
                   timeout_s=1.0, retries=2, backoff_s=0.01, backoff_max_s=0.02, concurrency=4,
                   cache=str(tmp_path / "cache.sqlite"))
    options.update(kw)
    return OpenAIJudge(OpenAIJudgeOptions(**options))  # type: ignore[arg-type]


def test_prompt_is_figure_3_with_a_fresh_seeded_permutation(tmp_path: Path) -> None:
    with ScriptedChatServer() as server:
        judge = make_judge(server, tmp_path, seed=3)
        requests = [JudgeRequest(f"clip{i}", f"Reason {i}: a sad face.") for i in range(12)]
        verdicts = {v.id: v for v in judge.judge(requests, DFEW)}
        assert {v.label for v in verdicts.values()} == {"sad"}
        assert len(server.prompts) == 12
        orders = []
        for prompt in server.prompts:
            m = re.fullmatch(r"Read the reasoning content and respond with the appropriate "
                             r"emotion in (.*)\. Reply with only the emotion word\.\n"
                             r"Reason: (Reason \d+): a sad face\.\nAnswer Emotion:", prompt)
            assert m, prompt
            order = m.group(1).split(", ")
            assert sorted(order) == sorted(DFEW.labels)
            sample = "clip" + m.group(2).split()[1].rstrip(":")
            assert order == permuted_labels(DFEW.labels, 3, sample)
            assert prompt == JUDGE_PROMPT.format(labels=", ".join(order),
                                                 reason=f"{m.group(2)}: a sad face.")
            orders.append(tuple(order))
        assert len(set(orders)) > 6  # freshly permuted per sample
        assert server.bodies[0]["model"] == "judge-model"
        assert server.bodies[0]["messages"] == [{"role": "user", "content": server.prompts[0]}]
        headers = {k.lower(): v for k, v in server.headers[0].items()}
        assert headers["authorization"] == f"Bearer {KEY}"  # from the environment


def test_reply_matching_forgives_only_case_space_and_punctuation() -> None:
    assert match_reply(" Happiness.\n", MAFW) == ("happiness", True)
    assert match_reply('"anger"', MAFW) == ("anger", True)
    assert match_reply("angry", MAFW) == ("neutral", False)  # not a MAFW word
    assert match_reply("I think fear", MAFW) == ("neutral", False)
    assert match_reply("", MAFW) == ("neutral", False)


SCRIPTS = {
    "plain": [Reply("happy")],
    "punctuated": [Reply("Sad.")],
    "outside": [Reply("joyful")],
    "rate limited": [Status(429), Status(429), Reply("angry")],
    "server error": [Status(500), Reply("fear")],
    "slow": [Slow(3.0, "fear"), Reply("disgust")],
    "dropped": [Drop(), Reply("surprise")],
    "always 500": [Status(500)],
    "always dropped": [Drop()],
    "bad request": [Status(400)],
}


def test_scripted_failures_lose_no_sample_and_retries_are_bounded(tmp_path: Path) -> None:
    with ScriptedChatServer(SCRIPTS) as server:
        judge = make_judge(server, tmp_path)
        requests = [JudgeRequest(f"id-{reason}", reason) for reason in SCRIPTS]
        verdicts = list(judge.judge(requests, DFEW))
        by_id = {v.id: v for v in verdicts}
        assert len(verdicts) == len(by_id) == len(SCRIPTS)  # one verdict per sample
        got = {v.id.removeprefix("id-"): (v.label, v.in_list) for v in verdicts if v.ok}
        assert got == {
            "plain": ("happy", True), "punctuated": ("sad", True),
            "outside": ("neutral", False),  # counted as neutral, flagged as outside
            "rate limited": ("angry", True), "server error": ("fear", True),
            "slow": ("disgust", True), "dropped": ("surprise", True),
        }
        failed = {v.id.removeprefix("id-"): v.error for v in verdicts if not v.ok}
        assert set(failed) == {"always 500", "always dropped", "bad request"}
        assert all(by_id[f"id-{r}"].label is None for r in failed)
        assert "HTTP 500" in failed["always 500"] and "after 3 attempts" in failed["always 500"]
        assert "connection" in failed["always dropped"]
        assert "HTTP 400" in failed["bad request"]
        assert by_id["id-outside"].reply == "joyful"
        attempts = {r: server.attempts(r) for r in SCRIPTS}
        assert attempts == {"plain": 1, "punctuated": 1, "outside": 1, "rate limited": 3,
                            "server error": 2, "slow": 2, "dropped": 2, "always 500": 3,
                            "always dropped": 3, "bad request": 1}
        assert judge.stats == {"requests": 19, "retries": 9, "cache_hits": 0,
                               "answered": 7, "failed": 3}


def test_rerun_costs_nothing_thanks_to_the_cache(tmp_path: Path) -> None:
    requests = [JudgeRequest(f"c{i}", f"so much fear {i}") for i in range(6)]
    with ScriptedChatServer({"odd": [Reply("joyful")]}) as server:
        first = {v.id: v for v in make_judge(server, tmp_path).judge(requests, DFEW)}
        assert server.attempts() == 6
        again = make_judge(server, tmp_path)
        second = {v.id: v for v in again.judge(requests, DFEW)}
        assert server.attempts() == 6  # nothing asked again
        assert again.stats["cache_hits"] == 6 and again.stats["requests"] == 0
        assert {k: (v.label, v.reply) for k, v in second.items()} == \
            {k: (v.label, v.reply) for k, v in first.items()}
        assert all(v.cached for v in second.values())
        other_model = make_judge(server, tmp_path, model="another-model")
        list(other_model.judge(requests[:2], DFEW))
        assert server.attempts() == 8  # the cache is keyed by model too
    assert KEY.encode() not in (tmp_path / "cache.sqlite").read_bytes()


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    with ScriptedChatServer(default=lambda reason, labels: Slow(0.1, "neutral")) as server:
        judge = make_judge(server, tmp_path, concurrency=2, timeout_s=2.0)
        verdicts = list(judge.judge([JudgeRequest(str(i), f"r{i}") for i in range(6)], DFEW))
        assert len(verdicts) == 6 and all(v.ok for v in verdicts)
        assert server.max_in_flight == 2


def test_refused_key_stops_at_once_without_showing_the_key(tmp_path: Path) -> None:
    with ScriptedChatServer(default=lambda reason, labels: Status(401)) as server:
        judge = make_judge(server, tmp_path, concurrency=1)
        with pytest.raises(ErvError, match=r"refused the request: 401") as info:
            list(judge.judge([JudgeRequest(str(i), f"r{i}") for i in range(5)], DFEW))
        assert KEY not in str(info.value)
        assert "ERV_TEST_JUDGE_KEY" in str(info.value)
        assert server.attempts() < 5  # not retried, the rest never sent


def test_missing_key_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERV_TEST_JUDGE_KEY")
    with pytest.raises(ErvError, match="environment variable ERV_TEST_JUDGE_KEY holds no API key"):
        OpenAIJudge(OpenAIJudgeOptions(api_key_env="ERV_TEST_JUDGE_KEY", use_cache=False))


def test_bad_options_are_named() -> None:
    with pytest.raises(ErvError, match="concurrency must be >= 1"):
        OpenAIJudge(OpenAIJudgeOptions(api_key_env="ERV_TEST_JUDGE_KEY", concurrency=0))


def test_registered_as_plugin_with_its_options() -> None:
    reg = get_plugins().get("judge", "openai")
    assert reg.factory is OpenAIJudge and reg.options is OpenAIJudgeOptions
    assert get_plugins().get("judge", "verifier").options.__name__ == "VerifierJudgeOptions"


def test_stopping_early_sends_no_further_requests(tmp_path: Path) -> None:
    """What Ctrl-C does to the judge: nothing queued is sent, no retry is started."""
    with ScriptedChatServer(default=lambda reason, labels: Slow(0.2, "neutral")) as server:
        judge = make_judge(server, tmp_path, concurrency=1, timeout_s=2.0)
        verdicts = judge.judge([JudgeRequest(str(i), f"r{i}") for i in range(6)], DFEW)
        first = next(verdicts)
        assert first.ok
        verdicts.close()  # the consumer stops here
        import time

        time.sleep(0.5)
        assert server.attempts() <= 2  # the one answered and at most one already running


def test_retry_after_of_a_rate_limit_is_honoured(tmp_path: Path) -> None:
    import time

    with ScriptedChatServer({"busy": [Status(429, retry_after=0.4), Reply("sad")]}) as server:
        judge = make_judge(server, tmp_path, backoff_max_s=1.0)  # own backoff: 0.01 s
        start = time.perf_counter()
        (verdict,) = judge.judge([JudgeRequest("a", "busy")], DFEW)
        assert time.perf_counter() - start >= 0.4
        assert verdict.label == "sad" and server.attempts("busy") == 2

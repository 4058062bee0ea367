"""An interrupted evaluation resumes: no duplicate rows, no missing rows, nothing re-asked."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from erv_plugins.errors import ErvError
from erv_plugins.evaluation.run import JUDGEMENTS, Prediction, evaluate, read_predictions
from erv_plugins.judges.base import JudgeRequest, Verdict
from erv_plugins.judges.chat import OpenAIJudge, OpenAIJudgeOptions
from erv_plugins.testing.judges import Reply, ScriptedChatServer, Status
from erv_plugins.labels import DFEW, LabelSpace

DATA = Path(__file__).parent / "data" / "predictions_mafw.jsonl"
QUIET: dict[str, Any] = {"bootstrap": 0, "progress": False, "plot": False,
                         "echo": lambda s: None}
PREDICTIONS = [Prediction(f"s{i:02d}", f"<think>A {w} face {i}.</think><answer>{w}</answer>", w)
               for i, w in enumerate(["happy", "sad", "angry", "fear"] * 5)]


class KeywordJudge:
    """A deterministic in-process judge (the first DFEW word of the explanation)."""

    name = "keyword"
    cache_key = "keyword-v1"

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.asked: list[str] = []

    def judge(self, requests: Sequence[JudgeRequest], label_space: LabelSpace
              ) -> Iterator[Verdict]:
        for r in requests:
            if self.stop_after is not None and len(self.asked) == self.stop_after:
                raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-evaluation
            self.asked.append(r.id)
            word = next(w for w in label_space.labels if w in r.explanation)
            yield Verdict(r.id, word, reply=word)


def ids_in(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / JUDGEMENTS).read_text().splitlines()]


def test_interrupted_evaluation_resumes_without_duplicates(tmp_path: Path) -> None:
    first = KeywordJudge(stop_after=7)
    with pytest.raises(KeyboardInterrupt):
        evaluate(PREDICTIONS, DFEW, first, tmp_path, **QUIET)
    assert ids_in(tmp_path) == [f"s{i:02d}" for i in range(7)]  # streamed as they came
    assert not (tmp_path / "metrics.json").exists()
    second = KeywordJudge()
    result = evaluate(PREDICTIONS, DFEW, second, tmp_path, **QUIET)
    assert second.asked == [f"s{i:02d}" for i in range(7, 20)]  # only the rest asked
    assert sorted(ids_in(tmp_path)) == [p.id for p in PREDICTIONS]  # none twice, none lost
    assert result.asked == 13 and result.metrics["judged"] == 20
    assert result.metrics["EEA"] == 100.0 and result.metrics["WAR"] == 100.0
    third = KeywordJudge()
    evaluate(PREDICTIONS, DFEW, third, tmp_path, **QUIET)
    assert third.asked == []


def test_a_row_cut_short_by_a_crash_is_asked_again(tmp_path: Path) -> None:
    evaluate(PREDICTIONS[:3], DFEW, KeywordJudge(), tmp_path, **QUIET)
    with (tmp_path / JUDGEMENTS).open("a") as f:
        f.write('{"id": "s03", "label": "ha')  # the process died mid-write
    judge = KeywordJudge()
    evaluate(PREDICTIONS[:5], DFEW, judge, tmp_path, **QUIET)
    assert judge.asked == ["s03", "s04"]
    assert ids_in(tmp_path) == ["s00", "s01", "s02", "s03", "s04"]


def test_a_damaged_row_in_the_middle_is_an_error_not_a_loss(tmp_path: Path) -> None:
    evaluate(PREDICTIONS[:3], DFEW, KeywordJudge(), tmp_path, **QUIET)
    path = tmp_path / JUDGEMENTS
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ErvError, match=rf"{JUDGEMENTS}:2: unreadable row"):
        evaluate(PREDICTIONS[:3], DFEW, KeywordJudge(), tmp_path, **QUIET)
    assert len(path.read_text().splitlines()) == 4  # left as it was


def test_another_judge_or_changed_completion_does_not_mix(tmp_path: Path) -> None:
    evaluate(PREDICTIONS[:2], DFEW, KeywordJudge(), tmp_path, **QUIET)
    other = KeywordJudge()
    other.cache_key = "keyword-v2"
    with pytest.raises(ErvError, match="judged by another judge or model"):
        evaluate(PREDICTIONS[:2], DFEW, other, tmp_path, **QUIET)
    changed = [Prediction("s00", "<think>sad</think><answer>sad</answer>", "sad")]
    with pytest.raises(ErvError, match="sample 's00' was judged for a different completion"):
        evaluate(changed, DFEW, KeywordJudge(), tmp_path, **QUIET)


def test_failed_samples_are_reported_not_counted_and_asked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", "x")
    preds = read_predictions(DATA)
    flaky = "Shoulders drop in disappointment."
    options = OpenAIJudgeOptions(model="m", api_key_env="ERV_TEST_JUDGE_KEY", retries=1,
                                 backoff_s=0.01, timeout_s=5, cache=str(tmp_path / "c.sqlite"))
    with ScriptedChatServer({flaky: [Status(503), Status(503), Reply("disappointment")]}) as srv:
        options.base_url = srv.base_url
        result = evaluate(preds, _mafw(), OpenAIJudge(options), tmp_path / "o", **QUIET)
        assert result.failed == {
            "mafw_0020": "HTTP 503: Error code: 503 - scripted 503 (after 2 attempts)"}
        assert result.metrics["judged"] == 19 and result.metrics["failed"] == 1
        assert result.metrics["failed_ids"] == ["mafw_0020"]
        assert "mafw_0020" not in ids_in(tmp_path / "o")
        assert srv.attempts() == 21
        again = evaluate(preds, _mafw(), OpenAIJudge(options), tmp_path / "o", **QUIET)
        assert srv.attempts() == 22  # only the failed one, answered this time
        assert again.failed == {} and again.metrics["judged"] == 20
        assert sorted(ids_in(tmp_path / "o")) == [p.id for p in preds]


def test_unknown_ground_truth_is_named(tmp_path: Path) -> None:
    bad = [Prediction("x1", "<think>t</think><answer>happy</answer>", "joyful")]
    with pytest.raises(ErvError, match="sample 'x1': label 'joyful' is not a DFEW label"):
        evaluate(bad, DFEW, KeywordJudge(), tmp_path, **QUIET)


def _mafw() -> LabelSpace:
    from erv_plugins.labels import MAFW

    return MAFW


def test_a_judge_label_outside_the_label_space_is_an_error(tmp_path: Path) -> None:
    from erv_plugins.labels import EMER  # no "neutral" among EMER's labels

    class NeutralJudge(KeywordJudge):
        def judge(self, requests, label_space):  # noqa: ANN001, ANN202
            for r in requests:
                yield Verdict(r.id, "neutral", reply="joyful", in_list=False)

    preds = [Prediction("e1", "<think>t</think><answer>happy</answer>", "happy")]
    with pytest.raises(ErvError, match="judge label 'neutral' is not one of the labels"):
        evaluate(preds, EMER, NeutralJudge(), tmp_path, **QUIET)

"""Evaluation protocols on hand-computed cases: the authors' scripts (release), the paper's
text (paper) and erv's own (erv) read the same predictions and judge replies differently.

The release's rules pinned here (tools/response_gpt_check.py, tools/compare/
compare_reason-recognition.py, eval_score.py and utils_main.py of Rhatanii/ERV) were checked
against the scripts themselves on 300 DFEW and 300 MAFW predictions per seed (the
differential check named in docs/fidelity.md); these cases keep them from drifting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from erv_plugins.evaluation.protocols import parse_prediction, release_line
from erv_plugins.evaluation.run import Prediction, evaluate
from erv_plugins.judges.base import JudgeRequest, Verdict, match_reply
from erv_plugins.labels import DFEW, MAFW, LabelSpace


class ScriptedJudge:
    """Replies by explanation text; a reply of None is a failed request."""

    name = "scripted"
    cache_key = "scripted-v1"

    def __init__(self, replies: dict[str, str | None]) -> None:
        self.replies = replies
        self.asked: list[JudgeRequest] = []

    def judge(self, requests: Sequence[JudgeRequest], label_space: LabelSpace
              ) -> Iterator[Verdict]:
        for r in requests:
            self.asked.append(r)
            reply = self.replies[r.explanation]
            if reply is None:
                yield Verdict(r.id, None, error="HTTP 500")
                continue
            label, in_list = match_reply(reply, label_space)
            yield Verdict(r.id, label, reply=reply, in_list=in_list)


# Six DFEW samples; what each protocol makes of them is worked out per line.
DFEW_PREDICTIONS = [
    # p = happy, j = happy everywhere: right, coherent.
    Prediction("1", "<think>She smiles.</think>\n<answer>happy</answer>", "happy"),
    # release: the '|' ends the field the judge and compare read: explanation "Tears", no
    # <answer> in the field -> wrong and incoherent for EEA/FCR/EPC; WAR reads the whole line.
    Prediction("2", "<think>Tears | fall.</think><answer>sad</answer>", "sad"),
    # release: lines joined with a space; "Angry" without </answer> still counts (DFEW);
    # the reply "Angry" is not verbatim in the list -> neutral. erv: "Angry" matches.
    Prediction("3", "<think>He shouts.\nLoudly.</think><answer>Angry", "angry"),
    # "calm" is no DFEW word: wrong answer; release: incoherent whatever the judge says.
    Prediction("4", "<think>She trembles.</think><answer>calm</answer>", "fear"),
    # The judge's request fails: release/paper count neutral (right here); erv leaves it out.
    Prediction("5", "<think>Flat tone.</think><answer>neutral</answer>", "neutral"),
    # No tags at all: no explanation, the whole text is no DFEW word.
    Prediction("6", "The face shows surprise", "surprise"),
]
DFEW_REPLIES = {"She smiles.": "happy", "Tears": "sad", "Tears | fall.": "sad",
                "He shouts. Loudly.": "Angry", "He shouts.\nLoudly.": "Angry",
                "She trembles.": "fear", "Flat tone.": None, "": "neutral"}


def run(tmp_path: Path, protocol: str, predictions: Sequence[Prediction] = DFEW_PREDICTIONS,
        space: LabelSpace = DFEW, replies: dict[str, str | None] = DFEW_REPLIES
        ) -> tuple[dict, ScriptedJudge]:
    judge = ScriptedJudge(replies)
    result = evaluate(predictions, space, judge, tmp_path / protocol, protocol=protocol,
                      bootstrap=0, progress=False, plot=False, echo=lambda _: None)
    return result.metrics, judge


def values(m: dict) -> tuple[float, ...]:
    return tuple(m[k] for k in ("n", "EEA", "FCR", "EPC", "WAR", "UAR"))


def test_release_protocol_as_the_authors_scripts(tmp_path: Path) -> None:
    m, judge = run(tmp_path, "release")
    # EEA/FCR/EPC: samples 1 and 5 of 6. WAR: 1 2 3 5. UAR over all 7 DFEW classes, disgust
    # (no sample) adding 0: happy sad neutral angry 1, surprise fear 0 -> 4 / 7.
    assert values(m) == pytest.approx((6, 33.3333, 33.3333, 33.3333, 66.6667, 57.1429),
                                      abs=1e-4)
    assert (m["failed"], m["judged"], m["unparsed_for_coherence"]) == (1, 5, 3)
    # The label list in the dataset's own order, the explanation as the scripts cut it.
    assert {r.labels for r in judge.asked} == {DFEW.labels}
    assert [r.explanation for r in judge.asked] == [
        "She smiles.", "Tears", "He shouts. Loudly.", "She trembles.", "Flat tone.", ""]


def test_paper_protocol_permutes_the_list_and_averages_uar_over_present_classes(
        tmp_path: Path) -> None:
    m, judge = run(tmp_path, "paper")
    assert values(m) == pytest.approx((6, 33.3333, 33.3333, 33.3333, 66.6667, 66.6667),
                                      abs=1e-4)
    assert {r.labels for r in judge.asked} == {None}  # the judge's seeded permutation


def test_erv_protocol_is_tolerant_and_leaves_failures_out(tmp_path: Path) -> None:
    m, _ = run(tmp_path, "erv")
    # N = 5 (sample 5 failed). j = g on 1 2 3 4; p = g on 1 2 (erv does not read an
    # unclosed <answer>); UAR over the 5 classes present: 2 / 5.
    assert values(m) == pytest.approx((5, 80.0, 40.0, 40.0, 40.0, 40.0))
    assert (m["failed"], m["judged"]) == (1, 5)


def test_release_mafw_leaves_unknown_answers_out_of_uar_denominators(tmp_path: Path) -> None:
    preds = [Prediction("00001", "<think>a</think><answer>anger</answer>", "anger"),
             Prediction("00002", "<think>b</think><answer>calm</answer>", "anger"),
             Prediction("00003", "<think>c</think><answer>happy</answer>", "sadness")]
    replies = {"a": "anger", "b": "anger", "c": "sadness"}
    release, _ = run(tmp_path, "release", preds, MAFW, replies)
    # WAR 1/3; UAR: anger 1/1 (the unknown "calm" leaves anger's denominator), sadness 0,
    # the 9 absent classes 0 -> 1 / 11. DFEW would count "calm" as a miss of anger.
    assert (release["WAR"], release["UAR"]) == pytest.approx((33.3333, 9.0909), abs=1e-4)
    paper, _ = run(tmp_path, "paper", preds, MAFW, replies)
    assert paper["UAR"] == pytest.approx(25.0)  # (1/2 + 0) / 2, classes present


def test_a_judgements_file_of_another_protocol_is_not_resumed(tmp_path: Path) -> None:
    from erv_plugins.errors import ErvError

    run(tmp_path, "erv")
    with pytest.raises(ErvError, match="was judged under the 'erv' protocol, not 'release'"):
        evaluate(DFEW_PREDICTIONS, DFEW, ScriptedJudge(DFEW_REPLIES), tmp_path / "erv",
                 protocol="release", bootstrap=0, progress=False, plot=False,
                 echo=lambda _: None)


@pytest.mark.parametrize(("completion", "line", "cut"), [
    ("a\n\n b", "7|a  b", False),  # each line stripped, joined with one space
    ("  x\r\ny  ", "7|x y", False),  # \r\n read as a line break; the output was stripped
    ("first\n12|looks like another sample", "7|first", True),
])
def test_release_line_reads_the_output_file_back_as_rearrange_one_line(
        completion: str, line: str, cut: bool) -> None:
    assert release_line("7", completion) == (line, cut)


def test_release_parse_of_answers_for_war_and_for_coherence() -> None:
    # DFEW reads an unclosed <answer> to the end of the line; MAFW splits at </answer>.
    p = parse_prediction("release", "1", "<think>t</think><answer>Happy", DFEW)
    assert (p.explanation, p.answer, p.answer_judged, p.judged) == ("t", "happy", "happy", True)
    # Without <answer>: DFEW cuts at <|im_end|>, MAFW at the first "<".
    p = parse_prediction("release", "1", "sad <b><|im_end|>", DFEW)
    assert (p.answer, p.judged) == (None, False)  # "sad <b>" is no DFEW word
    p = parse_prediction("release", "1", "sad <b><|im_end|>", MAFW)
    assert (p.answer, p.judged) == ("sadness", False)

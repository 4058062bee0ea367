"""Hand-computed rewards: R_format, R_answer and R_E (paper eq. 4-5, Algorithm 1).

The keyword verifier gives 0.9 to every GoEmotions label whose keyword a sentence holds
and 0.8 to neutral when it holds none (0.01 elsewhere), so each expected value below can
be checked with pen and paper. ``TableVerifier`` gives chosen probabilities to chosen
sentences, for the threshold, top-k and neutral-rule cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import numpy as np
import pytest

from erv_plugins.labels import GOEMOTIONS
from erv_plugins.rewards.engine import RewardEngine
from erv_plugins.rewards.explanation import ExplanationOptions, ExplanationReward
from erv_plugins.rewards.format_answer import AnswerOptions, AnswerReward, FormatReward
from erv_plugins.testing.rewards import KeywordVerifier
from erv_plugins.text import split_sentences


class TableVerifier:
    """Probabilities from a table: sentence -> {label: probability} (others 0.0)."""

    labels = GOEMOTIONS
    cache_key = "table"

    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        self.table = table

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        for row, text in enumerate(texts):
            for label, p in self.table[text].items():
                out[row, self.labels.index(label)] = p
        return out


def engine(answer_mode: str = "paper", verifier=None, **explanation: object) -> RewardEngine:
    return RewardEngine({
        "format": FormatReward(),
        "answer": AnswerReward(AnswerOptions(mode=answer_mode)),
        "explanation": ExplanationReward(ExplanationOptions(**explanation),
                                         verifier=verifier or KeywordVerifier()),
    })


def score(completion: str, label: str, dataset: str = "mafw", **kw: object) -> tuple[float, ...]:
    s = engine(**kw).score([completion], {"label": [label], "dataset": [dataset]})
    return s.per_reward["format"][0], s.per_reward["answer"][0], s.per_reward["explanation"][0]


# (id, completion, label, dataset, (format, answer, explanation))
CASES = [
    # No think block: no explanation -> R_E = 0; format needs <think>.
    ("no-think", "<answer>happy</answer>", "happiness", "mafw", (0.0, 1.0, 0.0)),
    # Empty think: zero sentences -> R_E = 0, format still holds.
    ("empty-think", "<think></think><answer>sad</answer>", "sadness", "mafw", (1.0, 1.0, 0.0)),
    ("blank-think", "<think>  \n </think> <answer>sad</answer>", "sadness", "mafw", (1.0, 1.0, 0.0)),
    # Several think blocks: only the first is the explanation (She cries. -> sadness: 1/1);
    # the release's non-greedy full match still accepts the format.
    ("two-thinks", "<think>She cries.</think><think>He smiles.</think><answer>sad</answer>",
     "sadness", "mafw", (1.0, 1.0, 1.0)),
    # Nested tags: the first </think> closes -> explanation "He <think>smiles" whose only
    # word token "<think>smiles" is no keyword -> neutral -> denominator 1 - 1 = 0 -> 0.
    ("nested-think", "<think>He <think>smiles</think> broadly.</think><answer>happy</answer>",
     "happiness", "mafw", (1.0, 1.0, 0.0)),
    # Unclosed think: no explanation, no format; the answer still counts.
    ("unclosed-think", "<think>She smiles. <answer>happy</answer>", "happiness", "mafw",
     (0.0, 1.0, 0.0)),
    # Unclosed answer: the paper's reward finds no answer.
    ("unclosed-answer", "<think>She smiles.</think><answer>happy", "happiness", "mafw",
     (0.0, 0.0, 1.0)),
    # MAFW synonyms (release rules): angry->anger, anxious->anxiety, contemptuous->contempt.
    ("mafw-angry", "<think>He shouts.</think><answer>angry</answer>", "anger", "mafw",
     (1.0, 1.0, 1.0)),
    ("mafw-anxious", "<think>He is nervous.</think><answer>anxious</answer>", "anxiety", "mafw",
     (1.0, 1.0, 1.0)),
    ("mafw-contemptuous", "<think>She looks at him with scorn.</think><answer>contemptuous</answer>", "contempt",
     "mafw", (1.0, 1.0, 1.0)),
    # DFEW synonyms: sadness->sad, happiness->happy; ground truth "happy" is GoEmotions joy.
    ("dfew-sadness", "<think>Tears fall.</think><answer>sadness</answer>", "sad", "dfew",
     (1.0, 1.0, 1.0)),
    ("dfew-happiness", "<think>She laughs. He smiles.</think><answer>Happiness</answer>", "happy",
     "dfew", (1.0, 1.0, 1.0)),
    # EMER: worry -> worried; "worried" is nervousness for the verifier.
    ("emer-worry", "<think>She looks worried.</think><answer>worry</answer>", "worried", "emer",
     (1.0, 1.0, 1.0)),
    # A wrong answer: 0, while the explanation may still agree with the ground truth.
    ("wrong-answer", "<think>She cries.</think><answer>happy</answer>", "sad", "dfew",
     (1.0, 0.0, 1.0)),
    # Neutral ground truth: R_E = c / N = 2 / 3 (neutral sentences count as matches).
    ("neutral-gt", "<think>The room is bright. He sits down. He shouts.</think>"
     "<answer>neutral</answer>", "neutral", "mafw", (1.0, 1.0, 2 / 3)),
    # Every sentence neutral, ground truth not neutral: N - N_neu = 0 -> 0.
    ("all-neutral", "<think>The walls are grey. A car passes by.</think><answer>fear</answer>",
     "fear", "dfew", (1.0, 1.0, 0.0)),
    # Every sentence neutral, neutral ground truth: 2 / 2.
    ("all-neutral-neutral-gt", "<think>The walls are grey. A car passes by.</think>"
     "<answer>neutral</answer>", "neutral", "dfew", (1.0, 1.0, 1.0)),
    # A quoted span is never split: 'He says "I am fine. Really." and cries.' (sadness) and
    # 'She smiles.' (joy) -> 1 / 2.
    ("quotes", '<think>He says "I am fine. Really." and cries. She smiles.</think>'
     "<answer>sad</answer>", "sad", "dfew", (1.0, 1.0, 0.5)),
    # Unicode: "Él llora." (no keyword: neutral), "She smiles 😊!" (joy), "Tears." (sadness):
    # sadness -> 1 / (3 - 1).
    ("unicode", "<think>Él llora. She smiles 😊! Tears.</think><answer>sadness</answer>", "sad",
     "dfew", (1.0, 1.0, 0.5)),
    # Two emotions in one sentence: both labels are in its set -> counted: 1 / 1.
    ("two-labels", "<think>She smiles through her tears.</think><answer>sad</answer>", "sad",
     "dfew", (1.0, 1.0, 1.0)),
    # Ground truth wrapped in <answer> tags, as the release allows.
    ("gt-in-tags", "<think>He gasps.</think><answer>surprise</answer>",
     "<answer>surprise</answer>", "dfew", (1.0, 1.0, 1.0)),
]


@pytest.mark.parametrize(("completion", "label", "dataset", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_computed_rewards(completion: str, label: str, dataset: str,
                               expected: tuple[float, float, float]) -> None:
    assert score(completion, label, dataset) == pytest.approx(expected)


def test_answer_release_mode_falls_back_to_the_whole_completion() -> None:
    # No single-line <answer>: the release compares the whole (stripped) completion, which
    # the MAFW rule maps to "happiness" because it contains "happy".
    text = "<think>She smiles.</think><answer>happy"
    assert score(text, "happiness", answer_mode="release")[1] == 1.0
    assert score(text, "happiness", answer_mode="paper")[1] == 0.0


def test_answer_spanning_lines_counts_in_paper_mode_only() -> None:
    text = "<think>She smiles.</think><answer>\nhappy\n</answer>"
    # paper: DOTALL -> "happy" == DFEW "happy"; release: no single-line match, the whole
    # completion does not normalise to "happy" -> 0.
    assert score(text, "happy", "dfew", answer_mode="paper")[1] == 1.0
    assert score(text, "happy", "dfew", answer_mode="release")[1] == 0.0
    # The format regex is DOTALL: a multi-line answer is well formed.
    assert score(text, "happy", "dfew")[0] == 1.0


def test_answer_release_mode_lowercases_the_answer_but_not_the_ground_truth() -> None:
    # match_emotion_key_MAFW lower-cases and drops newlines first: "Sad" -> "sadness".
    text = "<think>x.</think><answer>Sad</answer>"
    assert score(text, "sadness", answer_mode="release")[1] == 1.0
    assert score(text, "sadness", answer_mode="paper")[1] == 1.0
    assert score("<think>x.</think><answer>HAPPINESS</answer>", "happiness",
                 answer_mode="release")[1] == 1.0
    # The ground truth is compared as written (tags and outer spaces stripped only): a
    # capitalised label never matches the lower-cased answer in the release.
    assert score(text, "Sadness", answer_mode="release")[1] == 0.0
    assert score(text, "Sadness", answer_mode="paper")[1] == 1.0
    # Whole-completion fallback: newlines are dropped, other whitespace is kept.
    assert score("<think>x.</think>\nSAD", "sadness", answer_mode="release")[1] == 0.0
    assert score("SA\nD", "sadness", answer_mode="release")[1] == 1.0


def test_ablation_without_neutral_filtering_divides_by_all_sentences() -> None:
    text = "<think>She smiles at her friend. The room is bright. Then she cries!</think>"
    assert score(text, "happiness")[2] == pytest.approx(1 / 2)  # 1 / (3 - 1)
    assert score(text, "happiness", neutral_filter=False)[2] == pytest.approx(1 / 3)  # 1 / 3


def test_ablation_without_sentence_level_classifies_the_whole_explanation_once() -> None:
    text = "<think>She smiles. The room is bright. Then she cries!</think>"
    # One text holding "smiles" and "cries": label set {joy, sadness} contains sadness -> 1/1.
    assert score(text, "sadness", sentence_level=False)[2] == 1.0
    assert score(text, "sadness")[2] == pytest.approx(1 / 2)


def test_tau_release_value_admits_weaker_labels() -> None:
    s = "A faint frown appears."
    verifier = TableVerifier({s: {"joy": 0.3, "sadness": 0.2, "neutral": 0.05}})
    text = f"<think>{s}</think><answer>sad</answer>"
    # tau 0.5: nothing above -> top-1 {joy}: no match. tau 0.1: {joy, sadness}: match.
    assert score(text, "sad", "dfew", verifier=verifier, tau=0.5)[2] == 0.0
    assert score(text, "sad", "dfew", verifier=verifier, tau=0.1)[2] == 1.0


def test_threshold_is_strict() -> None:
    s = "Exactly at the threshold."
    verifier = TableVerifier({s: {"sadness": 0.5, "joy": 0.4}})
    text = f"<think>{s}</think>"
    # 0.5 is not > 0.5: no label above tau -> the argmax, sadness, counts anyway.
    assert score(text, "sad", "dfew", verifier=verifier, tau=0.5)[2] == 1.0
    # ... but with the ground truth joy: {sadness} only.
    assert score(text, "happy", "dfew", verifier=verifier, tau=0.45)[2] == 0.0


def test_top_k_keeps_the_k_most_probable_labels() -> None:
    s = "Many things at once."
    verifier = TableVerifier({s: {"joy": 0.9, "sadness": 0.8, "anger": 0.7}})
    text = f"<think>{s}</think>"
    assert score(text, "anger", verifier=verifier)[2] == 0.0  # top-2 = {joy, sadness}
    assert score(text, "anger", verifier=verifier, top_k=3)[2] == 1.0
    assert score(text, "sadness", verifier=verifier)[2] == 1.0


def test_neutral_rule_paper_counts_neutral_in_any_label_set() -> None:
    a, b = "Calm and glad.", "Glad."
    verifier = TableVerifier({a: {"joy": 0.9, "neutral": 0.7}, b: {"joy": 0.8}})
    text = f"<think>{a} {b}</think>"
    # release: {joy, neutral} is not exactly {neutral}: c = 2, N_neu = 0 -> 2 / 2.
    assert score(text, "happiness", verifier=verifier)[2] == 1.0
    # paper (Algorithm 1 line 15): N_neu = 1 -> 2 / (2 - 1) = 2.0: R_E may exceed 1.
    assert score(text, "happiness", verifier=verifier, neutral_rule="paper")[2] == 2.0


def test_label_map_overrides_the_label_space() -> None:
    text = "<think>He is nervous.</think>"
    assert score(text, "anxiety")[2] == 1.0  # anxiety -> nervousness (release map)
    assert score(text, "anxiety", label_map={"anxiety": "fear"})[2] == 0.0


def test_segmentation_modes_split_the_same_explanation() -> None:
    try:
        split_sentences("a. b.", "pragmatic")
    except NotImplementedError:
        pytest.skip("the pragmatic splitter is not built in this checkout (native branch)")
    text = "<think>Dr. Smith smiles. He cries.</think>"
    # paper splits after "Dr." too: "Dr." (neutral), "Smith smiles." (joy), "He cries."
    # (sadness); pragmatic keeps "Dr. Smith smiles." whole. Without neutral filtering:
    assert split_sentences("Dr. Smith smiles. He cries.", "pragmatic") == \
        ["Dr. Smith smiles.", "He cries."]
    assert score(text, "happiness", neutral_filter=False)[2] == pytest.approx(1 / 3)
    assert score(text, "happiness", neutral_filter=False,
                 segmentation="pragmatic")[2] == pytest.approx(1 / 2)


def test_chat_message_completions_are_read_like_strings() -> None:
    e = engine()
    msg = [{"role": "assistant", "content": "<think>She smiles.</think><answer>happy</answer>"}]
    s = e.score([msg], {"label": ["happiness"]})
    assert (s.per_reward["format"], s.per_reward["answer"], s.per_reward["explanation"]) == \
        ([1.0], [1.0], [1.0])
    assert s.total == [3.0]


def test_rows_without_dataset_column_use_the_default_label_space() -> None:
    e = engine()
    s = e.score(["<think>She smiles.</think><answer>happy</answer>"], {"label": ["happiness"]})
    assert s.total == [3.0]  # MAFW by default: happy -> happiness


def test_unknown_ground_truth_fails_loudly_as_nan() -> None:
    e = engine()
    s = e.score(["<think>She smiles.</think><answer>happy</answer>"],
                {"label": ["bliss"], "dataset": ["mafw"]})
    assert np.isnan(s.per_reward["explanation"][0])
    assert s.info["explanation/failure_rate"] == 1.0
    assert s.total == [1.0]  # format; answer "happiness" != "bliss"


def test_options_are_decoded_with_path_precise_errors() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.tau"):
        msgspec.convert({"tau": 1.5}, ExplanationOptions)
    with pytest.raises(msgspec.ValidationError, match="segmentation"):
        msgspec.convert({"segmentation": "nltk"}, ExplanationOptions)


def test_ties_at_the_top_k_boundary_keep_the_lower_label_index() -> None:
    # Keywords for joy, sadness and anger, all at 0.9: top-2 keeps anger (2) and joy (17)
    # by GoEmotions order, not sadness (25).
    text = "<think>She smiles, cries and shouts.</think>"
    assert score(text, "anger")[2] == 1.0
    assert score(text, "happiness")[2] == 1.0
    assert score(text, "sadness")[2] == 0.0

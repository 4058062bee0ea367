"""The reward engine's fast paths give the same results as the plain code they replace:
native label sets vs numpy, answers and ground truths judged per distinct group vs per row,
the row-indexed verifier cache vs a plain FIFO dict, all reward terms at once in ``_finish``."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erv_plugins.labels import GOEMOTIONS
from erv_plugins.rewards import explanation as explanation_mod
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.rewards.engine import RewardEngine
from erv_plugins.rewards.explanation import ExplanationOptions, ExplanationReward
from erv_plugins.rewards.format_answer import AnswerOptions, AnswerReward
from erv_plugins.rewards.spaces import distinct_pairs, distinct_rows, label_groups, row_spaces
from erv_plugins.testing.rewards import KeywordVerifier, synthetic_batch
from erv_plugins.text import parse_completions


class TableVerifier:
    labels = GOEMOTIONS
    cache_key = "table"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        # Deterministic per sentence; coarse values, so that ties are common.
        return np.array([[(hash((t, j)) % 7) / 7 for j in range(len(GOEMOTIONS))] for t in texts],
                        dtype=np.float32)


def reward(**options: object) -> ExplanationReward:
    return ExplanationReward(ExplanationOptions(**options), verifier=TableVerifier())  # type: ignore[arg-type]


# --- label sets: native == numpy ------------------------------------------------------------
@pytest.mark.skipif(explanation_mod._native_label_sets is None, reason="no native build")
@settings(max_examples=150, deadline=None)
@given(rows=st.integers(0, 40), k=st.integers(1, 6), tau=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.99]),
       rule=st.sampled_from(["release", "paper"]), levels=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_native_label_sets_equal_numpy(rows, k, tau, rule, levels, seed):
    rng = np.random.default_rng(seed)
    # Few distinct values (ties everywhere) plus values at tau itself, in float32.
    probs = (rng.integers(0, levels, size=(rows, 28)) / (levels - 1)).astype(np.float32)
    probs[rng.random((rows, 28)) < 0.1] = np.float32(tau)
    r = reward(tau=tau, top_k=k, neutral_rule=rule)
    sets, neutral = r.label_sets(probs)
    want_sets, want_neutral = r._label_sets_numpy(probs)
    assert sets.tolist() == want_sets.tolist()
    assert neutral.tolist() == want_neutral.tolist()


def test_label_sets_by_hand_and_with_nan():
    r = reward(tau=0.1, top_k=2)
    probs = np.zeros((4, 28), dtype=np.float32)
    probs[0, [3, 5, 7]] = 0.9  # three tied above tau: the two lower indices
    probs[1, 9] = np.float32(0.1)  # not above tau (f32 comparison): top-1
    probs[1, 8] = 0.05
    probs[2, 27] = 0.8  # neutral alone
    probs[3, [0, 27]] = 0.8  # neutral with another label: not neutral under "release"
    sets, neutral = r.label_sets(probs)
    assert [np.flatnonzero(s).tolist() for s in sets] == [[3, 5], [9], [27], [0, 27]]
    assert neutral.tolist() == [False, False, True, False]
    probs[3, 1] = np.nan  # NaN rows go to numpy (its ordering), the others are unchanged
    sets_nan, _ = r.label_sets(probs)
    assert sets_nan[:3].tolist() == sets[:3].tolist()


# --- answers and ground truths per distinct group -------------------------------------------
def test_answers_per_group_equal_answers_per_row():
    completions, columns = synthetic_batch(8, 16, seed=3)
    # A bare completion equal to another row's answer lands in that row's group: same verdict.
    completions = completions + ["no tags at all, angry", " <answer>sad</answer> ", "<answer>a\nb</answer>",
                                 "anger", "<answer>anger</answer>", " anger\n"]
    for key in columns:
        columns[key] = columns[key] + columns[key][:6]
    columns["label"][-6:] = ["anger", "<answer>sadness</answer>", 7, "anger", "anger", "anger"]
    columns["dataset"][-3:] = ["mafw"] * 3
    batch = RewardBatch(completions, parse_completions(completions), columns)
    ans = AnswerReward(AnswerOptions(mode="release"))
    spaces = row_spaces(columns, len(batch), ans.label_spaces, "mafw", reward="answer")
    per_row = ans._release(batch, columns["label"], spaces)
    assert ans(batch) == per_row
    assert sum(per_row) > 10 and 0.0 in per_row and per_row[-3:] == [1.0, 1.0, 1.0]


def test_ground_truths_per_group_equal_per_row():
    completions, columns = synthetic_batch(6, 4, seed=1)
    r = reward()
    spaces = row_spaces(columns, len(completions), r.label_spaces, "mafw", reward="explanation")
    want = [r.ground_truth_index(str(label), space) for label, space in zip(columns["label"], spaces)]
    assert r._ground_truth_indices(columns["label"], columns).tolist() == want
    with pytest.raises(ValueError, match="completion 2 has no ground-truth label"):
        r._ground_truth_indices(["happiness", "anger", None], {})


def test_distinct_rows():
    first, inverse = distinct_rows(["a", "b", "a", "a"], [1, 2, 1, 3])
    groups = [tuple(np.flatnonzero(inverse == g)) for g in range(len(first))]
    assert sorted(groups) == [(0, 2), (1,), (3,)]
    assert all(inverse[f] == g for g, f in enumerate(first))
    assert distinct_rows(["a"], [[1]]) is None  # unhashable
    first, inverse = distinct_rows([], [])
    assert first.tolist() == [] and inverse.tolist() == []


def test_label_groups_are_computed_once_per_batch_and_refined_by_pairs():
    batch = RewardBatch(["a"] * 4, parse_completions(["a"] * 4),
                        {"label": ["joy", 1, "joy", "1"], "dataset": ["mafw", "dfew", "mafw", "dfew"]})
    first, inverse = label_groups(batch)
    assert label_groups(batch)[1] is inverse  # memoised on the batch
    assert inverse[0] == inverse[2] and inverse[1] == inverse[3] and inverse[0] != inverse[1]
    first, pairs = distinct_pairs(inverse, ["x", "y", "z", "y"])
    assert len(first) == 3 and pairs[1] == pairs[3] and len({pairs[0], pairs[1], pairs[2]}) == 3
    assert distinct_pairs(inverse, [[1], [2], [3], [4]]) is None
    assert label_groups(RewardBatch([], [], {})) is None


# --- the verifier cache ---------------------------------------------------------------------
def test_cache_forgets_the_oldest_like_a_fifo_dict():
    rng = random.Random(0)
    pool = [f"Sentence {i}." for i in range(40)]
    r = ExplanationReward(ExplanationOptions(cache_size=7, batch_size=3), verifier=KeywordVerifier())
    fifo: dict[str, None] = {}
    for _ in range(60):
        sentences = list(dict.fromkeys(rng.choices(pool, k=rng.randint(0, 12))))
        before = len(r.verifier.calls)
        probs, computed = r.probabilities(sentences)
        missing = [s for s in sentences if s not in fifo]
        assert computed == len(missing)
        asked = [s for call in r.verifier.calls[before:] for s in call]
        assert asked == sorted(missing, key=len)  # in length order, each once
        assert probs.tolist() == KeywordVerifier().predict_proba(sentences).tolist()
        for s in sorted(missing, key=len):  # the reference: insert, then drop the oldest
            fifo[s] = None
        while len(fifo) > 7:
            del fifo[next(iter(fifo))]
        assert list(r._cache) == list(fifo)
        assert all(r._store[row].tolist() == KeywordVerifier().predict_proba([s])[0].tolist()
                   for s, row in r._cache.items())


def test_more_new_sentences_than_the_cache_holds():
    r = ExplanationReward(ExplanationOptions(cache_size=2), verifier=KeywordVerifier())
    r.probabilities(["A.", "B.", "C.", "D."])
    assert set(r._cache) == {"C.", "D."}
    _, computed = r.probabilities(["D.", "E."])
    assert computed == 1 and set(r._cache) == {"D.", "E."}


# --- all terms at once ----------------------------------------------------------------------
def test_finish_with_nan_terms_and_an_empty_batch():
    engine = RewardEngine({"a": lambda b: [1.0, math.nan, 0.5], "b": lambda b: [None, 2.0, 1.0]},
                          weights={"a": 2.0, "b": 1.0})
    s = engine.score(["x", "y", "z"])
    assert s.total == [2.0, 2.0, 2.0]
    assert s.info["a/mean"] == 0.75 and s.info["b/mean"] == 1.5
    assert s.info["a/nan_share"] == pytest.approx(1 / 3) and s.info["total/mean"] == 2.0
    empty = engine.score([])
    assert empty.total == [] and math.isnan(empty.info["a/mean"]) and empty.info["a/nan_share"] == 0.0

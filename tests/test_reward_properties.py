"""The batched explanation reward equals Algorithm 1 run literally, one sentence at a time."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from erv_plugins.labels import GOEMOTIONS
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.rewards.explanation import ExplanationOptions, ExplanationReward
from erv_plugins.text import parse_completions

LABELS = GOEMOTIONS
NEUTRAL = LABELS.index("neutral")


class TableVerifier:
    labels = LABELS
    cache_key = "table"

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def algorithm_1(sentences: list[str], gt: int, table: dict[str, np.ndarray], tau: float, k: int,
                neutral_filter: bool, neutral_rule: str) -> float:
    """Paper Algorithm 1, lines 3-26, for one explanation."""
    c = n_neu = 0
    for s in sentences:
        u = table[s]
        above = [i for i in range(len(u)) if u[i] > tau]
        if not above:
            labels = {int(np.argmax(u))}
        elif len(above) <= k:
            labels = set(above)
        else:
            labels = set(sorted(range(len(u)), key=lambda i: -u[i])[:k])
        neutral = labels == {NEUTRAL} if neutral_rule == "release" else NEUTRAL in labels
        n_neu += neutral
        c += gt in labels
    n = len(sentences)
    denominator = n if gt == NEUTRAL or not neutral_filter else n - n_neu
    return c / denominator if denominator > 0 else 0.0


POOL = [f"Sentence number {i}." for i in range(12)]
GT_WORDS = {"happiness": LABELS.index("joy"), "sadness": LABELS.index("sadness"),
            "neutral": NEUTRAL, "fear": LABELS.index("fear")}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    explanations=st.lists(st.lists(st.integers(0, len(POOL) - 1), max_size=6), min_size=1,
                          max_size=12),
    gts=st.lists(st.sampled_from(sorted(GT_WORDS)), min_size=12, max_size=12),
    tau=st.sampled_from([0.1, 0.3, 0.5, 0.9]),
    k=st.integers(1, 3),
    neutral_filter=st.booleans(),
    neutral_rule=st.sampled_from(["release", "paper"]),
)
def test_batched_reward_equals_algorithm_1(seed: int, explanations: list[list[int]],
                                           gts: list[str], tau: float, k: int,
                                           neutral_filter: bool, neutral_rule: str) -> None:
    rng = np.random.default_rng(seed)
    # Distinct probabilities per row (no ties at the top-k boundary), skewed towards 0.
    table = {s: (rng.permutation(len(LABELS)) + rng.random(len(LABELS))).astype(np.float32)
             / len(LABELS) for s in POOL}
    table = {s: (p ** 2).astype(np.float32) for s, p in table.items()}
    completions = [f"<think>{' '.join(POOL[i] for i in idx)}</think><answer>x</answer>"
                   for idx in explanations]
    labels = gts[:len(completions)]
    reward = ExplanationReward(
        ExplanationOptions(tau=tau, top_k=k, neutral_filter=neutral_filter,
                           neutral_rule=neutral_rule),
        verifier=TableVerifier(table))
    batch = RewardBatch(completions, parse_completions(completions), {"label": labels})
    got = reward(batch).values
    expected = [algorithm_1([POOL[i] for i in idx], GT_WORDS[gt], table, tau, k, neutral_filter,
                            neutral_rule) for idx, gt in zip(explanations, labels)]
    assert got == expected
    # --explain shows the same arithmetic.
    details = reward.explain(batch)
    assert [d.value for d in details] == expected
    assert all(sum(s.counted for s in d.sentences) == d.c for d in details)

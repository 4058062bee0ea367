"""Total reward R of a GRPO batch (64 prompts x 16 completions) on CPU: erv's reward engine
against the release's loop (benchmarks/baselines/release_reward.py).

Run (numbers go to benchmarks/RESULTS.md, section "Rewards"):

    OMP_NUM_THREADS=1 .venv/bin/pytest benchmarks/test_bench_reward.py --benchmark-enable -s \
        -p no:randomly --benchmark-timer=time.process_time --benchmark-columns=min,median,rounds

Both sides use the same tiny RoBERTa verifier (hidden 64, 2 layers, 28 GoEmotions labels,
one torch thread) and the release's settings (tau 0.1, top-2, release answer mode); every
erv round builds a fresh engine, so its verifier cache starts cold. "non-model" replaces
the verifier on both sides by a table of its probabilities (what is left: parsing,
splitting, label sets, counting, answers, format, the engine). The targets (5x, 30x) are
reported in the JSON (``met``), not asserted; identical rewards are asserted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from baselines.release_reward import hf_classifier, release_rewards  # noqa: E402

from erv_plugins.labels import GOEMOTIONS  # noqa: E402
from erv_plugins.rewards.engine import RewardEngine  # noqa: E402
from erv_plugins.rewards.explanation import ExplanationOptions, ExplanationReward  # noqa: E402
from erv_plugins.rewards.format_answer import AnswerOptions, AnswerReward, FormatReward  # noqa: E402
from erv_plugins.testing.rewards import build_tiny_roberta, synthetic_batch  # noqa: E402
from erv_plugins.text import NATIVE, parse_completions, split_sentences_batch  # noqa: E402

PROMPTS, GENERATIONS, TAU = 64, 16, 0.1
# ERV_BENCH_DEVICE=cuda puts the verifier (both sides) on the GPU; targets are for CPU.
DEVICE = os.environ.get("ERV_BENCH_DEVICE", "cpu")
# Sentences per verifier forward pass (the hf plugin's default is 64).
VERIFIER_BATCH = int(os.environ.get("ERV_BENCH_VERIFIER_BATCH", "64"))
# Share of completions whose first sentence repeats one of its prompt's two openings.
OPENING_SHARE = float(os.environ.get("ERV_BENCH_OPENING_SHARE", "0.5"))
SCENARIO = f"{DEVICE}_b{VERIFIER_BATCH}_o{OPENING_SHARE:g}"
TARGET_END_TO_END, TARGET_NON_MODEL = 5.0, 30.0
RESULTS = Path(__file__).resolve().parents[1] / ".benchmarks"  # git-ignored


class Table:
    """The verifier's probabilities of every sentence of the batch: the model taken out of the
    loop. ``rows`` is one gather from a matrix (about 0.1 us a sentence), so that the
    non-model figures measure the code around the model; ``stacked`` is the earlier
    stand-in, a dict of rows put together with ``np.stack`` (about 0.4 us a sentence, paid
    by both sides: erv for each distinct sentence, the release for every sentence)."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.index = {s: i for i, s in enumerate(table)}
        self.matrix = np.stack(list(table.values()))

    def rows(self, texts: list[str]) -> np.ndarray:
        return self.matrix[list(map(self.index.__getitem__, texts))]

    def stacked(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


class TableVerifier:
    """A verifier plugin that reads its probabilities from a ``Table``."""

    labels = GOEMOTIONS
    cache_key = "table"

    def __init__(self, lookup: Callable[[list[str]], np.ndarray]) -> None:
        self.predict_proba = lookup


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch

    from erv_plugins.verifiers.hf import HFVerifier

    torch.set_num_threads(1)
    torch.manual_seed(0)
    verifier = HFVerifier(build_tiny_roberta(tmp_path_factory.mktemp("verifier")), device=DEVICE,
                          dtype="float32", batch_size=VERIFIER_BATCH)
    completions, columns = synthetic_batch(PROMPTS, GENERATIONS, seed=0,
                                          opening_share=OPENING_SHARE)
    sentences = [s for group in split_sentences_batch(
        [p.think or "" for p in parse_completions(completions)]) for s in group]
    distinct = sorted(set(sentences))
    table = Table(dict(zip(distinct, verifier.predict_proba(distinct))))
    return {
        "verifier": verifier, "completions": completions, "columns": columns,
        "classify": hf_classifier(verifier.tokenizer, verifier.model),
        "table_verifier": TableVerifier(table.rows),
        "classify_table": lambda texts: torch.from_numpy(table.rows(texts)),
        "table_verifier_stacked": TableVerifier(table.stacked),
        "classify_table_stacked": lambda texts: torch.from_numpy(
            table.stacked(texts) if texts else np.zeros((0, 28), np.float32)),
        "sentences": len(sentences), "distinct": len(distinct),
    }


def erv_scores(s: dict[str, Any], verifier: Any) -> dict[str, list[float]]:
    engine = RewardEngine({
        "format": FormatReward(),
        "answer": AnswerReward(AnswerOptions(mode="release")),
        "explanation": ExplanationReward(ExplanationOptions(tau=TAU), verifier=verifier),
    })
    scores = engine.score(s["completions"], s["columns"])
    return {**scores.per_reward, "total": scores.total}


def release_scores(s: dict[str, Any], classify: Callable) -> dict[str, list[float]]:
    return release_rewards(s["completions"], s["columns"]["label"], s["columns"]["dataset"],
                           classify, threshold=TAU)


def test_erv_end_to_end(benchmark: Any, setup: dict[str, Any]) -> None:
    benchmark.group = "reward end to end (64 x 16, tiny RoBERTa, CPU)"
    benchmark.pedantic(erv_scores, args=(setup, setup["verifier"]), rounds=5, warmup_rounds=1)


def test_release_end_to_end(benchmark: Any, setup: dict[str, Any]) -> None:
    benchmark.group = "reward end to end (64 x 16, tiny RoBERTa, CPU)"
    benchmark.pedantic(release_scores, args=(setup, setup["classify"]), rounds=3,
                       warmup_rounds=1)


def test_erv_non_model(benchmark: Any, setup: dict[str, Any]) -> None:
    benchmark.group = "reward without the model (64 x 16)"
    benchmark.pedantic(erv_scores, args=(setup, setup["table_verifier"]), rounds=20,
                       warmup_rounds=2)


def test_release_non_model(benchmark: Any, setup: dict[str, Any]) -> None:
    benchmark.group = "reward without the model (64 x 16)"
    benchmark.pedantic(release_scores, args=(setup, setup["classify_table"]), rounds=10,
                       warmup_rounds=1)


def best_of(fn: Callable[[], Any], rounds: int) -> float:
    """Least CPU time of the process over ``rounds`` calls (steadier than wall time on a
    shared machine; the verifier runs on one torch thread)."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def test_equal_rewards_and_speedups(setup: dict[str, Any]) -> None:
    """Same rewards as the release, and the ratios, measured here in one process. The targets
    are reported (``met``), not asserted: what fails here is a reward that differs."""
    erv = erv_scores(setup, setup["verifier"])
    release = release_scores(setup, setup["classify"])
    assert erv == release  # every reward of every completion, exactly
    for table in ("table_verifier", "table_verifier_stacked"):
        classify = setup[table.replace("table_verifier", "classify_table")]
        assert erv_scores(setup, setup[table]) == release_scores(setup, classify) == release

    e2e_erv = best_of(lambda: erv_scores(setup, setup["verifier"]), 5)
    e2e_release = best_of(lambda: release_scores(setup, setup["classify"]), 3)
    nm_erv = best_of(lambda: erv_scores(setup, setup["table_verifier"]), 30)
    nm_release = best_of(lambda: release_scores(setup, setup["classify_table"]), 10)
    st_erv = best_of(lambda: erv_scores(setup, setup["table_verifier_stacked"]), 30)
    st_release = best_of(lambda: release_scores(setup, setup["classify_table_stacked"]), 10)
    figures = {
        "completions": PROMPTS * GENERATIONS, "sentences": setup["sentences"],
        "distinct_sentences": setup["distinct"], "native_text": NATIVE, "timer": "process_time",
        "end_to_end_s": {"erv": e2e_erv, "release": e2e_release,
                         "ratio": e2e_release / e2e_erv, "target": TARGET_END_TO_END},
        "non_model_s": {"erv": nm_erv, "release": nm_release, "ratio": nm_release / nm_erv,
                        "target": TARGET_NON_MODEL},
        "non_model_stacked_table_s": {"erv": st_erv, "release": st_release,
                                      "ratio": st_release / st_erv},
        "mean_total_reward": float(np.mean(erv["total"])),
        "mean_explanation_reward": float(np.mean(erv["explanation"])),
    }
    for key in ("end_to_end_s", "non_model_s"):
        figures[key]["met"] = figures[key]["ratio"] >= figures[key]["target"]
    RESULTS.mkdir(exist_ok=True)
    figures.update(verifier_device=DEVICE, verifier_batch=VERIFIER_BATCH,
                   opening_share=OPENING_SHARE)
    (RESULTS / f"reward_{SCENARIO}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\n" + json.dumps(figures, indent=2))

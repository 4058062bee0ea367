"""Verifier inference: length-bucketed batches vs batches in input order (the baseline).

    .venv/bin/pytest benchmarks/test_verifier_bench.py --benchmark-enable -q

Both run in one session on the same tiny checkpoint and the same 1,024 sentences of mixed
length; compare the two means. GPU numbers (bf16, a RoBERTa-base-shaped model) come from
benchmarks/verifier_device_check.py; see benchmarks/RESULTS_verifier.md.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from erv_plugins.verifiers.hf import HFVerifier
from erv_plugins.verifiers.tiny import build_tiny_verifier, generate_emotion_corpus


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_verifier(tmp_path_factory.mktemp("bench") / "v")


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    rng = random.Random(0)
    words = [w for r in generate_emotion_corpus(500) for w in r.text.split()]
    return [" ".join(rng.choice(words) for _ in range(rng.choice([4, 8, 16, 32, 60])))
            for _ in range(1024)]


@pytest.mark.parametrize("bucketing", [True, False], ids=["bucketed", "input-order"])
def test_predict_proba_throughput(benchmark, checkpoint: Path, sentences: list[str],
                                  bucketing: bool) -> None:
    verifier = HFVerifier(checkpoint, batch_size=64, length_bucketing=bucketing)
    proba = benchmark(verifier.predict_proba, sentences)
    assert proba.shape == (1024, 28)

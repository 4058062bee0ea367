"""Device check of the verifier: bf16 inference and training on a GPU, and what length
bucketing buys. Prints one JSON object (and writes it to $OUT/verifier_device.json).

    PYTHONPATH=python python benchmarks/verifier_device_check.py

Baselines are measured in the same run: fp32 CPU predictions for agreement, unsorted
batches for bucketing, fp32 on the same GPU for bf16.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from erv_plugins.labels import MAFW_LABELS
from erv_plugins.verifiers.hf import HFVerifier
from erv_plugins.verifiers.tiny import build_tiny_tokenizer, build_tiny_verifier, generate_emotion_corpus
from erv_plugins.verifiers.training import TINY_TRAINING, train_verifier


def timed(fn, repeat: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def base_sized(out: Path) -> Path:
    """A RoBERTa-base-shaped classifier (12 layers, hidden 768, 28 labels), random weights."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    tok = build_tiny_tokenizer(out, model_max_length=128)
    config = RobertaConfig(vocab_size=len(tok), max_position_embeddings=130, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=28,
                           problem_type="multi_label_classification")
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(out)
    return out


def main() -> None:
    report: dict[str, object] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    tmp = Path(tempfile.mkdtemp())
    corpus = generate_emotion_corpus(2200, seed=0)

    # 1. Training on the device (bf16 autocast on a GPU) learns the generated corpus.
    base = build_tiny_verifier(tmp / "base", labels=MAFW_LABELS)
    m = train_verifier(corpus, base=base, out=tmp / "erv", device="auto", progress=False,
                       **{**TINY_TRAINING, "epochs": 6})
    report["train"] = {k: m[k] for k in ("macro_f1", "micro_f1", "map", "best_tau", "device",
                                          "bf16", "seconds")}

    # 2. bf16 inference on the GPU agrees with fp32 on the CPU.
    texts = [r.text for r in generate_emotion_corpus(512, seed=7)]
    cpu = HFVerifier(tmp / "erv", device="cpu")
    gpu = HFVerifier(tmp / "erv", device=dev, dtype="auto")
    p_cpu, p_gpu = cpu.predict_proba(texts), gpu.predict_proba(texts)
    same = np.mean([a == b for a, b in zip(cpu.predict(texts), gpu.predict(texts))])
    report["bf16_vs_fp32"] = {"dtype": str(gpu.model.dtype), "max_abs_diff":
                              float(np.abs(p_cpu - p_gpu).max()), "label_sets_equal": float(same)}

    # 3. Throughput of a RoBERTa-base-shaped verifier: bucketing and bf16 vs baselines.
    big = base_sized(tmp / "base_sized")
    rng = random.Random(0)
    words = [w for r in corpus for w in r.text.split()]
    sentences = [" ".join(rng.choice(words) for _ in range(rng.choice([4, 8, 16, 32, 64, 96])))
                 for _ in range(4096 if dev == "cuda" else 128)]
    speed = {}
    for dtype in (["bfloat16", "float32"] if dev == "cuda" else ["float32"]):
        for bucket in (True, False):
            v = HFVerifier(big, device=dev, dtype=dtype, batch_size=64, length_bucketing=bucket)
            s = timed(lambda: v.predict_proba(sentences), repeat=3 if dev == "cuda" else 1)
            speed[f"{dtype}_{'bucketed' if bucket else 'unsorted'}"] = {
                "seconds": round(s, 4), "sentences_per_s": round(len(sentences) / s, 1)}
            del v
    base_key = "float32_unsorted"
    for k, v in speed.items():
        v["speedup_vs_" + base_key] = round(speed[base_key]["seconds"] / v["seconds"], 2)
    report[f"throughput_{len(sentences)}_sentences"] = speed
    text = json.dumps(report, indent=2)
    print(text)
    out = os.environ.get("OUT")
    if out:
        Path(out, "verifier_device.json").write_text(text + "\n")
    ok = m["macro_f1"] > 0.9 and same > 0.97
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

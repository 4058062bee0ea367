"""Fine-tuning the Emotional Rationale Verifier (paper section 3.2; defaults from section 4).

Multi-label BCE over the checkpoint's label head (GoEmotions' 28 for the paper's
RoBERTa-base start point), 10 epochs, batch 64, lr 3e-5, a held-out split, and a report:
micro and macro F1, per-label F1, mAP, and a sweep of the decision threshold tau with the
best value. Decisions use the rule of paper Algorithm 1 (labels with p > tau; none -> the
argmax; more than two -> the two most probable), the rule the explanation reward applies.

Outputs in ``out``: ``model.safetensors``, ``config.json`` (with ``id2label``), the
tokenizer, ``label_map.json``; in ``report_dir`` (default ``out``): ``metrics.json``,
``metrics.png`` (per-label F1 and the tau sweep), ``counts.txt`` (Table-5-style counts).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from erv_plugins.errors import ErvError
from erv_plugins.verifiers.data import (
    TextRecord,
    VerifierDataError,
    format_counts,
    label_counts,
    map_to_verifier,
)
from erv_plugins.verifiers.hf import (
    check_label_space,
    checkpoint_labels,
    label_sets,
    resolve_checkpoint,
)

# Settings under which the tiny verifier (erv_plugins.verifiers.tiny) learns the generated
# corpus from scratch in seconds: a large learning rate with warmup lets the first-token
# vector separate the cue words before the head settles on label frequencies.
TINY_TRAINING: dict[str, Any] = {"lr": 3e-3, "batch_size": 32, "warmup_ratio": 0.1,
                                 "max_length": 64, "weight_decay": 0.0}

TAU_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


# -- metrics ---------------------------------------------------------------------------------

def decisions(proba: np.ndarray, tau: float, top_k: int = 2) -> np.ndarray:
    """0/1 matrix of the label sets of paper Algorithm 1."""
    pred = np.zeros(proba.shape, dtype=bool)
    for row, labels in enumerate(label_sets(proba, tau=tau, top_k=top_k)):
        pred[row, list(labels)] = True
    return pred


def f1_scores(gold: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-label F1 (0 where a label is neither gold nor predicted) and micro F1."""
    tp = (gold & pred).sum(0).astype(float)
    fp = (~gold & pred).sum(0).astype(float)
    fn = (gold & ~pred).sum(0).astype(float)
    denom = 2 * tp + fp + fn
    per = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    micro_denom = 2 * tp.sum() + fp.sum() + fn.sum()
    return per, float(2 * tp.sum() / micro_denom) if micro_denom else 0.0


def average_precision(gold: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as sklearn's average_precision)."""
    order = np.argsort(-scores, kind="stable")
    hits = gold[order].astype(float)
    if hits.sum() == 0:
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def evaluate(proba: np.ndarray, gold: np.ndarray, labels: Sequence[str], *, tau: float = 0.5,
             taus: Sequence[float] = TAU_GRID) -> dict[str, Any]:
    """Metrics of one held-out set. Macro averages run over labels with gold support."""
    gold = gold.astype(bool)
    support = gold.sum(0)
    present = support > 0

    def at(t: float) -> tuple[np.ndarray, float, float]:
        per, micro = f1_scores(gold, decisions(proba, t))
        macro = float(per[present].mean()) if present.any() else 0.0
        return per, micro, macro

    per, micro, macro = at(tau)
    aps = [average_precision(gold[:, j], proba[:, j]) for j in range(len(labels)) if present[j]]
    sweep = []
    for t in taus:
        _, mi, ma = at(t)
        sweep.append({"tau": t, "micro_f1": round(mi, 4), "macro_f1": round(ma, 4)})
    # Ties go to the tau nearest 0.5 (the paper's value).
    best = max(sweep, key=lambda r: (r["macro_f1"], r["micro_f1"], -abs(r["tau"] - 0.5)))
    return {
        "tau": tau,
        "micro_f1": round(micro, 4),
        "macro_f1": round(macro, 4),
        "map": round(float(np.mean(aps)), 4) if aps else 0.0,
        "per_label_f1": {l: round(float(per[j]), 4) for j, l in enumerate(labels) if present[j]},
        "support": {l: int(support[j]) for j, l in enumerate(labels) if present[j]},
        "macro_over": [l for j, l in enumerate(labels) if present[j]],
        "best_tau": best["tau"],
        "best_tau_macro_f1": best["macro_f1"],
        "tau_sweep": sweep,
        "decision_rule": "paper Algorithm 1: p > tau; none -> argmax; more than 2 -> top 2",
    }


def plot_metrics(metrics: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Per-label F1 bars and the tau sweep, side by side (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = metrics["per_label_f1"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax1.bar(range(len(per)), list(per.values()), color="#4C72B0")
    ax1.set_xticks(range(len(per)), list(per), rotation=60, ha="right", fontsize=8)
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("F1")
    ax1.set_title(f"Per-label F1 at tau={metrics['tau']} (macro {metrics['macro_f1']:.3f})")
    sweep = metrics["tau_sweep"]
    taus = [r["tau"] for r in sweep]
    ax2.plot(taus, [r["macro_f1"] for r in sweep], marker="o", label="macro F1")
    ax2.plot(taus, [r["micro_f1"] for r in sweep], marker="s", label="micro F1")
    ax2.axvline(metrics["best_tau"], color="grey", ls="--",
                label=f"best tau = {metrics['best_tau']}")
    ax2.set_xlabel("tau")
    ax2.set_ylim(0, 1)
    ax2.set_title("Threshold sweep (held-out)")
    ax2.legend()
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


# -- training --------------------------------------------------------------------------------

def _as_records(items: Iterable[TextRecord | Mapping[str, Any]], source: str) -> list[TextRecord]:
    out = []
    for n, item in enumerate(items, 1):
        if isinstance(item, TextRecord):
            out.append(item)
            continue
        text, labels = item.get("text"), item.get("labels")
        if isinstance(labels, str):
            labels = [labels]
        if not isinstance(text, str) or not isinstance(labels, list) or not labels:
            raise VerifierDataError(f"{source}: item {n}: needs \"text\" and a non-empty "
                                    "\"labels\" list")
        out.append(TextRecord(text, tuple(labels), item.get("source", source),
                              str(item.get("id", n))))
    return out


def split_held_out(records: Sequence[TextRecord], fraction: float, seed: int
                   ) -> tuple[list[TextRecord], list[TextRecord]]:
    """A seeded random split: (train, held-out). At least one held-out record."""
    if not 0 < fraction < 1:
        raise ErvError(f"eval_fraction must be between 0 and 1, got {fraction}")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    k = max(1, round(len(records) * fraction))
    held = set(order[:k])
    return ([r for i, r in enumerate(records) if i not in held],
            [r for i, r in enumerate(records) if i in held])


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_verifier(
    train: Iterable[TextRecord | Mapping[str, Any]],
    *,
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    eval: Iterable[TextRecord | Mapping[str, Any]] | None = None,  # noqa: A002
    labels: Sequence[str] | None = None,
    reinit_head: bool = False,
    epochs: float = 10.0,
    batch_size: int = 64,
    lr: float = 3e-5,
    max_length: int = 128,
    eval_fraction: float = 0.1,
    warmup_ratio: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 42,
    device: str = "auto",
    bf16: bool | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    plot: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune the verifier at ``base`` on ``train`` and save it to ``out``.

    ``labels``: the label space the recipe asks for (the checkpoint's own when None);
    a checkpoint with another head is an error unless ``reinit_head`` (a new head over
    ``labels``). Data labels in a dataset's words are mapped into it (see
    ``data.verifier_label``). Held-out data: ``eval`` if given, else ``eval_fraction`` of
    ``train``. Returns the metrics also written to ``metrics.json``.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import get_linear_schedule_with_warmup

    started = time.perf_counter()
    say = echo or (lambda _m: None)
    base_dir = resolve_checkpoint(base)
    base_labels = checkpoint_labels(base_dir)
    target = tuple(labels) if labels is not None else base_labels
    if not reinit_head:
        check_label_space(base_labels, target, f"verifier base {base_dir}")

    records = _as_records(train, "train")
    if not records:
        raise VerifierDataError("no training records")
    held = _as_records(eval, "eval") if eval is not None else None
    records, mapping = map_to_verifier(records, target)
    if held is None:
        records, held = split_held_out(records, eval_fraction, seed)
    else:
        held, eval_map = map_to_verifier(held, target)
        mapping.update(eval_map)
    if not held:
        raise VerifierDataError("no held-out records to evaluate on")

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dev = _device(device)
    use_bf16 = (dev.type == "cuda") if bf16 is None else bf16
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    kwargs: dict[str, Any] = {"problem_type": "multi_label_classification"}
    if reinit_head:
        kwargs.update(num_labels=len(target), id2label=dict(enumerate(target)),
                      label2id={l: i for i, l in enumerate(target)},
                      ignore_mismatched_sizes=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir, local_files_only=True, **kwargs).to(dev)
    positions = getattr(model.config, "max_position_embeddings", max_length + 2)
    max_len = min(max_length, positions - (2 if model.config.model_type == "roberta" else 0))
    index = {l: i for i, l in enumerate(target)}

    def encode(rs: Sequence[TextRecord]) -> tuple[list[list[int]], np.ndarray]:
        ids = tokenizer([r.text for r in rs], truncation=True, max_length=max_len)["input_ids"]
        y = np.zeros((len(rs), len(target)), dtype=np.float32)
        for i, r in enumerate(rs):
            y[i, [index[l] for l in r.labels]] = 1.0
        return ids, y

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def collate(ids: Sequence[list[int]]) -> dict[str, Any]:
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        return {"input_ids": input_ids.to(dev), "attention_mask": mask.to(dev)}

    train_ids, train_y = encode(records)
    held_ids, held_y = encode(held)
    steps_per_epoch = math.ceil(len(records) / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * epochs))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(warmup_ratio * total_steps),
                                                total_steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    say(f"verifier: {len(records)} train / {len(held)} held-out, {len(target)} labels, "
        f"{total_steps} steps on {dev}")
    say(format_counts(label_counts([*records, *held])))
    losses: list[float] = []
    model.train()
    step = 0
    rng = np.random.default_rng(seed)
    bar = tqdm(total=total_steps, desc="train verifier", disable=not progress, unit="step",
               mininterval=1.0)
    while step < total_steps:
        order = rng.permutation(len(records))
        for start in range(0, len(order), batch_size):
            if step >= total_steps:
                break
            idx = order[start:start + batch_size]
            batch = collate([train_ids[i] for i in idx])
            target_y = torch.from_numpy(train_y[idx]).to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(**batch).logits
            loss = loss_fn(logits.float(), target_y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    bar.close()

    model.eval()
    proba = np.zeros(held_y.shape, dtype=np.float32)
    order = sorted(range(len(held_ids)), key=lambda i: len(held_ids[i]))
    with torch.inference_mode():
        for start in range(0, len(order), 256):
            idx = order[start:start + 256]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(**collate([held_ids[i] for i in idx])).logits
            proba[idx] = torch.sigmoid(logits.float()).cpu().numpy()
    metrics = evaluate(proba, held_y > 0.5, target)

    out_dir = Path(out)
    report = Path(report_dir) if report_dir is not None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    report.mkdir(parents=True, exist_ok=True)
    model.config.problem_type = "multi_label_classification"
    model.save_pretrained(out_dir)  # safetensors
    tokenizer.save_pretrained(out_dir)
    (out_dir / "label_map.json").write_text(json.dumps(
        {"labels": list(target), "data_to_verifier": mapping}, indent=2) + "\n")
    counts = label_counts([*records, *held])
    (report / "counts.txt").write_text(format_counts(counts) + "\n")
    every = max(1, len(losses) // 50)
    metrics.update({
        "train_size": len(records), "eval_size": len(held), "labels": list(target),
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "steps": total_steps,
        "warmup_ratio": warmup_ratio, "max_length": max_len, "seed": seed,
        "base": str(base_dir), "device": str(dev), "bf16": use_bf16,
        "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
        "loss_curve": [round(x, 4) for x in losses[::every]],
        "seconds": round(time.perf_counter() - started, 2),
        "counts": {s: dict(c) for s, c in counts.items()},
    })
    (report / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if plot:
        plot_metrics(metrics, report / "metrics.png")
    say(f"verifier: macro-F1 {metrics['macro_f1']:.3f}, micro-F1 {metrics['micro_f1']:.3f}, "
        f"mAP {metrics['map']:.3f}, best tau {metrics['best_tau']} -> {out_dir}")
    return metrics


# -- reading any source --------------------------------------------------------------------

def read_records(path: str | os.PathLike[str]) -> list[TextRecord]:
    """Records from a file, by its kind: ``.csv`` EMER, ``.json`` MERR-fine, else JSONL."""
    from erv_plugins.verifiers.data import read_emer_csv, read_merr_fine_json, read_text_jsonl

    p = Path(path)
    if p.suffix.lower() == ".csv":
        return read_emer_csv(p)
    if p.suffix.lower() == ".json":
        return read_merr_fine_json(p)
    return read_text_jsonl(p)


def records_from_dataset(dataset: Any, source: str) -> list[TextRecord]:
    """TextRecords from a dataset plugin: its ``records()`` if it has them, else its
    samples' explanations (``extra["labels"]`` for several labels, else ``label``)."""
    if hasattr(dataset, "records"):
        return list(dataset.records())
    out = []
    for s in dataset.samples():
        if not s.explanation:
            continue
        labels = tuple(s.extra.get("labels") or (s.label,))
        out.append(TextRecord(s.explanation, labels, source, s.id))
    if not out:
        raise VerifierDataError(f"dataset {source!r} has no samples with an explanation text")
    return out


# ``base = "tiny"``: start from a freshly built tiny RoBERTa (verifiers/tiny.py; tests, demos).
TINY_BASE = "tiny"

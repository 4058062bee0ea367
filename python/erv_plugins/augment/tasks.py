"""The two augmentation tasks of the paper (section 3.2, appendix B.1).

``pseudo_label``: an LLM gives up to two emotion labels to each explanation (e.g. R1-Omni
outputs on the DFEW/MAFW training clips) with the Figure 6 prompt; the label list is
permuted per sample. Results: ``{"id", "text", "labels", "source"}`` lines, the input of
``erv train-verifier``.

``complement``: for under-represented labels (disgust, fear, contempt, disappointment,
neutral, helplessness) the LLM writes new descriptions from two exemplars of that label
drawn from the pseudo-labelled data (Figure 7) until each label reaches a target count
(about 1K in the paper; Table 5 "+ Complemented").
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from erv_plugins.augment.prompts import (
    clean_description,
    complement_prompt,
    label_prompt,
    parse_label_reply,
    permuted_labels,
)
from erv_plugins.augment.runner import (
    AugmentError,
    ChatSettings,
    Job,
    RunStats,
    read_jsonl_ids,
    run_jobs,
    side_files,
)
from erv_plugins.labels import MAFW_LABELS
from erv_plugins.jsonl import iter_jsonl

COMPLEMENT_LABELS: tuple[str, ...] = ("disgust", "fear", "contempt", "disappointment",
                                      "neutral", "helplessness")
_TEXT_KEYS = ("text", "explanation", "completion", "description")


def read_explanations(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Input rows ``{"id", "text"}`` from JSONL files. A completion with ``<think>`` tags
    contributes its think part; a row without id gets ``<file stem>:<line>``."""
    from erv_plugins.text import parse_completion

    rows = []
    for path in paths:
        p = Path(path)
        for where, n, row in iter_jsonl(p, error=AugmentError):
            text = next((row.get(k) for k in _TEXT_KEYS if k in row), None)
            if not isinstance(text, str) or not text.strip():
                raise AugmentError(f"{where}: needs a non-empty \"text\" (or \"explanation\", "
                                   "\"completion\")")
            if "<think>" in text:
                text = parse_completion(text).think or text
            rid = str(row.get("id", f"{p.stem}:{n}"))
            rows.append({"id": rid, "text": text.strip(),
                         **({"gt": row["label"]} if "label" in row else {})})
    return rows


def pseudo_label(inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                 settings: ChatSettings, *, labels: Sequence[str] = MAFW_LABELS,
                 max_labels: int = 2, source: str = "pseudo", seed: int = 0,
                 limit: int | None = None, progress: bool = True) -> RunStats:
    """Pseudo-label every explanation in ``inputs`` not yet in ``out`` (paper Figure 6)."""
    rows = read_explanations(inputs)
    jobs = [Job(r["id"], label_prompt(r["text"], permuted_labels(labels, r["id"], seed)),
                {"text": r["text"], **({"gt": r["gt"]} if "gt" in r else {})})
            for r in rows]

    def handle(job: Job, reply: str) -> tuple[dict[str, Any] | None, str | None]:
        parsed = parse_label_reply(reply, labels, max_labels)
        if parsed.error:
            return None, parsed.error
        return {**job.payload, "labels": list(parsed.labels), "source": source}, None

    return run_jobs(jobs, settings, handle, out, limit=limit, progress=progress,
                    desc="pseudo-label")


def _labelled(paths: Sequence[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Pseudo-labelled rows ({"text", "labels"}; ids default to ``<file stem>:<line>``)."""
    from erv_plugins.verifiers.data import VerifierDataError, read_text_jsonl

    try:
        return [{"id": r.id, "text": r.text, "labels": list(r.labels)}
                for p in paths for r in read_text_jsonl(p)]
    except VerifierDataError as exc:
        raise AugmentError(str(exc)) from None


def complement(pseudo: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
               settings: ChatSettings, *, emotions: Sequence[str] = COMPLEMENT_LABELS,
               target: int = 1000, count_existing: bool = True, seed: int = 0,
               max_rounds: int = 3, limit: int | None = None, progress: bool = True
               ) -> RunStats:
    """Generate descriptions until each of ``emotions`` has ``target`` examples (Figure 7).

    The pseudo-labelled data supplies the exemplars and, with ``count_existing``, the
    starting count. A rejected reply (too short) leaves its id used; later rounds ask
    fresh ids until the target is met or ``max_rounds`` pass.
    """
    pool = _labelled(pseudo)
    existing: Counter[str] = Counter(l for r in pool for l in set(r["labels"]))
    by_label = {e: [r for r in pool if e in r["labels"]] for e in emotions}
    for e, rows in by_label.items():
        if len(rows) < 2:
            raise AugmentError(f"complement {e!r}: need at least two pseudo-labelled examples "
                               f"of it to draw exemplars, found {len(rows)}")
    out_path = Path(out)
    total = RunStats()
    for _round in range(max_rounds):
        made = Counter(l for r in read_jsonl_ids(out_path) for l in r.get("labels", []))
        used = {str(r["id"]) for p in (out_path, side_files(out_path)[0])
                for r in read_jsonl_ids(p)}
        jobs = []
        for e in emotions:
            have = made[e] + (existing[e] if count_existing else 0)
            k = 0
            for _ in range(max(0, target - have)):
                while f"complement:{e}:{k:05d}" in used:
                    k += 1
                jid = f"complement:{e}:{k:05d}"
                used.add(jid)
                rng = random.Random(f"{seed}:{jid}")
                a, b = rng.sample(by_label[e], 2)
                jobs.append(Job(jid, complement_prompt(e, a["text"], b["text"]),
                                {"emotion": e, "exemplars": [a["id"], b["id"]]}))
        if not jobs:
            break
        if limit is not None:
            jobs = jobs[: max(0, limit - total.pending)]
            if not jobs:
                break

        def handle(job: Job, reply: str) -> tuple[dict[str, Any] | None, str | None]:
            text, reason = clean_description(reply)
            if reason:
                return None, reason
            return {"text": text, "labels": [job.payload["emotion"]], "source": "complemented",
                    "exemplars": job.payload["exemplars"]}, None

        stats = run_jobs(jobs, settings, handle, out_path, progress=progress,
                         desc=f"complement (round {_round + 1})")
        _add(total, stats)
        if stats.rejected == 0 and stats.failed == 0:
            break
    return total


def _add(total: RunStats, s: RunStats) -> None:
    for name in ("total", "skipped", "pending", "accepted", "rejected", "failed", "requests",
                 "retries", "prompt_tokens", "completion_tokens", "cost_usd", "seconds"):
        setattr(total, name, getattr(total, name) + getattr(s, name))
    for k, v in s.errors.items():
        total.errors[k] = total.errors.get(k, 0) + v
    total.last_error = s.last_error or total.last_error

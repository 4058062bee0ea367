"""Judged evaluation of predictions: read, judge (streamed, resumable), score, report.

``evaluate`` is what ``erv eval`` and the ``eval`` stage call. Its files in ``out``:

- ``judgements.jsonl``: one row per judged sample, appended as each verdict arrives. A
  rerun reads it first and asks the judge only for the samples it lacks, so an
  interrupted evaluation resumes without asking again and without duplicate rows.
- ``metrics.json``: EEA, FCR, EPC, WAR, UAR, FCR/WAR in percent, intervals, per class.
- ``table.md`` / ``table.json``: the paper's Table-1 layout.
- ``confusion.png``: truth vs answer, truth vs judge, answer vs judge.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erv_plugins.errors import ErvError
from erv_plugins.judges.base import Judge, JudgeRequest
from erv_plugins.labels import LabelSpace
from erv_plugins.text import parse_completions

JUDGEMENTS = "judgements.jsonl"
METRICS = "metrics.json"


@dataclass(frozen=True)
class Prediction:
    """One model output to score: its completion and the sample's ground-truth label."""

    id: str
    completion: str
    label: str
    where: str = ""  # "<file>:<line>" it was read from, for errors


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    out: Path
    rows: list[dict[str, Any]]
    failed: dict[str, str] = field(default_factory=dict)  # id -> why the judge failed
    asked: int = 0  # verdicts obtained in this call (the rest were resumed)


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Predictions JSONL: one object a line with at least id, completion, label."""
    from erv_plugins.jsonl import iter_jsonl

    path = Path(path)
    out: list[Prediction] = []
    seen: dict[str, int] = {}
    for where, number, row in iter_jsonl(path):
        for key in ("id", "completion", "label"):
            if key not in row:
                raise ErvError(f"{where}: missing field {key!r} "
                               "(each line needs id, completion, label)")
        if not isinstance(row["completion"], str) or not isinstance(row["label"], str):
            raise ErvError(f"{where}: completion and label must be strings")
        if not isinstance(row["id"], (str, int)):
            raise ErvError(f"{where}: id must be a string")
        sid = str(row["id"])
        if sid in seen:
            raise ErvError(f"{where}: id {sid!r} already appears on line {seen[sid]}")
        seen[sid] = number
        out.append(Prediction(sid, row["completion"], row["label"], where))
    if not out:
        raise ErvError(f"predictions {path}: no predictions in the file")
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def score_rows(predictions: Sequence[Prediction], label_space: LabelSpace,
               source: str = "predictions", protocol: str = "erv") -> list[dict[str, Any]]:
    """The judge-independent part of each row, read as ``protocol`` reads it
    (``protocols.py``): g, p (for WAR/UAR), the answer FCR/EPC read, the judge's input.

    g must normalise to one of the dataset's labels.
    """
    from erv_plugins.evaluation.protocols import parse_prediction

    parsed = parse_completions([p.completion for p in predictions]) if protocol == "erv" \
        else [None] * len(predictions)
    rows = []
    for pred, parse in zip(predictions, parsed, strict=True):
        g = label_space.normalize(pred.label)
        if g not in label_space:
            where = pred.where or f"{source}: sample {pred.id!r}"
            raise ErvError(f"{where}: label {pred.label!r} is not a "
                           f"{label_space.name.upper()} label ({', '.join(label_space.labels)})")
        r = parse_prediction(protocol, pred.id, pred.completion, label_space,
                             think=parse.think if parse else None,
                             answer=parse.answer if parse else None)
        rows.append({"id": pred.id, "label": g, "pred": r.answer,
                     "pred_judged": r.answer_judged, "judged": r.judged,
                     "pred_in_list": r.answer is not None, "release_cut": r.cut,
                     "explanation": r.explanation, "protocol": protocol,
                     "completion_sha": _digest(pred.completion)})
    return rows


def _load_judgements(path: Path) -> list[dict[str, Any]]:
    """Rows already judged. A last line cut short by an interruption is dropped (and cut
    from the file so the next append starts on a fresh line); any other bad line is an
    error, so nothing is silently lost."""
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        last = number == len(lines)
        if line.strip():
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or "id" not in row:
                    raise ValueError("not a judgement row")
            except (ValueError, RecursionError) as exc:
                if last:  # an interrupted write: not newline-terminated
                    with path.open("r+b") as f:
                        f.truncate(offset)
                    break
                raise ErvError(f"{path}:{number}: unreadable row ({exc}); move the file "
                               "away to judge from scratch") from None
            rows.append(row)
        offset += len(line) + 1
    return rows


def evaluate(predictions: Sequence[Prediction], label_space: LabelSpace, judge: Judge,
             out: str | os.PathLike[str], *, run_name: str = "model", protocol: str = "release",
             bootstrap: int = 1000, seed: int = 0, progress: bool = True, plot: bool = True,
             echo: Callable[[str], None] = print) -> EvalResult:
    """Judge every prediction's explanation (resuming ``out/judgements.jsonl``), then
    write metrics, tables and the confusion-matrix plot into ``out``. ``protocol`` says
    how predictions and replies are read and who stays in N (``protocols.py``). One
    process at a time: ``out`` is locked (``erv_plugins.locking``) while it writes there."""
    from erv_plugins.locking import hold

    with hold(out, "erv eval"):
        return _evaluate(predictions, label_space, judge, Path(out), run_name=run_name,
                         protocol=protocol, bootstrap=bootstrap, seed=seed,
                         progress=progress, plot=plot, echo=echo)


def _evaluate(predictions: Sequence[Prediction], label_space: LabelSpace, judge: Judge,
              out: Path, *, run_name: str, protocol: str, bootstrap: int, seed: int,
              progress: bool, plot: bool, echo: Callable[[str], None]) -> EvalResult:
    from erv_plugins.evaluation import plots, protocols, tables
    from erv_plugins.evaluation.metrics import Outcomes, compute_metrics

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / JUDGEMENTS
    base = score_rows(predictions, label_space, protocol=protocol)
    by_id = {r["id"]: r for r in base}
    done: dict[str, dict[str, Any]] = {}
    for row in _load_judgements(path):
        rid = str(row["id"])
        if row.get("judge_key") != judge.cache_key:
            raise ErvError(f"{path}: was judged by another judge or model "
                           f"({row.get('judge_name')}); use another --out directory")
        if rid in by_id and row.get("completion_sha") != by_id[rid]["completion_sha"]:
            raise ErvError(f"{path}: sample {rid!r} was judged for a different completion; "
                           "use another --out directory")
        if row.get("protocol", "erv") != protocol:
            raise ErvError(f"{path}: was judged under the {row.get('protocol', 'erv')!r} "
                           f"protocol, not {protocol!r}; use another --out directory")
        done[rid] = row
    extra = [rid for rid in done if rid not in by_id]
    if extra:
        echo(f"erv eval: {len(extra)} judged rows in {path} are not among the predictions "
             f"and are left out (e.g. {extra[0]!r})")
    order = protocols.judge_order(protocol, label_space)
    todo = [JudgeRequest(r["id"], r["explanation"], order) for r in base if r["id"] not in done]
    if done and todo:
        echo(f"erv eval: resuming: {len(done)} samples already judged, {len(todo)} to go")
    failed: dict[str, str] = {}
    asked = 0
    if todo:
        with path.open("a", encoding="utf-8") as f:
            for verdict in _progress(judge.judge(todo, label_space), len(todo), progress):
                if verdict.id not in by_id or verdict.id in done:
                    raise ErvError(f"judge {judge.name!r} answered for sample {verdict.id!r}, "
                                   "which it was not asked about (or twice)")
                if not verdict.ok:
                    failed[verdict.id] = verdict.error or "failed"
                    continue
                row = {k: v for k, v in by_id[verdict.id].items() if k != "explanation"}
                row.update(judge_label=verdict.label, judge_reply=verdict.reply,
                           judge_in_list=verdict.in_list, judge_ok=True,
                           judge_name=judge.name, judge_key=judge.cache_key)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()  # each verdict is on disk before the next is awaited
                done[verdict.id] = row
                asked += 1
    missing = [r["id"] for r in base if r["id"] not in done and r["id"] not in failed]
    if missing:  # a judge that broke the one-verdict-per-request contract
        raise ErvError(f"judge {judge.name!r} gave no verdict for {len(missing)} samples "
                       f"(e.g. {missing[0]!r})")
    # A failed request: left out of N (erv), or a neutral verdict that stays in N (release,
    # paper: their helper returns 'None'); never written, so the next run asks again.
    failed_rows = {r["id"]: {**{k: v for k, v in r.items() if k != "explanation"},
                             "judge_ok": False, "judge_reply": None, "judge_label": None,
                             "judge_in_list": False}
                   for r in base if r["id"] in failed}
    rows = [done.get(r["id"]) or failed_rows[r["id"]] for r in base
            if r["id"] in done or r["id"] in failed]
    if failed and len(failed) == len(base):
        # Every request failed: no protocol's metrics would say anything about the model.
        raise ErvError(f"the judge answered for none of the {len(base)} samples; first "
                       f"error: {next(iter(failed.values()))}")
    judge_labels = [protocols.judge_label(protocol, r, label_space) for r in rows]
    counted = [(r, j) for r, j in zip(rows, judge_labels) if j is not None]
    if not counted:
        raise ErvError(f"the judge answered for none of the {len(base)} samples; first "
                       f"error: {next(iter(failed.values()), 'none')}")
    try:
        o = Outcomes.from_words(
            label_space.labels, [r["label"] for r, _ in counted],
            [r["pred"] for r, _ in counted],
            [j if r.get("judged", True) else None for r, j in counted],
            [r.get("pred_judged", r["pred"]) for r, _ in counted],
            uar_rule=protocols.uar_rule(protocol, label_space))  # type: ignore[arg-type]
    except ValueError as exc:  # e.g. a judge's "neutral" in a label space without it
        raise ErvError(f"{path}: {exc} (judge {judge.name!r}, dataset {label_space.name})"
                       ) from None
    metrics = compute_metrics(o, bootstrap=bootstrap, seed=seed)
    metrics.update({
        "run": run_name,
        "dataset": label_space.name,
        "judge": judge.name,
        "protocol": protocol,
        "samples": len(base),
        "judged": len(rows) - len(failed),
        "failed": len(failed),
        "judge_out_of_list": sum(1 for r in rows if r["judge_ok"] and not r["judge_in_list"]),
        "answer_out_of_list": sum(1 for r, _ in counted if not r["pred_in_list"]),
    })
    if protocol != "erv":
        metrics["unparsed_for_coherence"] = sum(1 for r, _ in counted if not r["judged"])
        metrics["release_cut"] = sum(1 for r, _ in counted if r.get("release_cut"))
    if failed:
        metrics["failed_ids"] = sorted(failed)
    # Optional extras of a judge: its settings and its request counts of this call.
    if isinstance(getattr(judge, "info", None), dict):
        metrics["judge_info"] = judge.info  # type: ignore[attr-defined]
    if isinstance(getattr(judge, "stats", None), dict):
        metrics["judge_stats"] = dict(judge.stats)  # type: ignore[attr-defined]
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    entry = tables.RunEntry(run_name, label_space.name, metrics)
    (out / "table.md").write_text(tables.table1_markdown([entry]) + "\n", encoding="utf-8")
    (out / "table.json").write_text(json.dumps(tables.table1_json([entry]), indent=2) + "\n",
                                    encoding="utf-8")
    if plot:
        plots.confusion_png(o, out / "confusion.png", title=f"{run_name} on {label_space.name}")
    return EvalResult(metrics, out, rows, failed, asked)


def _progress(items: Iterable[Any], total: int, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="judging", unit="sample", leave=False)

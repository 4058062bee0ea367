"""The paper's Table 1 layout: one row per method, EEA FCR EPC WAR UAR under each dataset.

Runs with the same name on different datasets share a row, so evaluations of one model on
MAFW and DFEW, and of several models, sit side by side as in the paper.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erv_plugins.errors import ErvError
from erv_plugins.evaluation.metrics import METRICS, RATIO

DATASET_TITLES = {"mafw": "MAFW", "dfew": "DFEW", "emer": "EMER"}


@dataclass(frozen=True)
class RunEntry:
    """The metrics (as in ``metrics.json``) of one method on one dataset."""

    name: str
    dataset: str
    metrics: Mapping[str, Any]


# Paper Table 1 (0.5B models), for reference beside one's own runs (``erv eval --paper``).
PAPER_TABLE1: tuple[RunEntry, ...] = (
    RunEntry("R1-Omni 0.5B (paper)", "mafw",
             {"EEA": 37.87, "FCR": 31.80, "EPC": 48.09, "WAR": 57.68, "UAR": 40.04}),
    RunEntry("R1-Omni 0.5B (paper)", "dfew",
             {"EEA": 33.49, "FCR": 28.09, "EPC": 41.58, "WAR": 65.44, "UAR": 56.94}),
    RunEntry("ERV 0.5B (paper)", "mafw",
             {"EEA": 48.93, "FCR": 43.57, "EPC": 68.58, "WAR": 57.49, "UAR": 39.12}),
    RunEntry("ERV 0.5B (paper)", "dfew",
             {"EEA": 45.82, "FCR": 40.21, "EPC": 58.63, "WAR": 67.28, "UAR": 56.25}),
)


def protocol_warnings(entries: Sequence[RunEntry]) -> list[str]:
    """One line per run beside the paper's rows that was not evaluated with the release
    protocol (the paper's numbers came from the authors' scripts)."""
    paper = {e.name for e in PAPER_TABLE1}
    out = []
    for e in entries:
        if e.name in paper:
            continue
        protocol = e.metrics.get("protocol", "erv")
        if protocol != "release":
            out.append(f"erv eval --paper: {e.name} on {_title(e.dataset)} was evaluated with "
                       f"the {protocol!r} protocol; the paper's rows come from the authors' "
                       "scripts (--protocol release), so they do not compare point by point")
    return out


def _layout(entries: Sequence[RunEntry]) -> tuple[list[str], list[str],
                                                  dict[tuple[str, str], Mapping[str, Any]]]:
    methods: list[str] = []
    datasets: list[str] = []
    cells: dict[tuple[str, str], Mapping[str, Any]] = {}
    for e in entries:
        if e.name not in methods:
            methods.append(e.name)
        if e.dataset not in datasets:
            datasets.append(e.dataset)
        cells[(e.name, e.dataset)] = e.metrics
    # The paper puts MAFW before DFEW; unknown datasets follow in order of appearance.
    order = {d: i for i, d in enumerate(DATASET_TITLES)}
    datasets.sort(key=lambda d: order.get(d, len(order)))
    return methods, datasets, cells


def _title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, dataset)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def table1_markdown(entries: Sequence[RunEntry]) -> str:
    """A markdown table: Method | <DATASET> EEA FCR EPC WAR UAR ... (values in percent)."""
    methods, datasets, cells = _layout(entries)
    header = ["Method"] + [f"{_title(d)} {m}" for d in datasets for m in METRICS]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    for method in methods:
        row = [method]
        for d in datasets:
            metrics = cells.get((method, d), {})
            row += [_fmt(metrics.get(m)) for m in METRICS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def table1_json(entries: Sequence[RunEntry]) -> dict[str, Any]:
    """The same table as data: columns per dataset, one row per method (with intervals
    and FCR/WAR where the run has them)."""
    methods, datasets, cells = _layout(entries)
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method}
        for d in datasets:
            if (method, d) not in cells:
                continue
            metrics = cells[(method, d)]
            entry = {m: metrics.get(m) for m in (*METRICS, RATIO) if m in metrics}
            if "ci" in metrics:
                entry["ci"] = {m: metrics["ci"].get(m) for m in (*METRICS, RATIO)}
            if "n" in metrics:
                entry["n"] = metrics["n"]
            row[_title(d)] = entry
        rows.append(row)
    return {"metrics": list(METRICS), "datasets": [_title(d) for d in datasets], "rows": rows}


def per_class_markdown(metrics: Mapping[str, Any]) -> str:
    """Per-class table of one run: n, EEA, FCR, EPC, recall and FCR/recall per class."""
    header = ["Class", "n", "EEA", "FCR", "EPC", "Recall", "FCR/Recall"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    for label, m in metrics.get("per_class", {}).items():
        lines.append("| " + " | ".join([label, str(m["n"])] + [
            _fmt(m.get(k)) for k in ("EEA", "FCR", "EPC", "WAR", RATIO)]) + " |")
    return "\n".join(lines)


def summary_line(metrics: Mapping[str, Any]) -> str:
    """One line with every overall metric and its interval."""
    ci = metrics.get("ci", {})
    parts = []
    for m in (*METRICS, RATIO):
        text = f"{m} {_fmt(metrics.get(m))}"
        if ci.get(m):
            text += f" [{ci[m][0]:.2f}, {ci[m][1]:.2f}]"
        parts.append(text)
    level = metrics.get("ci_level")
    suffix = f" ({100 * level:g}% bootstrap intervals)" if level else ""
    return ", ".join(parts) + suffix


def load_run(path: str | os.PathLike[str], name: str | None = None) -> RunEntry:
    """A run's entry from its ``metrics.json`` (or the directory holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.json"
    try:
        metrics = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ErvError(f"{p}: cannot read metrics: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ErvError(f"{p}: not JSON: {exc.msg}") from None
    if not isinstance(metrics, dict) or "dataset" not in metrics:
        raise ErvError(f"{p}: not a metrics.json written by erv eval (no 'dataset')")
    return RunEntry(name or str(metrics.get("run") or p.parent.name), str(metrics["dataset"]),
                    metrics)


def report(metrics: dict[str, Any], others: list[Any], *, paper: bool,
           echo: Callable[[str], None] = print) -> None:
    """Print the Table-1-style table (with other runs), the summary and the per-class table."""
    import click

    entries = [RunEntry(str(metrics["run"]), str(metrics["dataset"]), metrics), *others]
    if paper:
        for line in protocol_warnings(entries):
            click.echo(line, err=True)
        entries += list(PAPER_TABLE1)
    echo(table1_markdown(entries))
    echo("")
    echo(f"{metrics['run']} on {metrics['dataset']}: " + summary_line(metrics))
    echo(f"protocol {metrics.get('protocol', 'erv')}: judged {metrics['judged']} of "
         f"{metrics['samples']} samples (N = {metrics['n']}); judge replies outside the label "
         f"list (counted as neutral): {metrics['judge_out_of_list']}; answers outside the "
         f"label list: {metrics['answer_out_of_list']}")
    echo("")
    echo(per_class_markdown(metrics))

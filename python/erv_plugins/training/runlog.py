"""What a training stage leaves for people: metrics JSONL, reward curves (PNG), a report.

``metrics.jsonl`` holds one JSON object per optimisation step, ``{"step": n, ...}``. A run
resumed from checkpoint ``k`` first drops the lines after step ``k`` (they were logged by
the killed process but their updates were lost with it) and then appends, so the file
never holds a step twice and never skips one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REWARD_PREFIX = "rewards/"
TOTAL_KEY = "reward"


class MetricsLog:
    """An append-only JSONL of step metrics that can be cut back to a step."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A process killed mid-write leaves a torn last line; anything else is damage.
                if n == len(self.path.read_text(encoding="utf-8").splitlines()):
                    continue
                raise ValueError(f"{self.path}:{n}: not a JSON line") from None
        return rows

    def truncate_after(self, step: int) -> None:
        """Keep only the lines of steps <= ``step`` (atomically: no data is lost on a crash)."""
        rows = [r for r in self.read() if int(r.get("step", 0)) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        os.replace(tmp, self.path)

    def last_step(self) -> int:
        rows = self.read()
        return max((int(r["step"]) for r in rows), default=0)

    def append(self, row: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(dict(row), default=_jsonable) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def reward_series(rows: Sequence[Mapping[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Per reward (and ``total``): steps and values of the logged batch means."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        step = int(row["step"])
        for key, value in row.items():
            if key == TOTAL_KEY:
                name = "total"
            elif key.startswith(REWARD_PREFIX) and key.endswith("/mean"):
                name = key[len(REWARD_PREFIX):-len("/mean")]
            else:
                continue
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            steps, values = series.setdefault(name, ([], []))
            steps.append(step)
            values.append(float(value))
    return series


def fifth_means(values: Sequence[float]) -> tuple[float, float]:
    """Mean of the first and of the last fifth of a series (at least one value each)."""
    if not values:
        return math.nan, math.nan
    k = max(1, len(values) // 5)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def plot_rewards(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[Path]:
    """One PNG per reward and one for the total: ``reward_<name>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (steps, values) in reward_series(rows).items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, values, marker="." if len(steps) < 60 else None, linewidth=1)
        if len(values) >= 10:  # a moving average makes a noisy RL curve readable
            w = max(2, len(values) // 10)
            smooth = [sum(values[max(0, i - w + 1):i + 1]) / len(values[max(0, i - w + 1):i + 1])
                      for i in range(len(values))]
            ax.plot(steps, smooth, linewidth=2, label=f"moving mean ({w} steps)")
            ax.legend(loc="lower right")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel("mean reward" if name != "total" else "mean total reward R")
        ax.set_title("total reward R (eq. 5)" if name == "total" else f"reward: {name}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"reward_{name.replace('/', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def write_report(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str,
                 settings: Mapping[str, Any], plots: Sequence[Path] = (),
                 seconds: float | None = None) -> Path:
    """A short markdown report: settings, first-fifth vs last-fifth reward means, plots."""
    path = Path(path)
    lines = [f"# {title}", ""]
    if rows:
        lines.append(f"Steps: {len(rows)} (last step {int(rows[-1]['step'])})"
                     + (f", {seconds:.1f} s" if seconds is not None else "") + ".")
        lines.append("")
    lines += ["| reward | first fifth | last fifth | change |", "|---|---:|---:|---:|"]
    for name, (_, values) in sorted(reward_series(rows).items(), key=lambda kv: kv[0] != "total"):
        first, last = fifth_means(values)
        lines.append(f"| {name} | {first:.3f} | {last:.3f} | {last - first:+.3f} |")
    lines += ["", "## Settings", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    if plots:
        lines += ["", "## Curves", ""]
        lines += [f"![{p.stem}]({os.path.relpath(p, path.parent)})" for p in plots]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

"""Confusion matrices of one evaluation as a PNG (matplotlib, Agg backend).

Three panels, rows normalised to percent with the counts printed: ground truth vs answer
(WAR, UAR), ground truth vs judge (EEA) and answer vs judge (EPC); answers outside the
label list get their own column.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from erv_plugins.evaluation.metrics import Outcomes, confusion


def confusion_png(o: Outcomes, path: str | os.PathLike[str], *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(o.labels)
    labels = list(o.labels)
    # Answer vs judge: rows are answers, including those outside the list.
    p_rows = np.where(o.p < 0, k, o.p)
    answer_judge = np.zeros((k + 1, k), dtype=np.int64)
    np.add.at(answer_judge, (p_rows.astype(np.int64), o.j.astype(np.int64)), 1)
    panels = [
        ("truth vs answer", confusion(o.g, o.p, k), labels, labels + ["(other)"],
         "ground truth g", "answer p"),
        ("truth vs judge", confusion(o.g, o.j, k)[:, :k], labels, labels,
         "ground truth g", "judge j"),
        ("answer vs judge", answer_judge, labels + ["(other)"], labels, "answer p", "judge j"),
    ]
    size = max(4.0, 0.45 * k + 2.0)
    fig, axes = plt.subplots(1, 3, figsize=(3 * size, size + 0.6), layout="constrained")
    for ax, (name, counts, rows, cols, ylabel, xlabel) in zip(axes, panels, strict=True):
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(100.0 * counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{name} (row %)")
        for r in range(counts.shape[0]):
            for c in range(counts.shape[1]):
                if counts[r, c]:
                    ax.text(c, r, str(counts[r, c]), ha="center", va="center", fontsize=7,
                            color="white" if share[r, c] > 60 else "black")
    if title:
        fig.suptitle(f"{title} (n = {len(o)})")
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

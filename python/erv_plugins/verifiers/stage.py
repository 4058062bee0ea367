"""The ``erv run`` stage that trains the Emotional Rationale Verifier (paper section 3.2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from erv_plugins.datasets.base import build_dataset
from erv_plugins.errors import ErvError
from erv_plugins.verifiers.data import TextRecord
from erv_plugins.verifiers.tiny import build_tiny_verifier
from erv_plugins.verifiers.training import TINY_BASE, records_from_dataset, train_verifier


class VerifierStage:
    """Stage ``train_verifier`` of ``erv run``: train the ERV from ``[train_verifier]``.

    Writes the checkpoint to ``<run_dir>/train_verifier/model`` (where later stages look for it)
    and ``metrics.json``, ``metrics.png``, ``counts.txt`` to ``<run_dir>/train_verifier``.
    ``base = "tiny"`` starts from a freshly built tiny RoBERTa (tests and demos).
    """

    name = "train_verifier"

    def __call__(self, ctx: Any) -> dict[str, Any]:
        cfg = ctx.recipe.train_verifier
        if cfg is None:
            raise ErvError("stage train_verifier needs a [train_verifier] table")
        space = ctx.plugins.label_space(cfg.label_space)
        out = Path(ctx.out)
        base: str | Path = cfg.base
        if cfg.base == TINY_BASE:
            base = build_tiny_verifier(out / "base", labels=space.labels, seed=cfg.seed)
        train: list[TextRecord] = []
        for spec in cfg.train:
            records = records_from_dataset(build_dataset(spec, ctx.plugins), spec.plugin)
            train += records[: spec.limit] if spec.limit is not None else records
        held = None
        if cfg.eval is not None:
            held = records_from_dataset(build_dataset(cfg.eval, ctx.plugins), cfg.eval.plugin)
        metrics = train_verifier(
            train, base=base, out=out / "model", eval=held, labels=space.labels,
            reinit_head=cfg.reinit_head, epochs=cfg.epochs, batch_size=cfg.batch_size,
            lr=cfg.lr, max_length=cfg.max_length, eval_fraction=cfg.eval_fraction,
            warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay, seed=cfg.seed,
            device=cfg.device, report_dir=out, echo=ctx.echo,
        )
        return {"model": str(out / "model"), "macro_f1": metrics["macro_f1"],
                "micro_f1": metrics["micro_f1"], "map": metrics["map"],
                "best_tau": metrics["best_tau"]}


def trained_verifier_path(run_dir: str | os.PathLike[str]) -> Path:
    """Where the verifier stage of a run leaves its checkpoint."""
    return Path(run_dir) / "train_verifier" / "model"

"""Pipeline stages and the runner behind ``erv run``.

A stage is a registered component (hook ``erv_register_stages``) called with a
``StageContext``; it writes its outputs under ``ctx.out`` (``<run dir>/<stage name>/``).
The runner marks a finished stage with ``<stage>/.done`` and skips it next time unless
``force``; a stage that is interrupted leaves no mark, so it runs again (and may resume
from its own checkpoints).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import click

from erv_plugins.hookspecs import hookimpl
from erv_plugins.plugins import Plugins, Register
from erv_plugins.recipe import (
    CompareTable,
    EvalTable,
    GRPOTable,
    PluginSpec,
    Recipe,
    SFTTable,
    VerifierTrainingTable,
)

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext

DONE = ".done"


@dataclass
class StageContext:
    recipe: Recipe
    run_dir: Path
    out: Path
    plugins: Plugins
    force: bool = False
    echo: Callable[[str], None] = click.echo

    def build_context(self, **fields: Any) -> BuildContext:
        """The ``BuildContext`` this stage's components are built with."""
        from erv_plugins.context import BuildContext

        return BuildContext.create(self.plugins, recipe=self.recipe, run_dir=self.run_dir,
                                   **fields)


class Stage(Protocol):
    name: ClassVar[str]

    def __call__(self, ctx: StageContext) -> dict[str, Any] | None: ...


def _lazy(name: str, module: str, attr: str, doc: str) -> Callable[[Any], Stage]:
    """A stage whose implementation (and its heavy imports) load only when it runs; it
    reads its table from ``ctx.recipe``, as every stage may."""

    def factory(table: Any = None) -> Stage:
        import importlib

        return getattr(importlib.import_module(module), attr)()

    factory.__doc__ = doc
    factory.name = name  # type: ignore[attr-defined]
    return factory


@hookimpl
def erv_register_stages(register: Register) -> None:
    # Each stage's options struct is its recipe table, [<stage name>].
    register(_lazy("sft", "erv_plugins.training.sft", "SFTStage",
                   "Supervised fine-tuning of the policy on EMER (paper eq. 2)."),
             options=SFTTable)
    register(_lazy("train_verifier", "erv_plugins.verifiers.stage", "VerifierStage",
                   "Train the Emotional Rationale Verifier (paper section 3.2)."),
             options=VerifierTrainingTable)
    register(_lazy("grpo", "erv_plugins.training.grpo", "GRPOStage",
                   "GRPO with R = R_E + R_format + R_answer (paper eq. 3-5)."),
             options=GRPOTable)
    register(_lazy("eval", "erv_plugins.evaluation.stage", "EvalStage",
                   "Judge explanations; EEA, FCR, EPC, WAR, UAR (paper section 4.2)."),
             options=EvalTable)
    register(_lazy("compare", "erv_plugins.evaluation.compare", "CompareStage",
                   "The answer-only baseline from the same SFT model, side by side (Table 1)."),
             options=CompareTable)


def trained_verifier_spec(recipe: Recipe, run_dir: Path) -> PluginSpec | None:
    """The recipe's ``[verifier]``, pointed at the checkpoint this run's verifier stage
    trains (``<run dir>/train_verifier/model``) when the recipe has that stage: a run's own
    products are found in its run directory, whatever the table's ``path`` says."""
    import msgspec

    spec = recipe.verifier
    if spec is None or "train_verifier" not in recipe.stages:
        return spec
    options = spec.options
    if options is not None and hasattr(options, "path"):
        options = msgspec.structs.replace(options, path=str(run_dir / "train_verifier" / "model"))
    return msgspec.structs.replace(spec, options=options)


def build_stage(plugins: Plugins, recipe: Recipe, name: str) -> Stage:
    """The registered stage ``name``, built the same way in ``erv run`` and in the
    processes it launches (training/launching.py)."""
    reg = plugins.get("stage", name)
    return reg.build(recipe.table(name)) if reg.options is not None else reg.build()


def stages_to_run(recipe: Recipe, run_dir: Path, *, force: bool = False,
                  only: Sequence[str] | None = None) -> list[str]:
    """The stages ``run_recipe`` will run: those selected and not done (unless ``force``)."""
    return [s for s in recipe.stages if (not only or s in only)
            and (force or not (run_dir / s / DONE).exists())]


def run_recipe(recipe: Recipe, plugins: Plugins, *, force: bool = False,
               only: Sequence[str] | None = None,
               echo: Callable[[str], None] = click.echo, preflight: bool = True) -> Path:
    """Run the recipe's stages in order; returns the run directory.

    First the preflight (``preflight.require_paths``): every path the stages to run need
    is checked here, and all missing ones are reported at once, before anything starts.
    """
    # transformers' per-file bars ("Loading weights", "Writing model shards") would bury the
    # stages' own progress; read when transformers is first imported, so set it now.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    run_dir = recipe.resolved_run_dir()
    if preflight:
        from erv_plugins.preflight import require_paths

        require_paths(recipe, plugins, run_dir=run_dir,
                      stages=stages_to_run(recipe, run_dir, force=force, only=only))
    from erv_plugins.locking import hold

    with hold(run_dir, f"erv run {recipe.source or recipe.name}"):
        _run_stages(recipe, plugins, run_dir, force=force, only=only, echo=echo)
    return run_dir


def _run_stages(recipe: Recipe, plugins: Plugins, run_dir: Path, *, force: bool,
                only: Sequence[str] | None, echo: Callable[[str], None]) -> None:
    echo(f"erv: run directory {run_dir}")
    (run_dir / "recipe.json").write_text(json.dumps(recipe.to_builtins(), indent=2) + "\n")
    for name in recipe.stages:
        if only and name not in only:
            continue
        out = run_dir / name
        if (out / DONE).exists() and not force:
            echo(f"erv: stage {name}: outputs exist in {out}, skipped (use --force to rerun)")
            continue
        out.mkdir(parents=True, exist_ok=True)
        echo(f"erv: stage {name} ...")
        start = time.perf_counter()
        stage = build_stage(plugins, recipe, name)
        summary = stage(StageContext(recipe, run_dir, out, plugins, force, echo)) or {}
        seconds = time.perf_counter() - start
        (out / DONE).write_text(json.dumps({"seconds": round(seconds, 2), **summary}) + "\n")
        echo(f"erv: stage {name} done in {seconds:.1f} s")

"""Multi-process training: ``erv run`` re-launches a training stage under ``accelerate``.

When ``[launch] num_processes > 1``, a ``LaunchedStage`` (sft, grpo, or a plugin's stage)
starts ``accelerate launch`` on this module, which loads the same recipe, finds the stage
in the plugin registry by its name and runs it in each process. The command (printed before it starts, so it can be run by hand) is::

    accelerate launch --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no --multi_gpu \\
        python/erv_plugins/training/launching.py RECIPE --run-dir DIR --stage grpo

and with ``[launch] deepspeed = "deepspeed/zero3.json"``::

    accelerate launch --use_deepspeed --deepspeed_config_file recipes/deepspeed/zero3.json \\
        --zero3_init_flag true --num_processes 2 ... launching.py RECIPE ...

On CPU, DDP runs over gloo (``--multi_gpu`` is the flag that really starts N processes:
``--cpu --num_processes 2`` silently runs one) and DeepSpeed ZeRO-3 falls back to gloo
with ``use_cpu=False`` (see docs/stack.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    from erv_plugins.recipe import Recipe
    from erv_plugins.stages import StageContext, build_stage

SUMMARY = "launch_summary.json"
# Environment set in the processes ``erv run`` launches.
LAUNCHED_ENV = "ERV_LAUNCHED"
# This machine's rank in a multi-machine run (overrides [launch] machine_rank).
MACHINE_RANK_ENV = "ERV_MACHINE_RANK"


def summary_name(machine: int) -> str:
    """The summary file of machine ``machine`` (machine 0's is the run's)."""
    return SUMMARY if machine == 0 else f"launch_summary.machine{machine}.json"


class LaunchedStage:
    """A stage that runs in this process, or in the ``[launch] num_processes`` processes
    ``accelerate launch`` starts when the recipe asks for several (each runs ``run``).

    Subclass it and register the class (``erv_register_stages``) like any stage;
    ``prepare`` runs once, in the ``erv run`` process, before any process starts."""

    name: ClassVar[str]

    def __call__(self, ctx: StageContext) -> dict[str, Any] | None:
        self.prepare(ctx)
        if needs_launch(ctx.recipe):
            return launch_stage(ctx, self.name)
        return self.run(ctx)

    def prepare(self, ctx: StageContext) -> None:
        """Work done once before the processes start (nothing by default)."""

    def run(self, ctx: StageContext) -> dict[str, Any] | None:
        raise NotImplementedError


def needs_launch(recipe: Recipe) -> bool:
    """True in the ``erv run`` process of a multi-process recipe (not in its children)."""
    launch = recipe.launch
    return ((launch.num_processes > 1 or launch.num_machines > 1)
            and not os.environ.get(LAUNCHED_ENV))


def machine_rank(recipe: Recipe) -> int:
    """This machine's rank: ``ERV_MACHINE_RANK`` (set per node by recipes/slurm_*.sh), else
    ``[launch] machine_rank``."""
    value = os.environ.get(MACHINE_RANK_ENV)
    if value is None:
        return recipe.launch.machine_rank
    if not value.isdigit() or int(value) >= recipe.launch.num_machines:
        raise ErvError(f"{MACHINE_RANK_ENV}={value!r}: must be a machine rank from 0 to "
                       f"{recipe.launch.num_machines - 1} ($.launch.num_machines in "
                       f"{recipe.source})")
    return int(value)


def launch_command(recipe: Recipe, run_dir: Path, stage: str, *, force: bool = False,
                   extra_plugins: Sequence[str] = ()) -> list[str]:
    """The ``accelerate launch`` command line that runs ``stage`` of ``recipe``.

    ``extra_plugins``: modules registered at run time (``Plugins(extra=...)``, tests);
    each launched process registers them too.
    """
    launch = recipe.launch
    cmd = [sys.executable, "-m", "accelerate.commands.launch",
           "--num_processes", str(launch.num_processes),
           "--num_machines", str(launch.num_machines),
           "--mixed_precision", launch.mixed_precision, "--dynamo_backend", "no"]
    if launch.num_machines > 1:
        cmd += ["--machine_rank", str(machine_rank(recipe)),
                "--main_process_ip", str(launch.main_process_ip),
                "--main_process_port", str(launch.main_process_port)]
    if launch.deepspeed:
        cmd += ["--use_deepspeed", "--deepspeed_config_file", str(launch.deepspeed),
                "--zero3_init_flag", "true"]
    else:
        cmd += ["--multi_gpu"]
    if not recipe.source:
        raise ErvError("a multi-process run needs a recipe file (recipe.source is empty)")
    cmd += [str(Path(__file__).resolve()), recipe.source, "--run-dir", str(run_dir),
            "--stage", stage]
    if force:
        cmd.append("--force")
    for module in extra_plugins:
        cmd += ["--plugin", module]
    return cmd


def launch_stage(ctx: StageContext, stage: str) -> dict[str, Any]:
    """Run ``stage`` in ``num_processes`` processes and return the summary of rank 0."""
    manual = [info.name for info in ctx.plugins.describe() if info.source == "manual"]
    cmd = launch_command(ctx.recipe, ctx.run_dir, stage, force=ctx.force, extra_plugins=manual)
    ctx.echo("erv: launching: accelerate launch " + " ".join(cmd[3:]))
    # The interpreter's own bin directory first: DeepSpeed builds its CPU op with the
    # `ninja` installed beside it, even when the virtual environment is not activated.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, LAUNCHED_ENV: "1", "PATH": path}
    summary = ctx.out / summary_name(machine_rank(ctx.recipe))
    summary.unlink(missing_ok=True)
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise ErvError(f"stage {stage}: the launched processes failed (exit {proc.returncode}); "
                       f"command: {' '.join(cmd)}")
    return json.loads(summary.read_text()) if summary.exists() else {}


def _child(argv: list[str]) -> int:
    import argparse
    import importlib

    import torch.distributed as dist

    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import StageContext, build_stage

    parser = argparse.ArgumentParser(prog="erv-launched-stage")
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--stage", required=True)  # a registered LaunchedStage
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--plugin", action="append", default=[])
    ns = parser.parse_args(argv)
    os.environ[LAUNCHED_ENV] = "1"
    plugins = Plugins(extra=[importlib.import_module(m) for m in ns.plugin])
    recipe = load_recipe(ns.recipe, plugins)
    stage = build_stage(plugins, recipe, ns.stage)
    if not isinstance(stage, LaunchedStage):
        raise ErvError(f"stage {ns.stage!r} is not a LaunchedStage: it cannot be launched")
    recipe.run_dir = ns.run_dir
    run_dir = Path(ns.run_dir)
    out = run_dir / ns.stage
    ctx = StageContext(recipe, run_dir, out, plugins, ns.force,
                       echo=print if int(os.environ.get("RANK", "0")) == 0 else (lambda _m: None))
    result = stage.run(ctx)
    # Each machine's first process writes its machine's summary (rank 0's is the run's).
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        (out / summary_name(machine_rank(recipe))).write_text(json.dumps(result) + "\n")
    # Without these, about one run in eleven aborted at shutdown (docs/stack.md).
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    # Run as a file by accelerate: take _child from the imported module, so that
    # ``LaunchedStage`` is the class the registered stages subclass (not __main__'s copy).
    from erv_plugins.training.launching import _child as child

    sys.exit(child(sys.argv[1:]))

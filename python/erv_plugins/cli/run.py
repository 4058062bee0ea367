"""``erv run RECIPE``: run a recipe's stages in order."""

from __future__ import annotations

from typing import Any

import click

from erv_plugins.cli.options import recipe_argument


@click.command()
@recipe_argument
@click.option("--force", is_flag=True, help="Rerun stages whose outputs already exist.")
@click.option("--dry-run", is_flag=True,
              help="Print the fully resolved configuration of every stage and exit.")
@click.option("--stage", "only", multiple=True, metavar="NAME",
              help="Run only this stage (repeatable); the others are left as they are.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Where outputs go (default: the recipe's run_dir, else runs/<name>/).")
def run(recipe: str, force: bool, dry_run: bool, only: tuple[str, ...], run_dir: str | None) -> None:
    """Run the stages of RECIPE (sft, verifier, grpo, eval) in order.

    Each stage writes into the run directory (printed at start). A stage whose outputs
    exist is skipped unless --force; an interrupted run resumes where it stopped.

    \b
    Examples:
      erv run recipes/tiny_cpu.toml
      erv run recipes/paper_0_5b.toml --dry-run
      erv run recipes/tiny_cpu.toml --stage grpo --force
    """
    from erv_plugins.errors import ErvError
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe, to_toml
    from erv_plugins.stages import run_recipe

    plugins = get_plugins()
    loaded = load_recipe(recipe, plugins)
    if run_dir is not None:
        loaded.run_dir = run_dir
    for name in only:
        if name not in loaded.stages:
            raise ErvError(f"--stage {name}: the recipe's stages are {', '.join(loaded.stages)}")
    if dry_run:
        click.echo(to_toml(loaded.to_builtins()), nl=False)
        click.echo(trainer_arguments_text(loaded, plugins), nl=False)
        return
    run_recipe(loaded, plugins, force=force, only=only or None)


def trainer_arguments_text(recipe: Any, plugins: Any) -> str:
    """Per training stage, the arguments erv hands its trainer, by the trainer's own names
    (TRL's ``use_bias_correction_kl``, ``top_k``, transformers' ``lr_scheduler_type`` ...),
    as TOML comments, so they can be compared with another code base's launch script."""
    from erv_plugins.recipe import to_toml
    from erv_plugins.stages import build_stage

    out = []
    run_dir = recipe.resolved_run_dir()
    for name in recipe.stages:
        stage = build_stage(plugins, recipe, name)
        arguments = getattr(stage, "trainer_arguments", None)
        if arguments is None:
            continue
        cls, settings = arguments(recipe, run_dir)
        unset = sorted(k for k, v in settings.items() if v is None)
        body = to_toml({k: v for k, v in settings.items() if v is not None})
        lines = [f"# stage {name}: {cls}(**arguments) on this machine"
                 + (f"; left unset (None): {', '.join(unset)}" if unset else "")]
        lines += [f"#   {line}" if line else "#" for line in body.splitlines()]
        out.append("\n".join(lines) + "\n")
    return ("\n" + "\n".join(out)) if out else ""

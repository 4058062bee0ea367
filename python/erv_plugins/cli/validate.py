"""``erv validate RECIPE``: check a recipe against the installed plugins."""

from __future__ import annotations

import click

from erv_plugins.cli.options import recipe_argument


@click.command()
@recipe_argument
@click.option("--paths", is_flag=True,
              help="Also check that every path the stages need exists (data, checkpoints, "
                   "DeepSpeed config), as `erv run` does before it starts anything.")
def validate(recipe: str, paths: bool) -> None:
    """Check RECIPE: TOML syntax, every field's type and range, the rules between fields,
    included recipes, plugin names and each plugin's own options. Prints "ok" or one
    error naming the file and the path inside it (exit code 2). With --paths, every
    missing path is listed at once."""
    from erv_plugins.recipe import load_recipe

    loaded = load_recipe(recipe)
    checked = ""
    if paths:
        from erv_plugins.plugins import get_plugins
        from erv_plugins.preflight import require_paths

        require_paths(loaded, get_plugins())
        checked = "; every path the stages need is there"
    click.echo(f"{recipe}: ok ({loaded.name}: stages {', '.join(loaded.stages) or 'none'})"
               + checked)

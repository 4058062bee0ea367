"""``erv validate RECIPE``: check a recipe against the installed plugins."""

from __future__ import annotations

import click

from erv_plugins.cli.options import recipe_argument


@click.command()
@recipe_argument
def validate(recipe: str) -> None:
    """Check RECIPE: TOML syntax, every field's type, included recipes, plugin names and
    each plugin's own options. Prints "ok" or one error naming the file and the path
    inside it (exit code 2)."""
    from erv_plugins.recipe import load_recipe

    loaded = load_recipe(recipe)
    click.echo(f"{recipe}: ok ({loaded.name}: stages {', '.join(loaded.stages) or 'none'})")

"""Arguments and options shared by several commands."""

from __future__ import annotations

import click

recipe_argument = click.argument("recipe", type=click.Path(dir_okay=False), metavar="RECIPE")

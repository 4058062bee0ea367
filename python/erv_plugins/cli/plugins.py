"""``erv plugins``: what is installed and what each plugin registered."""

from __future__ import annotations

import dataclasses
import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option("--all", "show_all", is_flag=True,
              help="Include the built-in plugins in the human-readable list.")
def plugins(as_json: bool, show_all: bool) -> None:
    """List the loaded plugins and the components each one registered.

    Built-in components are plugins too. Third-party plugins come from the entry-point
    group "erv_plugins"; set ERV_LOAD_PLUGINS to a comma list of names to load only those.
    """
    from erv_plugins.plugins import get_plugins

    infos = get_plugins().describe()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return
    for info in infos:
        if info.source == "builtin" and not show_all and not info.registered:
            continue
        version = f" {info.version}" if info.version else ""
        click.echo(f"{info.name}{version} ({info.source})")
        for kind, names in sorted(info.registered.items()):
            click.echo(f"  {kind}s: {', '.join(names)}")

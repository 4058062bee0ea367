"""The built-in commands, registered through the same hook a plugin uses."""

from __future__ import annotations

import importlib

import click

from erv_plugins.hookspecs import hookimpl

# (module, command attribute); modules import their heavy dependencies lazily.
BUILTIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("erv_plugins.cli.run", "run"),
    ("erv_plugins.cli.validate", "validate"),
    ("erv_plugins.cli.plugins", "plugins"),
    ("erv_plugins.cli.reward", "reward"),
    ("erv_plugins.cli.train_verifier", "train_verifier"),
    ("erv_plugins.cli.augment", "augment"),
    ("erv_plugins.cli.data", "data"),
    ("erv_plugins.cli.eval", "eval_"),
    ("erv_plugins.cli.new_plugin", "new_plugin"),
    ("erv_plugins.cli.download", "download"),
)


@hookimpl
def erv_register_commands(cli: click.Group) -> None:
    for module, attr in BUILTIN_COMMANDS:
        cli.add_command(getattr(importlib.import_module(module), attr))

"""Built-in datasets, registered through ``erv_register_datasets`` like any third-party plugin."""

from __future__ import annotations

from erv_plugins.hookspecs import hookimpl
from erv_plugins.plugins import Register


@hookimpl
def erv_register_datasets(register: Register) -> None:
    pass

"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class ErvError(Exception):
    """A user-facing error: bad input, bad configuration, missing file.

    The message names the thing and the place (file, path inside it, what was expected).
    """


class RecipeError(ErvError):
    """A recipe that cannot be loaded or does not fit the installed plugins."""


class PluginError(ErvError):
    """A plugin that cannot be loaded or that conflicts with another one."""

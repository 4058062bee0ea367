from __future__ import annotations

import sys
from pathlib import Path

import pytest

import erv_plugins.plugins as plugins_mod
from erv_plugins.plugins import Plugins, reset_plugins

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Each test sees the plugins as installed, not as an earlier test left them."""
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture
def toy_plugins() -> Plugins:
    """The installed plugins plus tests/toy_plugin.py (a 'toy' reward, a 'toyset' dataset)."""
    import toy_plugin

    plugins = Plugins(extra=[toy_plugin])
    plugins_mod._plugins = plugins
    return plugins

from __future__ import annotations

import pytest

from erv_plugins.plugins import reset_plugins


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Each test sees the plugins as installed, not as an earlier test left them."""
    reset_plugins()
    yield
    reset_plugins()

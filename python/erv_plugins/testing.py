"""pytest plugin with fixtures for erv plugin authors (loaded through the pytest11 entry point)."""

from __future__ import annotations

"""docs/architecture.md is the project map: every file or folder it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "python" / "erv_plugins"
DOC = REPO / "docs" / "architecture.md"
# A path: words joined by "/" (a folder ends with one) or a file name with an extension.
# Names of a kind of file rather than of one file ("each package's base.py", a run's report).
GENERIC = {"base.py", "builtin.py", "recipe.toml", "report.md"}
PATH = re.compile(r"(?<![\w<./-])((?:[\w.-]+/)+(?:[\w.-]+\.\w+)?|[\w-]+\.(?:py|pyi|md|toml|json))(?![\w/])")


def named_paths(text: str) -> list[str]:
    return sorted({m.group(1) for m in PATH.finditer(text) if not m.group(1).startswith(".")})


def test_named_paths_are_found_in_text() -> None:
    assert named_paths("`rewards/engine.py`, `cli/` and <run dir>/sft/model, docs/hooks.md") \
        == ["cli/", "docs/hooks.md", "rewards/engine.py"]


def test_every_path_the_map_names_exists() -> None:
    paths = named_paths(DOC.read_text(encoding="utf-8"))
    assert "training/launching.py" in paths and "testing/judges.py" in paths
    missing = [p for p in paths if p not in GENERIC
               and not (PACKAGE / p).exists() and not (REPO / p).exists()]
    assert missing == []

"""docs/hooks.md is generated from the hookspec docstrings and must match them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_hooks_doc", ROOT / "scripts" / "gen_hooks_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_hook_reference_is_up_to_date():
    expected = _generator().render()
    committed = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert committed == expected, "docs/hooks.md is stale: run python scripts/gen_hooks_doc.py"


def test_every_hook_is_documented_with_its_signature():
    from erv_plugins import hookspecs

    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    hooks = [n for n in dir(hookspecs) if n.startswith("erv_")]
    assert len(hooks) == 8
    for name in hooks:
        assert f"## {name}\n" in text
        assert f"def {name}(" in text
    assert "def erv_register_rewards(register: Register) -> None: ..." in text
    assert "``" not in text.replace("```", "")  # reStructuredText literals became Markdown

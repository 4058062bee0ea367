"""docs/hooks.md is generated from the hookspec docstrings and must match them."""

from __future__ import annotations

import importlib.util
import re
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
    prose = re.sub(r"(?s)```.*?```", "", text)  # outside code blocks
    assert "``" not in prose  # reStructuredText literals became Markdown


def test_contracts_are_shown_from_their_source():
    text = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    for name in ("Reward", "RewardBatch", "Verifier", "Judge", "Verdict", "Dataset", "Sample"):
        assert f"### {name} (" in text
    assert "    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:" in text

"""text.py without the native module: the pure twin answers, with the same errors."""

from __future__ import annotations

import pytest

from erv_plugins import text
from erv_plugins.text import Parsed


@pytest.fixture
def pure_only(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(text, "_native", None)


def test_falls_back_to_the_pure_twin(pure_only):
    assert text.parse_completion("<think>a</think><answer>b</answer>") == Parsed(True, "a", "b")
    assert text.split_sentences_batch(["Dr. Who. Yes"], "pragmatic") == [["Dr. Who.", "Yes"]]
    with pytest.raises(TypeError, match=r"texts\[0\] is int, expected str"):
        text.split_sentences_batch([3])  # type: ignore[list-item]

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
    distinct, ids, counts = text.split_sentences_unique(["A. B.", "B. A. A."])
    assert (distinct, ids.tolist(), counts.tolist()) == (["A.", "B."], [0, 1, 1, 0, 0], [2, 3])
    assert not ids.flags.writeable
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes, expected str"):
        text.split_sentences_unique(["a", b"b"])  # type: ignore[list-item]
    parsed, distinct, ids, counts = text.parse_and_split_unique(["<think>A. A.</think>", "x"])
    assert parsed == [Parsed(False, "A. A.", None), Parsed(False, None, None)]
    assert (distinct, ids.tolist(), counts.tolist()) == (["A."], [0, 0], [2, 0])

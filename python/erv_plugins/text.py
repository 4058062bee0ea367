"""Completion parsing and sentence segmentation: the text work of the reward hot path.

``parse_completion`` finds the ``<think>`` explanation and the ``<answer>`` of a completion
and checks the paper's format; ``split_sentences`` splits an explanation into the
sentences S_i of Algorithm 1. The native module ``erv_plugins._native`` does this work when
it is built; ``erv_plugins._text_pure`` is its pure-Python twin with the same results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from erv_plugins._text_pure import Parsed

Mode = Literal["paper", "pragmatic"]

try:  # pragma: no cover - exercised by whichever build is present
    from erv_plugins import _native as _impl  # type: ignore[attr-defined]

    if not hasattr(_impl, "parse_completions"):
        raise ImportError
    NATIVE = True
except ImportError:  # pragma: no cover
    from erv_plugins import _text_pure as _impl  # type: ignore[no-redef]

    NATIVE = False

__all__ = ["NATIVE", "Mode", "Parsed", "parse_completion", "parse_completions",
           "split_sentences", "split_sentences_batch"]


def parse_completion(text: str) -> Parsed:
    """Format check, explanation and answer of one completion."""
    return parse_completions([text])[0]


def parse_completions(texts: Sequence[str]) -> list[Parsed]:
    return _impl.parse_completions(list(texts))


def split_sentences(text: str, mode: Mode = "paper") -> list[str]:
    """The sentences of ``text`` (Algorithm 1, line 3)."""
    return split_sentences_batch([text], mode)[0]


def split_sentences_batch(texts: Sequence[str], mode: Mode = "paper") -> list[list[str]]:
    if mode not in ("paper", "pragmatic"):
        raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")
    return _impl.split_sentences_batch(list(texts), mode)

"""Completion parsing and sentence segmentation: the text work of the reward hot path.

``parse_completion`` finds the ``<think>`` explanation and the ``<answer>`` of a completion
and checks the paper's format; ``split_sentences`` splits an explanation into the
sentences S_i of Algorithm 1; ``split_sentences_unique`` does that for a batch and keeps each
distinct sentence once. The native module ``erv_plugins._native`` does this work when
it is built; ``erv_plugins._text_pure`` is its pure-Python twin with the same results.

Modes: ``"paper"`` is the release's split regex exactly (split on whitespace after ``.``, ``!``
or ``?`` where an even number of ``"`` follows; pieces kept unstripped). ``"pragmatic"`` is
rule-based English segmentation (abbreviations, initials, decimals, ellipses, quotes, lists
inline or one item a line, a.m./p.m., coordinates, reference marks, URLs); its pieces are
stripped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from erv_plugins import _text_pure
from erv_plugins._text_pure import Parsed

Mode = Literal["paper", "pragmatic"]

try:  # pragma: no cover - exercised by whichever build is present
    from erv_plugins import _native

    if not all(hasattr(_native, f) for f in (
            "parse_completions", "split_sentences_batch", "parse_and_split", "split_unique",
            "parse_and_split_unique")):
        raise ImportError("erv_plugins._native predates the text functions")
    NATIVE = True
except ImportError:  # pragma: no cover
    _native = None  # type: ignore[assignment]
    NATIVE = False

__all__ = ["NATIVE", "Mode", "Parsed", "parse_and_split", "parse_and_split_unique",
           "parse_completion",
           "parse_completions", "split_sentences", "split_sentences_batch",
           "split_sentences_unique"]

_MODES = ("paper", "pragmatic")


def parse_completion(text: str) -> Parsed:
    """Format check, explanation and answer of one completion."""
    return parse_completions([text])[0]


def parse_completions(texts: Sequence[str]) -> list[Parsed]:
    """``parse_completion`` for a whole batch in one native call (the GIL is released)."""
    texts = _as_list(texts)
    if _native is None:
        return _text_pure.parse_completions(_checked(texts))
    return _native.parse_completions(texts, cls=Parsed)


def split_sentences(text: str, mode: Mode = "paper") -> list[str]:
    """The sentences of ``text`` (Algorithm 1, line 3)."""
    return split_sentences_batch([text], mode)[0]


def split_sentences_batch(texts: Sequence[str], mode: Mode = "paper") -> list[list[str]]:
    """``split_sentences`` for a whole batch: one list of sentences per text. A sentence that
    occurs more than once in the batch is one str object, built once."""
    if mode not in _MODES:
        raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")
    texts = _as_list(texts)
    if _native is None:
        return _text_pure.split_sentences_batch(_checked(texts), mode)
    return _native.split_sentences_batch(texts, mode)


def split_sentences_unique(texts: Sequence[str], mode: Mode = "paper"
                           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The sentences of a batch with each distinct sentence once: ``(distinct, ids, counts)``.

    ``distinct`` holds the distinct sentences in order of first occurrence, ``ids`` (int64,
    one per sentence, in order) indexes each sentence into ``distinct``, and ``counts`` (int64,
    one per text) says how many sentences each text has, so text ``i``'s sentences are
    ``[distinct[j] for j in ids[counts[:i].sum():][:counts[i]]]``. What the explanation
    reward needs: only the distinct sentences become Python strings (a GRPO batch repeats
    many), and the rest stays in arrays. The arrays are read-only.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")
    texts = _as_list(texts)
    if _native is None:
        distinct, id_list, count_list = _text_pure.split_unique(_checked(texts), mode)
        ids = np.array(id_list, dtype=np.int64)
        counts = np.array(count_list, dtype=np.int64)
        ids.flags.writeable = counts.flags.writeable = False
        return distinct, ids, counts
    distinct, id_bytes, count_bytes = _native.split_unique(texts, mode)
    return distinct, np.frombuffer(id_bytes, np.int64), np.frombuffer(count_bytes, np.int64)


def parse_and_split_unique(texts: Sequence[str], mode: Mode = "paper"
                           ) -> tuple[list[Parsed], list[str], np.ndarray, np.ndarray]:
    """``parse_completions`` and ``split_sentences_unique`` of the explanations (``think``; no
    think block -> no sentences) in one native pass: ``(parsed, distinct, ids, counts)``."""
    if mode not in _MODES:
        raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")
    texts = _as_list(texts)
    if _native is None:
        parsed, distinct, id_list, count_list = _text_pure.parse_and_split_unique(
            _checked(texts), mode)
        ids = np.array(id_list, dtype=np.int64)
        counts = np.array(count_list, dtype=np.int64)
        ids.flags.writeable = counts.flags.writeable = False
        return parsed, distinct, ids, counts
    parsed, distinct, id_bytes, count_bytes = _native.parse_and_split_unique(texts, mode, cls=Parsed)
    return (parsed, distinct, np.frombuffer(id_bytes, np.int64),
            np.frombuffer(count_bytes, np.int64))


def parse_and_split(texts: Sequence[str], mode: Mode = "paper") -> tuple[list[Parsed], list[list[str]]]:
    """``parse_completions`` and the sentences of each explanation (``think``; no think block ->
    no sentences), in one native pass: what the reward engine needs for a GRPO batch."""
    if mode not in _MODES:
        raise ValueError(f"unknown segmentation mode {mode!r}; expected 'paper' or 'pragmatic'")
    texts = _as_list(texts)
    if _native is None:
        return _text_pure.parse_and_split(_checked(texts), mode)
    return _native.parse_and_split(texts, mode, cls=Parsed)


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str, not a single str")
    return texts if type(texts) is list else list(texts)


def _checked(texts: list[str]) -> list[str]:
    """The native module names a non-str item itself; the pure path checks here, alike."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return texts

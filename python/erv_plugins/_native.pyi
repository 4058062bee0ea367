"""Stub of the Rust module ``erv_plugins._native`` (rust/src/lib.rs). Use ``erv_plugins.text``.

Every function takes a list of str (lone surrogates allowed) and raises TypeError naming the
first item that is not a str. ``parallel``: None lets the module choose (rayon for batches of
256 KiB or more), True/False forces it. The GIL is released while the texts are scanned.
"""

from typing import Any, Literal

__version__: str

def parse_completions(
    texts: list[str], *, parallel: bool | None = None, cls: type[Any] | None = None
) -> list[Any]:
    """(format_ok, think, answer) per text, exactly as the release's regexes find them; with
    ``cls`` (a frozen slots dataclass with those three fields, i.e. ``Parsed``) an instance of
    it per text, built without calling its ``__init__``."""

def split_sentences_batch(
    texts: list[str], mode: Literal["paper", "pragmatic"] = "paper", *, parallel: bool | None = None
) -> list[list[str]]:
    """The sentences of each text; ValueError for an unknown mode."""

def parse_and_split(
    texts: list[str],
    mode: Literal["paper", "pragmatic"] = "paper",
    *,
    parallel: bool | None = None,
    cls: type[Any] | None = None,
) -> tuple[list[Any], list[list[str]]]:
    """``parse_completions`` plus the sentences of each think span (none without one)."""

def split_unique(
    texts: list[str], mode: Literal["paper", "pragmatic"] = "paper", *, parallel: bool | None = None
) -> tuple[list[str], bytes, bytes]:
    """The sentences of the batch, each distinct one once: (distinct sentences in order of
    first occurrence, the index into them of every sentence, the number of sentences per
    text), both as native-endian int64 bytes for ``numpy.frombuffer``."""

def parse_and_split_unique(
    texts: list[str],
    mode: Literal["paper", "pragmatic"] = "paper",
    *,
    parallel: bool | None = None,
    cls: type[Any] | None = None,
) -> tuple[list[Any], list[str], bytes, bytes]:
    """``parse_completions`` plus ``split_unique`` of the think spans (none without one)."""

def label_sets(
    probs: Any, tau: float, k: int, neutral_idx: int | None = None, release_rule: bool = True
) -> tuple[bytes, bytes]:
    """Label sets of Algorithm 1 for a C-contiguous float32 matrix of probabilities (rows =
    sentences): (sets, neutral) as 0/1 bytes, rows x labels and rows. ValueError for a matrix
    that is not 2-D and contiguous, or k / neutral_idx that do not fit."""

def sentence_spans(
    texts: list[str], mode: Literal["paper", "pragmatic"] = "paper", *, parallel: bool | None = None
) -> list[list[int]]:
    """Flat [start, end, start, end, ...] byte offsets (UTF-8, surrogatepass) per text."""

def sentence_counts(
    texts: list[str], mode: Literal["paper", "pragmatic"] = "paper", *, parallel: bool | None = None
) -> list[int]:
    """Number of sentences per text, without building them."""

def memchr_scan(texts: list[str]) -> int:
    """Count of ``<`` bytes in all texts via memchr: the floor tag parsing is compared with."""

def tag_scan(texts: list[str]) -> tuple[int, int, int]:
    """Tag parsing without Python objects: counts of format_ok, think found, answer found."""

def pragmatic_lists() -> list[tuple[str, list[str]]]:
    """The word lists of pragmatic mode (titles, never_end, number_abbr, sometimes_end,
    starters, time_qualifiers, fronting, exclamation_words), for the twin test."""

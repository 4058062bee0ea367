"""Stub of the Rust module ``erv_plugins._native`` (rust/src/lib.rs). Use ``erv_plugins.text``.

Every text function takes a list of str (lone surrogates allowed) and raises TypeError naming
the first item that is not a str. ``parallel``: None lets the module choose (rayon for batches
of 256 KiB or more), True/False forces it. The GIL is released while the texts are scanned.
``memchr_scan`` and ``tag_scan`` exist only in a build with the cargo feature ``bench``
(rust/src/bench.rs; dev installs from scripts/setup). tests/test_native_stub.py keeps this
file and the module's names and parameters in step.
"""

from typing import Literal, TypeVar, overload

from typing_extensions import Buffer

__version__: str

_Mode = Literal["paper", "pragmatic"]
# (format_ok, think, answer): the release's regexes' view of one completion.
_ParsedTuple = tuple[bool, str | None, str | None]
# A frozen slots dataclass with the fields format_ok, think and answer (erv's ``Parsed``).
_P = TypeVar("_P")

@overload
def parse_completions(
    texts: list[str], *, parallel: bool | None = None, cls: None = None
) -> list[_ParsedTuple]: ...
@overload
def parse_completions(texts: list[str], *, parallel: bool | None = None, cls: type[_P]) -> list[_P]: ...
def parse_completions(
    texts: list[str], *, parallel: bool | None = None, cls: type[_P] | None = None
) -> list[_ParsedTuple] | list[_P]:
    """(format_ok, think, answer) per text, exactly as the release's regexes find them; with
    ``cls`` (a frozen slots dataclass with those three fields, i.e. ``Parsed``) an instance of
    it per text, built without calling its ``__init__``."""

def split_sentences_batch(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None
) -> list[list[str]]:
    """The sentences of each text; ValueError for an unknown mode."""

@overload
def parse_and_split(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None, cls: None = None
) -> tuple[list[_ParsedTuple], list[list[str]]]: ...
@overload
def parse_and_split(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None, cls: type[_P]
) -> tuple[list[_P], list[list[str]]]: ...
def parse_and_split(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None, cls: type[_P] | None = None
) -> tuple[list[_ParsedTuple] | list[_P], list[list[str]]]:
    """``parse_completions`` plus the sentences of each think span (none without one)."""

def split_unique(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None
) -> tuple[list[str], bytes, bytes]:
    """The sentences of the batch, each distinct one once: (distinct sentences in order of
    first occurrence, the index into them of every sentence, the number of sentences per
    text), both as native-endian int64 bytes for ``numpy.frombuffer``."""

@overload
def parse_and_split_unique(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None, cls: None = None
) -> tuple[list[_ParsedTuple], list[str], bytes, bytes]: ...
@overload
def parse_and_split_unique(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None, cls: type[_P]
) -> tuple[list[_P], list[str], bytes, bytes]: ...
def parse_and_split_unique(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None, cls: type[_P] | None = None
) -> tuple[list[_ParsedTuple] | list[_P], list[str], bytes, bytes]:
    """``parse_completions`` plus ``split_unique`` of the think spans (none without one)."""

def label_sets(
    probs: Buffer, tau: float, k: int, neutral_idx: int | None = None, release_rule: bool = True
) -> tuple[bytes, bytes]:
    """Label sets of Algorithm 1 for a C-contiguous float32 matrix of probabilities (rows =
    sentences; any buffer of format "f", e.g. a float32 numpy array): (sets, neutral) as 0/1
    bytes, rows x labels and rows. ValueError for a matrix that is not 2-D and contiguous, or
    k / neutral_idx that do not fit; BufferError for another element type."""

def sentence_spans(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None
) -> list[list[int]]:
    """Flat [start, end, start, end, ...] byte offsets (UTF-8, surrogatepass) per text."""

def sentence_counts(
    texts: list[str], mode: _Mode = "paper", *, parallel: bool | None = None
) -> list[int]:
    """Number of sentences per text, without building them."""

def pragmatic_lists() -> list[tuple[str, list[str]]]:
    """The word lists of pragmatic mode (titles, never_end, number_abbr, sometimes_end,
    starters, time_qualifiers, fronting, exclamation_words), for the twin test."""

# Bench-only (cargo feature ``bench``): floors the benchmarks measure the tag scan against.

def memchr_scan(texts: list[str]) -> int:
    """Count of ``<`` bytes in all texts via memchr: the floor tag parsing is compared with."""

def tag_scan(texts: list[str]) -> tuple[int, int, int]:
    """Tag parsing without Python objects: counts of format_ok, think found, answer found."""

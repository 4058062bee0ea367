"""Differential tests: native paper mode against the release's regex, native against the twin.

The release regex (``_text_pure.PAPER_SPLIT_RE``) is the ground truth for paper mode; the
pure twin's parse uses the release's tag regexes verbatim; pragmatic mode's ground truth is the
twin's plain-Python spec.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erv_plugins import _text_pure, text

pytestmark = pytest.mark.skipif(not text.NATIVE, reason="erv_plugins._native is not built")

native = text._native

# Everything the scanners treat specially, plus the awkward: all of Python's whitespace,
# multi-byte characters, NUL, lone surrogates, quotes, tags and abbreviation fragments.
WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
PIECES = WHITESPACE + [
    ".", "!", "?", "\u2026", '"', "'", "\u201c", "\u201d", "\u2018", "\u2019", "(", ")", "[", "]",
    "\u00ab", "\u00bb", "\u00bf", "\u00a1", "<think>", "</think>", "<answer>", "</answer>",
    "<think", "answer>", "<", ">", "\x00", "\u00e9", "\u00c9", "\u4e2d", "\U0001F600", "\ud800",
    "\udfff", "\u00df", "\u03a9", "\u0436", "\u0416", "A", "B", "I", "a", "b", "x", "The",
    "He", "she", "Dr", "Mr", "e.g", "etc", "U.S", "Ph.D", "No", "p", "al", "1", "12", "3.5",
    "www.", "@", "://", "-", ",", ":", ";", "\u2022", "word", "Word", "happy",
    # the rules for lists, ellipses, times, degrees and references
    "\u2043", "1)", "2)", "1.)", "2.", "a)", "b.", "c)", "ii", "iv.", "9", "10:30", "a.m", "p.m",
    "P.M", "at", "In", "the", "Monday", "EST", "Tom", "Yahoo", ". . .", "[...]", "[3]", "[2\u20139]",
    "\u00b0", "N\u00b0", "\u2032", "E", "N", " I", "7.Bg5",
]
pieces = st.lists(st.sampled_from(PIECES) | st.characters(), max_size=60).map("".join)
texts = pieces | st.text(max_size=80)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def release_split(t: str) -> list[str]:
    return [s for s in _text_pure.PAPER_SPLIT_RE.split(t) if s]


@FAST
@given(st.lists(texts, max_size=8))
def test_paper_mode_equals_the_release_regex(batch):
    assert native.split_sentences_batch(batch, "paper") == [release_split(t) for t in batch]


@FAST
@given(st.lists(texts, max_size=8))
def test_parse_equals_the_release_regexes(batch):
    assert text.parse_completions(batch) == _text_pure.parse_completions(batch)


@FAST
@given(st.lists(texts, max_size=8), st.sampled_from(["paper", "pragmatic"]))
def test_parse_and_split_equals_the_twin(batch, mode):
    parsed, sentences = text.parse_and_split(batch, mode)
    assert (parsed, sentences) == _text_pure.parse_and_split(batch, mode)


@FAST
@given(st.lists(texts, max_size=8))
def test_pragmatic_mode_equals_the_twin(batch):
    got = native.split_sentences_batch(batch, "pragmatic")
    assert got == _text_pure.split_sentences_batch(batch, "pragmatic")
    for t, sentences in zip(batch, got, strict=True):
        # sentences are stripped, non-empty pieces of the text, in order, losing only whitespace
        assert all(s and s == s.strip() for s in sentences)
        assert "".join("".join(sentences).split()) == "".join(t.split())


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=40).map("".join),
       st.integers(min_value=200, max_value=2000))
def test_long_repeated_inputs(unit, times):
    long = unit * times
    assert native.split_sentences_batch([long], "paper") == [release_split(long)]
    assert text.parse_completions([long]) == _text_pure.parse_completions([long])
    assert native.split_sentences_batch([long], "pragmatic") == [_text_pure.split_pragmatic(long)]


def test_every_code_point_after_a_terminator():
    # The whitespace table must be Python's \s exactly: try each BMP code point (all of
    # Python's whitespace is there) and every 7th astral one after "a."
    cps = [chr(c) for c in [*range(0x10000), *range(0x10000, sys.maxunicode + 1, 7)]]
    batch = ["a." + c + "b" for c in cps]
    got = native.split_sentences_batch(batch, "paper")
    want_split = {c for c in cps if c.isspace()}
    assert [c for c, g in zip(cps, got, strict=True) if len(g) == 2] == sorted(want_split)
    # and str.strip() for think/answer
    parsed = text.parse_completions(["<think>" + c + "x" + c + "</think>" for c in WHITESPACE + ["\u200b", "\ufeff"]])
    assert [p.think for p in parsed] == ["x"] * len(WHITESPACE) + ["\u200bx\u200b", "\ufeffx\ufeff"]


def test_no_terminators_and_long_quotes():
    long = "word " * 200_000  # 1 MB, no terminator
    assert native.split_sentences_batch([long], "paper") == [[long]]
    quoted = ('"He said. Then. ' * 1500) + 'end. x'
    assert native.split_sentences_batch([quoted], "paper") == [release_split(quoted)]


@FAST
@given(st.lists(texts | st.sampled_from(["A. B.", "B. A.", "A."]), max_size=10),
       st.sampled_from(["paper", "pragmatic"]))
def test_split_unique_equals_the_twin(batch, mode):
    distinct, ids, counts = text.split_sentences_unique(batch, mode)
    assert (distinct, ids.tolist(), counts.tolist()) == _text_pure.split_unique(batch, mode)


@FAST
@given(st.lists(texts | st.sampled_from(["<think>A. B.</think><answer>x</answer>", "<think>B. A.</think>"]),
                max_size=10), st.sampled_from(["paper", "pragmatic"]))
def test_parse_and_split_unique_equals_the_twin(batch, mode):
    parsed, distinct, ids, counts = text.parse_and_split_unique(batch, mode)
    want = _text_pure.parse_and_split_unique(batch, mode)
    assert (parsed, distinct, ids.tolist(), counts.tolist()) == want

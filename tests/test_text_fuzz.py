"""Bounded-time fuzzing of the native text functions, and inputs that must not break them.

``ERV_FUZZ_SECONDS`` (default 3) bounds the random differential run; ``ERV_FUZZ_SEED`` replays
a reported failure. A finding is a native result that differs from the release regex / twin,
or any exception other than the documented TypeError/ValueError.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from erv_plugins import _text_pure, text

pytestmark = pytest.mark.skipif(not text.NATIVE, reason="erv_plugins._native is not built")
native = text._native

ALPHABET = [".", "!", "?", "\u2026", '"', "'", "\u201d", ")", "(", " ", "  ", "\n", "\r\n", "\t",
            "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "\x00", "\u00e9", "\U0001F600", "\ud83d",
            "\udc00", "<think>", "</think>", "<answer>", "</answer>", "<", "A", "a", "The", "he",
            "Dr", "e.g", "U.S", "No", "1", "3.5", "@", "www.", "-", "\u2022", "\u2043", "1)", "2)",
            "2.", "b.", "ii", "9", "a.m", "p.m", "at", "Monday", "Yahoo", ". . .", "[...]", "[3]",
            "\u00b0", "N\u00b0", "E", "I"]


def _random_text(rng: random.Random) -> str:
    n = rng.choice([0, 1, 3, 10, 40, 200])
    parts = []
    for _ in range(n):
        if rng.random() < 0.15:
            parts.append(chr(rng.randrange(0x110000)))
        else:
            parts.append(rng.choice(ALPHABET))
    return "".join(parts)


def test_fuzz_native_against_references_for_a_bounded_time():
    seed = int(os.environ.get("ERV_FUZZ_SEED", time.time_ns() % 2**32))
    budget = float(os.environ.get("ERV_FUZZ_SECONDS", "3"))
    rng = random.Random(seed)
    deadline = time.monotonic() + budget
    rounds = 0
    while time.monotonic() < deadline:
        batch = [_random_text(rng) for _ in range(16)]
        ctx = f"ERV_FUZZ_SEED={seed} round {rounds}: {batch!r}"
        assert native.split_sentences_batch(batch, "paper") == \
            [_text_pure.split_paper(t) for t in batch], ctx
        assert text.parse_completions(batch) == _text_pure.parse_completions(batch), ctx
        assert native.split_sentences_batch(batch, "pragmatic") == \
            [_text_pure.split_pragmatic(t) for t in batch], ctx
        mode = rng.choice(["paper", "pragmatic"])
        assert text.parse_and_split(batch, mode) == _text_pure.parse_and_split(batch, mode), ctx
        rounds += 1
    assert rounds > 0


def test_ten_megabytes_of_text():
    big = ("The man frowns, e.g. at 5 p.m. He says \"No. Never.\" Then\u2026 " * 160_000)[:10_000_000]
    start = time.perf_counter()
    parsed = text.parse_completions(["<think>" + big + "</think><answer>anger</answer>"])
    paper = native.split_sentences_batch([big], "paper")[0]
    pragmatic = native.split_sentences_batch([big], "pragmatic")[0]
    assert time.perf_counter() - start < 20  # linear time; about 0.5 s on a quiet core
    assert parsed[0].format_ok and parsed[0].answer == "anger" and parsed[0].think == big.strip()
    assert "".join(paper).replace(" ", "") == big.replace(" ", "")
    assert pragmatic[:3] == ["The man frowns, e.g. at 5 p.m.", 'He says "No.', 'Never."']


def test_deeply_repeated_and_unclosed_tags():
    opens = "<think>" * 200_000
    assert text.parse_completion(opens) == text.Parsed(False, None, None)
    closed = opens + "</think>" * 200_000 + "<answer>" * 200_000 + "x</answer>"
    assert text.parse_completion(closed) == text.Parsed(True, opens[7:], "<answer>" * 199_999 + "x")
    lines = "<answer>a\n" * 100_000
    assert text.parse_completion(lines) == text.Parsed(False, None, None)
    assert text.parse_completion(lines + "<answer>b</answer>") == text.Parsed(False, None, "b")
    dots = "a." * 500_000
    assert native.split_sentences_batch([dots], "pragmatic") == [[dots]]
    caps = "a.Ba" * 200_000
    assert len(native.split_sentences_batch([caps], "pragmatic")[0]) == 200_000


def test_lone_surrogates_round_trip():
    t = "\ud800He said. \udfffThen \ud83d\ude00.\ud800 Done"
    assert native.split_sentences_batch([t], "paper") == [_text_pure.split_paper(t)]
    assert native.split_sentences_batch([t], "pragmatic") == [_text_pure.split_pragmatic(t)]
    assert native.split_sentences_batch([t], "paper") == [["\ud800He said.", "\udfffThen \ud83d\ude00.\ud800 Done"]]
    # offsets are in the surrogatepass UTF-8 encoding: 3 bytes per lone surrogate
    assert native.sentence_spans([t], "paper") == [[0, 11, 12, 35]]

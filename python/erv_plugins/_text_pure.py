"""Pure-Python twin of ``erv_plugins._native``: the reference the native code must match.

Paper mode uses the authors' release regexes verbatim (see docs/reference.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The release's regexes.
FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ANSWER_RE = re.compile(r"<answer>(.*?)</answer>")  # not DOTALL, as released
PAPER_SPLIT_RE = re.compile(r'(?<=[\.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)')


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the rewards need from one completion.

    ``format_ok``: the whole completion matches ``<think>.*?</think>\\s*<answer>.*?</answer>``.
    ``think``: the first ``<think>...</think>`` (across lines), stripped; None if absent.
    ``answer``: the first ``<answer>...</answer>`` on one line, stripped; None if absent.
    """

    format_ok: bool
    think: str | None
    answer: str | None


def parse_completions(texts: list[str]) -> list[Parsed]:
    out = []
    for text in texts:
        think = THINK_RE.search(text)
        answer = ANSWER_RE.search(text)
        out.append(Parsed(
            format_ok=FORMAT_RE.fullmatch(text) is not None,
            think=think.group(1).strip() if think else None,
            answer=answer.group(1).strip() if answer else None,
        ))
    return out


def split_paper(text: str) -> list[str]:
    return [s for s in PAPER_SPLIT_RE.split(text) if s]


def split_sentences_batch(texts: list[str], mode: str) -> list[list[str]]:
    if mode == "paper":
        return [split_paper(t) for t in texts]
    raise NotImplementedError(f"segmentation mode {mode!r} has no pure-Python twin yet")

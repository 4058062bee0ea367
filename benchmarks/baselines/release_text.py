"""The release's text handling, written the way the authors' reward code does it: module-level
`re` calls with pattern strings per completion (Python's `re` caches the compiled patterns).

Sources (facts in docs/reference): utils_reward_ERV.py format / accuracy / explanation rewards.
"""

from __future__ import annotations

import re


def format_ok(content: str) -> bool:
    pattern = r"<think>.*?</think>\s*<answer>.*?</answer>"
    return re.fullmatch(pattern, content, re.DOTALL) is not None


def extract_think(content: str) -> str | None:
    m = re.search(r"<think>(.*?)</think>", content, re.DOTALL)
    return m.group(1).strip() if m else None


def extract_answer(content: str) -> str | None:
    m = re.search(r"<answer>(.*?)</answer>", content)
    return m.group(1).strip() if m else None


def split_sentences(paragraph: str) -> list[str]:
    sentences = re.split(r'(?<=[\.!?])\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', paragraph)
    return [s for s in sentences if s]


def parse_and_split(completions: list[str]) -> list[tuple[bool, str | None, str | None, list[str]]]:
    """Format check, explanation, answer and the explanation's sentences, per completion."""
    out = []
    for c in completions:
        think = extract_think(c)
        out.append((format_ok(c), think, extract_answer(c), split_sentences(think or "")))
    return out

"""The prompts of the paper's data augmentation (appendix B.1, Figures 6 and 7), and the
strict parsing of the pseudo-labelling reply."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Figure 6: "{Emotion List} is a permutation of the GT emotion label from MAFW".
LABEL_PROMPT = (
    "Read the reasoning content and respond with the appropriate emotion in {emotion_list}. "
    "Primarily output a single dominant emotion. If necessary, output up to 2 dominant "
    "emotions, separated by commas. Reply with only the emotion word.\n\n"
    "Reason: {explanation} Answer Emotion:"
)

# Figure 7: two exemplars of the target emotion drawn from the pseudo-labelled data.
COMPLEMENT_PROMPT = (
    "You are an expert in audiovisual analysis with a talent for describing emotions. "
    "Goal: Carefully interpret the video's visual, auditory, and contextual elements, then "
    "portray the Target Emotion in vivid language.\n\n"
    "Example 1 (Target Emotion: {emotion}):\n{example_1}\n\n"
    "Example 2 (Target Emotion: {emotion}):\n{example_2}\n\n"
    "Now, based on the examples and the guidelines above, generate a new description that "
    "effectively conveys the following target emotion:\n\n"
    "Target Emotion: {emotion}"
)


def permuted_labels(labels: Sequence[str], key: str, seed: int = 0) -> list[str]:
    """The label list in an order fixed by the sample (so a resumed run asks the same)."""
    order = list(labels)
    random.Random(f"{seed}:{key}").shuffle(order)
    return order


def label_prompt(explanation: str, labels: Sequence[str]) -> str:
    return LABEL_PROMPT.format(emotion_list=", ".join(labels), explanation=explanation.strip())


def complement_prompt(emotion: str, example_1: str, example_2: str) -> str:
    return COMPLEMENT_PROMPT.format(emotion=emotion, example_1=example_1.strip(),
                                    example_2=example_2.strip())


@dataclass(frozen=True)
class ParsedLabels:
    labels: tuple[str, ...]
    error: str | None = None


def parse_label_reply(reply: str, labels: Sequence[str], max_labels: int = 2) -> ParsedLabels:
    """Strict: one or two words of ``labels`` separated by commas, nothing else.

    Case, surrounding whitespace, a final period and surrounding quotes are forgiven; an
    unknown word, a sentence, an empty reply or more than ``max_labels`` labels are not.
    """
    allowed = {label.lower(): label for label in labels}
    text = reply.strip().strip("\"'`").strip()
    text = re.sub(r"[.!]+$", "", text).strip()
    if not text:
        return ParsedLabels((), "empty reply")
    parts = [p.strip().strip("\"'`").strip().lower() for p in text.split(",")]
    if any(not p for p in parts):
        return ParsedLabels((), "empty item in the list")
    unknown = [p for p in parts if p not in allowed]
    if unknown:
        return ParsedLabels((), f"not in the label list: {', '.join(unknown)[:80]}")
    found = tuple(dict.fromkeys(allowed[p] for p in parts))
    if len(found) > max_labels:
        return ParsedLabels((), f"{len(found)} labels, at most {max_labels} allowed")
    return ParsedLabels(found)


def clean_description(reply: str, *, min_chars: int = 20, max_chars: int = 4000
                      ) -> tuple[str, str | None]:
    """A generated description, or the reason it is rejected."""
    text = reply.strip()
    text = re.sub(r"^(new )?description\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    if len(text) < min_chars:
        return text, f"shorter than {min_chars} characters"
    if len(text) > max_chars:
        return text, f"longer than {max_chars} characters"
    return text, None

"""Label spaces: the emotion words of each dataset, their synonyms, and the verifier's.

Facts from the authors' release (see docs/reference.md): DFEW and MAFW answers are
normalised to the dataset's own words; the ground truth goes through the MAFW normaliser
before the GoEmotions index lookup, so DFEW's happy/sad/angry become joy/sadness/anger.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# GoEmotions order (Demszky et al. 2020): the 28-label head of the paper's verifier.
GOEMOTIONS: tuple[str, ...] = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)  # fmt: skip

DFEW_LABELS: tuple[str, ...] = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
MAFW_LABELS: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
    "anxiety", "helplessness", "disappointment",
)  # fmt: skip
EMER_LABELS: tuple[str, ...] = ("angry", "sad", "surprise", "worried", "happy")

NEUTRAL = "neutral"


def _strip_answer_tags(text: str) -> str:
    # The ground truth itself may come wrapped in <answer> tags (release behaviour).
    m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return (m.group(1) if m else text).strip()


def release_dfew(word: str) -> str:
    """The release's DFEW rule, verbatim (``match_emotion_key_DFEW`` in its
    ``open_r1/utils.py``): lower-cased, newlines dropped (no other whitespace, no tag
    stripping), then sadness->sad, anything containing "happiness"->happy, containing
    "anger"->angry."""
    word = word.lower().replace("\n", "")
    if word == "sadness":
        return "sad"
    if "happiness" in word:
        return "happy"
    if "anger" in word:
        return "angry"
    return word


_MAFW_EXACT = {"angry": "anger", "sad": "sadness", "anxious": "anxiety",
               "helpless": "helplessness", "disappointed": "disappointment"}


def release_mafw(word: str) -> str:
    """The release's MAFW rule, verbatim (``match_emotion_key_MAFW``): lower-cased,
    newlines dropped, then angry->anger, sad->sadness, anxious->anxiety,
    helpless->helplessness, disappointed->disappointment, containing "happy"->happiness,
    containing "contemptuous"->contempt."""
    word = word.lower().replace("\n", "")
    if word in _MAFW_EXACT:
        return _MAFW_EXACT[word]
    if "happy" in word:
        return "happiness"
    if "contemptuous" in word:
        return "contempt"
    return word


def normalize_dfew(word: str) -> str:
    """The release's DFEW rule on the stripped word (tags removed)."""
    return release_dfew(_strip_answer_tags(word))


def normalize_mafw(word: str) -> str:
    """The release's MAFW rule on the stripped word (tags removed)."""
    return release_mafw(_strip_answer_tags(word))


def normalize_emer(word: str) -> str:
    w = _strip_answer_tags(word).lower()
    return {"anger": "angry", "sadness": "sad", "happiness": "happy", "worry": "worried",
            "surprised": "surprise"}.get(w, w)


def normalize_plain(word: str) -> str:
    return _strip_answer_tags(word).lower()


# Dataset label -> GoEmotions label, as the release indexes its verifier head.
TO_GOEMOTIONS: dict[str, str] = {
    "happiness": "joy", "happy": "joy",
    "anger": "anger", "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "sadness": "sadness", "sad": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
    "anxiety": "nervousness",
    "helplessness": "grief",
    "disappointment": "disappointment",
    "contempt": "disapproval",
    "worried": "nervousness",
}  # fmt: skip


@dataclass(frozen=True)
class LabelSpace:
    """The emotion words of one dataset and how free text maps onto them."""

    name: str
    labels: tuple[str, ...]
    normalizer: Callable[[str], str] = normalize_plain
    # How each label is named in the verifier's label space (GoEmotions by default).
    verifier_map: Mapping[str, str] = field(default_factory=lambda: dict(TO_GOEMOTIONS))

    def normalize(self, text: str) -> str:
        """The dataset word for ``text`` (may be outside ``labels``: check ``in``)."""
        return self.normalizer(text)

    def __contains__(self, word: object) -> bool:
        return word in self.labels

    def to_verifier(self, label: str, verifier_labels: tuple[str, ...] | list[str]) -> str:
        """The verifier label that stands for dataset ``label``.

        The release passes the ground truth through the MAFW normaliser first, so the
        DFEW words map the same way. A verifier trained on the dataset's own words
        (``label in verifier_labels``) needs no mapping, nor one trained on MAFW's words
        (DFEW's ``happy`` is MAFW's ``happiness``).
        """
        if label in verifier_labels:
            return label
        word = normalize_mafw(label)
        if word in verifier_labels:
            return word
        mapped = self.verifier_map.get(word, self.verifier_map.get(label))
        if mapped is None or mapped not in verifier_labels:
            raise KeyError(
                f"label {label!r} of {self.name} has no counterpart among the verifier's "
                f"labels ({', '.join(verifier_labels)})"
            )
        return mapped


DFEW = LabelSpace("dfew", DFEW_LABELS, normalize_dfew)
MAFW = LabelSpace("mafw", MAFW_LABELS, normalize_mafw)
EMER = LabelSpace("emer", EMER_LABELS, normalize_emer)
GOEMOTIONS_SPACE = LabelSpace("goemotions", GOEMOTIONS, normalize_plain,
                              verifier_map={g: g for g in GOEMOTIONS})

BUILTIN_LABEL_SPACES: dict[str, LabelSpace] = {
    s.name: s for s in (DFEW, MAFW, EMER, GOEMOTIONS_SPACE)
}

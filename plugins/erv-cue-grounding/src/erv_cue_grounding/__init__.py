"""erv-cue-grounding: a reward for explanations that cite the evidence of more than one modality.

The paper's explanation reward R_E (Algorithm 1) checks that the *emotion* of the
explanation agrees with the answer. It does not check *what* the explanation rests on:
an explanation that only says "she seems sad" scores as well as one that cites her
trembling voice and her tears. An omni model sees the frames and hears the audio, so a
grounded explanation should cite both. This reward measures that:

    R_cue = (modalities cited in the explanation) / (modalities required)

A modality is cited when the explanation (the ``<think>`` block) holds at least
``min_mentions`` of its cue words that are not negated ("no tears" does not count).
Add it to a recipe beside the paper's rewards, with a small weight::

    [rewards.cue_grounding]
    weight = 0.2
    options = { modalities = ["visual", "acoustic"] }
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar, Literal

import msgspec

from erv_plugins.context import BuildContext
from erv_plugins.hookspecs import hookimpl
from erv_plugins.plugins import Register
from erv_plugins.rewards.base import RewardBatch, RewardResult

__all__ = ["DEFAULT_LEXICON", "CueGrounding", "CueGroundingOptions", "compile_cues"]

__version__ = "0.1.0"

# Cue words per modality. A trailing ``*`` matches any word ending ("frown*" matches
# "frowning", "frowned"); words in one entry must appear in that order.
DEFAULT_LEXICON: dict[str, tuple[str, ...]] = {
    "visual": (
        "face", "faces", "facial", "expression*", "eye", "eyes", "eyed", "eyebrow*", "brow",
        "brows", "furrow*", "gaze*", "glanc*", "stare", "stares", "stared", "staring",
        "frown*", "smil*", "grin", "grins", "grinning", "mouth*", "lip", "lips", "jaw*",
        "teeth", "tear", "tears", "tearful*", "teary", "nod", "nods", "nodded", "nodding",
        "head", "posture*", "gesture*", "gesticulat*", "shoulder*", "hand", "hands", "arm",
        "arms", "fist*", "clench*", "blush*", "pale", "wrinkl*", "squint*", "blink*",
        "body language", "looks away", "looking away", "slump*",
    ),
    "acoustic": (
        "voice*", "vocal*", "tone", "tones", "pitch*", "loud*", "volume", "quiet*",
        "whisper*", "shout*", "yell*", "scream*", "sigh", "sighs", "sighed", "sighing",
        "sob", "sobs", "sobbed", "sobbing", "laugh*", "giggl*", "stutter*", "intonation",
        "prosody", "pace", "speaking rate", "speech rate", "pause", "pauses", "paused",
        "pausing", "audio", "sound", "sounds", "hear", "hears", "hearing", "heard",
        "groan*", "moan*", "gasp*", "mutter*", "murmur*", "hoarse", "cries", "crying",
    ),
    # What is said rather than how: subtitles, quoted words (EMER's third kind of cue).
    "verbal": (
        "say", "says", "saying", "said", "words", "subtitle*", "transcript*", "utterance*",
        "states", "stated", "mention*", "asks", "asked", "exclaim*", "tells", "told",
        "remark*", "replies", "replied",
    ),
}  # fmt: skip

# A cue preceded by one of these within NEGATION_WINDOW words is not evidence cited.
NEGATORS = frozenset({"no", "not", "without", "never", "nor", "lacks", "lack", "absence"})
NEGATION_WINDOW = 3
_NEGATION_RE = re.compile(r"\b(?:\w+n't|" + "|".join(sorted(NEGATORS)) + r")\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[\w']+")


class CueGroundingOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``options`` table of ``[rewards.cue_grounding]`` in a recipe."""

    # Which kinds of evidence an explanation must cite (keys of the lexicon).
    modalities: list[str] = msgspec.field(default_factory=lambda: ["visual", "acoustic"])
    # "fraction": cited / required (0.5 for one of two); "all": 1.0 only if all are cited.
    mode: Literal["fraction", "all"] = "fraction"
    # Cue words per modality, added to the defaults (or replacing them, see below).
    lexicon: dict[str, list[str]] = msgspec.field(default_factory=dict)
    replace_lexicon: bool = False
    # Mentions a modality needs before it counts as cited.
    min_mentions: int = 1
    # Ignore cues right after a negation ("no tears", "didn't raise her voice").
    ignore_negated: bool = True

    def __post_init__(self) -> None:
        # msgspec turns ValueError here into a ValidationError with the recipe path.
        if not self.modalities:
            raise ValueError("modalities must name at least one modality")
        known = set(self.lexicon) | (set() if self.replace_lexicon else set(DEFAULT_LEXICON))
        unknown = [m for m in self.modalities if m not in known]
        if unknown:
            raise ValueError(
                f"unknown modality {unknown[0]!r}; known: {', '.join(sorted(known))} "
                "(add cue words for it under lexicon)"
            )
        if self.min_mentions < 1:
            raise ValueError("min_mentions must be >= 1")
        for modality, words in self.lexicon.items():
            for word in words:
                if not word.strip(" *"):
                    raise ValueError(f"lexicon.{modality}: empty cue word")


def compile_cues(words: Sequence[str]) -> re.Pattern[str]:
    """One case-insensitive regex that matches any of ``words`` as whole words."""
    alternatives = []
    for entry in sorted(set(words), key=len, reverse=True):  # longest first
        parts = []
        for part in entry.split():
            star = part.endswith("*")
            parts.append(re.escape(part.rstrip("*")) + (r"\w*" if star else ""))
        alternatives.append(r"\s+".join(parts))
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    before = _WORD_RE.findall(text[max(0, start - 60):start])[-NEGATION_WINDOW:]
    return any(_NEGATION_RE.fullmatch(word) for word in before)


class CueGrounding:
    """Share of the required modalities (visual, acoustic, ...) whose evidence the explanation cites."""

    name: ClassVar[str] = "cue_grounding"
    Options: ClassVar[type[msgspec.Struct]] = CueGroundingOptions
    # Needs nothing but the completions: no dataset column, no verifier.
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: CueGroundingOptions | None = None, /, *,
                 context: BuildContext | None = None) -> None:
        self.options = options if options is not None else CueGroundingOptions()
        lexicon: dict[str, list[str]] = (
            {} if self.options.replace_lexicon else {k: list(v) for k, v in DEFAULT_LEXICON.items()}
        )
        for modality, words in self.options.lexicon.items():
            lexicon.setdefault(modality, []).extend(words)
        self.patterns = {m: compile_cues(lexicon[m]) for m in self.options.modalities}

    def cues(self, explanation: str) -> dict[str, list[str]]:
        """The cue words found per required modality, in order (negated ones left out)."""
        found: dict[str, list[str]] = {}
        for modality, pattern in self.patterns.items():
            found[modality] = [
                m.group(0)
                for m in pattern.finditer(explanation)
                if not (self.options.ignore_negated and _negated(explanation, m.start()))
            ]
        return found

    def score(self, explanation: str | None) -> float:
        """R_cue of one explanation; no explanation scores 0.0, as in R_E."""
        return self._value(self.cues(explanation) if explanation else None)

    def __call__(self, batch: RewardBatch) -> RewardResult:
        found = [self.cues(p.think) if p.think else None for p in batch.parsed]
        values = [self._value(f) for f in found]
        # Logged by the engine as cue_grounding/<modality>_share: how often each is cited.
        n = max(len(found), 1)
        info = {
            f"{m}_share": sum(f is not None and len(f[m]) >= self.options.min_mentions
                              for f in found) / n
            for m in self.patterns
        }
        return RewardResult(values, info)

    def _value(self, cues: dict[str, list[str]] | None) -> float:
        if cues is None:
            return 0.0
        cited = sum(len(words) >= self.options.min_mentions for words in cues.values())
        if self.options.mode == "all":
            return 1.0 if cited == len(cues) else 0.0
        return cited / len(cues)


@hookimpl
def erv_register_rewards(register: Register) -> None:
    register(CueGrounding)

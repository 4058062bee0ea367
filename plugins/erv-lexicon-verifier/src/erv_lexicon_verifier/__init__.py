"""erv-lexicon-verifier: an emotion-lexicon verifier, the no-training baseline for the ERV.

The paper's verifier is a fine-tuned RoBERTa (section 3.2). A lexicon verifier asks how
much of R_E such a model adds over counting emotion words: it gives each sentence the
emotions of the lexicon words it contains, with no training, no GPU and no download. It
reads the NRC Emotion Lexicon (EmoLex, Mohammad and Turney 2013; word-level file
``word<TAB>emotion<TAB>0|1``, which users bring, as its licence asks) or a plain
``word<TAB>label`` file, plus inline words, and maps the lexicon's emotions to the
verifier's labels (GoEmotions by default).

Per text and label, with m the number of (non-negated) lexicon words of that label:

    p(label) = 1 - (1 - hit)^m           (one word: hit; more words: closer to 1)
    p(neutral) = neutral                 when no word of any label occurs
    p(other) = miss

so Algorithm 1's label set (p > tau, top-k) is the lexicon's emotions of the sentence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import msgspec
import numpy as np

from erv_plugins.errors import ErvError
from erv_plugins.context import BuildContext
from erv_plugins.hookspecs import hookimpl
from erv_plugins.labels import GOEMOTIONS, NEUTRAL
from erv_plugins.plugins import Register

__all__ = ["LexiconVerifier", "LexiconVerifierOptions", "NRC_TO_GOEMOTIONS", "label_counts", "read_lexicon"]

__version__ = "0.1.0"

# EmoLex's eight emotions as GoEmotions labels (Plutchik's trust and anticipation have no
# GoEmotions twin; approval and excitement are the nearest). Its two sentiments,
# positive and negative, are not emotions and are dropped.
NRC_TO_GOEMOTIONS: dict[str, str] = {
    "anger": "anger", "anticipation": "excitement", "disgust": "disgust", "fear": "fear",
    "joy": "joy", "sadness": "sadness", "surprise": "surprise", "trust": "approval",
}  # fmt: skip
NRC_SENTIMENTS = ("positive", "negative")

NEGATORS = frozenset({"no", "not", "never", "without", "nor", "hardly", "barely"})
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")


class LexiconVerifierOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``options`` table of ``[verifier]`` when ``plugin = "lexicon"``."""

    # A lexicon file; relative paths are relative to the current directory.
    path: str | None = None
    format: Literal["nrc", "tsv"] = "nrc"
    # Words per label added to (or, without a path, making up) the lexicon.
    words: dict[str, list[str]] = msgspec.field(default_factory=dict)
    # Lexicon label -> verifier label; lexicon labels already among `labels` map to themselves.
    label_map: dict[str, str] = msgspec.field(default_factory=lambda: dict(NRC_TO_GOEMOTIONS))
    # Lexicon labels to ignore.
    drop: list[str] = msgspec.field(default_factory=lambda: list(NRC_SENTIMENTS))
    # The verifier's label space, in output order.
    labels: list[str] = msgspec.field(default_factory=lambda: list(GOEMOTIONS))
    hit: float = 0.6
    neutral: float = 0.9
    miss: float = 0.01
    # Skip a word within three words after a negator ("not happy").
    negation: bool = True

    def __post_init__(self) -> None:
        for name in ("hit", "neutral", "miss"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]")
        if NEUTRAL not in self.labels:
            raise ValueError(f"labels must include {NEUTRAL!r} (the label of a text without "
                             "lexicon words)")
        for source, target in self.label_map.items():
            if target not in self.labels:
                raise ValueError(f"label_map: {source!r} -> {target!r}, which is not one of labels")
        if self.path is None and not self.words:
            raise ValueError("give a lexicon file (path) or inline words, or both")


def read_lexicon(path: Path, fmt: Literal["nrc", "tsv"]) -> dict[str, set[str]]:
    """Words per lexicon label from an EmoLex word-level file or a ``word<TAB>label`` file."""
    if not path.is_file():
        raise ErvError(f"verifier lexicon: {path} does not exist")
    out: dict[str, set[str]] = {}
    expected = "word<TAB>emotion<TAB>0|1" if fmt == "nrc" else "word<TAB>label"
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if fmt == "nrc":
                if len(fields) != 3 or fields[2].strip() not in ("0", "1"):
                    raise ErvError(f"{path}:{number}: expected {expected}, got {line.strip()!r}")
                if fields[2].strip() == "0":
                    continue
            elif len(fields) != 2:
                raise ErvError(f"{path}:{number}: expected {expected}, got {line.strip()!r}")
            word, label = fields[0].strip().lower(), fields[1].strip().lower()
            out.setdefault(label, set()).add(word)
    if not out:
        raise ErvError(f"verifier lexicon: {path} has no entries ({expected} per line)")
    return out


class LexiconVerifier:
    """Emotion-lexicon words per sentence -> per-label probabilities (no model)."""

    name: ClassVar[str] = "lexicon"
    Options: ClassVar[type[msgspec.Struct]] = LexiconVerifierOptions

    def __init__(self, options: LexiconVerifierOptions, /, *,
                 context: BuildContext | None = None) -> None:
        self.options = o = options
        raw: dict[str, set[str]] = read_lexicon(Path(o.path), o.format) if o.path else {}
        for label, words in o.words.items():
            raw.setdefault(label.lower(), set()).update(w.lower() for w in words)
        self.labels: tuple[str, ...] = tuple(o.labels)
        index = {label: i for i, label in enumerate(self.labels)}
        self.word_labels: dict[str, set[int]] = {}
        for label, words in raw.items():
            if label in o.drop:
                continue
            target = o.label_map.get(label, label)
            if target not in index:
                raise ErvError(
                    f"verifier lexicon: label {label!r} is not among the verifier's labels; map it "
                    f"with label_map = {{ {label} = \"...\" }} or list it in drop")
            for word in words:
                self.word_labels.setdefault(word, set()).add(index[target])
        self._neutral = index[NEUTRAL]
        digest = hashlib.sha256(msgspec.json.encode(
            [sorted((w, sorted(ls)) for w, ls in self.word_labels.items()), self.labels,
             o.hit, o.neutral, o.miss, o.negation])).hexdigest()[:16]
        self.cache_key = f"lexicon:{digest}"

    def matches(self, text: str) -> list[tuple[str, list[str]]]:
        """The lexicon words of ``text`` that count, with their labels (negated ones left out)."""
        tokens = _TOKEN.findall(text.lower())
        out = []
        for i, token in enumerate(tokens):
            found = self.word_labels.get(token)
            if not found:
                continue
            if self.options.negation and NEGATORS.intersection(tokens[max(0, i - 3):i]):
                continue
            out.append((token, sorted(self.labels[k] for k in found)))
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        o = self.options
        out = np.full((len(texts), len(self.labels)), o.miss, dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[int, int] = {}
            for word, _ in self.matches(text):
                for k in self.word_labels[word]:
                    counts[k] = counts.get(k, 0) + 1
            if not counts:
                out[row, self._neutral] = o.neutral
            for k, m in counts.items():
                out[row, k] = 1.0 - (1.0 - o.hit) ** m
        return out

    def __repr__(self) -> str:
        return f"LexiconVerifier({len(self.word_labels)} words, {self.cache_key})"


def label_counts(verifier: LexiconVerifier) -> Mapping[str, int]:
    """Lexicon words per verifier label, for a quick look at coverage."""
    counts = dict.fromkeys(verifier.labels, 0)
    for labels in verifier.word_labels.values():
        for k in labels:
            counts[verifier.labels[k]] += 1
    return {k: v for k, v in counts.items() if v}


@hookimpl
def erv_register_verifiers(register: Register) -> None:
    register(LexiconVerifier)

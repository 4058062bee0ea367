"""erv-ravdess: the RAVDESS audio-visual emotion corpus as an erv dataset.

RAVDESS (Livingstone and Russo 2018, https://zenodo.org/records/1188976) has 24 actors
speaking and singing two fixed statements with 8 emotions. Every clip's labels are in its
file name, seven two-digit fields ``MM-VV-EE-II-SS-RR-AA``:

====  ======================================================================
MM    modality: 01 audio-video, 02 video only, 03 audio only
VV    vocal channel: 01 speech, 02 song
EE    emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
      07 disgust, 08 surprised
II    intensity: 01 normal, 02 strong (neutral has no strong intensity)
SS    statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door"
RR    repetition: 01 or 02
AA    actor: 01 to 24 (odd numbers male, even female)
====  ======================================================================

as distributed: ``<root>/Actor_01/01-01-03-02-01-01-01.mp4`` (the zip files
``Video_Speech_Actor_XX.zip`` unpack into ``Actor_XX/``; any depth under ``root`` works).
RAVDESS has no official split: the default holds actors 21-24 out for testing
(speaker-independent); ``test_actors`` changes that. Use it in a recipe::

    [grpo.dataset]
    plugin = "ravdess"
    root = "data/RAVDESS"
    split = "train"
    options = { vocal_channel = "speech", calm = "neutral" }
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import msgspec

from erv_plugins.context import BuildContext
from erv_plugins.datasets.base import Sample, where_to_read
from erv_plugins.errors import ErvError
from erv_plugins.hookspecs import hookimpl
from erv_plugins.labels import TO_GOEMOTIONS, LabelSpace
from erv_plugins.plugins import Register

__all__ = ["RAVDESS", "RAVDESS_LABELS", "Ravdess", "RavdessOptions", "parse_name"]

__version__ = "0.1.0"

EMOTIONS: dict[str, str] = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}  # fmt: skip
RAVDESS_LABELS: tuple[str, ...] = tuple(EMOTIONS.values())
MODALITIES = {"01": "audio-video", "02": "video", "03": "audio"}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}

_NAME_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_SUFFIXES = (".mp4", ".wav")

_SYNONYMS = {
    "happiness": "happy", "joy": "happy", "sadness": "sad", "anger": "angry",
    "fear": "fearful", "afraid": "fearful", "scared": "fearful", "disgusted": "disgust",
    "surprise": "surprised", "calmness": "calm",
}  # fmt: skip


def normalize_ravdess(word: str) -> str:
    """A free-text answer as a RAVDESS word ("fear" -> "fearful", "happiness" -> "happy")."""
    m = re.search(r"<answer>(.*?)</answer>", word, re.DOTALL)
    w = (m.group(1) if m else word).strip().lower()
    return _SYNONYMS.get(w, w)


# GoEmotions has no "calm": its closest verifier label is neutral (low arousal, no
# valence), the mapping most RAVDESS work uses when it merges calm into neutral.
RAVDESS = LabelSpace(
    "ravdess",
    RAVDESS_LABELS,
    normalize_ravdess,
    verifier_map={**TO_GOEMOTIONS, "calm": "neutral", "fearful": "fear", "surprised": "surprise"},
)
RAVDESS_NO_CALM = LabelSpace(
    "ravdess", tuple(w for w in RAVDESS_LABELS if w != "calm"), normalize_ravdess,
    verifier_map=RAVDESS.verifier_map,
)


def parse_name(path: Path) -> dict[str, Any]:
    """The seven fields of a RAVDESS file name; a clear error for a name that breaks the scheme."""
    m = _NAME_RE.match(path.stem)
    if m is None:
        raise ValueError(f"{path}: not a RAVDESS file name (expected MM-VV-EE-II-SS-RR-AA)")
    mm, vv, ee, ii, ss, rr, aa = m.groups()
    fields: list[tuple[str, str, dict[str, str]]] = [
        ("modality", mm, MODALITIES), ("vocal channel", vv, CHANNELS),
        ("emotion", ee, EMOTIONS), ("intensity", ii, INTENSITIES), ("statement", ss, STATEMENTS),
    ]  # fmt: skip
    for what, code, table in fields:
        if code not in table:
            raise ValueError(f"{path}: {what} code {code} is not one of {', '.join(table)}")
    actor = int(aa)
    if not 1 <= actor <= 24 or rr not in ("01", "02"):
        raise ValueError(f"{path}: actor {aa} / repetition {rr} out of range (01-24 / 01-02)")
    return {
        "modality": MODALITIES[mm],
        "vocal_channel": CHANNELS[vv],
        "label": EMOTIONS[ee],
        "intensity": INTENSITIES[ii],
        "statement": STATEMENTS[ss],
        "repetition": int(rr),
        "actor": actor,
        "gender": "male" if actor % 2 else "female",
    }


class RavdessOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The ``options`` table of a ``ravdess`` dataset in a recipe."""

    # Which files: audio-video (.mp4, what an omni model needs), video only, audio only.
    modality: Literal["audio-video", "video", "audio"] = "audio-video"
    vocal_channel: Literal["speech", "song", "both"] = "speech"
    intensity: Literal["normal", "strong", "both"] = "both"
    # calm: keep it as a label, merge it into neutral, or drop its clips.
    calm: Literal["keep", "neutral", "drop"] = "keep"
    # Speaker-independent split: these actors are the test split, the rest train.
    test_actors: list[int] = msgspec.field(default_factory=lambda: [21, 22, 23, 24])

    def __post_init__(self) -> None:
        bad = [a for a in self.test_actors if not 1 <= a <= 24]
        if bad:
            raise ValueError(f"test_actors: actor {bad[0]} does not exist (RAVDESS has 1-24)")


class Ravdess:
    """RAVDESS clips (24 actors, 8 emotions), labels read from the file names."""

    name: ClassVar[str] = "ravdess"
    Options: ClassVar[type[msgspec.Struct]] = RavdessOptions
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test", "all")
    # Read by the reward engine to normalise answers of rows whose dataset is "ravdess".
    label_space: LabelSpace = RAVDESS

    def __init__(self, options: RavdessOptions | None = None, /, *,
                 context: BuildContext | None = None, root: str | Path | None = None,
                 split: str = "train", limit: int | None = None) -> None:
        # erv builds it with the recipe's dataset table in context.spec; code may pass
        # root, split and limit directly.
        if context is not None and context.spec is not None:
            root, split, limit = where_to_read(context.spec)
        self.options = options if options is not None else RavdessOptions()
        if root is None:
            raise ErvError("dataset ravdess: set root to the folder that holds Actor_01 ... Actor_24")
        if split not in self.SPLITS:
            raise ErvError(f"dataset ravdess: split {split!r} is not one of {', '.join(self.SPLITS)}")
        self.root = Path(root)
        self.split = split
        self.limit = limit
        self.label_space = RAVDESS if self.options.calm == "keep" else RAVDESS_NO_CALM
        self._samples: list[Sample] | None = None

    def _wanted(self, info: dict[str, Any]) -> bool:
        o = self.options
        if info["modality"] != o.modality:
            return False
        if o.vocal_channel != "both" and info["vocal_channel"] != o.vocal_channel:
            return False
        if o.intensity != "both" and info["intensity"] != o.intensity:
            return False
        if o.calm == "drop" and info["label"] == "calm":
            return False
        held_out = info["actor"] in o.test_actors
        return self.split == "all" or (self.split == "test") == held_out

    def samples(self) -> Sequence[Sample]:
        """The clips of the split, sorted by file name (stable across machines)."""
        if self._samples is not None:
            return self._samples
        if not self.root.is_dir():
            raise ErvError(f"dataset ravdess: root {self.root} is not a directory")
        files = sorted(
            (p for p in self.root.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file()),
            key=lambda p: p.name,
        )
        if not files:
            raise ErvError(
                f"dataset ravdess: no .mp4 or .wav files under {self.root} "
                "(expected Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4)"
            )
        out: list[Sample] = []
        seen: dict[str, Path] = {}
        for path in files:
            try:
                info = parse_name(path)
            except ValueError as exc:
                raise ErvError(f"dataset ravdess: {exc}") from None
            if path.stem in seen:
                raise ErvError(f"dataset ravdess: clip {path.stem} found twice: {seen[path.stem]} "
                               f"and {path}")
            seen[path.stem] = path
            if not self._wanted(info):
                continue
            label = info.pop("label")
            if label == "calm" and self.options.calm == "neutral":
                label = "neutral"
                info["original_label"] = "calm"
            if path.suffix.lower() == ".wav":  # audio-only clips have no frames
                info["audio"] = path
                out.append(Sample(id=path.stem, label=label, video=None, extra=info))
            else:
                out.append(Sample(id=path.stem, label=label, video=path, extra=info))
            if self.limit is not None and len(out) >= self.limit:
                break
        if not out:
            raise ErvError(f"dataset ravdess: no clip under {self.root} fits split {self.split!r} "
                           f"and options {msgspec.to_builtins(self.options)}")
        self._samples = out
        return out

    def counts(self) -> dict[str, int]:
        """Clips per label, in label-space order (for a quick look at balance)."""
        c = Counter(s.label for s in self.samples())
        return {label: c[label] for label in self.label_space.labels}


@hookimpl
def erv_register_datasets(register: Register) -> None:
    register(Ravdess)

"""A text-only stand-in for the multimodal task, as a plugin (tests, and machines without media).

Dataset ``cue-text``: each sample's "clip" is a few words (a colour and a tone, one pair per
emotion, like the synthetic clips' colour and tone), with an EMER-style explanation. Model
``tiny-text``: a tiny Qwen2 causal LM built offline (:mod:`erv_plugins.training.tiny`).
Register with ``Plugins(extra=[erv_plugins.training.demo])``; ``erv run`` hands the same
module to the processes it launches.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import msgspec

from erv_plugins.datasets.base import Sample, where_to_read
from erv_plugins.hookspecs import hookimpl
from erv_plugins.labels import LabelSpace, normalize_mafw
from erv_plugins.models.base import model_location
from erv_plugins.plugins import Register

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext

# One colour and one tone per emotion; the words the explanation uses are the verifier's cues.
CUES: dict[str, tuple[str, str, str]] = {
    # label: (colour, tone, explanation sentence the verifier can recognise)
    "happiness": ("yellow", "bright", "The person smiles with joy and laughs happily."),
    "sadness": ("blue", "low", "The person looks down with sadness and tears in the eyes."),
    "anger": ("red", "loud", "The person frowns in anger and shouts furiously."),
    "neutral": ("grey", "flat", "The person keeps a calm and neutral face."),
}

CUE_SPACE = LabelSpace("cue-text", tuple(CUES), normalize_mafw)


class CueTextOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    n_per_label: int = 8
    labels: list[str] = msgspec.field(default_factory=lambda: list(CUES))
    seed: int = 0


class CueTextDataset:
    """Samples whose clip is described in words: ``Clip: yellow light, bright tone``."""

    name: ClassVar[str] = "cue-text"
    Options: ClassVar[type[CueTextOptions]] = CueTextOptions
    label_space: ClassVar[LabelSpace] = CUE_SPACE

    def __init__(self, options: CueTextOptions, *, context: BuildContext | None = None) -> None:
        unknown = [w for w in options.labels if w not in CUES]
        if unknown:
            raise ValueError(f"cue-text: unknown label(s) {unknown}; known: {list(CUES)}")
        self.options = options
        self.split = where_to_read(context.spec)[1] if context is not None else "train"

    def samples(self) -> list[Sample]:
        o = self.options
        rng = random.Random(f"{o.seed}-{self.split}")
        out = []
        for i in range(o.n_per_label):
            for label in o.labels:
                colour, tone, why = CUES[label]
                why = f"The clip shows {colour} light and a {tone} tone. {why}"
                out.append(Sample(id=f"{self.split}-{label}-{i}", label=label,
                                  explanation=why, extra={"cue": f"{colour} light, {tone} tone"}))
        rng.shuffle(out)
        return out


class TinyTextOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    hidden: int = 64
    layers: int = 2
    seed: int = 0


class TinyTextModel:
    """A tiny text-only Qwen2 policy, built once into ``<run dir>/tiny_text``."""

    name: ClassVar[str] = "tiny-text"
    Options: ClassVar[type[TinyTextOptions]] = TinyTextOptions

    def __init__(self, options: TinyTextOptions | None = None, *,
                 context: BuildContext | None = None) -> None:
        self.options = options or TinyTextOptions()
        self.path, self.run_dir = model_location(context)

    def model_path(self) -> str:
        if self.path:
            return self.path
        out = self.run_dir / "tiny_text"
        if not (out / "config.json").is_file():
            tiny_text_model(self.options, out_dir=out)
        return str(out)


def tiny_text_model(options: TinyTextOptions, *, out_dir: str | Path) -> Path:
    """Build a tiny text-only Qwen2 policy into ``out_dir``; returns the directory."""
    from erv_plugins.training.tiny import build_tiny_text_policy

    words = [f"Clip: {c} light, {t} tone" for c, t, _ in CUES.values()]
    words += [why for _, _, why in CUES.values()]
    return build_tiny_text_policy(out_dir, list(CUES), hidden=options.hidden,
                                  layers=options.layers, seed=options.seed, extra_text=words)


@hookimpl
def erv_register_datasets(register: Register) -> None:
    register(CueTextDataset, description="Text stand-in for clips: colour and tone as words.")


@hookimpl
def erv_register_models(register: Register) -> None:
    register(TinyTextModel, description="A tiny text-only Qwen2 policy built offline.")

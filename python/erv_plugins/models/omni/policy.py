"""The HumanOmni-compatible policy opened from a saved directory: what the core calls
through the model plugin contract (``erv_plugins.models.base.MediaPolicy``).

Moved here from the core (training/policy.py, evaluation/generate.py, training/trainer.py)
so that SFT, GRPO and generation never name this model family: the prompt and media
inputs of a sample, the media keyword names, the questions of the eval protocols.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    import torch

    from erv_plugins.datasets.base import Sample

# Media keyword arguments of the omni model (forward and generate); every one is row-first.
MEDIA_KEYS: tuple[str, ...] = ("videos", "audios", "gate_input_ids", "gate_attention_mask")

# Decoded clips kept in memory per process (tiny runs reuse every clip each step).
CLIP_MEMORY = 512


def protocol_settings(protocol: str) -> dict[str, Any]:
    """The question, frame processing and decoding of an eval protocol's generation.

    ``release``/``paper``: the release's eval instruction (two spaces before "Output",
    also the gate's text), frames resized to the tower's square without padding (its
    eval processor), special tokens skipped; ``erv``: the trained question and frames,
    tags kept.
    """
    from erv_plugins.models.omni.processing import EMOTION_QUESTION, RELEASE_EVAL_QUESTION

    if protocol not in ("release", "paper", "erv"):
        raise ErvError(f"unknown evaluation protocol {protocol!r}; use one of "
                       "release, paper, erv")
    if protocol == "erv":
        return {"question": EMOTION_QUESTION, "aspect_ratio": None, "skip_special": False}
    return {"question": RELEASE_EVAL_QUESTION, "aspect_ratio": "resize", "skip_special": True}


def is_omni_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a HumanOmni-compatible checkpoint (erv's or a release's)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        model_type = str(json.loads(config.read_text()).get("model_type", ""))
    except ValueError:
        return False
    return model_type.lower().startswith("humanomni")


@dataclass
class OmniMediaPolicy:
    """The omni model and its processor, with how samples become their inputs."""

    multimodal: ClassVar[bool] = True
    media_keys: ClassVar[tuple[str, ...]] = MEDIA_KEYS
    fast_path: ClassVar[bool] = True
    suppressed_ids: ClassVar[tuple[int, ...]] = ()  # placeholders are negative: never sampled

    model: Any
    processor: Any
    path: Path
    question: str
    _clips: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def prompt(self, sample: Sample | None = None, template: str = "policy") -> str:
        """``template``: "policy" = the checkpoint's chat template, as the release's eval;
        "qwen2_vl" = the Qwen2-VL template of the release's GRPO."""
        return str(self.processor.prompt(self.question, template=template))

    def prompt_length(self, prompt: str) -> int:
        # As the release counts: one id per clip's video and audio.
        return int(self.processor.release_length(self.processor.tokenize(prompt)))

    def clip(self, sample: Sample) -> tuple[Any, Any]:
        """(video, audio features) of a sample's clip, decoded once per process."""
        if sample.video is None:
            raise ErvError(f"sample {sample.id}: the omni policy needs a clip, the sample has none")
        key = str(sample.video)
        if key in self._clips:
            self._clips[key] = self._clips.pop(key)  # most recently used last
        else:
            self._clips[key] = self.processor.load_clip(sample.video)
            while len(self._clips) > CLIP_MEMORY:  # decoded clips also sit in a disk cache
                self._clips.pop(next(iter(self._clips)))
        return self._clips[key]

    def encode(self, samples: Sequence[Sample], prompts: Sequence[str] | None = None,
               questions: Sequence[str] | None = None
               ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
        """Prompt token ids (media placeholders expanded, no padding) and the batch's media
        (``videos``, ``audios``, ``gate_input_ids``...). ``questions``: the BERT gate's
        text per sample (default: each prompt's question)."""
        prompts = list(prompts) if prompts is not None else [self.prompt(s) for s in samples]
        clips = [self.clip(s) for s in samples]
        batch = self.processor(prompts, videos=[c[0] for c in clips],
                               audios=[c[1] for c in clips], questions=questions,
                               padding_side="right")
        mask = batch["attention_mask"].bool()
        ids = [row[m].tolist() for row, m in zip(batch["input_ids"], mask, strict=True)]
        media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        return ids, media

    def sft_example(self, sample: Sample, question: str, target: str, template: str = "policy"
                    ) -> tuple[list[int], list[int], str | None]:
        """``template`` (``[sft] prompt_template``): "policy" or "release"
        (``OmniProcessor.sft_example``); the BERT gate's text goes to the collator."""
        ids, labels, gate = self.processor.sft_example(question, target, template=template)
        return ids, labels, gate

    def model_inputs(self, media: dict[str, Any]) -> dict[str, Any]:
        return dict(media)  # the omni forward takes row-first media as they are

    def media_cache(self) -> Any:
        from erv_plugins.models.omni.modelling import MediaFeatureCache

        return MediaFeatureCache()

    def generation_question(self, protocol: str) -> tuple[str, bool]:
        settings = protocol_settings(protocol)
        if settings["aspect_ratio"] is not None:
            self.processor.aspect_ratio = settings["aspect_ratio"]
        return settings["question"], settings["skip_special"]

    def generation_inputs(self, samples: Sequence[Sample], question: str) -> Any:
        prompt = self.processor.prompt(question)
        return self.processor([prompt] * len(samples), videos=[s.video for s in samples],
                              questions=[question] * len(samples), padding_side="left")

    def end_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        return {t for t in (self.processor.eos_token_id, self.processor.pad_token_id, *eos)
                if t is not None}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.processor.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def save(self, out_dir: str | Path) -> None:
        self.processor.save_pretrained(out_dir)


def open_omni(path: str | Path, *, device: str = "cpu", dtype: Any = None,
              frames: int | None = None, image_size: int | None = None,
              cache_dir: str | Path | None = None, train_vision_tower: bool | None = None,
              sources: dict[str, str] | None = None, question: str | None = None
              ) -> OmniMediaPolicy:
    """Open a saved omni directory (``load_omni``) as the core's policy.

    ``frames``/``image_size``: how clips are decoded; they must match the checkpoint
    (its vision tower and projector are built for them), so a mismatch is an error.
    ``train_vision_tower``: True unfreezes SigLIP (paper Table 8, 0.5B), False freezes it
    (also in a checkpoint whose SFT trained it: Table 8's GRPO), None keeps the
    checkpoint's choice; the choice is written into the config, so a checkpoint saved
    from this policy loads the same way.
    ``sources``: where a published checkpoint's encoders come from (``load_omni``'s
    ``text_model_path``, ``vision_tower``, ``audio_tower``; the omni model options).
    """
    from erv_plugins.models.omni.processing import EMOTION_QUESTION
    from erv_plugins.models.omni.tiny import load_omni

    path = Path(path)
    model, processor = load_omni(path, device=device, dtype=dtype, **(sources or {}))
    if train_vision_tower is not None:
        model.config.freeze_vision_tower = not train_vision_tower
        model.model.vision_tower.frozen = not train_vision_tower
        model.model.vision_tower.requires_grad_(train_vision_tower)
    for name, want, have in (("frames", frames, processor.num_frames),
                             ("image_size", image_size, processor.image_size)):
        if want is not None and want != have:
            raise ErvError(f"{path}: the checkpoint takes {name} = {have}, the recipe asks "
                           f"for {want}")
    processor.cache_dir = str(cache_dir) if cache_dir is not None else None
    processor.tokenizer.padding_side = "left"
    return OmniMediaPolicy(model=model, processor=processor, path=path,
                           question=question or EMOTION_QUESTION)

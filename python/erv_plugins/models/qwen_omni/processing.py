"""Clips into Qwen2.5-Omni thinker inputs, through transformers' ``Qwen2_5OmniProcessor``.

A clip is read as the omni policy reads it (``datasets.media``: ``frames`` frames at the
middles of equal segments, the audio track at 16 kHz mono; silence and a
``MissingAudioWarning`` for a clip without one), then handed to the processor with
``load_audio_from_video=True`` and the audio given per video (``audio_from_video_indices``):
the video placeholder ``<|VIDEO|>`` becomes ``<|audio_bos|>``, then per 2 s chunk
(``seconds_per_chunk``, 25 position ids a second) the chunk's video tokens followed by its
audio tokens, then ``<|audio_eos|>``, as the model expects with ``use_audio_in_video``.
The sampled frames' rate (``frames`` / clip duration) is the processor's ``fps``, so the
video tokens' time positions match the audio's.

The processor flattens a batch's video patches into one tensor; TRL splits a batch by
rows, so ``QwenOmniMediaPolicy`` keeps media row-first (``pixel_values_videos`` padded to
the longest clip, (B, P, D)) and ``model_inputs`` flattens a slice of rows again.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    import torch

    from erv_plugins.datasets.base import Sample

SETTINGS_FILE = "erv_qwen_omni.json"
SAMPLE_RATE = 16_000
# How erv feeds a clip to the thinker when neither the directory nor the options say:
# 8 frames (the paper's policy reads 8), the audio interleaved with the video (the model
# card's use_audio_in_video), Qwen2.5-Omni's processor's pixel bounds per frame.
DEFAULT_CLIP: dict[str, Any] = {"frames": 8, "use_audio_in_video": True,
                                "min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28}
# Qwen2.5-Omni's media tokens: never generated (a sampled one would not match the
# clip's features in the next forward pass).
MEDIA_TOKEN_NAMES = ("image_token", "video_token", "audio_token", "vision_bos_token",
                     "vision_eos_token", "audio_bos_token", "audio_eos_token")
# Row-first media keys (what TRL carries per row) and the thinker's own keyword names.
MEDIA_KEYS: tuple[str, ...] = ("pixel_values_videos", "video_grid_thw", "video_second_per_grid",
                               "input_features", "feature_attention_mask")
CLIP_MEMORY = 512


def clip_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULT_CLIP, then the directory's ``erv_qwen_omni.json``, then ``overrides``."""
    settings = dict(DEFAULT_CLIP)
    if path is not None and (path / SETTINGS_FILE).is_file():
        settings.update(json.loads((path / SETTINGS_FILE).read_text()))
    settings.update(overrides or {})
    if settings["frames"] < 2 or settings["frames"] % 2:
        raise ErvError(f"qwen_omni: frames = {settings['frames']}: the thinker's video "
                       "encoder takes frames in pairs (temporal patch 2); use an even number")
    return settings


@dataclass(frozen=True)
class Clip:
    """One decoded clip: uint8 frames (T, H, W, 3), mono 16 kHz samples, the frames' rate."""

    frames: np.ndarray
    audio: np.ndarray
    fps: float


def read_clip(path: str | os.PathLike[str], frames: int) -> Clip:
    """The clip's ``frames`` frames and its audio track (silence when it has none)."""
    import av

    from erv_plugins.datasets.media import (
        STATS,
        MediaError,
        MissingAudioWarning,
        read_audio,
        read_frames,
    )

    p = Path(path)
    if not p.is_file():
        raise MediaError(p, "no such clip file")
    pixels, _ = read_frames(p, frames)
    with av.open(os.fspath(p)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 0) or 25.0
        n = stream.frames or 0
        seconds = (n / rate) if n else float(container.duration or 0) / 1e6
    seconds = seconds if seconds > 0 else len(pixels) / rate
    audio = read_audio(p, SAMPLE_RATE)
    if audio is None or audio.size == 0:
        STATS.missing_audio += 1
        warnings.warn(f"{p}: no audio track; using silence", MissingAudioWarning, stacklevel=2)
        audio = np.zeros(max(1, round(seconds * SAMPLE_RATE)), dtype=np.float32)
    return Clip(frames=pixels, audio=audio.astype(np.float32), fps=len(pixels) / seconds)


def media_token_ids(tokenizer: Any) -> tuple[int, ...]:
    return tuple(int(getattr(tokenizer, f"{name}_id")) for name in MEDIA_TOKEN_NAMES)


def encode_clip(processor: Any, prompt: str, clip: Clip, settings: dict[str, Any]
                ) -> tuple[list[int], dict[str, torch.Tensor]]:
    """(prompt ids with the clip's placeholders expanded, its media for one row)."""
    use_audio = bool(settings["use_audio_in_video"])
    kwargs: dict[str, Any] = {"load_audio_from_video": True,
                              "audio_from_video_indices": [0]} if use_audio else {}
    if not use_audio and processor.audio_token not in prompt:
        # Without interleaving the audio needs its own placeholder after the video.
        prompt = prompt.replace(processor.vision_eos_token,
                                processor.vision_eos_token + processor.audio_bos_token
                                + processor.audio_token + processor.audio_eos_token, 1)
    batch = processor(text=[prompt], videos=[clip.frames], audio=[clip.audio], fps=clip.fps,
                      size={"shortest_edge": settings["min_pixels"],
                            "longest_edge": settings["max_pixels"]},
                      cap_pixels_per_frame=True, return_tensors="pt", **kwargs)
    ids = batch["input_ids"][0].tolist()
    media = {k: batch[k] for k in MEDIA_KEYS}
    return ids, media


def stack_media(rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Row-first media of several rows: video patches padded to the longest clip."""
    import torch

    longest = max(r["pixel_values_videos"].shape[0] for r in rows)
    width = rows[0]["pixel_values_videos"].shape[1]
    patches = torch.zeros(len(rows), longest, width, dtype=rows[0]["pixel_values_videos"].dtype)
    for i, r in enumerate(rows):
        patches[i, :r["pixel_values_videos"].shape[0]] = r["pixel_values_videos"]
    return {"pixel_values_videos": patches,
            **{k: torch.cat([r[k] for r in rows]) for k in MEDIA_KEYS[1:]}}


def flatten_media(media: dict[str, Any], use_audio_in_video: bool) -> dict[str, Any]:
    """Row-first media -> the thinker's keyword arguments (patches of all rows in one)."""
    import torch

    if "pixel_values_videos" not in media:
        return dict(media)
    grid = media["video_grid_thw"]
    patches = media["pixel_values_videos"]
    flat = torch.cat([patches[i, :int(grid[i].prod())] for i in range(grid.shape[0])])
    return {**media, "pixel_values_videos": flat, "use_audio_in_video": use_audio_in_video}


@dataclass
class QwenOmniMediaPolicy:
    """A Qwen2.5-Omni thinker and how samples become its inputs (``MediaPolicy``)."""

    multimodal: ClassVar[bool] = True
    media_keys: ClassVar[tuple[str, ...]] = MEDIA_KEYS
    # No clip ids, no shared encoder cache, no LM head on completion positions only: the
    # thinker's forward is transformers' own.
    fast_path: ClassVar[bool] = False

    model: Any
    processor: Any  # transformers' Qwen2_5OmniProcessor
    path: Path
    question: str
    settings: dict[str, Any]
    _clips: dict[str, Clip] = field(default_factory=dict, repr=False)
    # (clip, prompt) -> (ids, media): GRPO encodes each prompt's G rows every step.
    _encoded: dict[tuple[str, str], tuple[list[int], dict[str, Any]]] = field(
        default_factory=dict, repr=False)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def suppressed_ids(self) -> tuple[int, ...]:
        return media_token_ids(self.tokenizer)

    def messages(self, question: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "video"},
                                             {"type": "text", "text": question}]}]

    def prompt(self, sample: Sample | None = None, template: str = "policy") -> str:
        """The checkpoint's chat template on [video, question] (``template`` "policy";
        the omni policy's release templates do not apply to this model)."""
        if template != "policy":
            raise ErvError(f"prompt template {template!r} is the omni policy's; the "
                           "qwen_omni policy uses its chat template ('policy')")
        return self.chat(self.question)

    def chat(self, question: str) -> str:
        return str(self.processor.apply_chat_template(self.messages(question), tokenize=False,
                                                      add_generation_prompt=True))

    def prompt_length(self, prompt: str) -> int:
        # One id per clip's video placeholder, as the omni policy counts.
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def clip(self, sample: Sample) -> Clip:
        """A sample's clip, decoded once per process."""
        if sample.video is None:
            raise ErvError(f"sample {sample.id}: the qwen_omni policy needs a clip, the "
                           "sample has none")
        key = str(sample.video)
        if key in self._clips:
            self._clips[key] = self._clips.pop(key)
        else:
            self._clips[key] = read_clip(sample.video, self.settings["frames"])
            while len(self._clips) > CLIP_MEMORY:
                self._clips.pop(next(iter(self._clips)))
        return self._clips[key]

    def encode(self, samples: Sequence[Sample], prompts: Sequence[str] | None = None,
               questions: Sequence[str] | None = None
               ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
        """Prompt ids (placeholders expanded per clip) and row-first media. ``questions``
        is for a text gate, which this model has not."""
        prompts = list(prompts) if prompts is not None else [self.prompt(s) for s in samples]
        ids, rows = [], []
        for sample, prompt in zip(samples, prompts, strict=True):
            key = (str(sample.video), prompt)
            if key not in self._encoded:
                self._encoded[key] = encode_clip(self.processor, prompt, self.clip(sample),
                                                 self.settings)
                while len(self._encoded) > CLIP_MEMORY:
                    self._encoded.pop(next(iter(self._encoded)))
            row_ids, media = self._encoded[key]
            ids.append(list(row_ids))
            rows.append(media)
        return ids, stack_media(rows)

    def sft_example(self, sample: Sample, question: str, target: str, template: str = "policy"
                    ) -> tuple[list[int], list[int], str | None]:
        """The chat prompt with the clip's placeholders, then ``target`` + the end token."""
        if template != "policy":
            raise ErvError(f"$.sft.prompt_template {template!r} is the omni policy's; the "
                           "qwen_omni policy uses 'policy'")
        (prompt_ids,), _ = self.encode([sample], [self.chat(question)])
        tok = self.tokenizer
        target_ids = tok(target + tok.eos_token, add_special_tokens=False)["input_ids"]
        return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids, None

    def model_inputs(self, media: dict[str, Any]) -> dict[str, Any]:
        return flatten_media(media, bool(self.settings["use_audio_in_video"]))

    def media_cache(self) -> None:
        return None

    def generation_question(self, protocol: str) -> tuple[str, bool]:
        """``release``/``paper``: the release's eval instruction (two spaces before
        "Output"), special tokens skipped; ``erv``: the trained question, tags kept."""
        if protocol == "erv":
            return self.question, False
        return self.question.replace("you? Output", "you?  Output"), True

    def generation_inputs(self, samples: Sequence[Sample], question: str) -> Any:
        import torch
        from transformers import BatchFeature

        ids, media = self.encode(samples, [self.chat(question)] * len(samples))
        width = max(len(r) for r in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):  # left padding, as generation wants
            input_ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
        return BatchFeature({"input_ids": input_ids, "attention_mask": mask,
                             **self.model_inputs(media)})

    def end_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        return {t for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, *eos)
                if t is not None}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        self.processor.save_pretrained(out)
        (out / SETTINGS_FILE).write_text(json.dumps(self.settings, indent=2) + "\n")

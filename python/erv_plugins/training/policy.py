"""The policy being trained: the omni model (video + audio + text) or a text-only causal LM.

Both stages (SFT, GRPO) see the same small interface: the chat prompt of a sample, its media
tensors (``videos``/``audios`` keyword arguments of the omni model's ``forward`` and
``generate``; empty for a text-only policy), the tokenizer, and the model.

The prompt is the paper's question (section 4, taken from the authors' release) after the
model's video and audio placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from erv_plugins.datasets.base import Sample

QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the "
    "characters is the most obvious to you? Output the thinking process in <think> </think> "
    "and final emotion in <answer> </answer> tags."
)

# Media keyword arguments of the omni model (forward and generate).
MEDIA_KEYS: tuple[str, ...] = ("videos", "audios", "gate_input_ids", "gate_attention_mask")


# Decoded clips kept in memory per process (tiny runs reuse every clip each step).
CLIP_MEMORY = 512


def target_text(explanation: str, label: str) -> str:
    """The SFT target (paper eq. 2): the explanation in <think>, the label in <answer>."""
    return f"<think>{explanation.strip()}</think>\n<answer>{label}</answer>"


@dataclass
class Policy:
    """A loaded policy and how to turn samples into its inputs."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    processor: Any | None = None  # OmniProcessor for the omni policy
    extra: dict[str, Any] = field(default_factory=dict)
    _clips: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    @property
    def multimodal(self) -> bool:
        return self.processor is not None

    def prompt(self, sample: Sample | None = None, template: str = "policy") -> str:
        """The chat-formatted prompt (generation prompt included) for one sample.

        ``template`` (omni policy): "policy" = the checkpoint's chat template, as the
        release's eval; "qwen2_vl" = the Qwen2-VL template of the release's GRPO.
        """
        if self.processor is not None:
            return self.processor.prompt(QUESTION, template=template)
        if template != "policy":
            raise ErvError(f"prompt template {template!r} is for the omni policy; a text-only "
                           "policy uses its own chat template ('policy')")
        user = QUESTION
        if sample is not None and "cue" in sample.extra:
            # A text-only policy reads what the clip shows as words (tests, fallback demo).
            user = f"Clip: {sample.extra['cue']}\n{QUESTION}"
        return self.tokenizer.apply_chat_template([{"role": "user", "content": user}],
                                                  tokenize=False, add_generation_prompt=True)

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
        keyword arguments (``videos``, ``audios``, ``gate_input_ids``...; {} for text).
        ``questions``: the BERT gate's text per sample (default: each prompt's question)."""
        prompts = list(prompts) if prompts is not None else [self.prompt(s) for s in samples]
        if self.processor is None:
            ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
            return [list(r) for r in ids], {}
        clips = [self.clip(s) for s in samples]
        batch = self.processor(prompts, videos=[c[0] for c in clips],
                               audios=[c[1] for c in clips], questions=questions,
                               padding_side="right")
        mask = batch["attention_mask"].bool()
        ids = [row[m].tolist() for row, m in zip(batch["input_ids"], mask, strict=True)]
        media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        return ids, media


def model_type(path: Path) -> str:
    config = Path(path) / "config.json"
    if not config.is_file():
        raise ErvError(f"{path}: not a model directory (no config.json)")
    return str(json.loads(config.read_text()).get("model_type", ""))


def is_omni(path: str | Path) -> bool:
    return model_type(Path(path)).lower().startswith("humanomni")


def load_policy(path: str | Path, *, frames: int | None = None,
                image_size: int | None = None, cache_dir: Path | None = None,
                train_vision_tower: bool = False, sources: dict[str, str] | None = None
                ) -> Policy:
    """Load a saved policy directory: the omni model when its config says so, else a causal LM.

    ``frames``/``image_size``: how clips are decoded; they must match the checkpoint
    (its vision tower and projector are built for them), so a mismatch is an error.
    ``train_vision_tower``: unfreeze SigLIP (paper Table 8, 0.5B); the choice is written
    into the config, so a checkpoint saved from this policy loads the same way.
    ``sources``: where a published checkpoint's encoders come from (``load_omni``'s
    ``text_model_path``, ``vision_tower``, ``audio_tower``; the omni model options).
    """
    path = Path(path)
    if is_omni(path):
        import erv_plugins.models.omni as omni  # registers the Auto classes TRL loads by path

        model, processor = omni.load_omni(path, device="cpu", dtype=torch_float32(),
                                          **(sources or {}))
        if train_vision_tower:
            model.config.freeze_vision_tower = False
            model.model.vision_tower.frozen = False
            model.model.vision_tower.requires_grad_(True)
        for name, want, have in (("frames", frames, processor.num_frames),
                                 ("image_size", image_size, processor.image_size)):
            if want is not None and want != have:
                raise ErvError(f"{path}: the checkpoint takes {name} = {have}, the recipe asks "
                               f"for {want}")
        processor.cache_dir = str(cache_dir) if cache_dir is not None else None
        processor.tokenizer.padding_side = "left"
        return Policy(model=model, tokenizer=processor.tokenizer, path=path, processor=processor)
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    # AutoTokenizer would rebuild a qwen2 tokenizer and mangle ours (STACK.md).
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    tokenizer.padding_side = "left"
    return Policy(model=model, tokenizer=tokenizer, path=path)


def torch_float32() -> Any:
    import torch

    return torch.float32

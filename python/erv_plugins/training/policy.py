"""The policy being trained: the omni model (video + audio + text) or a text-only causal LM.

Both stages (SFT, GRPO) see the same small interface: the chat prompt of a sample, its media
tensors (``videos``/``audios`` keyword arguments of the omni model's ``forward`` and
``generate``; empty for a text-only policy), the tokenizer, and the model.

The prompt is the paper's question (section 4, taken from the authors' release) after the
model's video and audio placeholders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
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
MEDIA_KEYS: tuple[str, ...] = ("videos", "audios")


def target_text(explanation: str, label: str) -> str:
    """The SFT target (paper eq. 2): the explanation in <think>, the label in <answer>."""
    return f"<think>{explanation.strip()}</think>\n<answer>{label}</answer>"


@dataclass
class Policy:
    """A loaded policy and how to turn a sample into its inputs."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    processor: Any | None = None
    # sample -> {"videos": Tensor, "audios": Tensor} (one sample, no batch dim); None = text only
    media_fn: Callable[[Sample], dict[str, torch.Tensor]] | None = None
    # Text placed before the question (the omni model's media placeholders).
    media_prefix: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def multimodal(self) -> bool:
        return self.media_fn is not None

    def prompt(self, sample: Sample | None = None) -> str:
        """The chat-formatted prompt (generation prompt included) for one sample."""
        user = f"{self.media_prefix}{QUESTION}"
        if self.media_fn is None and sample is not None and "cue" in sample.extra:
            # A text-only policy reads what the clip shows as words (tests, fallback demo).
            user = f"Clip: {sample.extra['cue']}\n{QUESTION}"
        messages = [{"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def media(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """Stacked media tensors of a batch (first dimension = len(samples))."""
        import torch

        if self.media_fn is None:
            return {}
        items = [self.media_fn(s) for s in samples]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def model_type(path: Path) -> str:
    config = Path(path) / "config.json"
    if not config.is_file():
        raise ErvError(f"{path}: not a model directory (no config.json)")
    return str(json.loads(config.read_text()).get("model_type", ""))


def load_policy(path: str | Path, *, frames: int | None = None,
                image_size: int | None = None, cache_dir: Path | None = None) -> Policy:
    """Load a saved policy directory: the omni model when its config says so, else a causal LM."""
    path = Path(path)
    kind = model_type(path)
    if kind == "omni" or kind.startswith("humanomni"):
        return _load_omni(path, frames=frames, image_size=image_size, cache_dir=cache_dir)
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    # AutoTokenizer would rebuild a qwen2 tokenizer and mangle ours (STACK.md).
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    tokenizer.padding_side = "left"
    return Policy(model=model, tokenizer=tokenizer, path=path)


def _load_omni(path: Path, *, frames: int | None, image_size: int | None,
               cache_dir: Path | None) -> Policy:
    import torch

    from erv_plugins.datasets.media import decode_clip
    from erv_plugins.models import omni

    register_omni_auto_classes()
    model, processor = omni.load_omni(path, device="cpu", dtype=torch.float32)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    config = model.config
    n_frames = frames or getattr(config, "num_frames", None) or 8
    size = image_size or getattr(config, "image_size", None) or 224

    def media_fn(sample: Sample) -> dict[str, torch.Tensor]:
        if sample.video is None:
            raise ErvError(f"sample {sample.id}: the omni policy needs a clip, the sample has none")
        video, audio = decode_clip(sample.video, n_frames, size, cache_dir)
        return {"videos": torch.as_tensor(video), "audios": torch.as_tensor(audio)}

    prefix = getattr(processor, "media_prefix", None)
    if prefix is None:
        prefix = _placeholder_prefix(processor)
    return Policy(model=model, tokenizer=tokenizer, path=path, processor=processor,
                  media_fn=media_fn, media_prefix=prefix)


def _placeholder_prefix(processor: Any) -> str:
    parts = []
    for attr in ("video_token", "audio_token"):
        tok = getattr(processor, attr, None)
        if tok:
            parts.append(str(tok))
    return "".join(parts) + ("\n" if parts else "")


def register_omni_auto_classes() -> None:
    """Let transformers' Auto classes (and so TRL's reference model) load omni checkpoints."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from erv_plugins.models import omni

    try:
        AutoConfig.register(omni.OmniConfig.model_type, omni.OmniConfig)
    except ValueError:
        pass  # already registered
    try:
        AutoModelForCausalLM.register(omni.OmniConfig, omni.OmniForCausalLM)
    except ValueError:
        pass

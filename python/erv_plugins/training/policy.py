"""The policy being trained: a model plugin's media policy (video + audio + text) or a
text-only causal LM.

Both stages (SFT, GRPO) see the same small interface (``models.base.MediaPolicy``): the
chat prompt of a sample, its token ids and media tensors (row-first keyword arguments of
the model's ``forward`` and ``generate``; none for a text-only policy), the tokenizer, and
the model. Which model family a saved directory belongs to is asked of the registered
model plugins (``models.base.policy_owner``); the core names none.

The prompt is the paper's question (section 4, taken from the authors' release) after the
model's video and audio placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from erv_plugins.datasets.base import Sample
    from erv_plugins.plugins import Plugins

QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the "
    "characters is the most obvious to you? Output the thinking process in <think> </think> "
    "and final emotion in <answer> </answer> tags."
)


def target_text(explanation: str, label: str) -> str:
    """The SFT target (paper eq. 2): the explanation in <think>, the label in <answer>."""
    return f"<think>{explanation.strip()}</think>\n<answer>{label}</answer>"


@dataclass
class Policy:
    """A text-only causal LM and how to turn samples into its inputs (no media)."""

    multimodal: ClassVar[bool] = False
    media_keys: ClassVar[tuple[str, ...]] = ()
    fast_path: ClassVar[bool] = False
    suppressed_ids: ClassVar[tuple[int, ...]] = ()

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    processor: Any | None = None

    def prompt(self, sample: Sample | None = None, template: str = "policy") -> str:
        """The chat-formatted prompt (generation prompt included) for one sample."""
        if template != "policy":
            raise ErvError(f"prompt template {template!r} is for the omni policy; a text-only "
                           "policy uses its own chat template ('policy')")
        user = QUESTION
        if sample is not None and "cue" in sample.extra:
            # A text-only policy reads what the clip shows as words (tests, fallback demo).
            user = f"Clip: {sample.extra['cue']}\n{QUESTION}"
        return str(self.tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True))

    def prompt_length(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    def encode(self, samples: Sequence[Sample], prompts: Sequence[str] | None = None,
               questions: Sequence[str] | None = None
               ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
        """Prompt token ids (no padding) and no media."""
        prompts = list(prompts) if prompts is not None else [self.prompt(s) for s in samples]
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        return [list(r) for r in ids], {}

    def sft_example(self, sample: Sample, question: str, target: str, template: str = "policy"
                    ) -> tuple[list[int], list[int], str | None]:
        if template != "policy":
            raise ErvError(f"$.sft.prompt_template {template!r} is for the omni policy; "
                           "a text-only policy uses 'policy'")
        tok = self.tokenizer
        prompt_ids = tok(self.prompt(sample), add_special_tokens=False)["input_ids"]
        target_ids = tok(target + tok.eos_token, add_special_tokens=False)["input_ids"]
        return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids, None

    def model_inputs(self, media: dict[str, Any]) -> dict[str, Any]:
        return dict(media)

    def media_cache(self) -> None:
        return None

    def save(self, out_dir: str | Path) -> None:
        self.tokenizer.save_pretrained(out_dir)


def model_type(path: Path) -> str:
    import json

    from erv_plugins.models.base import model_directory

    config = model_directory(path) / "config.json"
    return str(json.loads(config.read_text()).get("model_type", ""))


def load_policy(path: str | Path, *, frames: int | None = None,
                image_size: int | None = None, cache_dir: Path | None = None,
                train_vision_tower: bool = False, options: Any = None,
                model_plugin: str | None = None, plugins: Plugins | None = None) -> Any:
    """Load a saved policy directory for training (float32, CPU until the Trainer moves it):
    the model plugin that owns it opens it (``models.base.policy_owner``), else a causal LM.

    ``frames``/``image_size``: how clips are decoded (the checkpoint must take them).
    ``train_vision_tower``: unfreeze the vision tower (paper Table 8, 0.5B).
    ``options``: the recipe's ``[model.options]``, handed to the owner when the recipe's
    ``model_plugin`` is that plugin (e.g. where a published checkpoint's encoders are).
    """
    from erv_plugins.models.base import policy_owner

    path = Path(path)
    model_type(path)  # a directory without config.json is an error here
    owner = policy_owner(path, plugins)
    if owner is not None:
        return owner.factory.open(
            path, options if model_plugin == owner.name else None, device="cpu",
            dtype=torch_float32(), frames=frames, image_size=image_size, cache_dir=cache_dir,
            train_vision_tower=train_vision_tower, question=QUESTION)
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    # AutoTokenizer would rebuild a qwen2 tokenizer and mangle ours (STACK.md).
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    tokenizer.padding_side = "left"
    return Policy(model=model, tokenizer=tokenizer, path=path)


def torch_float32() -> Any:
    import torch

    return torch.float32

"""Loading a Qwen2.5-Omni thinker (never its talker) by local path or hub id.

A directory is a thinker erv saved (``model_type`` ``qwen2_5_omni_thinker``) or a
published full model (``qwen2_5_omni``: thinker, talker and token2wav). For the full model
only the thinker is built (``Qwen2_5OmniConfig.thinker_config``), and transformers'
checkpoint mapping for ``Qwen2_5OmniThinkerForConditionalGeneration`` strips the
``thinker.`` prefix from the weight names; the talker's and token2wav's weights are
never read into the model (safetensors loads tensors by name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from erv_plugins.errors import ErvError
from erv_plugins.models.base import checkpoint_and_dtype


def model_type_of(path: str | Path) -> str:
    """The ``model_type`` of ``path/config.json`` ("" when there is none)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return ""
    try:
        return str(json.loads(config.read_text()).get("model_type", ""))
    except ValueError:
        return ""


def thinker_config(path: Path) -> Any:
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniThinkerConfig

    if model_type_of(path) == "qwen2_5_omni":
        return Qwen2_5OmniConfig.from_pretrained(path).thinker_config
    return Qwen2_5OmniThinkerConfig.from_pretrained(path)


def load_thinker(path: str | Path, device: str = "cpu", dtype: Any = None) -> Any:
    """The thinker of ``path`` in eval mode on ``device`` (``dtype`` None/"auto": the
    checkpoint's; else a torch dtype or its name)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    root, dtype = checkpoint_and_dtype(path, dtype)
    model, info = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(
        root, config=thinker_config(root), dtype=dtype if dtype is not None else "auto",
        output_loading_info=True)
    missing = set(info["missing_keys"]) - {"lm_head.weight"} if model.config.get_text_config(
    ).tie_word_embeddings else set(info["missing_keys"])
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise ErvError(f"{root}: checkpoint lacks {len(missing)} thinker weights ({shown} ...)")
    model.to(device)
    model.eval()
    return model


def open_qwen_omni(path: str | Path, *, device: str = "cpu", dtype: Any = None,
                   frames: int | None = None, image_size: int | None = None,
                   cache_dir: Any = None, train_vision_tower: bool = False,
                   question: str | None = None, clip: dict[str, Any] | None = None) -> Any:
    """Open ``path`` as the core's policy (``QwenOmniMediaPolicy``).

    ``frames``: frames sampled per clip (a stage's ``frames``; even). ``image_size``: a
    stage's frame size, here the largest frame area (``image_size``**2 pixels; the
    processor keeps the aspect ratio). ``train_vision_tower``: unfreeze ``model.visual``;
    the audio encoder is always frozen. ``cache_dir`` is unused (clips are decoded once
    per process). ``clip``: the model options' clip settings.
    """
    from transformers import Qwen2_5OmniProcessor

    from erv_plugins.models.qwen_omni.processing import QwenOmniMediaPolicy, clip_settings
    from erv_plugins.training.policy import QUESTION

    root = Path(path)
    overrides = dict(clip or {})
    if frames is not None:
        overrides["frames"] = frames
    if image_size is not None:
        overrides["max_pixels"] = image_size * image_size
        overrides["min_pixels"] = min(overrides.get("min_pixels", image_size * image_size),
                                      image_size * image_size)
    settings = clip_settings(root, overrides)
    model = load_thinker(root, device=device, dtype=dtype)
    model.model.audio_tower.requires_grad_(False)
    model.model.visual.requires_grad_(bool(train_vision_tower))
    processor = Qwen2_5OmniProcessor.from_pretrained(root)
    processor.tokenizer.padding_side = "left"
    return QwenOmniMediaPolicy(model=model, processor=processor, path=root,
                               question=question or QUESTION, settings=settings)

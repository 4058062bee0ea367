"""The ``qwen_omni`` model plugin: a Qwen2.5-Omni thinker as the policy (issue 19).

Written as a third party would write a model plugin: its own ``erv_register_models``
hook implementation, and the model contract of ``erv_plugins.models.base`` (the factory
class answers ``owns`` / ``open`` / ``media_settings`` for saved directories; ``open``
returns a ``QwenOmniMediaPolicy``). transformers (5.23) provides the model:
``Qwen2_5OmniThinkerForConditionalGeneration`` (the text-generating half; the talker and
token2wav, which speak, are never loaded, also from a full
``Qwen2_5OmniForConditionalGeneration`` checkpoint) and ``Qwen2_5OmniProcessor`` (video
frames, the audio track, ``use_audio_in_video``: the audio tokens interleaved with the
video tokens in 2 s chunks, with time-aligned M-RoPE positions).

Recipe: ``[model] plugin = "qwen_omni"``, ``path`` = a local directory or a hub id
(``Qwen/Qwen2.5-Omni-3B``, read from the local cache: ``erv download`` fills it), or
``options = { tiny = true }`` for a tiny random thinker built offline in the run dir.
This module stays light (no torch import): ``erv`` loads every plugin at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from erv_plugins.hookspecs import hookimpl
from erv_plugins.models.base import checkpoint_or_tiny, model_location
from erv_plugins.plugins import Register

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext

# config.json model types this plugin opens: a thinker saved by erv, or the full model.
MODEL_TYPES: tuple[str, ...] = ("qwen2_5_omni_thinker", "qwen2_5_omni")


class QwenOmniOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``qwen_omni`` model (recipe ``[model.options]``)."""

    # Build a tiny random thinker here when the recipe gives no ``path`` (CPU demos, tests).
    tiny: bool = False
    tiny_dir: str | None = None  # where to write it; default <run dir>/tiny_qwen_omni
    seed: int = 0
    dtype: str | None = None  # "float32", "bfloat16", ...; None keeps the checkpoint's
    # How a clip becomes the thinker's input; None: what the directory's erv_qwen_omni.json
    # says, else the defaults of models/qwen_omni/processing.py (8 frames, the audio
    # track interleaved with the video tokens, Qwen2.5-Omni's pixel bounds).
    frames: int | None = None
    use_audio_in_video: bool | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    # Whether training stages unfreeze the vision encoder (``model.visual``) unless a stage
    # table says (`train_vision_tower`); the audio encoder stays frozen, as Whisper in the
    # paper's policy.
    train_vision_tower: bool = False

    def clip_settings(self) -> dict[str, Any]:
        return {k: v for k, v in (("frames", self.frames),
                                  ("use_audio_in_video", self.use_audio_in_video),
                                  ("min_pixels", self.min_pixels),
                                  ("max_pixels", self.max_pixels)) if v is not None}


class QwenOmniPolicy:
    """Qwen2.5-Omni thinker (Qwen2.5 LM + its ViT + its Whisper-style audio encoder)."""

    name: ClassVar[str] = "qwen_omni"
    Options = QwenOmniOptions

    def __init__(self, options: QwenOmniOptions | None = None, *,
                 context: BuildContext | None = None) -> None:
        self.options = options or QwenOmniOptions()
        self.path, self.run_dir = model_location(context)

    def model_path(self) -> str:
        o = self.options
        return checkpoint_or_tiny(
            self.path, tiny=o.tiny,
            tiny_dir=Path(o.tiny_dir) if o.tiny_dir else self.run_dir / "tiny_qwen_omni",
            build=self._build_tiny, missing="model qwen_omni: give a checkpoint `path` "
            "(e.g. Qwen/Qwen2.5-Omni-3B), or set options.tiny = true for a tiny random "
            "thinker")

    def _build_tiny(self, out: Path) -> None:
        from erv_plugins.models.qwen_omni.tiny import build_tiny_qwen_omni

        build_tiny_qwen_omni(out, seed=self.options.seed)

    def load(self, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
        policy = self.open(self.model_path(), self.options, device=device,
                           dtype=dtype if dtype is not None else self.options.dtype)
        return policy.model, policy.processor

    # -- the contract for saved directories (models/base.py) ------------------------------
    @classmethod
    def owns(cls, path: Path) -> bool:
        from erv_plugins.models.qwen_omni.loading import model_type_of

        return model_type_of(path) in MODEL_TYPES

    @classmethod
    def open(cls, path: str | Path, options: QwenOmniOptions | None = None,
             **settings: Any) -> Any:
        """The directory as a ``QwenOmniMediaPolicy`` (``loading.open_qwen_omni``;
        ``settings``: device, dtype, frames, image_size, cache_dir, train_vision_tower,
        question)."""
        from erv_plugins.models.qwen_omni.loading import open_qwen_omni

        if options is not None:
            if settings.get("dtype") is None and options.dtype:
                settings["dtype"] = options.dtype
            settings["clip"] = options.clip_settings()
        return open_qwen_omni(path, **settings)

    @classmethod
    def media_settings(cls, options: QwenOmniOptions | None, path: str | None
                       ) -> dict[str, Any]:
        """``decode_clip`` settings for ``erv data check``: the frames this model samples,
        128 mels x 30 s (Whisper's, as Qwen2.5-Omni's feature extractor); the check reads
        the same frames and audio track the processor reads."""
        from erv_plugins.models.qwen_omni.processing import clip_settings

        settings = clip_settings(Path(path) if path else None,
                                 options.clip_settings() if options is not None else {})
        return {"frames": settings["frames"], "image_size": 224, "n_mels": 128,
                "chunk_length": 30.0, "aspect_ratio": "pad"}


@hookimpl
def erv_register_models(register: Register) -> None:
    register(QwenOmniPolicy)

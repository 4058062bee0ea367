"""Built-in models, registered through ``erv_register_models`` like any third-party plugin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

from erv_plugins.hookspecs import hookimpl
from erv_plugins.models.base import checkpoint_or_tiny, model_location
from erv_plugins.plugins import Register

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext


class OmniOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``omni`` model (recipe ``[model.options]``)."""

    # Build a tiny random model here when the recipe gives no ``path`` (CPU demos, tests).
    tiny: bool = False
    tiny_dir: str | None = None  # where to write it; default <run dir>/tiny_omni
    seed: int = 0
    # The tiny model's tokenizer (models/omni/tiny.py): "base" (512 pieces), or "synthetic"
    # (2,048, the synthetic task's words whole: clean explanations at temperature 1).
    tiny_vocabulary: Literal["base", "synthetic"] = "base"
    dtype: str | None = None  # "float32", "bfloat16", ...; None keeps the checkpoint's
    cache_dir: str | None = None  # decoded-clip cache shared by the processor
    # Whether training stages unfreeze the SigLIP tower, unless a stage table says
    # (`train_vision_tower` in [sft] / [grpo]; paper Table 8: SFT yes, GRPO no). The
    # release never trains it (its SigLIP forward runs under no_grad); Whisper is frozen.
    train_vision_tower: bool = False
    # Where a published checkpoint's encoders come from when its config.json names none
    # (or paths of the authors' machines): a local directory or a hub id. The BERT text
    # gate: its tokenizer, and its weights if the checkpoint lacks them (the release
    # hard-codes bert-base-uncased). None: the config's text_model_path, else
    # "bert-base-uncased". The towers: None = the config's mm_vision_tower / mm_audio_tower.
    text_model_path: str | None = None
    vision_tower: str | None = None
    audio_tower: str | None = None

    def sources(self) -> dict[str, str]:
        """The encoder sources to pass to ``load_omni`` (only those given); a hub id
        ``owner/name[@revision]`` becomes its snapshot in the local cache (never fetched
        here: ``erv download`` fills the cache)."""
        from erv_plugins.hub import local_model

        return {k: str(local_model(v, where=f"$.model.options.{k}"))
                for k, v in (("text_model_path", self.text_model_path),
                             ("vision_tower", self.vision_tower),
                             ("audio_tower", self.audio_tower)) if v}


class OmniPolicy:
    """HumanOmni-compatible omni policy (Qwen2 + SigLIP + Whisper + BERT gate; paper eq. 1)."""

    name: ClassVar[str] = "omni"
    Options = OmniOptions

    def __init__(self, options: OmniOptions | None = None, *,
                 context: BuildContext | None = None) -> None:
        self.options = options or OmniOptions()
        self.path, self.run_dir = model_location(context)

    def model_path(self) -> str:
        o = self.options
        return checkpoint_or_tiny(
            self.path, tiny=o.tiny,
            tiny_dir=Path(o.tiny_dir) if o.tiny_dir else self.run_dir / "tiny_omni",
            build=self._build_tiny, missing="model: give a checkpoint `path`, or set "
            "options.tiny = true for a tiny random model")

    def _build_tiny(self, out: Path) -> None:
        from erv_plugins.models.omni import build_tiny_omni

        build_tiny_omni(out, seed=self.options.seed, vocabulary=self.options.tiny_vocabulary)

    # -- the contract for saved directories (models/base.py) ------------------------------
    @classmethod
    def owns(cls, path: Path) -> bool:
        """A HumanOmni-compatible directory: erv's ``OmniForCausalLM`` or a release's."""
        from erv_plugins.models.omni.policy import is_omni_dir

        return is_omni_dir(path)

    @classmethod
    def open(cls, path: str | Path, options: OmniOptions | None = None, **settings: Any) -> Any:
        """The directory as an ``OmniMediaPolicy`` (``models/omni/policy.open_omni``;
        ``settings``: device, dtype, frames, image_size, cache_dir, train_vision_tower,
        question). ``options``: this plugin's recipe options, when the recipe names it:
        their encoder sources reach every load."""
        from erv_plugins.models.omni.policy import open_omni

        sources = options.sources() if options is not None else {}
        if settings.get("dtype") is None and options is not None and options.dtype:
            settings["dtype"] = options.dtype
        return open_omni(path, sources=sources, **settings)

    @classmethod
    def media_settings(cls, options: OmniOptions | None, path: str | None) -> dict[str, Any]:
        """``decode_clip`` settings of a checkpoint (its processor), of the tiny model, or
        the paper's 0.5B policy (8 frames of 224 px, whisper-large-v3's 128 mels x 30 s)."""
        if path:
            from erv_plugins.models.omni import OmniProcessor

            return dict(OmniProcessor.from_pretrained(path).media_settings())
        if options is not None and options.tiny:
            from erv_plugins.models.omni.tiny import TINY_MEDIA

            return dict(TINY_MEDIA)
        return {"frames": 8, "image_size": 224, "n_mels": 128, "chunk_length": 30.0,
                "aspect_ratio": "pad"}

    def load(self, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
        from erv_plugins.models.omni import load_omni

        model, processor = load_omni(self.model_path(), device=device,
                                     dtype=dtype if dtype is not None else self.options.dtype,
                                     **self.options.sources())
        processor.cache_dir = self.options.cache_dir
        return model, processor


@hookimpl
def erv_register_models(register: Register) -> None:
    register(OmniPolicy)

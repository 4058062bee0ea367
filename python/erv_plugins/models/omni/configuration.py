"""Configuration of the HumanOmni-compatible policy (paper section 3.1, eq. 1).

The keys are those of the published HumanOmni / R1-Omni ``config.json`` (model type
``HumanOmni_qwen2``: a Qwen2 config plus ``mm_vision_tower``, ``mm_audio_tower``,
``text_model_path``, ``mm_projector_type``, ``mm_audio_projector_type``,
``mm_hidden_size``, ``audio_hidden_size``, ``mm_vision_select_layer``, ``num_frames`` ...).
The release reads the three encoders' own configs from the directories those paths name;
we do the same when they are local directories, and otherwise embed the sub-configs
(``vision_config``, ``audio_config``, ``text_gate_config``) so that a tiny model can be
built from its config alone and saved as one self-contained directory.
"""

from __future__ import annotations

import os
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import BertConfig, Qwen2Config, SiglipVisionConfig, WhisperConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

MODEL_TYPE = "HumanOmni_qwen2"

# Published encoders, used when a config names an encoder that is not a local directory
# (a hub id such as "google/siglip-base-patch16-224"): the shapes are then known
# without a download, and the weights come from the checkpoint itself.
SIGLIP_BASE_224: dict[str, Any] = {}  # SiglipVisionConfig() defaults are base-patch16-224
SIGLIP_SO400M_384: dict[str, Any] = {
    "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
    "num_attention_heads": 16, "patch_size": 14, "image_size": 384,
}  # fmt: skip
WHISPER_LARGE_V3: dict[str, Any] = {
    "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
    "encoder_ffn_dim": 5120, "decoder_layers": 32, "decoder_attention_heads": 20,
    "decoder_ffn_dim": 5120, "num_mel_bins": 128, "max_source_positions": 1500,
    "vocab_size": 51866,
}  # fmt: skip

# The release hard-codes the hidden width of the BERT text gate's MLP.
RELEASE_TEXT_GATE_HIDDEN = 3584

# The release's placeholder ids for a clip's video and audio (MODAL_INDEX_MAP).
VIDEO_TOKEN_INDEX = -201
AUDIO_TOKEN_INDEX = -202


def _encoder_config(cls: type[PreTrainedConfig], path: str | None,
                    published: dict[str, dict[str, Any]]) -> PreTrainedConfig:
    """The encoder config for ``path``: read from a local directory, else a known shape."""
    if path and os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        cfg = cls.from_pretrained(path)
        return cfg
    for marker, kwargs in published.items():
        if path and marker in path:
            return cls(**kwargs)
    return cls(**next(iter(published.values())))


@strict
class OmniConfig(Qwen2Config):
    """A Qwen2 config with HumanOmni's multimodal keys (see the module docstring)."""

    model_type = MODEL_TYPE
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=SiglipVisionConfig, optional=True),
        "audio_config": SubConfigSpec(config_class=WhisperConfig, optional=True),
        "text_gate_config": SubConfigSpec(config_class=BertConfig, optional=True),
    }

    # -- keys of the published config.json ----------------------------------------------
    mm_vision_tower: str | None = "google/siglip-base-patch16-224"
    mm_audio_tower: str | None = "openai/whisper-large-v3"
    # Absent from some published configs: the release hard-codes its BERT directory. The
    # gate's shape is then bert-base-uncased's; ``load_omni(text_model_path=...)`` names
    # where its tokenizer (and any weights the checkpoint lacks) come from.
    text_model_path: str | None = None
    mm_projector_type: str = "all_in_one_small"
    mm_audio_projector_type: str = "mlp2x_gelu"
    mm_hidden_size: int | None = None
    audio_hidden_size: int | None = None
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    num_frames: int = 8
    mm_use_x_start_end: bool = True
    image_aspect_ratio: str = "pad"
    tokenizer_model_max_length: int | None = 2048
    tokenizer_padding_side: str = "right"
    use_mm_proj: bool = True
    # -- erv additions (absent from the release: defaults reproduce its behaviour) --------
    vision_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    text_gate_config: dict | PreTrainedConfig | None = None
    text_gate_hidden_size: int = RELEASE_TEXT_GATE_HIDDEN
    # Ids that the processor repeats once per video / audio feature; the model writes the
    # encoders' features at those positions. The release's own placeholder ids
    # (humanomni/constants.py: -201 video, -202 audio): no vocabulary holds them, so
    # nothing is added to a published tokenizer and a placeholder can never be sampled.
    video_placeholder_id: int = VIDEO_TOKEN_INDEX
    audio_placeholder_id: int = AUDIO_TOKEN_INDEX
    freeze_vision_tower: bool = True
    freeze_audio_tower: bool = True

    def __post_init__(self, **kwargs: Any) -> None:
        if self.vision_config is None:
            self.vision_config = _encoder_config(
                SiglipVisionConfig, self.mm_vision_tower,
                {"siglip-base": SIGLIP_BASE_224, "so400m": SIGLIP_SO400M_384})
        if self.audio_config is None:
            self.audio_config = _encoder_config(
                WhisperConfig, self.mm_audio_tower, {"whisper-large-v3": WHISPER_LARGE_V3})
        if self.text_gate_config is None:
            self.text_gate_config = _encoder_config(BertConfig, self.text_model_path,
                                                    {"bert": {}})
        super().__post_init__(**kwargs)
        if self.mm_hidden_size is None:
            self.mm_hidden_size = self.vision_config.hidden_size
        if self.audio_hidden_size is None:
            self.audio_hidden_size = self.audio_config.d_model

    # -- derived sizes -------------------------------------------------------------------
    @property
    def patches_per_side(self) -> int:
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def num_video_tokens(self) -> int:
        """Features the visual projector yields for one clip of ``num_frames`` frames.

        The three visual branches must agree: the 3-D conv samplers of the all-in-one
        projectors and the 2x2 pooling of the face branch (release ``get_2dPool``).
        """
        side = self.patches_per_side
        if self.mm_projector_type == "all_in_one_small":  # conv k=2, s=2, no spatial pad
            conv_side = (side - 2) // 2 + 1
        elif self.mm_projector_type == "all_in_one":  # conv k=2, s=2, spatial pad 1
            conv_side = side // 2 + 1
        else:
            raise ValueError(f"unsupported mm_projector_type {self.mm_projector_type!r}; "
                             "erv implements 'all_in_one_small' (0.5B) and 'all_in_one' (7B)")
        pool_side = -(-side // 2)
        if conv_side != pool_side:
            raise ValueError(
                f"mm_projector_type {self.mm_projector_type!r} gives {conv_side}x{conv_side} "
                f"tokens per frame but the face branch gives {pool_side}x{pool_side} for "
                f"{side}x{side} patches: choose image_size/patch_size to fit")
        return self.num_frames * conv_side * conv_side

    @property
    def num_audio_tokens(self) -> int:
        """Whisper encoder frames after avg_pool1d(kernel=3, stride=3) (release encode_audios)."""
        return self.audio_config.max_source_positions // 3

    @property
    def num_audio_frames(self) -> int:
        """Log-mel frames the Whisper encoder expects (two per encoder position)."""
        return self.audio_config.max_source_positions * 2

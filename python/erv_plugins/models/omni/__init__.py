"""The HumanOmni-compatible omni policy: config, model, processor, tiny builder, loader.

Importing this package registers the ``HumanOmni_qwen2`` model type with transformers'
``AutoConfig`` and ``AutoModelForCausalLM``, so a saved directory (ours or a HumanOmni
release) loads by path, as TRL does for its reference model. See docs/data-and-model.md.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForCausalLM

from erv_plugins.models.omni.configuration import (
    AUDIO_TOKEN_INDEX,
    MODEL_TYPE,
    VIDEO_TOKEN_INDEX,
    OmniConfig,
)
from erv_plugins.models.omni.modelling import MediaFeatureCache, OmniForCausalLM
from erv_plugins.models.omni.processing import (
    AUDIO_TOKEN,
    EMOTION_QUESTION,
    RELEASE_EVAL_QUESTION,
    VIDEO_TOKEN,
    OmniProcessor,
    media_prefix,
    qwen2_vl_chat_template,
    question_of,
)
from erv_plugins.models.omni.tiny import build_tiny_omni, load_omni

AutoConfig.register(MODEL_TYPE, OmniConfig, exist_ok=True)
AutoModelForCausalLM.register(OmniConfig, OmniForCausalLM, exist_ok=True)

__all__ = [
    "AUDIO_TOKEN", "AUDIO_TOKEN_INDEX", "EMOTION_QUESTION", "MODEL_TYPE", "RELEASE_EVAL_QUESTION",
    "VIDEO_TOKEN", "VIDEO_TOKEN_INDEX", "MediaFeatureCache", "OmniConfig", "OmniForCausalLM", "OmniProcessor",
    "build_tiny_omni", "load_omni", "media_prefix", "question_of", "qwen2_vl_chat_template",
]

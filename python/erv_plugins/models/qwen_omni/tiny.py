"""A tiny random Qwen2.5-Omni thinker for CPU tests and demos, built offline from configs.

``build_tiny_qwen_omni(out_dir)`` writes a directory that ``open_qwen_omni`` (and
transformers' ``Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained`` /
``Qwen2_5OmniProcessor.from_pretrained``) load: the thinker's config and random weights
(text 64 wide x 2 layers, ViT 16 wide x 1 block with 4 px patches, audio encoder 16 wide
x 1 layer over 16 mels), and a processor (the byte-level BPE of ``models/omni/tiny.py``
with Qwen2.5-Omni's media tokens added, a ChatML template that writes a video part as
``<|vision_bos|><|VIDEO|><|vision_eos|>``, Qwen2-VL's video processor with 4 px patches,
Whisper's feature extractor with 16 mels x 30 s). No download.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from erv_plugins.models.omni.tiny import chatml_template

# Qwen2.5-Omni's media tokens (the tokenizer's extra special tokens, by role).
MEDIA_TOKENS: dict[str, str] = {
    "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}

# ChatML with its media parts written as Qwen2.5-Omni's chat template writes them.
CHAT_TEMPLATE = chatml_template("<|vision_bos|><|VIDEO|><|vision_eos|>",
                                "<|audio_bos|><|AUDIO|><|audio_eos|>")

# Frames of the synthetic clips (32 px) stay 32 px: 8 x 8 patches of 4 px, merged 2 x 2
# into 16 video tokens per pair of frames.
TINY_CLIP: dict[str, Any] = {"frames": 8, "use_audio_in_video": True,
                             "min_pixels": 16 * 16, "max_pixels": 32 * 32}


def build_tiny_processor() -> Any:
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5OmniProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from erv_plugins.models.omni.tiny import build_tiny_tokenizer

    base = build_tiny_tokenizer()
    base.add_special_tokens({"additional_special_tokens": list(MEDIA_TOKENS.values())})
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", unk_token=None, model_max_length=4096,
        padding_side="left", extra_special_tokens=MEDIA_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    pixels = {"shortest_edge": TINY_CLIP["min_pixels"], "longest_edge": TINY_CLIP["max_pixels"]}
    vision = {"patch_size": 4, "temporal_patch_size": 2, "merge_size": 2, "size": pixels}
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(**vision),
        video_processor=Qwen2VLVideoProcessor(**vision, do_sample_frames=False),
        feature_extractor=WhisperFeatureExtractor(feature_size=16, sampling_rate=16_000,
                                                  chunk_length=30, hop_length=160, n_fft=400),
        tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def tiny_thinker_config(tokenizer: Any, **overrides: Any) -> Any:
    """Tiny sizes (the head dim 16 splits into M-RoPE sections 2 + 3 + 3 of 8)."""
    from transformers import Qwen2_5OmniThinkerConfig

    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in MEDIA_TOKENS.items()}
    kwargs: dict[str, Any] = dict(
        audio_config=dict(num_mel_bins=16, encoder_layers=1, encoder_attention_heads=2,
                          encoder_ffn_dim=32, d_model=16, max_source_positions=1500,
                          n_window=100, output_dim=64),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2,
                           window_size=16, out_hidden_size=64, fullatt_block_indexes=[0],
                           in_channels=3),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "mrope_section": [2, 3, 3]},
                         eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        audio_token_index=ids["audio_token"], image_token_index=ids["image_token"],
        video_token_index=ids["video_token"], audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"],
        vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
        user_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        position_id_per_seconds=25, seconds_per_chunk=2, tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return Qwen2_5OmniThinkerConfig(**kwargs)


def build_tiny_qwen_omni(out_dir: str | os.PathLike[str], *, seed: int = 0,
                         **config_overrides: Any) -> Path:
    """Write a loadable tiny random Qwen2.5-Omni thinker + processor to ``out_dir``.

    A 1 s synthetic clip (8 frames of 32 px, a tone) becomes 64 video tokens (4 pairs of
    frames x 4 x 4 merged patches) and 25 audio tokens (100 mel frames, two stride-2
    stages), in one 2 s chunk.
    """
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from erv_plugins.models.qwen_omni.processing import SETTINGS_FILE

    out = Path(out_dir)
    processor = build_tiny_processor()
    config = tiny_thinker_config(processor.tokenizer, **config_overrides)
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / SETTINGS_FILE).write_text(json.dumps(TINY_CLIP, indent=2) + "\n")
    return out


__all__ = ["CHAT_TEMPLATE", "MEDIA_TOKENS", "TINY_CLIP", "build_tiny_processor",
           "build_tiny_qwen_omni", "tiny_thinker_config"]

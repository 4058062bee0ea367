"""A tiny random omni model for CPU tests and demos, and the one loader for any omni dir.

``build_tiny_omni(out_dir)`` writes a complete model directory (config, weights,
tokenizer, BERT gate tokenizer, processor settings) from config alone: no download.
The LM tokenizer is a byte-level BPE trained here with the ``tokenizers`` library on
Qwen2's split regex, wrapped in ``PreTrainedTokenizerFast`` with a ChatML template
(STACK.md: ``AutoTokenizer`` on a qwen2-type directory would rebuild it). Like a
published HumanOmni tokenizer it holds no media tokens (the ``<vi_start>``-style wrappers
are text) and has Qwen2.5's vision tokens (``<|vision_start|>`` ...) as special tokens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from erv_plugins.errors import ErvError
from erv_plugins.labels import BUILTIN_LABEL_SPACES, GOEMOTIONS
from erv_plugins.models.base import checkpoint_and_dtype
from erv_plugins.models.omni.processing import (
    DEFAULT_TEXT_MODEL,
    EMOTION_QUESTION,
    RELEASE_EVAL_QUESTION,
    OmniProcessor,
    media_prefix,
)

# Qwen2's pre-tokenizer split pattern.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2.5's special tokens that prompts use (ChatML, and the vision tokens the Qwen2-VL
# chat template writes), in Qwen2.5's order.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|video_pad|>")
# Reasoning tags are ordinary added tokens (not special): decoding with
# skip_special_tokens=True must keep them, or the format reward could never match.
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

def chatml_template(video: str, audio: str) -> str:
    """ChatML with Qwen2's default system turn; message content is a string, or a list of
    parts {"type": "video"} / {"type": "audio"} / {"type": "text", "text": ...}, the media
    parts written as ``video`` / ``audio`` (each model family's own markers)."""
    return (
        "{%- for message in messages -%}"
        "{%- if loop.first and message['role'] != 'system' -%}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
        "{%- endif -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' }}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'video' -%}{{ '" + video + "' }}"
        "{%- elif part['type'] == 'audio' -%}{{ '" + audio + "' }}"
        "{%- else -%}{{ part['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{{ '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    )


# The HumanOmni markers: text wrappers around the media placeholders.
CHAT_TEMPLATE = chatml_template("<vi_start><video><vi_end>\\n", "<au_start><audio><au_end>\\n")

# What decode_clip must produce for the tiny model (kept equal to tiny_config's sizes).
TINY_MEDIA: dict[str, Any] = {"frames": 8, "image_size": 32, "n_mels": 16, "chunk_length": 1.98,
                              "aspect_ratio": "pad"}

_CORPUS_SENTENCES = (
    EMOTION_QUESTION,
    RELEASE_EVAL_QUESTION,
    media_prefix() + "<|vision_start|><|video_pad|><|vision_end|>",
    "You are a helpful assistant.",
    "In the video, the person looks {w}. The voice sounds {w}. The scene feels {w}.",
    "The screen glows with a warm colour and a tone plays. Overall the emotion is {w}.",
    "Her face shows {w}; his voice trembles. The music is calm, bright, dark, loud or soft.",
    "<think>The colour and the tone suggest {w}.</think> <answer>{w}</answer>",
)


def _corpus() -> list[str]:
    words = set(GOEMOTIONS)
    for space in BUILTIN_LABEL_SPACES.values():
        words.update(space.labels)
    lines = []
    for w in sorted(words):
        lines += [s.replace("{w}", w) for s in _CORPUS_SENTENCES]
    return lines


# The tiny tokenizers: "base" (512 pieces of a generic corpus: the tests' and the default
# demo's), "synthetic" (2,048 pieces, also trained on the synthetic task's explanations,
# whose words become whole tokens: the effect demo's).
VOCABULARIES: dict[str, int] = {"base": 512, "synthetic": 2048}


def build_tiny_tokenizer(vocab_size: int = 512, vocabulary: str = "base") -> Any:
    """Byte-level BPE (Qwen2 split regex, ChatML and vision specials, no media tokens);
    ``vocabulary`` "synthetic" adds ``datasets.synthetic.synthetic_corpus()`` to its corpus."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = _corpus()
    if vocabulary == "synthetic":
        from erv_plugins.datasets.synthetic import synthetic_corpus

        corpus += synthetic_corpus()
    elif vocabulary != "base":
        raise ErvError(f"tiny vocabulary must be one of {', '.join(VOCABULARIES)}, "
                       f"got {vocabulary!r}")
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, model_max_length=4096, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_gate_tokenizer() -> Any:
    """A WordPiece tokenizer for the tiny BERT gate: BERT specials + the corpus words."""
    import re

    from transformers import BertTokenizerFast

    words = sorted({w for line in _corpus() for w in re.findall(r"[a-z]+|[^\sa-z]", line.lower())})
    # Letters and "##" continuations: any lowercase word splits into pieces, never [UNK].
    pieces = [c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    pieces += ["##" + c for c in pieces]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
             *dict.fromkeys([*words, *pieces])]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                             model_max_length=64)


def tiny_config(tokenizer: Any, gate_tokenizer: Any, **overrides: Any) -> Any:
    """Tiny sizes: Qwen2 hidden 64 x 2 layers, SigLIP 32 px, Whisper 16 mels x 2 s, BERT 32."""
    from transformers import BertConfig, SiglipVisionConfig, WhisperConfig

    from erv_plugins.models.omni.configuration import OmniConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        vision_config=SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8).to_dict(),
        audio_config=WhisperConfig(
            d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
            decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=16,
            max_source_positions=99, max_target_positions=16, vocab_size=64,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1).to_dict(),
        text_gate_config=BertConfig(
            vocab_size=len(gate_tokenizer), hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
            pad_token_id=gate_tokenizer.pad_token_id).to_dict(),
        text_gate_hidden_size=32,
        mm_vision_tower=None, mm_audio_tower=None, text_model_path=None,
    )
    kwargs.update(overrides)
    return OmniConfig(**kwargs)


def build_tiny_omni(out_dir: str | os.PathLike[str], *, seed: int = 0,
                    vocabulary: str = "base", **config_overrides: Any) -> Path:
    """Write a loadable tiny random omni model + processor to ``out_dir``; returns it.

    Audio: 16 mel bins, 2 s windows (198 frames -> 33 audio tokens); video: 8 frames of
    32 px (32 video tokens). Load it with ``load_omni(out_dir)``.
    """
    from erv_plugins.models.omni.modelling import OmniForCausalLM

    out = Path(out_dir)
    if vocabulary not in VOCABULARIES:
        raise ErvError(f"tiny vocabulary must be one of {', '.join(VOCABULARIES)}, "
                       f"got {vocabulary!r}")
    tokenizer = build_tiny_tokenizer(VOCABULARIES[vocabulary], vocabulary)
    gate_tokenizer = build_tiny_gate_tokenizer()
    config = tiny_config(tokenizer, gate_tokenizer, **config_overrides)
    torch.manual_seed(seed)
    model = OmniForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    processor = OmniProcessor(
        tokenizer, gate_tokenizer, num_video_tokens=config.num_video_tokens,
        num_audio_tokens=config.num_audio_tokens, num_frames=config.num_frames,
        image_size=config.vision_config.image_size, n_mels=config.audio_config.num_mel_bins,
        audio_chunk_length=config.num_audio_frames / 100.0,
        mm_use_x_start_end=config.mm_use_x_start_end,
        gate_max_length=config.text_gate_config.max_position_embeddings)
    processor.save_pretrained(out)
    return out


def _looks_like_hub_id(path: str) -> bool:
    return path.count("/") <= 1 and not path.startswith((".", "/", "~")) and "\\" not in path


def _load_missing_towers(model: Any, missing: set[str]) -> set[str]:
    """Fill encoders absent from a checkpoint from where its config names them.

    The release loads SigLIP, Whisper and BERT from ``mm_vision_tower``,
    ``mm_audio_tower`` and its BERT directory; a checkpoint may or may not carry their
    weights. Each is a local directory or a hub id (read from the local cache, or
    downloaded as transformers does).
    """
    from transformers import BertModel, SiglipVisionModel, WhisperForAudioClassification

    cfg = model.config
    towers = (
        ("model.vision_tower.vision_tower.", cfg.mm_vision_tower, SiglipVisionModel,
         model.model.vision_tower.vision_tower, "mm_vision_tower"),
        ("model.audio_tower.audio_tower.", cfg.mm_audio_tower, WhisperForAudioClassification,
         model.model.audio_tower.audio_tower, "mm_audio_tower"),
        ("model.bert_model.", cfg.text_model_path or DEFAULT_TEXT_MODEL, BertModel,
         model.model.bert_model, "text_model_path"),
    )
    left = set(missing)
    for prefix, path, cls, module, key in towers:
        keys = {k for k in left if k.startswith(prefix)}
        if not keys:
            continue
        hint = (f"checkpoint lacks {prefix}* weights and {path!r} is not a local directory "
                f"to load them from (set {key} in config.json or the model options)")
        if not path or not (os.path.isdir(path) or _looks_like_hub_id(path)):
            raise ErvError(hint)
        try:
            loaded = cls.from_pretrained(path, dtype=module.dtype)
        except (OSError, ValueError) as exc:
            raise ErvError(f"{hint}: {exc}") from None
        result = module.load_state_dict(loaded.state_dict(), strict=False)
        still = {prefix + k for k in result.missing_keys}
        left = (left - keys) | (keys & still)
    return left


# The encoder sources a caller named for a checkpoint directory (model options). TRL loads
# the reference model again by path, without options; it gets the same sources.
_SOURCES: dict[str, dict[str, str]] = {}


def load_omni(path: str | os.PathLike[str], device: str | torch.device = "cpu",
              dtype: torch.dtype | str | None = None, *, text_model_path: str | None = None,
              vision_tower: str | None = None, audio_tower: str | None = None,
              ) -> tuple[Any, OmniProcessor]:
    """Load an omni model directory (ours or a HumanOmni release) -> (model, processor).

    The model is in eval mode on ``device``; ``dtype`` None or "auto" keeps the
    checkpoint's, else a torch dtype or its name ("bfloat16"). A release directory loads
    as published: its config keys, its tokenizer unchanged (no tokens added), its weight
    names. ``text_model_path`` (the BERT text gate: its shape, tokenizer and any weights
    the checkpoint lacks), ``vision_tower`` and ``audio_tower`` override the config's
    ``text_model_path``, ``mm_vision_tower`` and ``mm_audio_tower``; without them the
    config's are used, and bert-base-uncased for a config that names no BERT.
    """
    from erv_plugins.models.omni.configuration import OmniConfig
    from erv_plugins.models.omni.modelling import OmniForCausalLM

    root, dtype = checkpoint_and_dtype(path, dtype)
    key = str(root.resolve())
    given = {k: v for k, v in (("text_model_path", text_model_path),
                               ("mm_vision_tower", vision_tower),
                               ("mm_audio_tower", audio_tower)) if v}
    if given:
        _SOURCES[key] = given
    else:
        given = _SOURCES.get(key, {})
    config_dict, _ = OmniConfig.get_config_dict(root)
    config = OmniConfig.from_dict({**config_dict, **given})
    processor = OmniProcessor.from_pretrained(root, config=config)
    try:
        model, info = OmniForCausalLM.from_pretrained(root, config=config, dtype=dtype,
                                                      output_loading_info=True)
    except RuntimeError as exc:
        if "mismatched" not in str(exc):
            raise
        gate = config.text_model_path or DEFAULT_TEXT_MODEL
        raise ErvError(
            f"{root}: checkpoint weights do not fit the shapes its config gives (text gate "
            f"from {gate!r}, towers from {config.mm_vision_tower!r} and "
            f"{config.mm_audio_tower!r}); set the model options text_model_path / "
            "vision_tower / audio_tower to the encoders it was trained with") from None
    missing = _load_missing_towers(model, set(info["missing_keys"]))
    if model.config.tie_word_embeddings:
        missing.discard("lm_head.weight")
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise ErvError(f"{root}: checkpoint lacks {len(missing)} weights ({shown} ...)")
    # The processor's placeholder ids (the release's); an erv checkpoint saved before
    # they were may name others in its config.
    model.config.video_placeholder_id = processor.video_token_id
    model.config.audio_placeholder_id = processor.audio_token_id
    model.to(device)
    model.eval()
    return model, processor


__all__ = ["TINY_MEDIA", "build_tiny_omni", "build_tiny_tokenizer", "build_tiny_gate_tokenizer",
           "tiny_config", "load_omni", "media_prefix"]

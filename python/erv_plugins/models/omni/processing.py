"""The omni processor: chat prompt with video and audio placeholders, media features, BERT gate input.

The release (``humanomni/__init__.py`` mm_infer and the R1-Omni GRPO trainer) writes the
user turn as ``<vi_start><video><vi_end>\\n<au_start><audio><au_end>\\n`` + question,
applies the Qwen2 chat template, and feeds the bare question to the BERT text gate.
We do the same, and then repeat each ``<video>`` / ``<audio>`` token once per feature
the encoders produce (see ``modelling`` for why).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import BatchFeature, BertTokenizerFast, PreTrainedTokenizerBase

from erv_plugins.errors import ErvError

VIDEO_TOKEN = "<video>"
AUDIO_TOKEN = "<audio>"
# Wrappers used when config.mm_use_x_start_end (true for HumanOmni-0.5B).
VIDEO_START, VIDEO_END = "<vi_start>", "<vi_end>"
AUDIO_START, AUDIO_END = "<au_start>", "<au_end>"
MEDIA_TOKENS = (VIDEO_TOKEN, AUDIO_TOKEN, VIDEO_START, VIDEO_END, AUDIO_START, AUDIO_END)

# The paper's and the release's emotion question (REFERENCE.md, "Models and training").
EMOTION_QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the "
    "characters is the most obvious to you? Output the thinking process in <think> </think> "
    "and final emotion in <answer> </answer> tags."
)

PROCESSOR_FILE = "omni_processor.json"
GATE_TOKENIZER_DIR = "text_gate"

_USER_TURN = re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL)


def media_prefix(video: bool = True, audio: bool = True, x_start_end: bool = True) -> str:
    """The placeholders the release puts before the question in the user turn."""
    v = f"{VIDEO_START}{VIDEO_TOKEN}{VIDEO_END}" if x_start_end else VIDEO_TOKEN
    a = f"{AUDIO_START}{AUDIO_TOKEN}{AUDIO_END}" if x_start_end else AUDIO_TOKEN
    return (v + "\n" if video else "") + (a + "\n" if audio else "")


def question_of(text: str) -> str:
    """The bare question of a prompt (what the BERT gate reads): last user turn, no media."""
    turns = _USER_TURN.findall(text)
    q = turns[-1] if turns else text
    for tok in MEDIA_TOKENS:
        q = q.replace(tok, "")
    return q.strip()


class OmniProcessor:
    """Text + media -> model inputs for ``OmniForCausalLM``.

    ``tokenizer`` is the LM tokenizer (Qwen2 byte-level BPE), ``gate_tokenizer`` the BERT
    WordPiece tokenizer of the text gate. Media settings mirror the model config.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        gate_tokenizer: PreTrainedTokenizerBase,
        *,
        num_video_tokens: int,
        num_audio_tokens: int,
        num_frames: int = 8,
        image_size: int = 224,
        n_mels: int = 128,
        audio_chunk_length: float = 30.0,
        aspect_ratio: str = "pad",
        mm_use_x_start_end: bool = True,
        gate_max_length: int = 512,
        cache_dir: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.gate_tokenizer = gate_tokenizer
        self.num_video_tokens = num_video_tokens
        self.num_audio_tokens = num_audio_tokens
        self.num_frames = num_frames
        self.image_size = image_size
        self.n_mels = n_mels
        self.audio_chunk_length = audio_chunk_length
        self.aspect_ratio = aspect_ratio
        self.mm_use_x_start_end = mm_use_x_start_end
        self.gate_max_length = gate_max_length
        self.cache_dir = cache_dir
        missing = [t for t in (VIDEO_TOKEN, AUDIO_TOKEN) if t not in tokenizer.get_vocab()]
        if missing:
            # A release tokenizer has no placeholder tokens; their embeddings are
            # overwritten by media features, so any unused id will do.
            tokenizer.add_special_tokens({"additional_special_tokens": list(MEDIA_TOKENS)},
                                         replace_extra_special_tokens=False)
        self.video_token_id: int = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        self.audio_token_id: int = tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)

    # -- tokenizer passthrough (what TRL's processing_class is asked for) -----------------
    @property
    def pad_token_id(self) -> int | None:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def pad_token(self) -> str | None:
        return self.tokenizer.pad_token

    @property
    def eos_token(self) -> str | None:
        return self.tokenizer.eos_token

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        return self.tokenizer.apply_chat_template(conversation, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    # -- prompts --------------------------------------------------------------------------
    def messages(self, question: str = EMOTION_QUESTION, *, video: bool = True,
                 audio: bool = True) -> list[dict[str, str]]:
        """The release's user turn: media placeholders, then the question."""
        prefix = media_prefix(video, audio, self.mm_use_x_start_end)
        return [{"role": "user", "content": prefix + question}]

    def prompt(self, question: str = EMOTION_QUESTION, *, video: bool = True,
               audio: bool = True) -> str:
        """The chat-templated prompt text, ending with the assistant turn's opening."""
        return self.tokenizer.apply_chat_template(
            self.messages(question, video=video, audio=audio), tokenize=False,
            add_generation_prompt=True)

    # -- media ----------------------------------------------------------------------------
    def load_clip(self, path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(video (T, 3, S, S), audio features (n_mels, frames)) of one clip file."""
        from erv_plugins.datasets.media import decode_clip

        return decode_clip(path, cache_dir=self.cache_dir, **self.media_settings())

    def __call__(
        self,
        text: str | Sequence[str],
        videos: Sequence[torch.Tensor | str | os.PathLike[str]] | torch.Tensor | None = None,
        audios: Sequence[torch.Tensor] | torch.Tensor | None = None,
        questions: Sequence[str] | None = None,
        *,
        padding: bool | str = True,
        padding_side: str | None = None,
        add_special_tokens: bool = False,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str = "pt",
    ) -> BatchFeature:
        """Tokenise prompts (placeholders expanded) and stack their media.

        ``videos``: one entry per text that holds ``<video>``: a decoded tensor
        (T, 3, S, S) or a clip path (decoded with ``load_clip``; its audio is used when
        ``audios`` is None). ``questions``: the BERT gate's text per row (default: the
        last user turn without placeholders, as the release passes the bare question).
        Returns input_ids, attention_mask and, when media are given, videos, audios,
        gate_input_ids, gate_attention_mask. Rows are always padded (``padding`` is
        accepted for TRL's calling convention); prompts holding media cannot be truncated.
        """
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self._expand(self.tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"],
                             i) for i, t in enumerate(texts)]
        if truncation and max_length is not None:
            long = [i for i, r in enumerate(rows) if len(r) > max_length]
            if long:
                raise ErvError(f"prompts {long} are longer than max_length={max_length} tokens "
                               "with their media placeholders; raise the limit (truncating "
                               "would cut media features)")
        side = padding_side or self.tokenizer.padding_side
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
            input_ids[i, sl] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, sl] = 1
        data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}

        with_video = [i for i, r in enumerate(rows) if self.video_token_id in r]
        with_audio = [i for i, r in enumerate(rows) if self.audio_token_id in r]
        decoded_audio: list[torch.Tensor] = []
        if videos is not None:
            clips = list(videos)
            if len(clips) != len(with_video):
                raise ErvError(f"{len(clips)} videos given for {len(with_video)} prompts "
                               f"that hold {VIDEO_TOKEN}")
            tensors = []
            for clip in clips:
                if isinstance(clip, torch.Tensor):
                    tensors.append(clip)
                else:
                    v, a = self.load_clip(clip)
                    tensors.append(v)
                    decoded_audio.append(a)
            data["videos"] = torch.stack(tensors)
        elif with_video:
            raise ErvError(f"prompts hold {VIDEO_TOKEN} but no videos were given")
        if audios is None and decoded_audio and len(decoded_audio) == len(with_audio):
            audios = decoded_audio
        if audios is not None:
            feats = list(audios)
            if len(feats) != len(with_audio):
                raise ErvError(f"{len(feats)} audios given for {len(with_audio)} prompts "
                               f"that hold {AUDIO_TOKEN}")
            data["audios"] = torch.stack([f.squeeze(0) if f.dim() == 3 else f for f in feats])
        elif with_audio:
            raise ErvError(f"prompts hold {AUDIO_TOKEN} but no audios were given")
        if with_video:
            qs = list(questions) if questions is not None else [question_of(texts[i])
                                                                 for i in with_video]
            if len(qs) != len(with_video):
                raise ErvError(f"{len(qs)} questions given for {len(with_video)} video prompts")
            gate = self.gate_tokenizer(qs, padding=True, truncation=True,
                                       max_length=self.gate_max_length, return_tensors="pt")
            data["gate_input_ids"] = gate["input_ids"]
            data["gate_attention_mask"] = gate["attention_mask"]
        return BatchFeature(data, tensor_type=return_tensors)

    def _expand(self, ids: list[int], row: int) -> list[int]:
        out: list[int] = []
        seen = {self.video_token_id: 0, self.audio_token_id: 0}
        for t in ids:
            if t == self.video_token_id:
                out += [t] * self.num_video_tokens
            elif t == self.audio_token_id:
                out += [t] * self.num_audio_tokens
            else:
                out.append(t)
                continue
            seen[t] += 1
        if max(seen.values()) > 1:
            raise ErvError(f"prompt {row} holds more than one {VIDEO_TOKEN} or {AUDIO_TOKEN}; "
                           "the omni model takes one clip per prompt")
        return out

    def media_settings(self) -> dict[str, Any]:
        """Keyword arguments of ``decode_clip`` that give this processor's inputs."""
        return {"frames": self.num_frames, "image_size": self.image_size, "n_mels": self.n_mels,
                "chunk_length": self.audio_chunk_length, "aspect_ratio": self.aspect_ratio}

    # -- persistence ----------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {
            "num_video_tokens": self.num_video_tokens, "num_audio_tokens": self.num_audio_tokens,
            "num_frames": self.num_frames, "image_size": self.image_size, "n_mels": self.n_mels,
            "audio_chunk_length": self.audio_chunk_length, "aspect_ratio": self.aspect_ratio,
            "mm_use_x_start_end": self.mm_use_x_start_end,
            "gate_max_length": self.gate_max_length,
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        self.gate_tokenizer.save_pretrained(out / GATE_TOKENIZER_DIR)
        (out / PROCESSOR_FILE).write_text(json.dumps(self.settings(), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, cache_dir: str | None = None
                        ) -> OmniProcessor:
        """Load a processor saved by ``save_pretrained``, or derive one from a release dir.

        A HumanOmni release directory has a Qwen2 tokenizer and a config.json whose
        ``text_model_path`` names a local bert-base-uncased directory for the gate.
        """
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        root = Path(path)
        if not root.is_dir():
            raise ErvError(f"{root}: no such model directory")
        if (root / "tokenizer.json").is_file():
            # Not AutoTokenizer: on a qwen2-type dir it rebuilds the tokenizer (STACK.md).
            tokenizer = PreTrainedTokenizerFast.from_pretrained(root)
        else:
            tokenizer = AutoTokenizer.from_pretrained(root)
        settings_file = root / PROCESSOR_FILE
        if settings_file.is_file():
            settings = json.loads(settings_file.read_text())
            gate = BertTokenizerFast.from_pretrained(root / GATE_TOKENIZER_DIR)
            return cls(tokenizer, gate, cache_dir=cache_dir, **settings)
        from erv_plugins.models.omni.configuration import OmniConfig

        config = OmniConfig.from_pretrained(root)
        gate_dir = root / GATE_TOKENIZER_DIR
        if not gate_dir.is_dir():
            gate_dir = Path(config.text_model_path or "")
        if not (gate_dir / "vocab.txt").is_file() and not (gate_dir / "tokenizer.json").is_file():
            raise ErvError(
                f"{root / 'config.json'}: text_model_path {config.text_model_path!r} is not a "
                "local BERT directory; download bert-base-uncased and point text_model_path at it")
        gate = BertTokenizerFast.from_pretrained(gate_dir)
        return cls(
            tokenizer, gate, cache_dir=cache_dir,
            num_video_tokens=config.num_video_tokens, num_audio_tokens=config.num_audio_tokens,
            num_frames=config.num_frames, image_size=config.vision_config.image_size,
            n_mels=config.audio_config.num_mel_bins,
            audio_chunk_length=config.num_audio_frames / 100.0,
            aspect_ratio=config.image_aspect_ratio if config.image_aspect_ratio == "pad" else "resize",
            mm_use_x_start_end=config.mm_use_x_start_end,
            gate_max_length=config.text_gate_config.max_position_embeddings,
        )

"""The omni processor: prompts as the release builds them, media features, BERT gate input.

Text is tokenised as the release's ``tokenizer_multimodal_token`` (humanomni/mm_utils.py)
does: the prompt is cut at each ``<video>`` / ``<audio>`` marker, every text piece is
tokenised on its own, and the clip's place is held by the release's placeholder ids
(-201 video, -202 audio). The ``<vi_start>``-style wrappers stay ordinary text, so a
published tokenizer is used as it is: nothing is added to its vocabulary. Where the
release puts one placeholder id and splices a longer feature sequence in, we repeat the
id once per feature (see ``modelling``), so ids, masks and logits keep one length.

Prompt templates (all from the release):

=============  ===============================================================  ==========
template       user turn (then the chat template's assistant opening)           BERT gate
=============  ===============================================================  ==========
``policy``     the checkpoint's chat template; ``<vi_start><video><vi_end>\\n``   question
               ``<au_start><audio><au_end>\\n`` + question (``mm_infer``, eval)
``qwen2_vl``   the Qwen2-VL-2B-Instruct chat template the release's GRPO uses:   question
               a ``{"type": "video"}`` part (``<|vision_start|><|video_pad|>``
               ``<|vision_end|>``) then the same text
``release``    SFT only, as ``train_humanomni.py`` preprocesses a sample whose   see
               human turn is ``<video>\\n<audio>\\n`` + question: three newlines   ``sft_
               before the question; the target turn is the chat template's       example``
=============  ===============================================================  ==========
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import BatchFeature, BertTokenizerFast, PreTrainedTokenizerBase

from erv_plugins.errors import ErvError
from erv_plugins.models.omni.configuration import AUDIO_TOKEN_INDEX, VIDEO_TOKEN_INDEX

VIDEO_TOKEN = "<video>"
AUDIO_TOKEN = "<audio>"
# Wrappers used when config.mm_use_x_start_end (true for HumanOmni-0.5B): plain text.
VIDEO_START, VIDEO_END = "<vi_start>", "<vi_end>"
AUDIO_START, AUDIO_END = "<au_start>", "<au_end>"
MEDIA_TOKENS = (VIDEO_TOKEN, AUDIO_TOKEN, VIDEO_START, VIDEO_END, AUDIO_START, AUDIO_END)
# What the Qwen2-VL chat template writes for a video part (single tokens in Qwen2-VL's and
# Qwen2.5's tokenizers).
QWEN2_VL_VISION_TOKENS = ("<|vision_start|>", "<|video_pad|>", "<|vision_end|>")

# The paper's and the release's emotion question (REFERENCE.md, "Models and training"), as
# the release's SFT data writes it.
EMOTION_QUESTION = (
    "As an emotional recognition expert; throughout the video, which emotion conveyed by the "
    "characters is the most obvious to you? Output the thinking process in <think> </think> "
    "and final emotion in <answer> </answer> tags."
)
# The instruction of the release's evaluation (eval_shard.sh): two spaces before "Output".
RELEASE_EVAL_QUESTION = EMOTION_QUESTION.replace("you? Output", "you?  Output")

PromptTemplate = Literal["policy", "qwen2_vl"]
SFTTemplate = Literal["policy", "release"]

PROCESSOR_FILE = "omni_processor.json"
GATE_TOKENIZER_DIR = "text_gate"
# Where the BERT gate comes from when neither a model option nor the config names it.
DEFAULT_TEXT_MODEL = "bert-base-uncased"
QWEN2_VL_TEMPLATE_FILE = Path(__file__).with_name("qwen2_vl_chat_template.json")

IGNORE_INDEX = -100

_USER_TURN = re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL)
_MEDIA_SPLIT = re.compile(f"({re.escape(VIDEO_TOKEN)}|{re.escape(AUDIO_TOKEN)})")


@functools.cache
def qwen2_vl_chat_template() -> str:
    """The chat template of Qwen/Qwen2-VL-2B-Instruct, verbatim (its source is in the file)."""
    return str(json.loads(QWEN2_VL_TEMPLATE_FILE.read_text(encoding="utf-8"))["chat_template"])


def media_prefix(video: bool = True, audio: bool = True, x_start_end: bool = True) -> str:
    """The placeholders the release puts before the question in the user turn."""
    v = f"{VIDEO_START}{VIDEO_TOKEN}{VIDEO_END}" if x_start_end else VIDEO_TOKEN
    a = f"{AUDIO_START}{AUDIO_TOKEN}{AUDIO_END}" if x_start_end else AUDIO_TOKEN
    return (v + "\n" if video else "") + (a + "\n" if audio else "")


def release_sft_user_turn(question: str, x_start_end: bool = True) -> str:
    """The user turn ``train_humanomni.py`` makes of a sample ``<video>\\n<audio>\\n`` + question.

    Its ``preprocess_multimodal`` takes each marker (audio first, then video) out of the
    text, strips it and puts the marker back in front followed by a newline, then wraps
    it: ``<vi_start><video><vi_end>\\n<au_start><audio><au_end>\\n\\n\\n`` + question.
    """
    text = f"{VIDEO_TOKEN}\n{AUDIO_TOKEN}\n{question}"
    for tag, start, end in ((AUDIO_TOKEN, AUDIO_START, AUDIO_END),
                            (VIDEO_TOKEN, VIDEO_START, VIDEO_END)):
        if tag in text:
            text = f"{tag}\n{text.replace(tag, '').strip()}".strip()
        if x_start_end:
            text = text.replace(tag, f"{start}{tag}{end}")
    return text


def release_sft_gate_text(user_turn: str) -> str:
    """What the release's SFT feeds its BERT gate: the user turn without newlines and
    without ``<video>`` (the wrappers and ``<audio>`` stay)."""
    return user_turn.replace("<image>", "").replace("\n", "").replace(VIDEO_TOKEN, "")


def question_of(text: str) -> str:
    """The bare question of a prompt (what the BERT gate reads): last user turn, no media."""
    turns = _USER_TURN.findall(text)
    q = turns[-1] if turns else text
    for tok in (*MEDIA_TOKENS, *QWEN2_VL_VISION_TOKENS):
        q = q.replace(tok, "")
    return q.strip()


def load_gate_tokenizer(source: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The BERT WordPiece tokenizer of the text gate: a local directory, or a hub id such as
    ``bert-base-uncased`` (from the local cache, or downloaded as transformers does)."""
    try:
        return BertTokenizerFast.from_pretrained(os.fspath(source))
    except (OSError, ValueError) as exc:
        raise ErvError(
            f"text gate tokenizer {os.fspath(source)!r} cannot be loaded ({exc}); set the "
            "model option text_model_path to a local bert-base-uncased directory"
        ) from None


class OmniProcessor:
    """Text + media -> model inputs for ``OmniForCausalLM``.

    ``tokenizer`` is the LM tokenizer (Qwen2 byte-level BPE), ``gate_tokenizer`` the BERT
    WordPiece tokenizer of the text gate, or the directory / hub id to load it from when it
    is first needed (a reference model loaded by TRL never needs it). Media settings mirror
    the model config.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        gate_tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str],
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
        video_token_id: int = VIDEO_TOKEN_INDEX,
        audio_token_id: int = AUDIO_TOKEN_INDEX,
        cache_dir: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self._gate_tokenizer: PreTrainedTokenizerBase | None = None
        self._gate_source: str | None = None
        if isinstance(gate_tokenizer, (str, os.PathLike)):
            self._gate_source = os.fspath(gate_tokenizer)
        else:
            self._gate_tokenizer = gate_tokenizer
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
        self.video_token_id = video_token_id
        self.audio_token_id = audio_token_id

    @property
    def gate_tokenizer(self) -> PreTrainedTokenizerBase:
        if self._gate_tokenizer is None:
            assert self._gate_source is not None
            self._gate_tokenizer = load_gate_tokenizer(self._gate_source)
        return self._gate_tokenizer

    @gate_tokenizer.setter
    def gate_tokenizer(self, value: PreTrainedTokenizerBase) -> None:
        self._gate_tokenizer = value

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

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]

    def decode(self, ids: Any, **kwargs: Any) -> str:
        """Decode token ids; a run of media placeholders reads as its marker (``<video>``)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        markers = {self.video_token_id: VIDEO_TOKEN, self.audio_token_id: AUDIO_TOKEN}
        if not any(t in markers for t in ids):
            return str(self.tokenizer.decode(ids, **kwargs))
        out, text, prev = [], [], None
        for t in ids:
            if t in markers:
                if text:
                    out.append(self.tokenizer.decode(text, **kwargs))
                    text = []
                if t != prev:
                    out.append(markers[t])
            else:
                text.append(t)
            prev = t
        if text:
            out.append(self.tokenizer.decode(text, **kwargs))
        return "".join(out)

    # -- prompts --------------------------------------------------------------------------
    def messages(self, question: str = EMOTION_QUESTION, *, video: bool = True,
                 audio: bool = True, template: PromptTemplate = "policy"
                 ) -> list[dict[str, Any]]:
        """The release's user turn: media placeholders, then the question."""
        text = media_prefix(video, audio, self.mm_use_x_start_end) + question
        if template == "qwen2_vl":
            # The release's GRPO rows: [{"type": "video"}, {"type": "text", "text": ...}],
            # with the HumanOmni placeholders put in front of the question.
            parts: list[dict[str, str]] = [{"type": "video"}] if video else []
            return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]
        if template != "policy":
            raise ErvError(f"unknown prompt template {template!r}; use 'policy' or 'qwen2_vl'")
        return [{"role": "user", "content": text}]

    def prompt(self, question: str = EMOTION_QUESTION, *, video: bool = True,
               audio: bool = True, template: PromptTemplate = "policy") -> str:
        """The chat-templated prompt text, ending with the assistant turn's opening.

        ``policy``: the checkpoint's own chat template (the release's ``mm_infer``);
        ``qwen2_vl``: the Qwen2-VL-2B-Instruct template (the release's GRPO).
        """
        messages = self.messages(question, video=video, audio=audio, template=template)
        if template == "qwen2_vl":
            self._check_qwen2_vl_tokens()
            return str(self.tokenizer.apply_chat_template(
                messages, chat_template=qwen2_vl_chat_template(), tokenize=False,
                add_generation_prompt=True))
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True))

    def _check_qwen2_vl_tokens(self) -> None:
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in QWEN2_VL_VISION_TOKENS if t not in vocab]
        if missing:
            raise ErvError(
                f"the Qwen2-VL prompt template needs {', '.join(missing)} as tokens of the "
                "policy's tokenizer (Qwen2-VL's and Qwen2.5's tokenizers have them); this "
                "tokenizer would split them into text pieces, unlike the release")

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a prompt as the release's ``tokenizer_multimodal_token`` gives them,
        with each ``<video>`` / ``<audio>`` marker repeated once per feature."""
        ids: list[int] = []
        seen = {VIDEO_TOKEN: 0, AUDIO_TOKEN: 0}
        for piece in _MEDIA_SPLIT.split(text):
            if piece == VIDEO_TOKEN:
                ids += [self.video_token_id] * self.num_video_tokens
            elif piece == AUDIO_TOKEN:
                ids += [self.audio_token_id] * self.num_audio_tokens
            else:
                if piece:  # the release tokenises each piece alone, no special tokens
                    ids += self.tokenizer(piece, add_special_tokens=False)["input_ids"]
                continue
            seen[piece] += 1
        if max(seen.values()) > 1:
            raise ErvError(f"prompt holds more than one {VIDEO_TOKEN} or {AUDIO_TOKEN}; "
                           "the omni model takes one clip per prompt")
        return ids

    def release_length(self, ids: Sequence[int]) -> int:
        """How many ids the release counts for ``ids``: one per clip's video and audio."""
        n = len(ids)
        for token_id, count in ((self.video_token_id, self.num_video_tokens),
                                (self.audio_token_id, self.num_audio_tokens)):
            n -= (count - 1) * (sum(1 for t in ids if t == token_id) // count)
        return n

    def sft_example(self, question: str, answer: str, *, template: SFTTemplate = "policy"
                    ) -> tuple[list[int], list[int], str]:
        """(input_ids, labels, BERT gate text) of one SFT pair (paper eq. 2).

        ``release``: as ``train_humanomni.py`` (its ``preprocess``): the whole conversation
        through the chat template, the tokens of the templated user turn masked; the
        target is the assistant turn as the template closes it (``<|im_end|>\\n``).
        ``policy``: the eval prompt (``prompt``), then ``answer`` + the EOS token.
        """
        tok = self.tokenizer
        if template == "release":
            user = release_sft_user_turn(question, self.mm_use_x_start_end)
            turn = [{"role": "user", "content": user}]
            instruction = tok.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
            conversation = tok.apply_chat_template(
                [*turn, {"role": "assistant", "content": answer}], tokenize=False,
                add_generation_prompt=False)
            ids = self.tokenize(conversation)
            n = len(self.tokenize(instruction))
            return ids, [IGNORE_INDEX] * n + ids[n:], release_sft_gate_text(user)
        if template != "policy":
            raise ErvError(f"unknown SFT prompt template {template!r}; use 'policy' or 'release'")
        prompt_ids = self.tokenize(self.prompt(question))
        target = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]
        return prompt_ids + target, [IGNORE_INDEX] * len(prompt_ids) + target, question

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
        accepted for TRL's calling convention, and ``add_special_tokens`` too: the release
        never adds special tokens); prompts holding media cannot be truncated.
        """
        texts = [text] if isinstance(text, str) else list(text)
        rows = []
        for i, t in enumerate(texts):
            try:
                rows.append(self.tokenize(t))
            except ErvError as exc:
                raise ErvError(f"prompt {i}: {exc}") from None
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
            # As the release: padding, truncation at the tokenizer's limit, [CLS] ... [SEP].
            gate = self.gate_tokenizer(qs, padding=True, truncation=True,
                                       max_length=self.gate_max_length, return_tensors="pt")
            data["gate_input_ids"] = gate["input_ids"]
            data["gate_attention_mask"] = gate["attention_mask"]
        return BatchFeature(data, tensor_type=return_tensors)

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
            "video_token_id": self.video_token_id, "audio_token_id": self.audio_token_id,
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out)
        self.gate_tokenizer.save_pretrained(out / GATE_TOKENIZER_DIR)
        (out / PROCESSOR_FILE).write_text(json.dumps(self.settings(), indent=2) + "\n")
        return out

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, cache_dir: str | None = None,
                        config: Any = None) -> OmniProcessor:
        """Load a processor saved by ``save_pretrained``, or derive one from a release dir.

        A HumanOmni release directory has a Qwen2 tokenizer (used as it is: no tokens are
        added) and a config.json (or ``config``, an ``OmniConfig`` resolved by
        ``load_omni``); its BERT gate tokenizer comes from the config's
        ``text_model_path``, else bert-base-uncased, and is loaded when first used.
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
            gate: Any = root / GATE_TOKENIZER_DIR
            if not (gate / "vocab.txt").is_file() and not (gate / "tokenizer.json").is_file():
                gate = getattr(config, "text_model_path", None) or DEFAULT_TEXT_MODEL
            return cls(tokenizer, gate, cache_dir=cache_dir, **settings)
        from erv_plugins.models.omni.configuration import OmniConfig

        if config is None:
            config = OmniConfig.from_pretrained(root)
        source = config.text_model_path or DEFAULT_TEXT_MODEL
        return cls(
            tokenizer, source, cache_dir=cache_dir,
            num_video_tokens=config.num_video_tokens, num_audio_tokens=config.num_audio_tokens,
            num_frames=config.num_frames, image_size=config.vision_config.image_size,
            n_mels=config.audio_config.num_mel_bins,
            audio_chunk_length=config.num_audio_frames / 100.0,
            aspect_ratio=config.image_aspect_ratio if config.image_aspect_ratio == "pad" else "resize",
            mm_use_x_start_end=config.mm_use_x_start_end,
            gate_max_length=config.text_gate_config.max_position_embeddings,
        )

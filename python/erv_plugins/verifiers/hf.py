"""The Emotional Rationale Verifier over a Hugging Face sequence classifier (paper section 3.2).

A RoBERTa-style ``AutoModelForSequenceClassification`` with a multi-label head: each
sentence gets one sigmoid probability per label, read from the first-token (``[CLS]``)
representation as in the paper. The checkpoint is read from a local directory only
(``local_files_only``): a reward computed during GRPO never reaches for the network.
The label space is the checkpoint's own ``config.id2label`` (GoEmotions' 28 for the
paper's checkpoint, or whatever a user trained with ``erv train-verifier``); a checkpoint
published with generic names (``LABEL_0`` ...) gets them from the ``id2label`` option.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    import torch

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


class HFVerifierOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``hf`` verifier plugin (a recipe's ``[verifier.options]`` table)."""

    path: str
    # "auto": the process's accelerator (cuda:LOCAL_RANK) when there is one, else the CPU
    # (resolve_device); or a torch device name.
    device: str = "cpu"
    dtype: Dtype = "auto"  # auto: bfloat16 on a GPU, float32 on CPU
    batch_size: int = 64
    max_length: int | None = None  # None: the tokenizer's model max length (release behaviour)
    # The label map the recipe expects: a label space name ("goemotions", "mafw", ...) or
    # the label names in output order. A checkpoint with another head is an error.
    labels: str | list[str] | None = None
    # Names for a checkpoint whose config.json id2label is generic (LABEL_0, LABEL_1, ...),
    # in output order: a label space name (e.g. "goemotions") or the list. A checkpoint
    # with real names keeps them; they must then be these.
    id2label: str | list[str] | None = None


class VerifierLoadError(ErvError):
    """A verifier checkpoint that cannot be read or does not fit its use."""


class LabelSpaceMismatch(VerifierLoadError):
    """A checkpoint whose label head does not fit the label map a recipe asks for."""


def expected_labels(labels: str | Sequence[str]) -> tuple[str, ...]:
    """Label names from a label space name or an explicit list."""
    if isinstance(labels, str):
        from erv_plugins.labels import BUILTIN_LABEL_SPACES

        try:
            return BUILTIN_LABEL_SPACES[labels].labels
        except KeyError:
            raise VerifierLoadError(f"unknown label space {labels!r}; known: "
                                    f"{', '.join(BUILTIN_LABEL_SPACES)}") from None
    return tuple(labels)


def check_label_space(base_labels: Sequence[str], expected: Sequence[str], where: str) -> None:
    """Fail clearly when a checkpoint's labels are not the ones the recipe names."""
    if len(base_labels) != len(expected):
        raise LabelSpaceMismatch(
            f"{where}: checkpoint has {len(base_labels)} labels but the recipe's label map "
            f"has {len(expected)} ({', '.join(expected)}); use a checkpoint with that head, "
            "the matching label space, or (training) reinit_head = true for a new head"
        )
    if tuple(base_labels) != tuple(expected):
        diff = [f"{i}: {a!r} != {b!r}" for i, (a, b) in enumerate(zip(base_labels, expected))
                if a != b]
        raise LabelSpaceMismatch(
            f"{where}: checkpoint labels differ from the recipe's label map at "
            f"{'; '.join(diff[:5])}"
        )


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The local directory holding a verifier checkpoint.

    ``path`` is a directory, or a hub id such as ``SamLowe/roberta-base-go_emotions``
    already present in the local Hugging Face cache (never downloaded here).
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise VerifierLoadError(f"verifier checkpoint {p}: no config.json in the directory")
        return p.resolve()
    if p.exists():
        raise VerifierLoadError(f"verifier checkpoint {p}: not a directory")
    text = os.fspath(path)
    from erv_plugins.hub import is_hub_id, split_ref

    if is_hub_id(text):  # owner/name[@revision]
        try:
            from huggingface_hub import snapshot_download

            # The cache location is read now, not at import (HF_HUB_CACHE may change).
            cache = os.environ.get("HF_HUB_CACHE")
            repo, revision = split_ref(text)
            return Path(snapshot_download(repo, revision=revision, local_files_only=True,
                                          cache_dir=cache)).resolve()
        except Exception:
            pass
    raise VerifierLoadError(
        f"verifier checkpoint {text}: no such directory (and not in the local Hugging Face "
        "cache; erv never downloads at run time - download it first with "
        "`erv download RECIPE`, or pass a local directory)"
    )


def checkpoint_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """The label names of a checkpoint in output order, from its ``config.json``."""
    directory = resolve_checkpoint(path)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    return _labels_from_id2label(config.get("id2label"), directory)


def _labels_from_id2label(id2label: Any, where: Path) -> tuple[str, ...]:
    if not isinstance(id2label, dict) or not id2label:
        raise VerifierLoadError(f"verifier checkpoint {where}: config.json has no id2label")
    try:
        items = sorted((int(k), str(v)) for k, v in id2label.items())
    except ValueError:
        raise VerifierLoadError(
            f"verifier checkpoint {where}: config.json id2label keys must be integers"
        ) from None
    if [i for i, _ in items] != list(range(len(items))):
        raise VerifierLoadError(
            f"verifier checkpoint {where}: config.json id2label must number labels 0..N-1"
        )
    return tuple(v for _, v in items)


_GENERIC_LABEL = re.compile(r"LABEL_(\d+)")


def is_generic(labels: Sequence[str]) -> bool:
    """Whether label names are transformers' placeholders LABEL_0 .. LABEL_{N-1}."""
    return all((m := _GENERIC_LABEL.fullmatch(name)) is not None and int(m.group(1)) == i
               for i, name in enumerate(labels))


def named_labels(base_labels: Sequence[str], id2label: str | Sequence[str] | None,
                 where: str) -> tuple[str, ...]:
    """The checkpoint's label names, or ``id2label``'s for a checkpoint with generic ones."""
    if id2label is None:
        return tuple(base_labels)
    names = expected_labels(id2label)
    if len(names) != len(base_labels):
        raise LabelSpaceMismatch(
            f"{where}: checkpoint has {len(base_labels)} labels but id2label names "
            f"{len(names)} ({', '.join(names[:4])}, ...)")
    if not is_generic(base_labels):
        check_label_space(base_labels, names, where)
    return names


def _weights_digest(directory: Path) -> str:
    """A cheap fingerprint of the weight files: name, size and modification time."""
    h = hashlib.sha256()
    for f in sorted(directory.iterdir()):
        if f.suffix in {".safetensors", ".bin", ".json", ".txt", ".model"} and f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


class HFVerifier:
    """A multi-label emotion classifier loaded from a local checkpoint directory.

    >>> v = HFVerifier("runs/paper/verifier/model")          # doctest: +SKIP
    >>> v.predict_proba(["She slams the door, furious."]).shape   # doctest: +SKIP
    (1, 28)
    """

    name = "hf"
    Options = HFVerifierOptions

    def __init__(self, path: str | os.PathLike[str], *, device: str = "cpu",
                 dtype: Dtype = "auto", batch_size: int = 64,
                 max_length: int | None = None,
                 labels: str | Sequence[str] | None = None,
                 length_bucketing: bool = True,
                 id2label: str | Sequence[str] | None = None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if batch_size < 1:
            raise VerifierLoadError(f"verifier batch_size must be >= 1, got {batch_size}")
        self.path = resolve_checkpoint(path)
        where = f"verifier checkpoint {self.path}"
        # Before loading weights: a wrong head fails fast.
        names = named_labels(checkpoint_labels(self.path), id2label, where)
        if labels is not None:
            check_label_space(names, expected_labels(labels), where)
        self.device = torch.device(resolve_device(device))
        self.dtype = _torch_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.length_bucketing = length_bucketing  # False: input order (benchmark baseline)
        with _quiet_loading():
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                model = AutoModelForSequenceClassification.from_pretrained(
                    self.path, local_files_only=True, dtype=self.dtype
                )
            except (OSError, ValueError) as exc:
                raise VerifierLoadError(f"verifier checkpoint {self.path}: {exc}") from None
        self.labels: tuple[str, ...] = named_labels(_labels_from_id2label(
            {str(k): v for k, v in model.config.id2label.items()}, self.path
        ), id2label, where)
        model.config.id2label = dict(enumerate(self.labels))
        model.config.label2id = {name: i for i, name in enumerate(self.labels)}
        if model.config.num_labels != len(self.labels):
            raise VerifierLoadError(
                f"verifier checkpoint {self.path}: num_labels {model.config.num_labels} but "
                f"id2label names {len(self.labels)} labels"
            )
        self.model = model.to(self.device).eval()
        model_max = getattr(self.tokenizer, "model_max_length", None) or 512
        # Tokenizers without a limit report a huge sentinel; positions bound the real one.
        positions = getattr(model.config, "max_position_embeddings", 514)
        pad_offset = 2 if model.config.model_type in {"roberta", "xlm-roberta", "camembert"} else 0
        limit = min(int(model_max), positions - pad_offset)
        self.max_length = min(max_length, limit) if max_length else limit
        config_hash = hashlib.sha256(
            json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode()
        ).hexdigest()[:16]
        self.cache_key = (
            f"hf:{self.path}:{config_hash}:{_weights_digest(self.path)}:{self.max_length}"
        )

    @classmethod
    def from_options(cls, options: HFVerifierOptions) -> HFVerifier:
        return cls(options.path, device=options.device, dtype=options.dtype,
                   batch_size=options.batch_size, max_length=options.max_length,
                   labels=options.labels, id2label=options.id2label)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Sigmoid probabilities, shape (len(texts), len(labels)), float32.

        Texts are sorted by length and batched so each batch pads to its own longest
        sentence (length-bucketing); rows come back in the input order.
        """
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        order = list(range(len(texts)))
        if self.length_bucketing:  # similar lengths share a batch: less padding
            order.sort(key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                logits = self.model(**enc).logits
                out[idx] = torch.sigmoid(logits.float()).cpu().numpy()
        return out

    def predict(self, texts: Sequence[str], *, tau: float = 0.5, top_k: int = 2
                ) -> list[tuple[str, ...]]:
        """Label sets per text (paper Algorithm 1): labels with p > tau; none -> argmax;
        more than ``top_k`` -> the ``top_k`` most probable."""
        return [tuple(self.labels[i] for i in s)
                for s in label_sets(self.predict_proba(texts), tau=tau, top_k=top_k)]

    def __repr__(self) -> str:
        return (f"HFVerifier({str(self.path)!r}, labels={len(self.labels)}, "
                f"device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')})")


def label_sets(proba: np.ndarray, *, tau: float = 0.5, top_k: int = 2) -> list[tuple[int, ...]]:
    """Indices per row, most probable first: p > tau (strictly); none -> the argmax;
    more than ``top_k`` -> the ``top_k`` most probable (paper Algorithm 1)."""
    result: list[tuple[int, ...]] = []
    for row in np.asarray(proba):
        ranked = np.argsort(-row, kind="stable")
        above = [int(i) for i in ranked if row[i] > tau]
        result.append(tuple(above[:top_k]) if above else (int(ranked[0]),))
    return result


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar: a small classifier loads in a blink, and the bar would
    land in the middle of reward and judge output."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def resolve_device(name: str, *, cuda: bool | None = None,
                   local_rank: int | None = None) -> str:
    """A verifier device name: "auto" is the process's GPU (``cuda:LOCAL_RANK``, the GPU
    accelerate gives each training process) when CUDA is there, else "cpu"; other names
    are kept. ``cuda``/``local_rank`` default to this process's."""
    if name != "auto":
        return name
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if local_rank is None:
        rank = os.environ.get("LOCAL_RANK", "")
        local_rank = int(rank) if rank.isdigit() else None
    return f"cuda:{local_rank or 0}" if cuda else "cpu"


def _torch_dtype(dtype: Dtype, device: torch.device) -> torch.dtype:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[dtype]

"""Text datasets of the verifier (explanation-label pairs), as dataset plugins.

Each has ``records()`` (``TextRecord``s, up to two labels each) and ``samples()`` (the
``Dataset`` protocol). A recipe names them in ``[[train_verifier.train]]``::

    [[train_verifier.train]]
    plugin = "text_emer"
    root = "data/EMER/emer.csv"

Registered as ``text_jsonl``, ``text_emer``, ``text_merr_fine``, ``text_generated``,
``text_synthetic``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from erv_plugins.datasets.base import RequiredPath, Sample, where_to_read
from erv_plugins.labels import MAFW, MAFW_LABELS, EMER, LabelSpace
from erv_plugins.verifiers.data import (
    TextRecord,
    VerifierDataError,
    read_emer_csv,
    read_merr_fine_json,
    read_text_jsonl,
)

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext


class _Opts(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TextJsonlOptions(_Opts):
    path: str | None = None  # or the DataSpec's root
    source: str | None = None  # name in the Table-5 counts (default: the file's stem)
    max_labels: int | None = 2


class TextFileOptions(_Opts):
    path: str | None = None  # or the DataSpec's root


class MerrOptions(_Opts):
    path: str | None = None  # or the DataSpec's root
    text_field: str = "smp_reason_caption"  # the description field of MERR-fine


class GeneratedOptions(_Opts):
    n: int = 2200
    labels: list[str] = msgspec.field(default_factory=lambda: list(MAFW_LABELS))
    seed: int = 0


class SyntheticTextOptions(_Opts):
    n: int = 600
    labels: list[str] = msgspec.field(default_factory=lambda: list(MAFW_LABELS))
    seed: int = 0


class TextDataset:
    """Explanation texts with labels, read once, when first asked for (so building it, as
    the preflight does to ask for its ``required_paths``, reads nothing)."""

    def __init__(self, records: Sequence[TextRecord] | Callable[[], Sequence[TextRecord]],
                 label_space: LabelSpace = MAFW, limit: int | None = None,
                 path: Path | None = None) -> None:
        self._load = records if callable(records) else (lambda: records)
        self._records: list[TextRecord] | None = None
        self.limit = limit
        self.label_space = label_space
        self.path = path

    def required_paths(self) -> list[RequiredPath]:
        return [RequiredPath(self.path, "file", "file")] if self.path is not None else []

    def records(self) -> list[TextRecord]:
        if self._records is None:
            loaded = list(self._load())
            self._records = loaded[: self.limit] if self.limit is not None else loaded
        return list(self._records)

    def samples(self) -> list[Sample]:
        return [Sample(r.id, r.labels[0], None, r.text, {"labels": list(r.labels),
                                                         "source": r.source})
                for r in self.records()]


def _where(context: BuildContext | None) -> tuple[str | None, str, int | None]:
    return where_to_read(context.spec) if context is not None else (None, "train", None)


def _path(options: Any, root: str | None, what: str) -> Path:
    path = options.path or root
    if not path:
        raise VerifierDataError(f"{what}: give the file as root = ... or options.path")
    return Path(path)


def text_jsonl(options: TextJsonlOptions, *, context: BuildContext | None = None) -> TextDataset:
    """Pseudo-labelled or Complemented JSONL: {"text", "labels"} per line (erv augment)."""
    root, _, limit = _where(context)
    p = _path(options, root, "text_jsonl")
    return TextDataset(lambda: read_text_jsonl(p, source=options.source,
                                               max_labels=options.max_labels), MAFW, limit, p)


def text_emer(options: TextFileOptions, *, context: BuildContext | None = None) -> TextDataset:
    """EMER CSV (names, emotions, subtitles, reasons): the reasons as verifier text."""
    root, _, limit = _where(context)
    p = _path(options, root, "text_emer")
    return TextDataset(lambda: read_emer_csv(p), EMER, limit, p)


def text_merr_fine(options: MerrOptions, *, context: BuildContext | None = None) -> TextDataset:
    """MERR-fine JSON (pseu_emotion, smp_reason_caption) as verifier text."""
    root, _, limit = _where(context)
    p = _path(options, root, "text_merr_fine")
    return TextDataset(lambda: read_merr_fine_json(p, options.text_field), MAFW, limit, p)


def _known_labels(plugin: str, labels: Sequence[str], known: Collection[str]) -> None:
    """A generated text set's labels, checked when it is built (the preflight builds it
    before any stage runs), not when its sentences are first generated."""
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise VerifierDataError(f"{plugin}: options.labels {unknown} have no generated text; "
                                f"known: {', '.join(known)}")


def text_generated(options: GeneratedOptions, *, context: BuildContext | None = None
                   ) -> TextDataset:
    """Generated emotion sentences over MAFW's labels (tiny runs; see verifiers.tiny)."""
    _, _, limit = _where(context)
    from erv_plugins.verifiers.tiny import CUES, generate_emotion_corpus

    _known_labels("text_generated", options.labels, CUES)

    return TextDataset(lambda: generate_emotion_corpus(options.n, labels=options.labels,
                                                       seed=options.seed), MAFW, limit)


def text_synthetic(options: SyntheticTextOptions, *, context: BuildContext | None = None
                   ) -> TextDataset:
    """Sentences in the synthetic clips' vocabulary, one label each: scene sentences
    (colours, tones) neutral, emotion sentences with the emotion they name
    (``datasets.synthetic.verifier_sentences``; the tiny demo's verifier)."""
    _, _, limit = _where(context)
    from erv_plugins.datasets.synthetic import STYLE, verifier_sentences

    _known_labels("text_synthetic", options.labels, STYLE)

    def load() -> list[TextRecord]:
        pairs = verifier_sentences(options.n, labels=options.labels, seed=options.seed)
        return [TextRecord(text, (label,), "synthetic", f"synthetic:{i}")
                for i, (text, label) in enumerate(pairs)]

    return TextDataset(load, MAFW, limit)


TEXT_DATASETS = (
    ("text_jsonl", text_jsonl, TextJsonlOptions),
    ("text_emer", text_emer, TextFileOptions),
    ("text_merr_fine", text_merr_fine, MerrOptions),
    ("text_generated", text_generated, GeneratedOptions),
    ("text_synthetic", text_synthetic, SyntheticTextOptions),
)

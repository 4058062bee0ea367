"""Training data of the Emotional Rationale Verifier (paper section 3.2, appendix Table 5).

Four sources, each read into ``TextRecord`` (text, up to a few labels, source, id):

- EMER: CSV with columns ``names, emotions, subtitles, reasons`` (the reason is the text);
- MERR-fine: JSON keyed by sample with ``pseu_emotion`` and ``smp_reason_caption``;
- pseudo-labelled explanations (``erv augment label``): JSONL ``{"text", "labels"}``;
- "Complemented" descriptions (``erv augment complement``): JSONL of the same shape.

Labels stay in the source's words until ``map_to_verifier`` puts them in the verifier's
label space (GoEmotions through the release's map, or a checkpoint trained on MAFW words).
Every malformed line is reported with its file and line; nothing is skipped silently.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erv_plugins.errors import ErvError
from erv_plugins.jsonl import iter_jsonl, parse_json, read_text
from erv_plugins.labels import (
    EMER,
    MAFW_LABELS,
    TO_GOEMOTIONS,
    normalize_mafw,
)


class VerifierDataError(ErvError):
    """Verifier training data that cannot be read or mapped."""


@dataclass(frozen=True)
class TextRecord:
    """One explanation or description with its emotion labels."""

    text: str
    labels: tuple[str, ...]
    source: str = ""
    id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, "labels": list(self.labels)}
        if self.source:
            out["source"] = self.source
        if self.id:
            out["id"] = self.id
        return out


_TEXT_KEYS = ("text", "explanation", "description", "reason")


def read_text_jsonl(path: str | os.PathLike[str], *, source: str | None = None,
                    max_labels: int | None = None) -> list[TextRecord]:
    """JSONL with ``{"text": str, "labels": [str, ...]}`` per line (``label``: one str also
    accepted; ``explanation``/``description`` accepted for the text). Blank lines skipped."""
    p = Path(path)
    src = source or p.stem
    records: list[TextRecord] = []
    for _, n, row in iter_jsonl(p, error=VerifierDataError):
        text = next((row[k] for k in _TEXT_KEYS if k in row), None)
        if not isinstance(text, str) or not text.strip():
            raise VerifierDataError(f"{p}:{n}: missing a non-empty \"text\" string")
        labels = row.get("labels", row.get("label"))
        if isinstance(labels, str):
            labels = [labels]
        if (not isinstance(labels, list) or not labels
                or not all(isinstance(x, str) and x.strip() for x in labels)):
            raise VerifierDataError(f"{p}:{n}: \"labels\" must be a non-empty list of strings")
        if max_labels is not None and len(labels) > max_labels:
            raise VerifierDataError(
                f"{p}:{n}: {len(labels)} labels, at most {max_labels} allowed")
        rid = str(row.get("id", f"{src}:{n}"))
        extra = {k: v for k, v in row.items() if k not in {*_TEXT_KEYS, "labels", "label", "id"}}
        records.append(TextRecord(text.strip(), tuple(x.strip() for x in labels), src, rid,
                                  extra))
    return records


def read_emer_csv(path: str | os.PathLike[str]) -> list[TextRecord]:
    """EMER: CSV with columns names, emotions, subtitles, reasons (332 samples).

    The reason (a description of the clip's emotional cues) is the text; the emotion word
    stays in EMER's words (angry, sad, surprise, worried, happy).
    """
    p = Path(path)
    text = read_text(p, error=VerifierDataError)
    try:
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in ("names", "emotions", "reasons") if c not in header]
            if missing:
                raise VerifierDataError(
                    f"{p}: EMER CSV lacks column(s) {', '.join(missing)} "
                    f"(has: {', '.join(header) or 'none'})")
            records = []
            for n, row in enumerate(reader, 2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                if not row["reasons"] or not row["emotions"]:
                    raise VerifierDataError(f"{p}:{n}: empty emotions or reasons")
                records.append(TextRecord(row["reasons"], (EMER.normalize(row["emotions"]),),
                                          "emer", row["names"],
                                          {"subtitle": row.get("subtitles", "")}))
            return records
    except csv.Error as exc:
        raise VerifierDataError(f"{p}: cannot read EMER CSV: {exc}") from None


def read_merr_fine_json(path: str | os.PathLike[str],
                        text_field: str = "smp_reason_caption") -> list[TextRecord]:
    """MERR-fine: JSON keyed by sample; ``pseu_emotion`` is the label, ``smp_reason_caption``
    the description (4,487 samples). Labels are normalised to MAFW words."""
    p = Path(path)
    data = parse_json(read_text(p, error=VerifierDataError), os.fspath(p), VerifierDataError)
    if not isinstance(data, dict):
        raise VerifierDataError(f"{p}: MERR-fine JSON must be an object keyed by sample")
    records = []
    for key, row in data.items():
        if not isinstance(row, dict):
            raise VerifierDataError(f"{p}: $.{key}: expected an object")
        emotion, text = row.get("pseu_emotion"), row.get(text_field)
        if not isinstance(emotion, str) or not emotion.strip():
            raise VerifierDataError(f"{p}: $.{key}.pseu_emotion: missing or not a string")
        if not isinstance(text, str) or not text.strip():
            raise VerifierDataError(f"{p}: $.{key}.{text_field}: missing or not a string")
        records.append(TextRecord(text.strip(), (normalize_mafw(emotion),), "merr_fine", key))
    return records


def write_jsonl(records: Iterable[TextRecord], path: str | os.PathLike[str]) -> Path:
    """Write records as ``{"text": ..., "labels": [...]}`` lines (``erv train-verifier`` input)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
    return p


# Words of the datasets that are neither MAFW words nor GoEmotions words.
_TO_MAFW_EXTRA: dict[str, str] = {"worried": "anxiety", "surprised": "surprise",
                                  "happy": "happiness", "worry": "anxiety"}


def verifier_label(label: str, verifier_labels: Sequence[str]) -> str:
    """The verifier label standing for a dataset label.

    Tried in order: the label itself; lower-cased; its MAFW word (the release's
    normaliser: angry -> anger, sad -> sadness, ...); EMER's extra words (worried ->
    anxiety); the release's GoEmotions map (happiness -> joy, contempt -> disapproval, ...).
    """
    vl = tuple(verifier_labels)
    word = label.strip()
    candidates = [word, word.lower(), normalize_mafw(word)]
    candidates.append(_TO_MAFW_EXTRA.get(candidates[-1], candidates[-1]))
    candidates.append(TO_GOEMOTIONS.get(candidates[-1], ""))
    for c in candidates:
        if c and c in vl:
            return c
    raise KeyError(f"label {label!r} has no counterpart among the verifier's labels "
                   f"({', '.join(vl)})")


def map_to_verifier(records: Iterable[TextRecord],
                    verifier_labels: Sequence[str]) -> tuple[list[TextRecord], dict[str, str]]:
    """Records with their labels renamed into the verifier's label space (duplicates
    merged, order kept), and the mapping used (dataset word -> verifier label).

    An unmappable label is an error naming the record.
    """
    vl = tuple(verifier_labels)
    used: dict[str, str] = {}
    out = []
    for r in records:
        mapped = []
        for label in r.labels:
            if label not in used:
                try:
                    used[label] = verifier_label(label, vl)
                except KeyError as exc:
                    where = f"{r.source}: {r.id}" if r.id else (r.source or "data")
                    raise VerifierDataError(f"{where}: {exc.args[0]}") from None
            mapped.append(used[label])
        out.append(TextRecord(r.text, tuple(dict.fromkeys(mapped)), r.source, r.id, r.extra))
    return out, dict(sorted(used.items()))


def label_counts(records: Iterable[TextRecord]) -> dict[str, Counter[str]]:
    """Per source, how many records carry each label (a record with two labels counts in
    both, as in paper Table 5)."""
    table: dict[str, Counter[str]] = {}
    for r in records:
        table.setdefault(r.source or "data", Counter()).update(set(r.labels))
    return table


def format_counts(table: Mapping[str, Counter[str]], labels: Sequence[str] | None = None) -> str:
    """A Table-5-style text table: one row per source, one column per label ("-" = 0)."""
    if labels is None:
        seen: dict[str, None] = {}
        for c in table.values():
            seen.update(dict.fromkeys(sorted(c)))
        ordered = [l for l in MAFW_LABELS if l in seen]
        labels = ordered + [l for l in seen if l not in ordered]
    labels = list(labels)
    name_w = max([len("Dataset"), *(len(s) for s in table)])
    widths = [max(len(l), 6) for l in labels]
    lines = ["  ".join(["Dataset".ljust(name_w), *(l.rjust(w) for l, w in zip(labels, widths))])]
    for source, counts in table.items():
        cells = [(f"{counts[l]:,}" if counts[l] else "-").rjust(w) for l, w in zip(labels, widths)]
        lines.append("  ".join([source.ljust(name_w), *cells]))
    return "\n".join(lines)

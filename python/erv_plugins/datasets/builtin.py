"""Built-in datasets, registered through ``erv_register_datasets`` like any third-party plugin.

Each reads a dataset as its owners distribute it (REFERENCE.md "Datasets on disk") and
declares its label space, so rewards and metrics normalise answers the dataset's way:

  mafw   ``Train & Test Set/single/no_caption/set_<fold>/{train,test}.txt`` + ``data/clips/``
  dfew   ``label/single_{train,test}set_<fold>.csv`` (id, label 1..7) + ``clip/<id>.mp4``
  emer   a CSV with names, emotions, subtitles, reasons (explanations, for SFT)
  merr   MERR-fine JSON ``{sample: {pseu_emotion, <description>}}`` (explanations)
  jsonl  a manifest, one object a line: video, label, optional id/explanation/split

Bad input raises ``ErvError`` naming the file (and line) and what was expected.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

from erv_plugins.datasets.base import RequiredPath, Sample, where_to_read
from erv_plugins.errors import ErvError
from erv_plugins.jsonl import iter_jsonl, parse_json, read_text
from erv_plugins.hookspecs import hookimpl
from erv_plugins.labels import (
    BUILTIN_LABEL_SPACES,
    DFEW,
    DFEW_LABELS,
    EMER,
    MAFW,
    LabelSpace,
    normalize_mafw,
    normalize_plain,
)
from erv_plugins.plugins import Register

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext

OnError = Literal["skip", "stop"]


class _Options(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # What a run does with a clip that is missing or cannot be decoded: "skip" counts it
    # and goes on, "stop" ends the run with the file's error.
    on_error: OnError = "skip"
    # Check at listing time that each clip file exists (a missing file is then an error
    # or a skipped sample, per on_error, before any decoding).
    check_files: bool = False


class _ClipDataset:
    """Shared behaviour: root, split, limit, on_error, lazy sample listing."""

    name: ClassVar[str]
    label_space: LabelSpace
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def __init__(self, options: _Options, *, context: BuildContext | None = None,
                 root: str | None = None, split: str = "train", limit: int | None = None) -> None:
        if context is not None and context.spec is not None:  # built from a recipe table
            root, split, limit = where_to_read(context.spec)
        if root is None:
            raise ErvError(f"dataset {self.name}: `root` (the dataset directory) is required")
        if split not in self.splits:
            raise ErvError(f"dataset {self.name}: split {split!r} is not one of "
                           f"{', '.join(self.splits)}")
        self.options = options
        self.root = Path(root)
        self.split = split
        self.limit = limit
        self.on_error: OnError = options.on_error
        self.skipped: dict[str, str] = {}  # clip path -> reason, filled by check_files
        self._samples: list[Sample] | None = None

    def required_paths(self) -> list[RequiredPath]:
        """The dataset directory, then what ``_read`` opens and where the clips are."""
        return [RequiredPath(self.root, "dataset directory", "dir"), *self._files()]

    def _files(self) -> list[RequiredPath]:
        return []

    def samples(self) -> list[Sample]:
        if self._samples is None:
            if not self.root.is_dir():
                raise ErvError(f"dataset {self.name}: root {self.root} is not a directory")
            found = self._read()
            if self.options.check_files:
                found = self._check(found)
            self._samples = found[: self.limit] if self.limit is not None else found
        return self._samples

    def __len__(self) -> int:
        return len(self.samples())

    def _check(self, samples: list[Sample]) -> list[Sample]:
        kept = []
        for s in samples:
            if s.video is not None and not s.video.is_file():
                if self.on_error == "stop":
                    raise ErvError(f"{s.video}: no such clip file (sample {s.id} of {self.name})")
                self.skipped[str(s.video)] = "no such clip file"
                continue
            kept.append(s)
        return kept

    def _read(self) -> list[Sample]:
        raise NotImplementedError


def _label(space: LabelSpace, raw: str, where: str) -> str:
    word = space.normalize(raw)
    if word not in space:
        raise ErvError(f"{where}: label {raw!r} is not a {space.name.upper()} label "
                       f"({', '.join(space.labels)})")
    return word


class MafwOptions(_Options):
    fold: int = 5
    clips_dir: str = "data/clips"
    split_dir: str = "Train & Test Set/single/no_caption"


class Mafw(_ClipDataset):
    """MAFW single-label, official 5-fold split (11 emotions; release normaliser)."""

    name: ClassVar[str] = "mafw"
    Options = MafwOptions
    label_space = MAFW

    def _split_file(self) -> Path:
        opts: MafwOptions = self.options  # type: ignore[assignment]
        return self.root / opts.split_dir / f"set_{opts.fold}" / f"{self.split}.txt"

    def _files(self) -> list[RequiredPath]:
        opts: MafwOptions = self.options  # type: ignore[assignment]
        return [RequiredPath(self._split_file(), "split file", "file"),
                RequiredPath(self.root / opts.clips_dir, "clips directory", "dir")]

    def _read(self) -> list[Sample]:
        opts: MafwOptions = self.options  # type: ignore[assignment]
        path = self._split_file()
        if not path.is_file():
            raise ErvError(f"dataset mafw: split file {path} does not exist")
        out = []
        for n, line in enumerate(read_text(path).split("\n"), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) < 2:
                raise ErvError(f"{path}:{n}: expected '<clip>.mp4 <label>', got {line!r}")
            clip, raw = parts[0], " ".join(parts[1:])
            label = _label(MAFW, raw, f"{path}:{n}")
            out.append(Sample(id=Path(clip).stem, label=label,
                              video=self.root / opts.clips_dir / clip))
        return out


class DfewOptions(_Options):
    fold: int = 5
    clips_dir: str = "clip"
    # Clip file name; {id} is the CSV's id (e.g. "{id:0>5}.mp4" for zero-padded names).
    clip_name: str = "{id}.mp4"


class Dfew(_ClipDataset):
    """DFEW single-label, official fold 5 (labels 1..7 = happy ... fear)."""

    name: ClassVar[str] = "dfew"
    Options = DfewOptions
    label_space = DFEW

    def _files(self) -> list[RequiredPath]:
        opts: DfewOptions = self.options  # type: ignore[assignment]
        return [RequiredPath(self.root / "label" / f"single_{self.split}set_{opts.fold}.csv",
                             "label file", "file"),
                RequiredPath(self.root / opts.clips_dir, "clips directory", "dir")]

    def _read(self) -> list[Sample]:
        opts: DfewOptions = self.options  # type: ignore[assignment]
        path = self.root / "label" / f"single_{self.split}set_{opts.fold}.csv"
        if not path.is_file():
            raise ErvError(f"dataset dfew: label file {path} does not exist")
        out = []
        with io.StringIO(read_text(path), newline="") as fh:
            for n, row in enumerate(csv.reader(fh), start=1):
                if not row or (n == 1 and not row[-1].strip().isdigit()):
                    continue  # blank line or header (id,label / video_name,label)
                if len(row) < 2 or not row[1].strip().isdigit():
                    raise ErvError(f"{path}:{n}: expected '<id>,<label 1..7>', got {row!r}")
                k = int(row[1])
                if not 1 <= k <= len(DFEW_LABELS):
                    raise ErvError(f"{path}:{n}: label {k} is outside 1..{len(DFEW_LABELS)}")
                clip_id = row[0].strip()
                out.append(Sample(id=clip_id, label=DFEW_LABELS[k - 1],
                                  video=self.root / opts.clips_dir
                                  / opts.clip_name.format(id=clip_id)))
        return out


class EmerOptions(_Options):
    csv: str = "emer.csv"
    clips_dir: str = "video"
    extension: str = ".mp4"


class Emer(_ClipDataset):
    """EMER: clips with an emotion and a reasoned explanation (for SFT, paper eq. 2)."""

    name: ClassVar[str] = "emer"
    Options = EmerOptions
    label_space = EMER
    splits: ClassVar[tuple[str, ...]] = ("train", "all")

    def _files(self) -> list[RequiredPath]:
        opts: EmerOptions = self.options  # type: ignore[assignment]
        return [RequiredPath(self.root / opts.csv, "CSV", "file"),
                RequiredPath(self.root / opts.clips_dir, "clips directory", "dir")]

    def _read(self) -> list[Sample]:
        opts: EmerOptions = self.options  # type: ignore[assignment]
        path = self.root / opts.csv
        if not path.is_file():
            raise ErvError(f"dataset emer: CSV {path} does not exist")
        out = []
        with io.StringIO(read_text(path), newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"names", "emotions", "reasons"}
            if not need <= set(reader.fieldnames or ()):
                raise ErvError(f"{path}: expected columns names, emotions, subtitles, reasons; "
                               f"got {', '.join(reader.fieldnames or ())}")
            for n, row in enumerate(reader, start=2):
                label = _label(EMER, row["emotions"], f"{path}:{n}")
                name = row["names"].strip()
                out.append(Sample(id=name, label=label,
                                  video=self.root / opts.clips_dir / f"{name}{opts.extension}",
                                  explanation=row["reasons"].strip(),
                                  extra={"subtitles": row.get("subtitles", "")}))
        return out


class MerrOptions(_Options):
    json: str = "merr_fine.json"
    clips_dir: str = "video"
    extension: str = ".mp4"
    # The explanation field; None tries description, smp_reason_caption, reason_caption.
    description_field: str | None = None


_MERR_DESCRIPTION_FIELDS = ("description", "smp_reason_caption", "reason_caption")


class Merr(_ClipDataset):
    """MERR-fine: clips with a pseudo-label (pseu_emotion) and a description."""

    name: ClassVar[str] = "merr"
    Options = MerrOptions
    label_space = MAFW  # its words (happy, sad, angry, worried ...) normalise MAFW's way
    splits: ClassVar[tuple[str, ...]] = ("train", "all")

    def _files(self) -> list[RequiredPath]:
        opts: MerrOptions = self.options  # type: ignore[assignment]
        return [RequiredPath(self.root / opts.json, "JSON", "file")]

    def _read(self) -> list[Sample]:
        opts: MerrOptions = self.options  # type: ignore[assignment]
        path = self.root / opts.json
        if not path.is_file():
            raise ErvError(f"dataset merr: JSON {path} does not exist")
        data = parse_json(read_text(path), os.fspath(path))
        if not isinstance(data, dict):
            raise ErvError(f"{path}: expected an object keyed by sample name")
        fields = (opts.description_field,) if opts.description_field else _MERR_DESCRIPTION_FIELDS
        out = []
        for key, entry in data.items():
            where = f"{path}: $.{key}"
            if not isinstance(entry, dict) or "pseu_emotion" not in entry:
                raise ErvError(f"{where}: expected an object with 'pseu_emotion'")
            text = next((entry[f] for f in fields if f in entry), None)
            if text is None:
                raise ErvError(f"{where}: no description field ({', '.join(fields)})")
            out.append(Sample(id=key, label=normalize_mafw(str(entry["pseu_emotion"])),
                              video=self.root / opts.clips_dir / f"{key}{opts.extension}",
                              explanation=str(text).strip()))
        return out


class JsonlOptions(_Options):
    manifest: str = "manifest.jsonl"  # relative to root; clip paths relative to its folder
    # A built-in label space (mafw, dfew, emer, goemotions) that labels are normalised
    # to; None keeps labels as written and declares the labels found.
    label_space: str | None = None


class Jsonl(_ClipDataset):
    """A JSONL manifest: {"video": path, "label": word, "id"?, "explanation"?, "split"?}."""

    name: ClassVar[str] = "jsonl"
    Options = JsonlOptions
    splits: ClassVar[tuple[str, ...]] = ("train", "test", "validation", "all")

    def __init__(self, options: JsonlOptions, *, context: BuildContext | None = None,
                 **where: Any) -> None:
        super().__init__(options, context=context, **where)
        if options.label_space is not None and options.label_space not in BUILTIN_LABEL_SPACES:
            raise ErvError(f"dataset jsonl: label_space {options.label_space!r} is not one of "
                           f"{', '.join(BUILTIN_LABEL_SPACES)}")
        self._space = BUILTIN_LABEL_SPACES.get(options.label_space or "")

    @property
    def label_space(self) -> LabelSpace:  # type: ignore[override]
        if self._space is None:
            labels = tuple(sorted({s.label for s in self.samples()}))
            self._space = LabelSpace("jsonl", labels, normalize_plain)
        return self._space

    def _files(self) -> list[RequiredPath]:
        opts: JsonlOptions = self.options  # type: ignore[assignment]
        return [RequiredPath(self.root / opts.manifest, "manifest", "file")]

    def _read(self) -> list[Sample]:
        opts: JsonlOptions = self.options  # type: ignore[assignment]
        path = self.root / opts.manifest
        if not path.is_file():
            raise ErvError(f"dataset jsonl: manifest {path} does not exist")
        space = BUILTIN_LABEL_SPACES.get(opts.label_space or "")
        out = []
        for where, _, obj in iter_jsonl(path):
            if "video" not in obj or "label" not in obj:
                raise ErvError(f"{where}: expected an object with 'video' and 'label'")
            if self.split != "all" and obj.get("split", self.split) != self.split:
                continue
            raw = str(obj["label"])
            label = _label(space, raw, where) if space is not None else normalize_plain(raw)
            video = Path(obj["video"])
            extra = {k: v for k, v in obj.items()
                     if k not in ("id", "video", "label", "explanation", "split")}
            out.append(Sample(id=str(obj.get("id", video.stem)), label=label,
                              video=video if video.is_absolute() else path.parent / video,
                              explanation=obj.get("explanation"), extra=extra))
        return out


@hookimpl
def erv_register_datasets(register: Register) -> None:
    for cls in (Mafw, Dfew, Emer, Merr, Jsonl):
        register(cls)

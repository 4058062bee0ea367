"""Synthetic emotion clips: small real mp4 files (PyAV) with a learnable signal.

Each emotion has its own colour and its own tone, so a tiny model can learn the label
from the frames or the audio; brightness, noise and tone phase vary per clip. Every clip
has an explanation (a few sentences naming the cues and the emotion) for SFT and for the
explanation reward. With ``drift`` > 0, that share of each label's train clips get a
*drifting* explanation, as R1-Omni's outputs often have (paper Figure 1): it cites the
colour, tone and emotion word of another emotion while the clip's label (the SFT answer)
stays the right one, so a policy fine-tuned on them writes both coherent and incoherent
explanations (``explains`` says which emotion the explanation argues for). ``write_synthetic`` lays the clips out as the real datasets are
distributed (REFERENCE.md "Datasets on disk"), so the same dataset plugins read them:

    out/clips/<id>.mp4                                    every clip, once
    out/mafw/data/clips/<id>.mp4,
    out/mafw/Train & Test Set/single/no_caption/set_5/{train,test}.txt
    out/dfew/clip/<n>.mp4, out/dfew/label/single_{train,test}set_5.csv
    out/emer/video/<id>.mp4, out/emer/emer.csv           (names, emotions, subtitles, reasons)
    out/merr/video/<id>.mp4, out/merr/merr_fine.json     ({id: {pseu_emotion, description}})
    out/manifest.jsonl                                    (id, video, label, explanation, split)

Labels are given in MAFW's words and written in each dataset's own words (DFEW's
happy/sad/angry, EMER's happy/sad/angry/worried); a label a dataset lacks is left out
of that dataset.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from erv_plugins.labels import (
    DFEW_LABELS,
    EMER_LABELS,
    MAFW_LABELS,
    normalize_dfew,
    normalize_emer,
    normalize_mafw,
)

DEFAULT_LABELS: tuple[str, ...] = ("happiness", "sadness", "anger", "neutral")
LAYOUTS: tuple[str, ...] = ("mafw", "dfew", "jsonl", "emer", "merr")
MAFW_SPLIT_DIR = Path("Train & Test Set") / "single" / "no_caption"

# colour (RGB), tone (Hz), and the cue words of the explanation, per MAFW label.
STYLE: dict[str, tuple[tuple[int, int, int], float, str, str]] = {
    "happiness": ((240, 200, 40), 880.0, "warm yellow", "bright, high"),
    "sadness": ((40, 60, 200), 220.0, "cold blue", "low, slow"),
    "anger": ((220, 30, 30), 330.0, "harsh red", "loud, rough"),
    "neutral": ((128, 128, 128), 440.0, "plain grey", "steady, flat"),
    "surprise": ((240, 120, 220), 990.0, "vivid pink", "sudden, rising"),
    "fear": ((90, 30, 120), 260.0, "dark purple", "trembling, thin"),
    "disgust": ((90, 140, 30), 300.0, "murky green", "grating, sour"),
    "contempt": ((150, 100, 60), 350.0, "dull brown", "dry, clipped"),
    "anxiety": ((250, 150, 30), 600.0, "restless orange", "fast, wavering"),
    "helplessness": ((70, 90, 110), 180.0, "faded slate", "weak, fading"),
    "disappointment": ((110, 110, 170), 250.0, "washed-out lavender", "sinking, soft"),
}

# The explanation templates by style. "varied" (the default demo's): three phrasings.
# "short": two short sentences, the cues then the emotion word; short on purpose, as a tiny
# policy reproduces a ~25-token explanation cleanly where ~60 tokens come out garbled.
_EXPLANATIONS: dict[str, tuple[str, ...]] = {
    "varied": (
        "The scene is bathed in {colour} light. A {tone} tone plays throughout. "
        "The person seems to feel {word}.",
        "Everything on screen looks {colour}. The voice is {tone}. "
        "Taken together, the clip conveys {word}.",
        "A {tone} sound fills the room while the picture stays {colour}. "
        "Their expression shows {word}.",
    ),
    "short": ("The light is {colour} and the tone is {tone}. The person feels {word}.",),
}


@dataclass(frozen=True)
class SyntheticClip:
    id: str
    label: str  # MAFW word
    split: str
    path: Path
    explanation: str
    explains: str = ""  # the emotion the explanation argues for ("" = label)

    @property
    def drifts(self) -> bool:
        """Whether the explanation argues for another emotion than the label."""
        return bool(self.explains) and self.explains != self.label


@dataclass
class SyntheticSet:
    root: Path
    clips: list[SyntheticClip]
    files: dict[str, list[Path]] = field(default_factory=dict)  # layout -> files written


def write_clip(
    path: str | os.PathLike[str],
    colour: tuple[int, int, int] = (128, 128, 128),
    tone_hz: float | None = 440.0,
    *,
    seconds: float = 1.0,
    fps: int = 8,
    size: int | tuple[int, int] = 32,
    sample_rate: int = 16_000,
    noise: float = 0.0,
    frame_values: Sequence[int] | None = None,
    seed: int = 0,
) -> Path:
    """Write one mp4 (H.264 video, AAC mono audio; no audio when ``tone_hz`` is None).

    ``size`` is ``side`` or ``(width, height)``. ``frame_values``, when given, makes frame
    i a flat grey of that value (tests read the frame indices back from the pixels).
    """
    import av

    rng = np.random.default_rng(seed)
    width, height = (size, size) if isinstance(size, int) else size
    n_frames = len(frame_values) if frame_values is not None else max(1, round(seconds * fps))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "0", "preset": "ultrafast"}
        audio = None
        if tone_hz is not None:
            audio = container.add_stream("aac", rate=sample_rate)
            audio.layout = "mono"
        for i in range(n_frames):
            if frame_values is not None:
                img = np.full((height, width, 3), frame_values[i], dtype=np.uint8)
            else:
                base = np.array(colour, dtype=np.float32) * rng.uniform(0.85, 1.0)
                img = base + rng.normal(0.0, noise, (height, width, 3))
                img = np.clip(img, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            total = int(n_frames / fps * sample_rate)
            t = np.arange(total, dtype=np.float32) / sample_rate
            phase = rng.uniform(0, 2 * np.pi)
            wave = 0.4 * np.sin(2 * np.pi * float(tone_hz) * t + phase)
            wave = (wave + rng.normal(0.0, 0.01, total)).astype(np.float32)
            chunk = 1024
            for start in range(0, total, chunk):
                piece = wave[start:start + chunk].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return out


DRIFT_TO: tuple[str, ...] = ("any", "next")


def drifting_clips(split_of: Sequence[tuple[str, str]], labels: Sequence[str], drift: float,
                   seed: int, drift_to: str = "any") -> dict[int, str]:
    """Which clips get a drifting explanation, and the emotion each one argues for.

    ``split_of`` is (label, split) per clip in writing order. Per label, exactly
    ``round(drift * n)`` of its n train clips drift (chosen with ``seed``); test clips
    never drift (their explanations are not trained on). ``drift_to``: "any" = each to
    one of the other ``labels`` drawn uniformly; "next" = all to the label after it in
    ``labels`` (cyclically): one systematic confusion per label, so that at drift 0.5 the
    drifting explanation is as likely as the coherent one for every clip, also at a low
    sampling temperature (where uniform drift to the others would leave the coherent
    explanation the mode). Returns {clip index: emotion the explanation argues for}.
    """
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be a share in [0, 1], got {drift}")
    if drift_to not in DRIFT_TO:
        raise ValueError(f"drift_to must be one of {', '.join(DRIFT_TO)}, got {drift_to!r}")
    if drift == 0.0 or len(labels) < 2:
        return {}
    # Its own stream, so the clips' pixels and tones do not change with the drift share.
    rng = np.random.default_rng([seed, 1])
    out: dict[int, str] = {}
    for label in labels:
        train = [i for i, (lb, split) in enumerate(split_of) if lb == label and split == "train"]
        k = round(drift * len(train))
        others = [lb for lb in labels if lb != label]
        following = labels[(list(labels).index(label) + 1) % len(labels)]
        for i in sorted(rng.choice(train, size=k, replace=False).tolist()):
            pick = int(rng.integers(len(others)))  # drawn in both modes: same stream
            out[i] = others[pick] if drift_to == "any" else following
    return out


def synthetic_corpus() -> list[str]:
    """Text a tiny tokenizer can be trained on so that the synthetic task's words are whole
    tokens: every explanation template with every emotion's cues and word, and every
    emotion as an answer (weighted like the task, where each template repeats per label).
    With whole words a tiny policy samples a clean explanation at temperature 1, which
    GRPO's rollouts need; with byte pieces it garbles them (benchmarks/RESULTS.md)."""
    lines: list[str] = []
    for label in STYLE:
        for templates in _EXPLANATIONS.values():
            for template in templates:
                lines += [template.format(colour=colour_word, tone=tone_word, word=other)
                          for other, (_, _, colour_word, tone_word) in STYLE.items()]
        lines += [f"<answer>{label}</answer>"] * 50
    return lines


# The verifier's text for the synthetic task (``verifier_sentences``): one sentence, one
# label, in the clips' vocabulary but not the SFT explanations' templates. A scene sentence
# names colours and tones only, so it is neutral, as a text emotion classifier would read
# it (the paper's neutral filter exists for such description sentences); an emotion
# sentence names one emotion.
_SCENE_SENTENCES: tuple[str, ...] = (
    "The light is {colour}.",
    "The picture looks {colour}.",
    "The tone is {tone}.",
    "A {tone} sound plays.",
    "The light is {colour} and the tone is {tone}.",
    "The screen is {colour} while the voice is {tone}.",
)
_EMOTION_SENTENCES: tuple[str, ...] = (
    "The person feels {word}.",
    "They feel {word}.",
    "The person shows {word}.",
    "Their face shows {word}.",
    "The clip conveys {word}.",
    "The person seems to feel {word}.",
)


def verifier_sentences(n: int = 600, labels: Sequence[str] = tuple(STYLE),
                       seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (sentence, label) pairs to train a verifier for the synthetic task: half
    scene sentences (a colour and a tone of any emotion in ``STYLE``) labelled neutral,
    half emotion sentences naming one of ``labels`` (balanced), labelled with it. Not
    the clips' explanations whole: in them the cue words always come with their emotion
    word, so a verifier learns the colours as the emotion and a policy earns R_E = 1 with
    the cue sentence alone (benchmarks/RESULTS.md, issue 15)."""
    unknown = [lb for lb in labels if lb not in STYLE]
    if unknown:
        raise ValueError(f"no synthetic style for labels {unknown}; known: {', '.join(STYLE)}")
    rng = np.random.default_rng([seed, 2])
    styles = list(STYLE.values())
    out: list[tuple[str, str]] = []
    for i in range(n):
        if i % 2 == 0:
            _, _, colour, _ = styles[int(rng.integers(len(styles)))]
            _, _, _, tone = styles[int(rng.integers(len(styles)))]
            template = _SCENE_SENTENCES[int(rng.integers(len(_SCENE_SENTENCES)))]
            out.append((template.format(colour=colour, tone=tone), "neutral"))
        else:
            label = labels[(i // 2) % len(labels)]
            template = _EMOTION_SENTENCES[int(rng.integers(len(_EMOTION_SENTENCES)))]
            out.append((template.format(word=label), label))
    return out


def explanation_for(label: str, variant: int = 0, style: str = "varied") -> str:
    """The explanation of a synthetic clip: its colour, its tone and the emotion word, in
    template ``variant`` of ``style`` ("varied" or "short")."""
    colour, _, colour_word, tone_word = STYLE[label]
    templates = _EXPLANATIONS[style]
    return templates[variant % len(templates)].format(
        colour=colour_word, tone=tone_word, word=label)


def _link(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def write_synthetic(
    out_dir: str | os.PathLike[str],
    n_per_label: int = 4,
    labels: Sequence[str] = DEFAULT_LABELS,
    layouts: Sequence[str] = ("mafw", "dfew", "jsonl"),
    seed: int = 0,
    *,
    seconds: float = 1.0,
    fps: int = 8,
    size: int = 32,
    noise: float = 8.0,
    test_every: int = 4,
    drift: float = 0.0,
    drift_to: str = "any",
    explanations: str = "varied",
    progress: bool = False,
) -> SyntheticSet:
    """Write ``n_per_label`` clips per label and the requested dataset layouts.

    Every ``test_every``-th clip of a label (the 2nd, 6th, ...) is in the test split, so
    two clips per label give one train and one test clip. ``drift``: the share of each
    label's train clips whose explanation argues for another emotion, ``drift_to`` which
    (``drifting_clips``). ``explanations``: the template style (``explanation_for``).
    Deterministic for a ``seed``.
    """
    from tqdm import tqdm

    unknown = [lb for lb in labels if normalize_mafw(lb) not in STYLE]
    if unknown:
        raise ValueError(f"no synthetic style for labels {unknown}; known: {', '.join(STYLE)}")
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad:
        raise ValueError(f"unknown layouts {bad}; known: {', '.join(LAYOUTS)}")
    root = Path(out_dir)
    if explanations not in _EXPLANATIONS:
        raise ValueError(f"explanations must be one of {', '.join(_EXPLANATIONS)}, "
                         f"got {explanations!r}")
    rng = np.random.default_rng(seed)
    clips: list[SyntheticClip] = []
    jobs = [(normalize_mafw(lb), k) for k in range(n_per_label) for lb in labels]

    def split_of(k: int) -> str:
        return "test" if (n_per_label > 1 and k % test_every == 1) else "train"

    drifted = drifting_clips([(label, split_of(k)) for label, k in jobs],
                             [normalize_mafw(lb) for lb in labels], drift, seed, drift_to)
    for idx, (label, k) in enumerate(tqdm(jobs, disable=not progress, desc="writing clips")):
        clip_id = f"{label}_{k:04d}"
        colour, tone, _, _ = STYLE[label]
        path = write_clip(root / "clips" / f"{clip_id}.mp4", colour, tone, seconds=seconds,
                          fps=fps, size=size, noise=noise,
                          seed=int(rng.integers(2**31)))
        explains = drifted.get(idx, label)
        clips.append(SyntheticClip(clip_id, label, split_of(k), path,
                                   explanation_for(explains, idx, explanations), explains))
    result = SyntheticSet(root=root, clips=clips)
    for layout in layouts:
        result.files[layout] = _WRITERS[layout](root, clips)
    return result


def _write_mafw(root: Path, clips: list[SyntheticClip]) -> list[Path]:
    base = root / "mafw"
    files = [_link(c.path, base / "data" / "clips" / f"{c.id}.mp4") for c in clips]
    split_dir = base / MAFW_SPLIT_DIR / "set_5"
    split_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        lines = [f"{c.id}.mp4 {c.label}" for c in clips if c.split == split and c.label in MAFW_LABELS]
        (split_dir / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
        files.append(split_dir / f"{split}.txt")
    return files


def _write_dfew(root: Path, clips: list[SyntheticClip]) -> list[Path]:
    base = root / "dfew"
    files: list[Path] = []
    rows: dict[str, list[tuple[int, int]]] = {"train": [], "test": []}
    for n, c in enumerate(clips, start=1):
        word = normalize_dfew(c.label)
        if word not in DFEW_LABELS:
            continue
        files.append(_link(c.path, base / "clip" / f"{n}.mp4"))
        rows[c.split].append((n, DFEW_LABELS.index(word) + 1))
    (base / "label").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        path = base / "label" / f"single_{split}set_5.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "label"])
            w.writerows(rows[split])
        files.append(path)
    return files


def _write_emer(root: Path, clips: list[SyntheticClip]) -> list[Path]:
    base = root / "emer"
    files: list[Path] = []
    path = base / "emer.csv"
    base.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["names", "emotions", "subtitles", "reasons"])
        for c in clips:
            word = normalize_emer(c.label)
            if word not in EMER_LABELS:
                continue
            files.append(_link(c.path, base / "video" / f"{c.id}.mp4"))
            w.writerow([c.id, word, "", c.explanation])
    files.append(path)
    return files


def _write_merr(root: Path, clips: list[SyntheticClip]) -> list[Path]:
    base = root / "merr"
    files = [_link(c.path, base / "video" / f"{c.id}.mp4") for c in clips]
    data = {c.id: {"pseu_emotion": c.label, "description": c.explanation} for c in clips}
    path = base / "merr_fine.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    files.append(path)
    return files


def _write_jsonl(root: Path, clips: list[SyntheticClip]) -> list[Path]:
    path = root / "manifest.jsonl"
    with path.open("w") as fh:
        for c in clips:
            row = {"id": c.id, "video": f"clips/{c.id}.mp4", "label": c.label,
                   "explanation": c.explanation, "split": c.split}
            if c.drifts:
                # "labels": the emotion the explanation argues for, which a verifier learns
                # from the text (records_from_dataset); "label" stays the clip's (the answer).
                row.update(labels=[c.explains], drift=True)
            fh.write(json.dumps(row) + "\n")
    return [path]


_WRITERS = {"mafw": _write_mafw, "dfew": _write_dfew, "emer": _write_emer,
            "merr": _write_merr, "jsonl": _write_jsonl}

"""Decoding clips into the omni model's inputs (paper section 3.1; release ``mm_utils.py``).

Video: decord, ``frames`` frames at the middles of equal segments (release
``frame_sample(mode="uniform")``), each padded to a square with the image mean colour
(release ``expand2square``), resized to the vision tower's resolution (bicubic, as the
SigLIP image processor) and normalised with SigLIP's mean/std 0.5.
Audio: decord's AudioReader at 16 kHz mono, then Whisper log-mel features
(``WhisperFeatureExtractor``: padded or cut to ``chunk_length`` seconds).

Failure behaviour, per file:
  - a missing or corrupt clip raises ``MediaError`` naming the file and the reason;
  - a clip without an audio track gets silence and a ``MissingAudioWarning`` (counted in
    ``STATS.missing_audio``);
  - a clip with fewer frames than asked repeats frames (segment middles round to the
    same index).
Decoded inputs can be cached on disk (``cache_dir``), keyed by the file's path, size and
mtime and by every decoding setting, so epochs and workers never decode a clip twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from erv_plugins.errors import ErvError

SAMPLE_RATE = 16_000
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
CACHE_VERSION = 1


class MediaError(ErvError):
    """A clip that cannot be decoded; the message starts with its path."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Picklable, so DataLoader workers can hand errors back.
        return (MediaError, (self.path, self.reason))


class MissingAudioWarning(UserWarning):
    """A clip has no audio track; silence was used instead."""


@dataclass
class MediaStats:
    """Counters of this process's decoding (each DataLoader worker has its own)."""

    decoded: int = 0
    cache_hits: int = 0
    missing_audio: int = 0

    def reset(self) -> None:
        self.decoded = self.cache_hits = self.missing_audio = 0


STATS = MediaStats()
_stats_lock = threading.Lock()


def frame_indices(num_video_frames: int, frames: int = 8) -> list[int]:
    """Indices of the middles of ``frames`` equal segments (release ``frame_sample``).

    >>> frame_indices(16, 8)
    [1, 3, 5, 7, 8, 10, 12, 14]
    >>> frame_indices(3, 8)  # a short clip repeats frames
    [0, 0, 1, 1, 1, 1, 2, 2]
    """
    if num_video_frames < 1:
        raise ValueError("a clip needs at least one frame")
    seg = (num_video_frames - 1) / frames
    mids = [seg * i + seg / 2 for i in range(frames)]
    return [int(v) for v in np.round(np.array(mids) + 1e-6).astype(int)]


@dataclass(frozen=True)
class ClipProbe:
    num_frames: int
    has_audio: bool
    width: int
    height: int


def probe(path: str | os.PathLike[str]) -> ClipProbe:
    """Open a clip with PyAV before decord touches it: a bad file becomes a Python error."""
    import av

    p = Path(path)
    if not p.is_file():
        raise MediaError(p, "no such clip file")
    if p.stat().st_size == 0:
        raise MediaError(p, "empty file")
    try:
        with av.open(str(p)) as container:
            vstreams = container.streams.video
            if not vstreams:
                raise MediaError(p, "no video stream")
            stream = vstreams[0]
            n = stream.frames
            if not n:
                n = sum(1 for _ in container.decode(video=0))
            has_audio = bool(container.streams.audio)
            width, height = stream.codec_context.width, stream.codec_context.height
    except MediaError:
        raise
    except Exception as exc:  # av.error.* and friends: corrupt or not a media file
        raise MediaError(p, f"cannot be read as a video (corrupt or unsupported): {exc}") from None
    if n <= 0:
        raise MediaError(p, "video stream has no frames")
    return ClipProbe(num_frames=n, has_audio=has_audio, width=width, height=height)


def read_frames(path: str | os.PathLike[str], frames: int = 8
                ) -> tuple[np.ndarray, list[int]]:
    """(uint8 array (frames, H, W, 3), the frame indices read).

    decord first (as the release); where decord fails on a file that PyAV can open
    (e.g. frame widths decord's buffer alignment rejects), PyAV decodes it instead.
    """
    import decord

    info = probe(path)
    try:
        reader = decord.VideoReader(os.fspath(path), ctx=decord.cpu(0), num_threads=1)
        n = len(reader)
        if n <= 0:
            raise MediaError(path, "video stream has no frames")
        indices = frame_indices(n, frames)
        return reader.get_batch(indices).asnumpy(), indices
    except MediaError:
        raise
    except Exception as exc:  # decord.DECORDError, RuntimeError
        decord_error = exc
    try:
        return _read_frames_av(path, frames)
    except Exception as exc:
        raise MediaError(path, f"cannot decode the video ({info.num_frames} frames probed): "
                               f"decord: {decord_error}; PyAV: {exc}") from None


def _read_frames_av(path: str | os.PathLike[str], frames: int) -> tuple[np.ndarray, list[int]]:
    import av

    with av.open(os.fspath(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not decoded:
        raise MediaError(path, "video stream has no frames")
    indices = frame_indices(len(decoded), frames)
    return np.stack([decoded[i] for i in indices]), indices


def read_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Mono float32 samples at ``sample_rate``; None when the clip has no audio track.

    decord's AudioReader first (as the release); where it fails, PyAV decodes the track
    and torchaudio resamples it.
    """
    import decord

    if not probe(path).has_audio:
        return None
    try:
        reader = decord.AudioReader(os.fspath(path), ctx=decord.cpu(0),
                                    sample_rate=sample_rate, mono=True)
        data = np.asarray(reader._array, dtype=np.float32)
    except Exception as exc:
        try:
            data = read_audio_av(path, sample_rate)
        except Exception as av_exc:
            raise MediaError(path, f"cannot decode the audio track: decord: {exc}; "
                                   f"PyAV: {av_exc}") from None
    if data.ndim > 1:
        data = data.mean(axis=0)
    return np.nan_to_num(data, nan=-1.5)


def read_audio_av(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples of the first audio track via PyAV, resampled with torchaudio."""
    import av
    import torch
    import torchaudio

    with av.open(os.fspath(path)) as container:
        stream = container.streams.audio[0]
        source_rate = stream.codec_context.sample_rate
        chunks = []
        for frame in container.decode(audio=0):
            arr = frame.to_ndarray().astype(np.float32)
            if frame.format.is_packed:  # interleaved (1, samples * channels)
                arr = arr.reshape(-1, len(frame.layout.channels)).T
            chunks.append(arr.mean(axis=0))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    mono = torch.from_numpy(np.concatenate(chunks))
    if source_rate != sample_rate:
        mono = torchaudio.functional.resample(mono, source_rate, sample_rate)
    return mono.numpy().astype(np.float32)


def pad_to_square(frame: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """Centre ``frame`` (H, W, 3) on a square canvas of ``fill`` (release expand2square)."""
    h, w = frame.shape[:2]
    if h == w:
        return frame
    side = max(h, w)
    canvas = np.empty((side, side, 3), dtype=frame.dtype)
    canvas[:] = np.asarray(fill, dtype=frame.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = frame
    return canvas


def resize_frames(frames: np.ndarray, image_size: int, aspect_ratio: str = "pad",
                  mean: Sequence[float] = SIGLIP_MEAN) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, S, S, 3): pad to square (optional), bicubic resize."""
    from PIL import Image

    if aspect_ratio not in ("pad", "resize"):
        raise ValueError(f"aspect_ratio must be 'pad' or 'resize', not {aspect_ratio!r}")
    fill = tuple(int(m * 255) for m in mean)
    out = np.empty((len(frames), image_size, image_size, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        if aspect_ratio == "pad":
            f = pad_to_square(f, fill)
        img = Image.fromarray(f).resize((image_size, image_size), Image.Resampling.BICUBIC)
        out[i] = np.asarray(img)
    return out


def normalize_frames(frames: np.ndarray, mean: Sequence[float] = SIGLIP_MEAN,
                     std: Sequence[float] = SIGLIP_STD) -> Any:
    """uint8 (T, S, S, 3) -> float32 tensor (T, 3, S, S), rescaled and normalised."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


@functools.lru_cache(maxsize=8)
def _feature_extractor(n_mels: int, chunk_length: float, sample_rate: int) -> Any:
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=sample_rate,
                                 chunk_length=int(round(chunk_length)))
    # Sub-second windows for tiny models: set the sizes the extractor derives from them.
    fe.chunk_length = chunk_length
    fe.n_samples = int(round(chunk_length * sample_rate))
    fe.nb_max_frames = fe.n_samples // fe.hop_length
    return fe


def log_mel(audio: np.ndarray, n_mels: int = 128, chunk_length: float = 30.0,
            sample_rate: int = SAMPLE_RATE) -> Any:
    """Whisper log-mel features (n_mels, chunk_length * 100) of mono samples."""
    import torch

    fe = _feature_extractor(n_mels, chunk_length, sample_rate)
    feats = fe(audio, sampling_rate=sample_rate, return_tensors="pt")["input_features"][0]
    return torch.nan_to_num(feats, nan=-1.5)


def audio_features(path: str | os.PathLike[str], n_mels: int = 128, chunk_length: float = 30.0,
                   sample_rate: int = SAMPLE_RATE) -> Any:
    """Log-mel features of a clip's audio; silence (and a counted warning) without audio."""
    audio = read_audio(path, sample_rate)
    if audio is None:
        with _stats_lock:
            STATS.missing_audio += 1
        warnings.warn(f"{os.fspath(path)}: no audio track; using silence",
                      MissingAudioWarning, stacklevel=2)
        audio = np.zeros(int(chunk_length * sample_rate), dtype=np.float32)
    return log_mel(audio, n_mels, chunk_length, sample_rate)


def _cache_file(cache_dir: str | os.PathLike[str], path: Path, settings: dict[str, Any]) -> Path:
    st = path.stat()
    key = json.dumps({"v": CACHE_VERSION, "path": str(path.resolve()), "size": st.st_size,
                      "mtime_ns": st.st_mtime_ns, **settings}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()
    return Path(cache_dir) / digest[:2] / f"{digest}.pt"


def decode_clip(
    path: str | os.PathLike[str],
    frames: int = 8,
    image_size: int = 224,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    n_mels: int = 128,
    chunk_length: float = 30.0,
    sample_rate: int = SAMPLE_RATE,
    aspect_ratio: str = "pad",
    mean: Sequence[float] = SIGLIP_MEAN,
    std: Sequence[float] = SIGLIP_STD,
) -> tuple[Any, Any]:
    """(video float32 (frames, 3, S, S), audio log-mel float32 (n_mels, chunk_length*100)).

    Defaults are HumanOmni-0.5B's: 8 frames, 224 px, whisper-large-v3's 128 mels x 30 s.
    Raises ``MediaError`` for a missing or corrupt clip.
    """
    import torch

    p = Path(path)
    settings = {"frames": frames, "image_size": image_size, "n_mels": n_mels,
                "chunk_length": chunk_length, "sample_rate": sample_rate,
                "aspect_ratio": aspect_ratio, "mean": list(mean)}
    cached: Path | None = None
    if cache_dir is not None:
        if not p.is_file():
            raise MediaError(p, "no such clip file")
        cached = _cache_file(cache_dir, p, settings)
        if cached.is_file():
            try:
                entry = torch.load(cached, map_location="cpu", weights_only=True)
                with _stats_lock:
                    STATS.cache_hits += 1
                return normalize_frames(entry["frames"].numpy(), mean, std), entry["audio"]
            except Exception:  # a torn or stale entry: decode again and overwrite
                pass
    raw, _ = read_frames(p, frames)
    small = resize_frames(raw, image_size, aspect_ratio, mean)
    audio = audio_features(p, n_mels, chunk_length, sample_rate)
    with _stats_lock:
        STATS.decoded += 1
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        torch.save({"frames": torch.from_numpy(small), "audio": audio}, tmp)
        os.replace(tmp, cached)  # atomic: concurrent workers never read half a file
    return normalize_frames(small, mean, std), audio


class ClipDecoder:
    """Decodes clips in DataLoader workers: ``DataLoader(ClipDecoder(paths, ...), ...)``.

    Item i is ``(i, video, audio, silent, None)`` or ``(i, None, None, False, MediaError)``
    so one bad clip never stops the loader; the caller counts or raises.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], **decode_kwargs: Any) -> None:
        self.paths = list(paths)
        self.decode_kwargs = decode_kwargs

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, Any, bool, MediaError | None]:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MissingAudioWarning)
                video, audio = decode_clip(self.paths[i], **self.decode_kwargs)
        except MediaError as exc:
            return i, None, None, False, exc
        silent = any(issubclass(w.category, MissingAudioWarning) for w in caught)
        return i, video, audio, silent, None


def _first(batch: list[Any]) -> Any:
    return batch[0]


def decode_many(paths: Sequence[str | os.PathLike[str]], *, workers: int = 0,
                progress: bool = True, **decode_kwargs: Any) -> dict[str, Any]:
    """Decode every clip once (warming the cache); returns counts and per-file problems.

    ``{"ok": n, "silent": [paths], "errors": {path: reason}}``.
    """
    import torch
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(ClipDecoder(paths, **decode_kwargs), batch_size=1,
                                         num_workers=workers, collate_fn=_first)
    ok, silent, errors = 0, [], {}
    for i, _video, _audio, is_silent, error in tqdm(
            loader, total=len(paths), disable=not progress, desc="decoding clips", unit="clip"):
        path = os.fspath(paths[i])
        if error is not None:
            errors[path] = error.reason
            continue
        ok += 1
        if is_silent:
            silent.append(path)
    return {"ok": ok, "silent": silent, "errors": errors}

"""Decoding clips into the omni model's inputs: frames, audio features, errors, cache."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from erv_plugins.datasets import media  # noqa: E402
from erv_plugins.datasets.synthetic import STYLE, write_clip  # noqa: E402

TINY = {"frames": 8, "image_size": 32, "n_mels": 16, "chunk_length": 1.98}
GREY_RAMP = [10 + 15 * i for i in range(16)]  # frame i is a flat grey of this value


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    happy_colour, happy_tone, _, _ = STYLE["happiness"]
    sad_colour, sad_tone, _, _ = STYLE["sadness"]
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    return {
        "happy": write_clip(d / "happy.mp4", happy_colour, happy_tone, seed=1),
        "sad": write_clip(d / "sad.mp4", sad_colour, sad_tone, seed=2),
        "ramp": write_clip(d / "ramp.mp4", frame_values=GREY_RAMP, tone_hz=None),
        "short": write_clip(d / "short.mp4", seconds=3 / 8),
        "wide": write_clip(d / "wide.mp4", (250, 250, 250), 440.0, size=(48, 32)),
        "corrupt": corrupt,
        "missing": d / "missing.mp4",
    }


def test_frame_indices_are_segment_middles_as_in_the_release() -> None:
    assert media.frame_indices(16, 8) == [1, 3, 5, 7, 8, 10, 12, 14]
    assert media.frame_indices(8, 8) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert media.frame_indices(3, 8) == [0, 0, 1, 1, 1, 1, 2, 2]  # short clip repeats
    assert media.frame_indices(1, 4) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="at least one frame"):
        media.frame_indices(0)


def test_decoded_frames_are_the_sampled_ones(clips: dict[str, Path]) -> None:
    raw, indices = media.read_frames(clips["ramp"], 8)
    assert indices == [1, 3, 5, 7, 8, 10, 12, 14]
    assert raw.shape == (8, 32, 32, 3)
    grey = raw.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey, [GREY_RAMP[i] for i in indices], atol=2.0)


def test_short_clip_repeats_frames(clips: dict[str, Path]) -> None:
    assert media.probe(clips["short"]).num_frames == 3
    video, audio = media.decode_clip(clips["short"], **TINY)
    assert video.shape == (8, 3, 32, 32)
    assert bool((video[0] == video[1]).all()) and bool((video[6] == video[7]).all())


def test_tiny_and_paper_shapes(clips: dict[str, Path]) -> None:
    video, audio = media.decode_clip(clips["happy"], **TINY)
    assert (video.shape, audio.shape) == ((8, 3, 32, 32), (16, 198))
    assert str(video.dtype) == str(audio.dtype) == "torch.float32"
    # HumanOmni-0.5B defaults: 224 px SigLIP input, whisper-large-v3's 128 mels x 3000.
    video, audio = media.decode_clip(clips["happy"])
    assert (tuple(video.shape), tuple(audio.shape)) == ((8, 3, 224, 224), (128, 3000))
    assert -1.0 <= float(video.min()) and float(video.max()) <= 1.0  # SigLIP mean/std 0.5


def test_non_square_clip_is_padded_with_the_mean_colour(clips: dict[str, Path]) -> None:
    video, _ = media.decode_clip(clips["wide"], frames=2, image_size=48, n_mels=16,
                                 chunk_length=1.98)
    # 48x32 -> 48x48 with 8 rows of (127,127,127) above and below the (250,...) picture.
    pad_value = (127 / 255 - 0.5) / 0.5
    assert float(video[0, :, 0:6, :].sub(pad_value).abs().max()) < 0.02
    assert float(video[0, :, 12:36, 4:44].mean()) > 0.9
    square = media.pad_to_square(np.zeros((2, 4, 3), np.uint8), (7, 7, 7))
    assert square.shape == (4, 4, 3)
    assert square[:, :, 0].tolist() == [[7, 7, 7, 7], [0, 0, 0, 0], [0, 0, 0, 0], [7, 7, 7, 7]]


def test_audio_features_carry_the_tone(clips: dict[str, Path]) -> None:
    _, happy = media.decode_clip(clips["happy"], **TINY)
    _, sad = media.decode_clip(clips["sad"], **TINY)
    # 880 Hz vs 220 Hz: the loudest mel band of the sounding part is higher for happiness.
    happy_band = int(happy[:, :90].mean(dim=1).argmax())
    sad_band = int(sad[:, :90].mean(dim=1).argmax())
    assert happy_band > sad_band


def test_clip_without_audio_gets_silence_and_a_counted_warning(clips: dict[str, Path]) -> None:
    before = media.STATS.missing_audio
    with pytest.warns(media.MissingAudioWarning, match="ramp.mp4: no audio track"):
        video, audio = media.decode_clip(clips["ramp"], **TINY)
    assert media.STATS.missing_audio == before + 1
    assert tuple(audio.shape) == (16, 198)
    assert float(audio.min()) == float(audio.max()) == -1.5  # Whisper log-mel of zeros


def test_missing_and_corrupt_clips_raise_clear_errors(clips: dict[str, Path]) -> None:
    with pytest.raises(media.MediaError, match=r"missing\.mp4: no such clip file") as exc:
        media.decode_clip(clips["missing"], **TINY)
    assert exc.value.path == str(clips["missing"])
    with pytest.raises(media.MediaError, match=r"corrupt\.mp4: cannot be read as a video"):
        media.decode_clip(clips["corrupt"], **TINY)
    truncated = clips["happy"].with_name("truncated.mp4")
    data = clips["happy"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(media.MediaError, match=r"truncated\.mp4"):
        media.decode_clip(truncated, **TINY)


def test_cache_decodes_each_clip_once(clips: dict[str, Path], tmp_path: Path) -> None:
    media.STATS.reset()
    first = media.decode_clip(clips["sad"], cache_dir=tmp_path, **TINY)
    second = media.decode_clip(clips["sad"], cache_dir=tmp_path, **TINY)
    assert (media.STATS.decoded, media.STATS.cache_hits) == (1, 1)
    assert bool((first[0] == second[0]).all()) and bool((first[1] == second[1]).all())
    media.decode_clip(clips["sad"], cache_dir=tmp_path, **{**TINY, "image_size": 16})
    assert (media.STATS.decoded, media.STATS.cache_hits) == (2, 1)  # other settings, new entry
    assert len(list(tmp_path.rglob("*.pt"))) == 2


def test_decode_many_counts_problems_per_file(clips: dict[str, Path]) -> None:
    paths = [clips["happy"], clips["ramp"], clips["missing"], clips["corrupt"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", media.MissingAudioWarning)
        report = media.decode_many(paths, progress=False, **TINY)
    assert report["ok"] == 2
    assert report["silent"] == [str(clips["ramp"])]
    assert report["errors"] == {
        str(clips["missing"]): "no such clip file",
        str(clips["corrupt"]): report["errors"][str(clips["corrupt"])],
    }
    assert report["errors"][str(clips["corrupt"])].startswith("cannot be read as a video")


def test_decoding_in_dataloader_workers_shares_the_cache(clips: dict[str, Path],
                                                         tmp_path: Path) -> None:
    paths = [clips["happy"], clips["sad"], clips["missing"]]
    report = media.decode_many(paths, workers=2, progress=False, cache_dir=tmp_path, **TINY)
    assert (report["ok"], list(report["errors"])) == (2, [str(clips["missing"])])
    assert len(list(tmp_path.rglob("*.pt"))) == 2  # written by the workers, atomically
    media.STATS.reset()
    media.decode_clip(clips["happy"], cache_dir=tmp_path, **TINY)
    assert (media.STATS.decoded, media.STATS.cache_hits) == (0, 1)


def test_pyav_audio_fallback_matches_decord_and_resamples(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a16.mp4", tone_hz=440.0)
    np.testing.assert_allclose(media.read_audio_av(clip), media.read_audio(clip), atol=1e-6)
    other_rate = write_clip(tmp_path / "a22.mp4", tone_hz=440.0, sample_rate=22_050)
    samples = media.read_audio_av(other_rate)  # torchaudio resamples 22.05 -> 16 kHz
    assert len(samples) == len(media.read_audio(other_rate))
    spectrum = np.abs(np.fft.rfft(samples[:8000]))
    assert abs(int(spectrum.argmax()) * 16_000 / 8000 - 440) <= 2  # still a 440 Hz tone

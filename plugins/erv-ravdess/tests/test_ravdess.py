"""Tests of the ravdess dataset on a generated folder laid out as RAVDESS is distributed."""

from __future__ import annotations

from pathlib import Path

import pytest

from erv_plugins.datasets.base import Dataset, build_dataset
from erv_plugins.errors import ErvError, RecipeError
from erv_plugins.recipe import load_recipe
from erv_ravdess import RAVDESS, Ravdess, RavdessOptions, parse_name


def make_ravdess(root: Path, actors: range = range(1, 25)) -> Path:
    """Empty clips with real RAVDESS names: per actor, 2 statements x 2 repetitions of
    every emotion, normal intensity, plus strong intensity for every emotion but neutral
    (RAVDESS has no strong neutral): 4 + 7 x 8 = 60 audio-video speech clips per actor,
    as in the real corpus, plus one video-only and one audio-only clip."""
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            for intensity in (1, 2) if emotion != 1 else (1,):
                for statement in (1, 2):
                    for rep in (1, 2):
                        stem = f"01-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{rep:02d}-{actor:02d}"
                        (folder / f"{stem}.mp4").write_bytes(b"")
        (folder / f"02-01-03-01-01-01-{actor:02d}.mp4").write_bytes(b"")
        (folder / f"03-01-04-01-01-01-{actor:02d}.wav").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ravdess(tmp_path_factory.mktemp("RAVDESS"))


def test_file_name_fields():
    info = parse_name(Path("Actor_07/01-01-06-02-01-02-07.mp4"))
    assert info == {
        "modality": "audio-video", "vocal_channel": "speech", "label": "fearful",
        "intensity": "strong", "statement": "Kids are talking by the door", "repetition": 2,
        "actor": 7, "gender": "male",
    }
    with pytest.raises(ValueError, match=r"emotion code 09 is not one of 01, 02"):
        parse_name(Path("01-01-09-01-01-01-01.mp4"))
    with pytest.raises(ValueError, match="not a RAVDESS file name"):
        parse_name(Path("clip.mp4"))


def test_speaker_independent_splits(root):
    train = Ravdess(root=root, split="train")
    test = Ravdess(root=root, split="test")
    assert isinstance(train, Dataset)
    assert (len(train.samples()), len(test.samples())) == (20 * 60, 4 * 60)
    assert {s.extra["actor"] for s in test.samples()} == {21, 22, 23, 24}
    assert test.counts() == {"neutral": 16, "calm": 32, "happy": 32, "sad": 32, "angry": 32,
                             "fearful": 32, "disgust": 32, "surprised": 32}
    first = test.samples()[0]
    assert (first.id, first.label, first.video.name) == (
        "01-01-01-01-01-01-21", "neutral", "01-01-01-01-01-01-21.mp4")


def test_options_select_clips(root):
    merged = Ravdess(RavdessOptions(calm="neutral", intensity="normal"), root=root, split="test")
    assert merged.counts() == {"neutral": 32, "happy": 16, "sad": 16, "angry": 16,
                               "fearful": 16, "disgust": 16, "surprised": 16}
    assert "calm" not in merged.label_space.labels
    assert sum(s.extra.get("original_label") == "calm" for s in merged.samples()) == 16
    dropped = Ravdess(RavdessOptions(calm="drop"), root=root, split="all", limit=5)
    assert len(dropped.samples()) == 5
    audio = Ravdess(RavdessOptions(modality="audio"), root=root, split="all").samples()
    assert len(audio) == 24 and audio[0].video is None and audio[0].extra["audio"].suffix == ".wav"
    one_actor = Ravdess(RavdessOptions(test_actors=[3]), root=root, split="test")
    assert {s.extra["gender"] for s in one_actor.samples()} == {"male"}


def test_answers_map_to_ravdess_and_verifier_words():
    assert [RAVDESS.normalize(w) for w in ("Fear", "<answer>happiness</answer>", "calm")] == [
        "fearful", "happy", "calm"]
    from erv_plugins.labels import GOEMOTIONS

    assert [RAVDESS.to_verifier(w, GOEMOTIONS) for w in RAVDESS.labels] == [
        "neutral", "neutral", "joy", "sadness", "anger", "fear", "disgust", "surprise"]


def test_errors_name_the_place(tmp_path, root):
    with pytest.raises(ErvError, match="set root"):
        Ravdess(split="train")
    with pytest.raises(ErvError, match="split 'dev' is not one of train, test, all"):
        Ravdess(root=root, split="dev")
    with pytest.raises(ErvError, match=r"no \.mp4 or \.wav files under"):
        Ravdess(root=tmp_path, split="train").samples()
    (tmp_path / "Actor_01").mkdir()
    (tmp_path / "Actor_01" / "01-01-03-01-01-01-31.mp4").write_bytes(b"")
    with pytest.raises(ErvError, match=r"Actor_01/01-01-03-01-01-01-31\.mp4: actor 31"):
        Ravdess(root=tmp_path, split="all").samples()


def test_recipe_decodes_options(tmp_path, root, erv_registry):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nstages = ["grpo"]\n[grpo.dataset]\nplugin = "ravdess"\n'
                      f'root = "{root}"\noptions = {{ calm = "merge" }}\n')
    with pytest.raises(RecipeError, match=r"\$\.grpo\.dataset\.options\.calm: must be one of "
                       r"drop, keep, neutral; got 'merge'"):
        load_recipe(recipe, erv_registry())
    recipe.write_text(recipe.read_text().replace('"merge"', '"drop"'))
    spec = load_recipe(recipe, erv_registry()).grpo.dataset
    data = build_dataset(spec, erv_registry())  # as erv builds it: context.spec = spec
    assert len(data.samples()) == 20 * 52  # 60 clips per actor less 8 calm ones


def test_answer_reward_reads_the_label_space(erv_score):
    completions = ["<think>x</think><answer>fear</answer>", "<think>x</think><answer>calm</answer>"]
    scores = erv_score("answer", completions,
                       {"label": ["fearful", "neutral"], "dataset": ["ravdess", "ravdess"]})
    assert scores.per_reward["answer"] == [1.0, 0.0]


def test_listed_by_erv_plugins(erv_cli):
    result = erv_cli("plugins")
    assert "ravdess 0.1.0 (entrypoint)\n  datasets: ravdess" in result.output

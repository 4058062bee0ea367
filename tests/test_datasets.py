"""Dataset plugins read the synthetic clips in each dataset's own layout; `erv data` commands."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

os.environ.setdefault("OMP_NUM_THREADS", "1")

from erv_plugins.datasets.base import Dataset, build_dataset  # noqa: E402
from erv_plugins.datasets.media import decode_clip  # noqa: E402
from erv_plugins.datasets.synthetic import write_synthetic  # noqa: E402
from erv_plugins.errors import ErvError  # noqa: E402
from erv_plugins.plugins import get_plugins  # noqa: E402
from erv_plugins.recipe import DataSpec  # noqa: E402

TINY = {"frames": 8, "image_size": 32, "n_mels": 16, "chunk_length": 1.98}
ALL_LAYOUTS = ("mafw", "dfew", "jsonl", "emer", "merr")


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic(root, 2, layouts=ALL_LAYOUTS, seed=0)
    return root


def _dataset(name: str, root: Path, split: str = "train", **options: object) -> Dataset:
    reg = get_plugins().get("dataset", name)
    opts = reg.options(**options) if reg.options is not None else None
    return build_dataset(DataSpec(plugin=name, root=str(root), split=split, options=opts))


def test_synthetic_layouts_and_splits(synthetic: Path) -> None:
    assert sorted(p.name for p in (synthetic / "clips").iterdir()) == [
        "anger_0000.mp4", "anger_0001.mp4", "happiness_0000.mp4", "happiness_0001.mp4",
        "neutral_0000.mp4", "neutral_0001.mp4", "sadness_0000.mp4", "sadness_0001.mp4"]
    split_dir = synthetic / "mafw" / "Train & Test Set" / "single" / "no_caption" / "set_5"
    assert (split_dir / "test.txt").read_text().splitlines() == [
        "happiness_0001.mp4 happiness", "sadness_0001.mp4 sadness",
        "anger_0001.mp4 anger", "neutral_0001.mp4 neutral"]
    assert (synthetic / "dfew" / "label" / "single_trainset_5.csv").read_text().splitlines() == [
        "id,label", "1,1", "2,2", "3,4", "4,3"]
    first = json.loads((synthetic / "manifest.jsonl").read_text().splitlines()[0])
    assert first == {
        "id": "happiness_0000", "video": "clips/happiness_0000.mp4", "label": "happiness",
        "explanation": "The scene is bathed in warm yellow light. A bright, high tone plays "
                       "throughout. The person seems to feel happiness.",
        "split": "train"}


def test_synthetic_data_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", 1, labels=("fear",), layouts=("jsonl",), seed=3)
    b = write_synthetic(tmp_path / "b", 1, labels=("fear",), layouts=("jsonl",), seed=3)
    assert a.clips[0].path.read_bytes() == b.clips[0].path.read_bytes()
    with pytest.raises(ValueError, match="no synthetic style for labels"):
        write_synthetic(tmp_path / "c", 1, labels=("boredom",))


@pytest.mark.parametrize(
    ("plugin", "subdir", "split", "expected"),
    [
        ("mafw", "mafw", "test", [("happiness_0001", "happiness"), ("sadness_0001", "sadness"),
                                  ("anger_0001", "anger"), ("neutral_0001", "neutral")]),
        ("dfew", "dfew", "train", [("1", "happy"), ("2", "sad"), ("3", "angry"),
                                   ("4", "neutral")]),
        ("emer", "emer", "train", [("happiness_0000", "happy"), ("sadness_0000", "sad"),
                                   ("anger_0000", "angry"), ("happiness_0001", "happy"),
                                   ("sadness_0001", "sad"), ("anger_0001", "angry")]),
        ("merr", "merr", "train", [("happiness_0000", "happiness"), ("sadness_0000", "sadness"),
                                   ("anger_0000", "anger"), ("neutral_0000", "neutral"),
                                   ("happiness_0001", "happiness"), ("sadness_0001", "sadness"),
                                   ("anger_0001", "anger"), ("neutral_0001", "neutral")]),
        ("jsonl", ".", "test", [("happiness_0001", "happiness"), ("sadness_0001", "sadness"),
                                ("anger_0001", "anger"), ("neutral_0001", "neutral")]),
    ],
)
def test_every_plugin_reads_and_decodes_its_layout(
    synthetic: Path, plugin: str, subdir: str, split: str, expected: list[tuple[str, str]]
) -> None:
    dataset = _dataset(plugin, synthetic / subdir, split)
    assert isinstance(dataset, Dataset)
    samples = dataset.samples()
    assert [(s.id, s.label) for s in samples] == expected
    assert all(s.label in dataset.label_space for s in samples)
    assert all(s.video is not None and s.video.is_file() for s in samples)
    with_explanations = plugin in ("emer", "merr", "jsonl")
    assert all(bool(s.explanation) == with_explanations for s in samples)
    video, audio = decode_clip(samples[0].video, **TINY)
    assert (tuple(video.shape), tuple(audio.shape)) == ((8, 3, 32, 32), (16, 198))


def test_label_spaces_are_declared(synthetic: Path) -> None:
    names = {p: _dataset(p, synthetic / d).label_space.name
             for p, d in [("mafw", "mafw"), ("dfew", "dfew"), ("emer", "emer"),
                          ("merr", "merr"), ("jsonl", ".")]}
    assert names == {"mafw": "mafw", "dfew": "dfew", "emer": "emer", "merr": "mafw",
                     "jsonl": "jsonl"}
    plain = _dataset("jsonl", synthetic, "all")
    assert plain.label_space.labels == ("anger", "happiness", "neutral", "sadness")
    dfew_words = _dataset("jsonl", synthetic, "all", label_space="dfew")
    assert sorted({s.label for s in dfew_words.samples()}) == ["angry", "happy", "neutral", "sad"]


def test_build_dataset_from_a_recipe_spec(synthetic: Path) -> None:
    spec = DataSpec(plugin="dfew", root=str(synthetic / "dfew"), split="test", limit=2)
    spec.options = get_plugins().get("dataset", "dfew").options()
    dataset = build_dataset(spec)
    assert [s.id for s in dataset.samples()] == ["5", "6"]


def test_bad_files_name_the_file_and_line(tmp_path: Path) -> None:
    split_dir = tmp_path / "Train & Test Set" / "single" / "no_caption" / "set_5"
    split_dir.mkdir(parents=True)
    (split_dir / "train.txt").write_text("a.mp4 happiness\nb.mp4 boredom\n")
    with pytest.raises(ErvError, match=r"train\.txt:2: label 'boredom' is not a MAFW label"):
        _dataset("mafw", tmp_path).samples()
    with pytest.raises(ErvError, match=r"split file .*set_5/test\.txt does not exist"):
        _dataset("mafw", tmp_path, "test").samples()
    (tmp_path / "label").mkdir()
    (tmp_path / "label" / "single_trainset_5.csv").write_text("id,label\n1,9\n")
    with pytest.raises(ErvError, match=r"single_trainset_5\.csv:2: label 9 is outside 1\.\.7"):
        _dataset("dfew", tmp_path).samples()
    (tmp_path / "manifest.jsonl").write_text('{"video": "x.mp4", "label": "joy"}\n{oops\n')
    with pytest.raises(ErvError, match=r"manifest\.jsonl:2: invalid JSON"):
        _dataset("jsonl", tmp_path).samples()
    with pytest.raises(ErvError, match="split 'dev' is not one of train, test"):
        _dataset("mafw", tmp_path, "dev")


def test_missing_clips_are_skipped_or_stop_as_configured(synthetic: Path, tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"video": str(synthetic / "clips" / "anger_0000.mp4"), "label": "anger"})
        + "\n" + json.dumps({"video": "gone.mp4", "label": "fear"}) + "\n")
    skipping = _dataset("jsonl", tmp_path, check_files=True)
    assert [s.id for s in skipping.samples()] == ["anger_0000"]
    assert skipping.skipped == {str(tmp_path / "gone.mp4"): "no such clip file"}
    stopping = _dataset("jsonl", tmp_path, check_files=True, on_error="stop")
    with pytest.raises(ErvError, match=r"gone\.mp4: no such clip file \(sample gone of jsonl\)"):
        stopping.samples()


def test_plugins_json_lists_datasets_and_the_omni_model() -> None:
    from erv_plugins.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    infos = {i["name"]: i["registered"] for i in json.loads(result.output)}
    assert infos["erv_plugins.datasets.builtin"] == {
        "dataset": ["dfew", "emer", "jsonl", "mafw", "merr"]}
    assert infos["erv_plugins.models.builtin"] == {"model": ["omni"]}


def test_erv_data_synth_and_check(tmp_path: Path) -> None:
    from erv_plugins.cli import build_cli

    cli = build_cli()
    runner = CliRunner()
    out = tmp_path / "syn"
    result = runner.invoke(cli, ["data", "synth", "--out", str(out), "--per-label", "2",
                                 "--labels", "happiness,sadness", "--layouts", "mafw,emer"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 clips" in result.output and "(2 train, 2 test)" in result.output
    (out / "mafw" / "data" / "clips" / "sadness_0001.mp4").unlink()
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "check"
stages = ["grpo"]
run_dir = "{tmp_path / 'run'}"
[model]
options = {{ tiny = true }}
[grpo.dataset]
plugin = "mafw"
root = "{out / 'mafw'}"
split = "test"
""")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runner.invoke(cli, ["data", "check", str(recipe)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "media: 8 frames of 32 px, 16 mels x 1.98 s" in lines[0]
    assert ("grpo.dataset (mafw, split test): 2 clips, 1 ok, 0 without audio, 1 errors\n"
            in result.output)
    assert any(line.endswith("sadness_0001.mp4: no such clip file") for line in lines)
    assert len(list((tmp_path / "run" / "cache" / "clips").rglob("*.pt"))) == 1

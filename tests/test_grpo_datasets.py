"""GRPO on several datasets at once, as the release trains on one mixed MAFW + DFEW list:
each row keeps its own label space, so the rewards normalise its answer its own way."""

from __future__ import annotations

from pathlib import Path

import pytest

from erv_plugins.datasets.base import Sample
from erv_plugins.errors import RecipeError
from erv_plugins.labels import DFEW, MAFW
from erv_plugins.recipe import DataSpec, GRPOTable, load_recipe
from erv_plugins.training.common import StageData
from erv_plugins.training.grpo import build_rows


class _TextPolicy:
    """Just what build_rows asks of a policy: a prompt and a tokenizer."""

    def prompt(self, sample: Sample, template: str = "policy") -> str:
        return f"Which emotion? ({sample.id})"

    def tokenizer(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": text.split()}


class _Set:
    def __init__(self, space, samples):
        self.label_space, self._samples = space, samples

    def samples(self):
        return self._samples


def test_mixed_rows_keep_their_own_label_space_and_distinct_ids() -> None:
    mafw = [Sample("00001", "happiness", Path("MAFW/clips/00001.mp4")),
            Sample("00002", "contempt", Path("MAFW/clips/00002.mp4"))]
    dfew = [Sample("1", "happy", Path("DFEW/clip/1.mp4"))]
    data = [StageData(DataSpec(plugin="mafw"), _Set(MAFW, mafw), mafw, "mafw", "$.grpo.datasets[0]"),
            StageData(DataSpec(plugin="dfew"), _Set(DFEW, dfew), dfew, "dfew", "$.grpo.datasets[1]")]
    rows = build_rows(_TextPolicy(), data, GRPOTable(datasets=[d.spec for d in data]), "r.toml")
    assert [(r["id"], r["label"], r["dataset"], r["video"]) for r in rows] == [
        ("mafw/00001", "happiness", "mafw", "MAFW/clips/00001.mp4"),
        ("mafw/00002", "contempt", "mafw", "MAFW/clips/00002.mp4"),
        ("dfew/1", "happy", "dfew", "DFEW/clip/1.mp4")]
    # One dataset: ids as the dataset gives them.
    assert build_rows(_TextPolicy(), data[1:], GRPOTable(dataset=data[1].spec),
                      "r.toml")[0]["id"] == "1"


def test_the_answer_reward_normalises_each_row_by_its_dataset(erv_score) -> None:
    from erv_plugins.testing import SampleCompletion

    samples = [
        SampleCompletion("a", "<think>x.</think><answer>Happiness</answer>", "happy", "dfew", 1, 1),
        SampleCompletion("b", "<think>x.</think><answer>happy</answer>", "happiness", "mafw", 1, 1),
        SampleCompletion("c", "<think>x.</think><answer>sadness</answer>", "sad", "dfew", 1, 1),
        SampleCompletion("d", "<think>x.</think><answer>sad</answer>", "sadness", "mafw", 1, 1)]
    for mode in ("paper", "release"):
        scores = erv_score("answer", samples, options={"mode": mode})
        assert scores.per_reward["answer"] == [1.0, 1.0, 1.0, 1.0], mode


@pytest.mark.parametrize(("grpo", "message"), [
    ('dataset = { plugin = "mafw" }\ndatasets = [{ plugin = "dfew" }]',
     "$.grpo.dataset: give either dataset or datasets (a list), not both"),
    ("num_generations = 4", "$.grpo.datasets: a dataset (or datasets) is needed"),
    ('datasets = [{ plugin = "mafw" }, { plugin = "nope" }]',
     "$.grpo.datasets[1].plugin: unknown dataset 'nope'"),
])
def test_dataset_or_datasets(tmp_path: Path, grpo: str, message: str) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "x"\nstages = ["grpo"]\n[grpo]\n{grpo}\n')
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    assert str(err.value).startswith(f"{recipe}: {message}")

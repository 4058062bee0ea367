"""The eval stage of ``erv run``: Table 1's two test sets in one run, with the policy the run
trained (not the checkpoint it started from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erv_plugins.datasets.synthetic import write_synthetic
from erv_plugins.evaluation.generate import trained_policy
from erv_plugins.plugins import Plugins
from erv_plugins.recipe import load_recipe
from erv_plugins.stages import StageContext, run_recipe


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _plugins() -> Plugins:
    import erv_plugins.testing.rewards as keywords  # registers the verifier "keywords"

    return Plugins(entry_points=False, extra=[keywords])


def test_eval_prefers_the_policy_this_run_trained(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "x"\nstages = ["sft", "grpo", "eval"]\n'
                      '[model]\npath = "checkpoints/base"\n'
                      '[sft]\ndataset = { plugin = "emer" }\n'
                      '[grpo]\ndataset = { plugin = "mafw" }\n'
                      '[eval]\ndataset = { plugin = "mafw" }\n')
    loaded = load_recipe(recipe, _plugins())
    run = tmp_path / "run"
    ctx = StageContext(loaded, run, run / "eval", _plugins(), False, print)
    from erv_plugins.errors import ErvError

    with pytest.raises(ErvError, match=r"grpo/model: stage grpo has not produced a model yet"):
        trained_policy(ctx)  # never the base checkpoint in place of the trained one
    (run / "grpo" / "model").mkdir(parents=True)
    (run / "grpo" / "model" / "config.json").write_text("{}")
    assert trained_policy(ctx) == str(run / "grpo" / "model")
    eval_only = load_recipe(_write(tmp_path / "e.toml", 'name = "y"\nstages = ["eval"]\n'
                                   '[model]\npath = "checkpoints/base"\n'
                                   '[eval]\ndataset = { plugin = "mafw" }\n'), _plugins())
    ctx = StageContext(eval_only, run, run / "eval", _plugins(), False, print)
    assert trained_policy(ctx) == "checkpoints/base"  # a recipe that trains nothing


@pytest.mark.slow
def test_eval_stage_scores_mafw_and_dfew_side_by_side(tmp_path: Path) -> None:
    from erv_plugins.models.omni.tiny import build_tiny_omni

    policy = build_tiny_omni(tmp_path / "policy", seed=0)
    write_synthetic(tmp_path / "data", n_per_label=2, labels=["happiness", "sadness"],
                    layouts=["mafw", "dfew"], seed=0)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "both"
stages = ["eval"]
run_dir = "{tmp_path / 'run'}"
[model]
path = "{policy}"
[verifier]
plugin = "keywords"
[eval]
datasets = [
  {{ plugin = "mafw", root = "{tmp_path / 'data' / 'mafw'}", split = "test" }},
  {{ plugin = "dfew", root = "{tmp_path / 'data' / 'dfew'}", split = "test" }},
]
judge = {{ plugin = "verifier" }}
max_new_tokens = 8
batch_size = 2
bootstrap = 0
""")
    plugins = _plugins()
    lines: list[str] = []
    run_recipe(load_recipe(recipe, plugins), plugins, echo=lines.append)
    out = tmp_path / "run" / "eval"
    metrics = {d: json.loads((out / d / "metrics.json").read_text()) for d in ("mafw", "dfew")}
    # One test clip per label and layout; the release protocol by default.
    assert {d: (m["samples"], m["dataset"], m["protocol"]) for d, m in metrics.items()} == {
        "mafw": (2, "mafw", "release"), "dfew": (2, "dfew", "release")}
    assert [len((out / d / "predictions.jsonl").read_text().splitlines())
            for d in ("mafw", "dfew")] == [2, 2]
    table = (out / "table.md").read_text().splitlines()
    assert table[0].startswith("| Method | MAFW EEA |") and "DFEW UAR |" in table[0]
    cells = [f"{metrics[d][k]:.2f}" for d in ("mafw", "dfew")
             for k in ("EEA", "FCR", "EPC", "WAR", "UAR")]
    assert table[2] == "| both | " + " | ".join(cells) + " |"
    done = json.loads((tmp_path / "run" / "eval" / ".done").read_text())
    assert set(done) >= {"mafw/EEA", "dfew/UAR", "seconds"}

"""Generation mode of ``erv eval``: a tiny omni policy writes completions for synthetic MAFW
test clips, then the local judge scores them. Sampling settings come from the paper."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from erv_plugins.cli import build_cli
from erv_plugins.testing.judges import ScriptedChatServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """Synthetic MAFW clips (one test clip for each of three labels) and a tiny policy."""
    from erv_plugins.datasets.synthetic import write_synthetic
    from erv_plugins.models.omni import build_tiny_omni

    root = tmp_path_factory.mktemp("gen")
    data = write_synthetic(root / "data", n_per_label=2,
                           labels=("anger", "happiness", "sadness"), layouts=("mafw",))
    return data, build_tiny_omni(root / "policy")


def test_generate_then_judge_and_resume(assets: tuple[Any, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data, policy = assets
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", "k")
    monkeypatch.setenv("ERV_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    with ScriptedChatServer() as server:
        args = ["eval", "--policy", str(policy), "--dataset", "mafw",
                "--dataset-root", str(data.root / "mafw"), "--split", "test",
                "--max-new-tokens", "6", "--batch-size", "2", "--device", "cpu",
                "--base-url", server.base_url, "--model", "m", "--api-key-env",
                "ERV_TEST_JUDGE_KEY", "--out", str(out), "--bootstrap", "0", "--no-progress"]
        result = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        test_clips = sorted((c.id, c.label) for c in data.clips if c.split == "test")
        assert sorted((p["id"], p["label"]) for p in preds) == test_clips
        assert all(isinstance(p["completion"], str) for p in preds)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["judged"] == 3 and metrics["samples"] == 3
        assert server.attempts() == 3
        before = (out / "predictions.jsonl").stat().st_mtime_ns
        again = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
        assert again.exit_code == 0, again.output
        assert (out / "predictions.jsonl").stat().st_mtime_ns == before  # nothing regenerated
        assert server.attempts() == 3  # nothing asked again
    assert os.path.getsize(out / "confusion.png") > 0


def test_eval_stage_generates_with_the_recipe_model_and_judges_offline(
        assets: tuple[Any, Path], tmp_path: Path) -> None:
    """What the tiny recipe does: `erv run` stage eval, policy from model.path, the
    offline verifier judge from the recipe's [verifier] table."""
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import run_recipe
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    data, policy = assets
    verifier = build_tiny_verifier(tmp_path / "verifier")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f"""
name = "tiny-eval"
stages = ["eval"]
run_dir = "{tmp_path / 'run'}"
[model]
plugin = "omni"
path = "{policy}"
[verifier]
plugin = "hf"
options = {{ path = "{verifier}" }}
[eval]
dataset = {{ plugin = "mafw", root = "{data.root / 'mafw'}", split = "test" }}
judge = {{ plugin = "verifier" }}
max_new_tokens = 6
batch_size = 3
device = "cpu"
bootstrap = 20
""")
    lines: list[str] = []
    run_recipe(load_recipe(recipe, get_plugins()), get_plugins(), echo=lines.append)
    out = tmp_path / "run" / "eval"
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["judged"], metrics["judge"], metrics["run"]) == (3, "verifier", "tiny-eval")
    assert metrics["judge_info"]["verifier"].startswith("hf")
    assert "| tiny-eval |" in "\n".join(lines)

"""`erv run`: stages run in order into the run directory; finished stages are skipped."""

from __future__ import annotations

import json

from helpers import run_cli

RECIPE = """name = "counting"
stages = ["count"]
run_dir = "{run_dir}"

[rewards.toy]
weight = 0.5
options = {{ word = "sad" }}
"""


def test_run_skips_finished_stages_unless_forced(tmp_path, capsys, toy_plugins):
    run_dir = tmp_path / "run"
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(run_dir=run_dir))

    first = run_cli(capsys, ["run", str(recipe)])
    assert first.code == 0, first.err
    assert first.out.splitlines()[:2] == [f"erv: run directory {run_dir}", "erv: stage count ..."]
    assert (run_dir / "count" / "calls.txt").read_text() == "counting\n"
    assert json.loads((run_dir / "count" / ".done").read_text())["calls"] == 1

    second = run_cli(capsys, ["run", str(recipe)])
    assert second.out.splitlines()[1] == (
        f"erv: stage count: outputs exist in {run_dir / 'count'}, skipped (use --force to rerun)")
    assert (run_dir / "count" / "calls.txt").read_text() == "counting\n"

    run_cli(capsys, ["run", str(recipe), "--force"])
    assert (run_dir / "count" / "calls.txt").read_text() == "counting\ncounting\n"
    resolved = json.loads((run_dir / "recipe.json").read_text())
    assert resolved["rewards"]["toy"] == {"plugin": "toy", "weight": 0.5, "retries": 0,
                                          "options": {"scale": 1.0, "word": "sad"}}


def test_dry_run_prints_resolved_recipe_and_runs_nothing(tmp_path, capsys, toy_plugins):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(run_dir=tmp_path / "run"))
    r = run_cli(capsys, ["run", str(recipe), "--dry-run"])
    assert r.code == 0
    assert '[rewards.toy.options]\nscale = 1.0\nword = "sad"\n' in r.out
    assert "[launch]\nnum_processes = 1\n" in r.out
    assert not (tmp_path / "run").exists()


def test_unknown_stage_filter_is_a_user_error(tmp_path, capsys, toy_plugins):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(run_dir=tmp_path / "run"))
    r = run_cli(capsys, ["run", str(recipe), "--stage", "grpo"])
    assert (r.code, r.err) == (2, "erv: error: --stage grpo: the recipe's stages are count\n")

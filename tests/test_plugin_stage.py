"""A plugin's stage is an ordinary stage: its own recipe table, decoded with path-precise
errors, and ``erv run`` launches it on several processes as it does sft and grpo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import run_cli

import erv_plugins.plugins as plugins_mod
from erv_plugins.errors import RecipeError
from erv_plugins.plugins import Plugins
from erv_plugins.recipe import load_recipe

TESTS = Path(__file__).parent

RECIPE = """name = "greeting"
stages = ["greet"]
run_dir = "{run_dir}"

[launch]
num_processes = {procs}

[greet]
greeting = "hello"
times = 3
"""


@pytest.fixture
def greet_plugins() -> Plugins:
    import stage_plugin

    plugins = Plugins(extra=[stage_plugin])
    plugins_mod._plugins = plugins
    return plugins


def test_plugin_stage_table_is_decoded_with_its_struct(tmp_path, greet_plugins):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE.format(run_dir=tmp_path / "run", procs=1))
    recipe = load_recipe(path, greet_plugins)
    assert recipe.table("greet").greeting == "hello"
    assert recipe.table("greet").times == 3
    # The table is printed where the file has it (erv run --dry-run, recipe.json).
    assert recipe.to_builtins()["greet"] == {"greeting": "hello", "times": 3}

    path.write_text(RECIPE.format(run_dir=tmp_path / "run", procs=1)
                    .replace("times = 3", 'times = "x"'))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, greet_plugins)
    assert str(info.value) == f"{path}: $.greet.times: Expected int, got str"
    path.write_text('name = "g"\nstages = ["greet"]\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path, greet_plugins)
    assert str(info.value) == f"{path}: $.stages[0]: stage 'greet' needs a [greet] table"


def test_the_old_verifier_stage_name_names_the_new_one(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "v"\nstages = ["verifier"]\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value) == (f"{path}: $.stages[0]: stage 'verifier' is now called "
                               "'train_verifier' (it reads [train_verifier])")


@pytest.mark.slow
def test_plugin_stage_runs_on_two_processes(tmp_path, capsys, monkeypatch, greet_plugins):
    """``erv run`` launches the plugin's stage with ``accelerate launch`` (DDP on CPU over
    gloo, as for sft and grpo); each process finds the stage in the registry by name and
    reads the same [greet] table."""
    # The launched processes import the plugin module as erv run's process did.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run_dir = tmp_path / "run"
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.format(run_dir=run_dir, procs=2))
    result = run_cli(capsys, ["run", str(recipe)])
    assert result.code == 0, result.err
    assert "erv: launching: accelerate launch --num_processes 2" in result.out
    records = [json.loads((run_dir / "greet" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert records == [
        {"rank": 0, "world_size": 2, "greeting": "hello", "times": 3},
        {"rank": 1, "world_size": 2, "greeting": "hello", "times": 3},
    ]
    assert json.loads((run_dir / "greet" / ".done").read_text())["world_size"] == 2

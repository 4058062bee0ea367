"""Bad recipes: each error names the file, the path inside it and what was expected,
and the CLI exits with code 2 and no traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import run_cli

GOOD = """
name = "t"
stages = ["grpo"]
[grpo]
beta = 0.04
[grpo.dataset]
plugin = "toyset"
[rewards.toy]
weight = 1.0
options = { scale = 2.0 }
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def validate(capsys, path: str):
    return run_cli(capsys, ["validate", path])


def test_good_recipe_validates(tmp_path, capsys, toy_plugins):
    r = validate(capsys, write(tmp_path, "x.toml", GOOD))
    assert (r.code, r.err) == (0, "")
    assert r.out.endswith("x.toml: ok (t: stages grpo)\n")


CASES = [
    pytest.param(GOOD.replace("beta = 0.04", 'beta = "high"'),
                 "$.grpo.beta: Expected float, got str", id="type-error"),
    pytest.param("foo = 1\n" + GOOD, "$.foo: unknown field", id="unknown-top-level-key"),
    pytest.param(GOOD + "\nfoo = 1\n", "$.rewards.toy.foo: unknown field",
                 id="unknown-key-in-reward"),
    pytest.param(GOOD.replace("beta = 0.04", "betta = 0.04"),
                 "$.grpo.betta: unknown field", id="misspelled-key"),
    pytest.param(GOOD.replace('name = "t"', ""), "$.name: required field is missing",
                 id="missing-required"),
    pytest.param(GOOD.replace('stages = ["grpo"]', 'stages = "grpo"'),
                 "$.stages: Expected array, got str", id="stages-not-a-list"),
    pytest.param(GOOD.replace('stages = ["grpo"]', 'stages = ["grpo", "grpoo"]'),
                 "$.stages[1]: unknown stage 'grpoo' (did you mean 'grpo'?); "
                 "available: {stages}", id="unknown-stage"),
    pytest.param(GOOD.replace('stages = ["grpo"]', 'stages = ["sft", "grpo"]'),
                 "$.stages[0]: stage 'sft' needs a [sft] table", id="stage-without-table"),
    pytest.param(GOOD.replace('stages = ["grpo"]', 'stages = ["grpo", "grpo"]'),
                 "$.stages: a stage is named twice", id="duplicate-stage"),
    pytest.param(GOOD.replace("[rewards.toy]", "[rewards.tyo]"),
                 "$.rewards.tyo.plugin: unknown reward 'tyo' (did you mean 'toy'?); "
                 "available: {rewards}", id="unknown-reward"),
    pytest.param(GOOD.replace('plugin = "toyset"', 'plugin = "dfew-missing"'),
                 "$.grpo.dataset.plugin: unknown dataset 'dfew-missing'; available: {datasets}",
                 id="unknown-dataset"),
    pytest.param(GOOD.replace("scale = 2.0", 'scale = "big"'),
                 "$.rewards.toy.options.scale: Expected float, got str",
                 id="plugin-option-type"),
    pytest.param(GOOD.replace("scale = 2.0", "scael = 2.0"),
                 "$.rewards.toy.options.scael: unknown field", id="plugin-option-unknown"),
    pytest.param(GOOD.replace("weight = 1.0", "weight = 1.0\nretries = -1"),
                 "$.rewards.toy.retries: must be >= 0, got -1", id="negative-retries"),
    pytest.param(GOOD.replace("[grpo.dataset]", "[grpo.dataset]\noptions = { a = 1 }"),
                 "$.grpo.dataset.options: dataset 'toyset' takes no options",
                 id="options-for-optionless-plugin"),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_bad_recipe(tmp_path, capsys, toy_plugins, text, message):
    path = write(tmp_path, "x.toml", text)
    r = validate(capsys, path)
    assert r.code == 2
    assert r.out == ""
    expected = message.format(dir=tmp_path, stages=", ".join(toy_plugins.names("stage")),
                              datasets=", ".join(toy_plugins.names("dataset")),
                              rewards=", ".join(toy_plugins.names("reward")))
    assert r.err == f"erv: error: {path}: {expected}\n"


def test_invalid_toml_names_line_and_column(tmp_path, capsys, toy_plugins):
    path = write(tmp_path, "x.toml", 'name = "t"\nstages = ["grpo"]\nbeta 0.04\n')
    r = validate(capsys, path)
    assert (r.code, r.err) == (2, f"erv: error: {path}: invalid TOML: Expected '=' after a key "
                                  "in a key/value pair (at line 3, column 6)\n")


def test_missing_file(tmp_path, capsys, toy_plugins):
    r = validate(capsys, str(tmp_path / "nope.toml"))
    assert (r.code, r.err) == (2, f"erv: error: {tmp_path}/nope.toml: no such recipe file\n")


def test_missing_include(tmp_path, capsys, toy_plugins):
    path = write(tmp_path, "x.toml", 'extends = "base.toml"\n' + GOOD)
    r = validate(capsys, path)
    assert (r.code, r.err) == (
        2, f"erv: error: {path}: $.extends: included recipe {tmp_path}/base.toml does not exist\n")


def test_include_cycle(tmp_path, capsys, toy_plugins):
    write(tmp_path, "a.toml", 'extends = "b.toml"\n' + GOOD)
    write(tmp_path, "b.toml", 'extends = "a.toml"\n')
    r = validate(capsys, str(tmp_path / "a.toml"))
    assert r.code == 2
    assert r.err == (f"erv: error: {tmp_path}/b.toml: $.extends: recipe includes itself "
                     "(a.toml -> b.toml -> a.toml)\n")


def test_extends_must_be_a_string(tmp_path, capsys, toy_plugins):
    path = write(tmp_path, "x.toml", "extends = 3\n" + GOOD)
    r = validate(capsys, path)
    assert (r.code, r.err) == (2, f"erv: error: {path}: $.extends: Expected str, got int\n")


def test_error_in_parent_names_the_parent_file(tmp_path, capsys, toy_plugins):
    """A bad value inherited from the recipe an ablation extends is reported where it is."""
    base = write(tmp_path, "base.toml", GOOD.replace("beta = 0.04", 'beta = "x"'))
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\nname = "child"\n')
    r = validate(capsys, child)
    assert (r.code, r.err) == (2, f"erv: error: {base}: $.grpo.beta: Expected float, got str\n")


def test_child_fixes_parent_value(tmp_path, capsys, toy_plugins):
    write(tmp_path, "base.toml", GOOD.replace("beta = 0.04", 'beta = "x"'))
    child = write(tmp_path, "child.toml", 'extends = "base.toml"\nname = "c"\n[grpo]\nbeta = 0.1\n')
    r = validate(capsys, child)
    assert r.code == 0, r.err


def test_debug_shows_the_traceback(tmp_path, toy_plugins):
    from erv_plugins.cli import main
    from erv_plugins.errors import RecipeError

    path = write(tmp_path, "x.toml", GOOD.replace("beta = 0.04", 'beta = "x"'))
    with pytest.raises(RecipeError, match=r"\$\.grpo\.beta: Expected float, got str"):
        main(["--debug", "validate", path])

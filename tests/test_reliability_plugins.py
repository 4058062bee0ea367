"""Plugins named wrongly are refused by name, before anything runs (issue 14):
``ERV_LOAD_PLUGINS`` naming a plugin no installed package provides (it was silently
ignored), a recipe naming a component nobody registered, and a plugin option outside the
range its struct declares (worded like the recipe's own fields)."""

from __future__ import annotations

import importlib.metadata
import textwrap

import pytest
from helpers import run_cli

from erv_plugins.plugins import get_plugins, reset_plugins


def installed() -> list[str]:
    return sorted({ep.name for ep in importlib.metadata.entry_points(group="erv_plugins")})


def entry_point_plugins() -> list[str]:
    return sorted(i.name for i in get_plugins().describe() if i.source == "entrypoint")


# (id, ERV_LOAD_PLUGINS, the unknown names refused, or None: the plugins then loaded)
ENV_CASES = [
    ("one-unknown", "nonexistent", "'nonexistent'", None),
    ("unknown-beside-a-known-one", "lexicon, nope", "'nope'", None),
    ("two-unknown", "zeta,alpha", "'alpha', 'zeta'", None),
    ("misspelt", "lexicn", "'lexicn'", None),
    ("empty-loads-none", "", None, []),
    ("one-known", "lexicon", None, ["lexicon"]),
    ("spaces-and-commas", " lexicon , ,ravdess ", None, ["lexicon", "ravdess"]),
]


@pytest.mark.parametrize(("value", "unknown", "loaded"),
                         [pytest.param(v, u, lo, id=i) for i, v, u, lo in ENV_CASES])
def test_erv_load_plugins(capsys, monkeypatch, value, unknown, loaded):
    if not {"lexicon", "ravdess"} <= set(installed()):
        pytest.skip("the example plugins are not installed (scripts/setup installs them)")
    monkeypatch.setenv("ERV_LOAD_PLUGINS", value)
    reset_plugins()
    r = run_cli(capsys, ["plugins"])
    if unknown is not None:
        assert (r.code, r.out, r.err) == (2, "", (
            f"erv: error: ERV_LOAD_PLUGINS names {unknown}, which no installed package "
            f"provides (installed plugins: {', '.join(installed())})\n"))
    else:
        assert r.code == 0, r.err
        reset_plugins()
        assert entry_point_plugins() == loaded


BASE = """
name = "p"
stages = ["eval"]
[verifier]
plugin = "hf"
options = { path = "v" }
[rewards.explanation]
options = { tau = 0.5 }
[eval]
predictions = "p.jsonl"
label_space = "mafw"
judge = { plugin = "verifier" }
"""

# (id, replace this in BASE, by this, expected "<path>: <message>")
RECIPE_CASES = [
    ("unknown-judge", 'judge = { plugin = "verifier" }', 'judge = { plugin = "gpt" }',
     "$.eval.judge.plugin: unknown judge 'gpt'; available: openai, verifier"),
    ("misspelt-judge", 'judge = { plugin = "verifier" }', 'judge = { plugin = "openia" }',
     "$.eval.judge.plugin: unknown judge 'openia' (did you mean 'openai'?); available: "
     "openai, verifier"),
    ("unknown-verifier", 'plugin = "hf"', 'plugin = "hff"',
     "$.verifier.plugin: unknown verifier 'hff' (did you mean 'hf'?); available: {verifiers}"),
    ("unknown-model", "[verifier]", '[model]\nplugin = "omnii"\n[verifier]',
     "$.model.plugin: unknown model 'omnii' (did you mean 'omni'?); available: {models}"),
    ("reward-option-range", "tau = 0.5", "tau = 1.5",
     "$.rewards.explanation.options.tau: must be <= 1, got 1.5"),
    ("reward-option-range-int", "tau = 0.5", "top_k = 0",
     "$.rewards.explanation.options.top_k: must be >= 1, got 0"),
    ("reward-option-choice", "tau = 0.5", 'segmentation = "nltk"',
     "$.rewards.explanation.options.segmentation: must be one of paper, pragmatic; "
     "got 'nltk'"),
    ("judge-option-range", 'judge = { plugin = "verifier" }',
     'judge = { plugin = "openai", options = { concurrency = 0 } }',
     "$.eval.judge.options.concurrency: must be >= 1, got 0"),
    ("judge-option-timeout", 'judge = { plugin = "verifier" }',
     'judge = { plugin = "openai", options = { timeout_s = -1.0 } }',
     "$.eval.judge.options.timeout_s: must be > 0, got -1"),
    ("verifier-judge-batch", 'judge = { plugin = "verifier" }',
     'judge = { plugin = "verifier", options = { batch_size = 0 } }',
     "$.eval.judge.options.batch_size: must be >= 1, got 0"),
    ("plugin-option-unknown", "tau = 0.5", "tua = 0.5",
     "$.rewards.explanation.options.tua: unknown field"),
]


@pytest.mark.parametrize(("old", "new", "message"),
                         [pytest.param(o, n, m, id=i) for i, o, n, m in RECIPE_CASES])
def test_a_recipe_naming_a_plugin_wrongly_is_refused(tmp_path, capsys, old, new, message):
    assert old in BASE
    path = tmp_path / "r.toml"
    path.write_text(textwrap.dedent(BASE.replace(old, new)))
    plugins = get_plugins()
    expected = message.format(verifiers=", ".join(plugins.names("verifier")),
                              models=", ".join(plugins.names("model")))
    for command in (["validate"], ["run", "--dry-run"]):
        r = run_cli(capsys, [*command, str(path)])
        assert (r.code, r.out, r.err) == (2, "", f"erv: error: {path}: {expected}\n"), command


def test_the_base_recipe_is_valid(tmp_path, capsys):
    path = tmp_path / "r.toml"
    path.write_text(textwrap.dedent(BASE))
    assert run_cli(capsys, ["validate", str(path)]).code == 0

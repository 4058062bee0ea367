"""The plugin system: built-ins and third-party packages register through the same hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
from helpers import run_cli

from erv_plugins import hookimpl
from erv_plugins.errors import PluginError
from erv_plugins.plugins import DEFAULT_PLUGINS, Plugins

ERV = [sys.executable, "-m", "erv_plugins"]


def test_plugins_json_lists_the_builtin_plugins(capsys):
    r = run_cli(capsys, ["plugins", "--json"])
    assert r.code == 0
    infos = json.loads(r.out)
    builtin = [i["name"] for i in infos if i["source"] == "builtin"]
    assert builtin == sorted(DEFAULT_PLUGINS)
    stages = next(i for i in infos if i["name"] == "erv_plugins.stages")
    assert stages["registered"]["stage"] == ["compare", "eval", "grpo", "sft", "train_verifier"]
    assert stages["hooks"] == ["erv_register_stages"]


def test_components_know_their_plugin(toy_plugins):
    reg = toy_plugins.get("reward", "toy")
    assert (reg.plugin, reg.description) == ("toy_plugin", "Scores completions that mention a word.")
    reward = reg.build(reg.options(scale=3.0, word="sad"))
    assert reward.options.scale == 3.0


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    import toy_plugin

    other = types.ModuleType("other_plugin")

    @hookimpl
    def erv_register_rewards(register):
        register(toy_plugin.ToyReward)

    other.erv_register_rewards = erv_register_rewards
    plugins = Plugins(extra=[toy_plugin, other])
    with pytest.raises(PluginError) as info:
        plugins.get("reward", "toy")
    assert str(info.value) == (
        "reward 'toy' is registered by both plugin 'toy_plugin' and plugin 'other_plugin'")


def test_misspelled_hook_is_an_error():
    bad = types.ModuleType("bad_plugin")

    @hookimpl
    def erv_register_reward(register):  # missing the final "s"
        pass

    erv_register_reward.__module__ = "bad_plugin"
    bad.erv_register_reward = erv_register_reward
    with pytest.raises(PluginError) as info:
        Plugins(extra=[bad])
    assert str(info.value) == ("plugin 'bad_plugin' implements unknown hook "
                               "'erv_register_reward'; did you mean 'erv_register_rewards'?")


def test_unknown_component_lists_what_is_available(toy_plugins):
    with pytest.raises(PluginError) as info:
        toy_plugins.get("reward", "tox")
    available = ", ".join(toy_plugins.names("reward"))
    assert str(info.value) == f"unknown reward 'tox' (did you mean 'toy'?); available: {available}"


# -- a real, separately installed plugin package --------------------------------------------

PACKAGE = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=70"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "erv-throwaway"
        version = "0.3.1"

        [project.entry-points.erv_plugins]
        throwaway = "erv_throwaway"

        [tool.setuptools]
        packages = ["erv_throwaway"]
    """,
    "erv_throwaway/__init__.py": '''
        import msgspec
        from erv_plugins import hookimpl


        class LengthOptions(msgspec.Struct, forbid_unknown_fields=True):
            max_words: int = 100


        class LengthReward:
            """Penalises explanations longer than max_words."""

            name = "length_penalty"
            Options = LengthOptions
            requires = frozenset()

            def __init__(self, options):
                self.options = options

            def __call__(self, batch):
                return [float(len(c.split()) <= self.options.max_words) for c in batch.completions]


        @hookimpl
        def erv_register_rewards(register):
            register(LengthReward)
    ''',
}


@pytest.fixture(scope="module")
def installed_package(tmp_path_factory) -> Path:
    """Build and install the package with its entry point into a private site dir."""
    root = tmp_path_factory.mktemp("pkg")
    for rel, text in PACKAGE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text).lstrip())
    site = tmp_path_factory.mktemp("site")
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "pip", "install", "--quiet", "--offline", "--no-deps",
                    "--no-build-isolation", "--python", sys.executable, "--target", str(site),
                    str(root)], check=True)
    return site


def erv(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    environ.pop("ERV_LOAD_PLUGINS", None) if "ERV_LOAD_PLUGINS" not in env else None
    return subprocess.run([*ERV, *args], capture_output=True, text=True, env=environ)


def test_installed_package_appears_in_erv_plugins(installed_package):
    r = erv(installed_package, "plugins", "--json")
    assert r.returncode == 0, r.stderr
    info = next(i for i in json.loads(r.stdout) if i["name"] == "throwaway")
    assert info == {"name": "throwaway", "source": "entrypoint", "version": "0.3.1",
                    "hooks": ["erv_register_rewards"],
                    "registered": {"reward": ["length_penalty"]}}
    human = erv(installed_package, "plugins")
    assert "throwaway 0.3.1 (entrypoint)\n  rewards: length_penalty\n" in human.stdout


def test_erv_load_plugins_restricts_loading(installed_package):
    r = erv(installed_package, "plugins", "--json", ERV_LOAD_PLUGINS="")
    assert "throwaway" not in [i["name"] for i in json.loads(r.stdout)]
    r = erv(installed_package, "plugins", "--json", ERV_LOAD_PLUGINS="lexicon, throwaway")
    assert "throwaway" in [i["name"] for i in json.loads(r.stdout)]


def test_installed_reward_is_usable_from_a_recipe(installed_package, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent("""
        name = "uses-plugin"
        stages = []
        [rewards.length_penalty]
        weight = 0.5
        options = { max_words = 3 }
    """))
    r = erv(installed_package, "run", str(recipe), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "[rewards.length_penalty]\nplugin = \"length_penalty\"\nweight = 0.5\n" in r.stdout
    assert "[rewards.length_penalty.options]\nmax_words = 3\n" in r.stdout
    bad = recipe.read_text().replace("max_words = 3", 'max_words = "three"')
    recipe.write_text(bad)
    r = erv(installed_package, "validate", str(recipe))
    assert (r.returncode, r.stderr) == (
        2, f"erv: error: {recipe}: $.rewards.length_penalty.options.max_words: "
           "Expected int, got str\n")


def test_plugin_that_fails_to_import_is_named(tmp_path, installed_package):
    broken = tmp_path / "site"
    (broken / "erv_broken").mkdir(parents=True)
    (broken / "erv_broken" / "__init__.py").write_text("raise RuntimeError('boom')\n")
    dist = broken / "erv_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: erv-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[erv_plugins]\nbroken = erv_broken\n")
    r = erv(broken, "plugins")
    assert (r.returncode, r.stderr) == (
        2, "erv: error: plugin 'broken' (entry point 'erv_broken') failed to import: "
           "RuntimeError: boom\n")

"""``erv new-plugin``: names, refusals, and skeletons whose own tests pass once installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from erv_plugins.cli.new_plugin import KINDS, PluginNames, plugin_names, write_plugin
from erv_plugins.testing import run_cli


@pytest.mark.parametrize(("raw", "expected"), [
    ("word-count", PluginNames("erv-word-count", "erv_word_count", "word_count", "WordCount")),
    ("erv-word-count", PluginNames("erv-word-count", "erv_word_count", "word_count", "WordCount")),
    ("erv_Word_Count", PluginNames("erv-word-count", "erv_word_count", "word_count", "WordCount")),
    ("lexicon2", PluginNames("erv-lexicon2", "erv_lexicon2", "lexicon2", "Lexicon2")),
])
def test_names_derived_from_what_the_user_typed(raw, expected):
    assert plugin_names(raw) == expected


def test_bad_names_and_places_are_refused(tmp_path):
    for bad in ("2fast", "word count", "word--count", "x_"):
        result = run_cli("new-plugin", bad, "--kind", "reward", "--dir", str(tmp_path))
        assert result.exit_code == 2
        assert "use letters, digits and single - or _" in result.stderr
    assert "is a Python keyword" in run_cli("new-plugin", "erv-class", "--kind", "judge",
                                            "--dir", str(tmp_path)).stderr
    result = run_cli("new-plugin", "x", "--kind", "model", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert "'model' is not one of 'reward', 'verifier', 'judge', 'dataset'" in result.stderr
    write_plugin("taken", "reward", tmp_path)
    result = run_cli("new-plugin", "taken", "--kind", "reward", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (f"erv: error: {tmp_path / 'erv-taken'} already exists and is not "
                             "empty; choose another --dir or NAME\n")


def test_skeleton_files(tmp_path):
    result = run_cli("new-plugin", "word-count", "--kind", "reward", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines()[0] == (
        f"Created {tmp_path / 'erv-word-count'}/ (reward 'word_count', package erv_word_count). Next:")
    root = tmp_path / "erv-word-count"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        ".gitignore", "README.md", "pyproject.toml", "src/erv_word_count/__init__.py",
        "tests/test_word_count.py"]
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.erv_plugins]\nword_count = "erv_word_count"' in pyproject
    assert 'build-backend = "setuptools.build_meta"' in pyproject
    for path in root.rglob("*"):
        if path.is_file():
            assert not re.search(r"\{\{\w+\}\}", path.read_text()), f"placeholder left in {path}"
    assert "[rewards.word_count]" in (root / "README.md").read_text()


def _uv() -> str | None:
    """uv of this environment (erv's dev extra installs it), else the one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def _installer() -> list[str] | None:
    uv = _uv()
    return [uv, "pip", "install", "--python", sys.executable] if uv else None


@pytest.mark.slow
def test_generated_packages_install_and_their_tests_pass(tmp_path):
    """What a plugin author does: generate, install, run the package's own tests.

    Each kind's package is built with its own build backend (setuptools, from the local
    uv cache: --offline, nothing is downloaded) and installed into a separate target
    folder, so this test venv's plugins stay as they were.
    """
    installer = _installer()
    if installer is None:
        pytest.skip("no uv in this environment or on PATH (erv's dev extra installs it)")
    packages = [write_plugin(f"kit-{kind}", kind, tmp_path) for kind in KINDS]
    site = tmp_path / "site"
    install = subprocess.run(
        [*installer, "--offline", "--no-deps", "--quiet", "--target", str(site),
         *map(str, packages)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ERV_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *(str(p / "tests") for p in packages)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # reward 5, verifier 4, judge 3, dataset 3
    assert re.search(r"\b15 passed\b", tests.stdout), tests.stdout
    listed = subprocess.run(
        [sys.executable, "-c", "from erv_plugins.cli import main; main()", "plugins"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    for kind in KINDS:
        assert f"kit_{kind} 0.1.0 (entrypoint)\n  {kind}s: kit_{kind}" in listed.stdout

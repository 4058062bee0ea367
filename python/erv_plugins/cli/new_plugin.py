"""``erv new-plugin NAME --kind KIND``: write a plugin package skeleton whose tests pass."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import click

KINDS: tuple[str, ...] = ("reward", "verifier", "judge", "dataset")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

DESCRIPTIONS: dict[str, str] = {
    "reward": "an erv reward that scores explanations by their length",
    "verifier": "an erv verifier that scores emotion words",
    "judge": "an erv judge that names the emotion an explanation argues for",
    "dataset": "an erv dataset read from a CSV file per split",
}


@dataclass(frozen=True)
class PluginNames:
    """The names of one plugin package, all derived from the NAME a user typed."""

    dist: str  # the distribution: erv-word-count
    module: str  # the import package: erv_word_count
    name: str  # the component and entry-point name: word_count
    cls: str  # the class: WordCount


def plugin_names(raw: str) -> PluginNames:
    """Names from ``raw`` ("word-count", "erv-word-count" or "erv_word_count")."""
    if not _NAME_RE.match(raw):
        from erv_plugins.errors import ErvError

        raise ErvError(f"plugin name {raw!r}: use letters, digits and single - or _ between "
                       "words, starting with a letter (e.g. erv-word-count)")
    words = [w.lower() for w in re.split(r"[-_]", raw)]
    if words[0] == "erv" and len(words) > 1:
        words = words[1:]
    name = "_".join(words)
    if keyword.iskeyword(name):
        from erv_plugins.errors import ErvError

        raise ErvError(f"plugin name {raw!r}: {name!r} is a Python keyword")
    return PluginNames(
        dist="erv-" + "-".join(words),
        module="erv_" + name,
        name=name,
        cls="".join(w.capitalize() for w in words),
    )


def render(text: str, values: dict[str, str]) -> str:
    """Replace ``{{key}}`` placeholders; an unknown key is a bug in the template."""

    def sub(m: re.Match[str]) -> str:
        return values[m.group(1)]

    return _PLACEHOLDER.sub(sub, text)


def _template(*parts: str) -> str:
    return resources.files("erv_plugins").joinpath("templates", *parts).read_text(encoding="utf-8")


def write_plugin(raw_name: str, kind: str, directory: str | Path = ".") -> Path:
    """Write the package for plugin ``raw_name`` of ``kind`` under ``directory``; returns its folder."""
    from erv_plugins import __version__
    from erv_plugins.errors import ErvError

    if kind not in KINDS:
        raise ErvError(f"--kind {kind}: choose one of {', '.join(KINDS)}")
    names = plugin_names(raw_name)
    target = Path(directory) / names.dist
    if target.exists() and any(target.iterdir()):
        raise ErvError(f"{target} already exists and is not empty; choose another --dir or NAME")
    values = {
        "dist": names.dist,
        "module": names.module,
        "name": names.name,
        "Class": names.cls,
        "kind": kind,
        "description": DESCRIPTIONS[kind][0].upper() + DESCRIPTIONS[kind][1:] + ".",
        "summary": DESCRIPTIONS[kind] + ".",
        "erv_version": __version__,
    }
    values["usage"] = render(_template(kind, "usage.md.tmpl"), values).rstrip("\n")
    files = {
        "pyproject.toml": _template("common", "pyproject.toml.tmpl"),
        "README.md": _template("common", "README.md.tmpl"),
        ".gitignore": _template("common", "gitignore.tmpl"),
        f"src/{names.module}/__init__.py": _template(kind, "module.py.tmpl"),
        f"tests/test_{names.name}.py": _template(kind, "test.py.tmpl"),
    }
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(text, values), encoding="utf-8")
    return target


@click.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True,
              help="What the plugin adds to erv.")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to create the package folder.")
def new_plugin(name: str, kind: str, directory: str) -> None:
    """Create a plugin package NAME that adds a reward, verifier, judge or dataset.

    The package (folder erv-NAME) has a pyproject.toml with the "erv_plugins" entry point,
    a working example component with its options struct, tests that use the fixtures of
    erv_plugins.testing, and a README. Its tests pass as soon as it is installed.

    \b
    Example:
      erv new-plugin word-count --kind reward
      cd erv-word-count && uv pip install -e . && pytest
      erv plugins
    """
    target = write_plugin(name, kind, directory)
    names = plugin_names(name)
    click.echo(f"Created {target}/ ({kind} {names.name!r}, package {names.module}). Next:")
    click.echo(f"  cd {target}")
    click.echo("  uv pip install -e .       # or: pip install -e . (a venv with pip)")
    click.echo("  pytest                    # its tests pass as they are")
    click.echo(f"  erv plugins               # lists {names.name}")
    click.echo(f"Then edit src/{names.module}/__init__.py; see docs/writing-plugins.md.")

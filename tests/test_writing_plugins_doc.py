"""Follow docs/writing-plugins.md as a new user would: every command, every file, in order.

The page marks each block for this test with an HTML comment just above it:
``<!-- test: run -->`` (a console block: ``$ command`` lines, each followed by the output
it must print), ``<!-- test: file PATH -->`` (write the block to PATH) or
``<!-- test: skip ... -->`` (setting up the clone itself, publishing). A console block
without a mark fails the test, so no step of the page goes unchecked.

Expected output lines must appear in the command's output in order, each inside one
output line (other lines may come between them; ``...`` says so to the reader). A command whose expected output holds
"error" must fail; any other must succeed. ``uv pip install -e .`` installs into a
folder of this test (put first on PYTHONPATH), not into the test environment, and is
repeated when the page changes the package's source, as an editable install would
see the change.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"


@dataclass
class Block:
    directive: str | None
    lang: str
    text: str
    line: int


def blocks(markdown: str) -> list[Block]:
    out: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    directive: str | None = None
    while i < len(lines):
        line = lines[i]
        m = re.fullmatch(r"<!-- test: (.*?) -->", line.strip())
        if m:
            directive = m.group(1)
        elif line.startswith("```"):
            lang, start, body = line[3:].strip(), i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(directive, lang, "\n".join(body) + "\n", start))
            directive = None
        elif line.strip():
            directive = None  # a mark applies only to the block right below it
        i += 1
    return out


def commands(block: Block) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip():
            assert steps, f"docs line {block.line}: output before any command"
            steps[-1][1].append(line)
    return steps


def check_output(command: str, expected: list[str], actual: str) -> None:
    remaining = actual.splitlines()
    for want in expected:
        if want.strip() == "...":
            continue
        for k, got in enumerate(remaining):
            if want.strip() in got:
                remaining = remaining[k + 1:]
                break
        else:
            raise AssertionError(f"$ {command}\nexpected a line with {want!r} in:\n{actual}")


@dataclass
class User:
    """A shell that follows the page: a working directory and the installed package."""

    home: Path
    site: Path
    cwd: Path = field(init=False)
    installed: Path | None = None
    stale: bool = False

    def __post_init__(self) -> None:
        self.cwd = self.home

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ERV_"))}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.site), env.get("PYTHONPATH")) if p)
        env["OMP_NUM_THREADS"] = "1"
        return env

    def install(self, package: Path) -> None:
        beside = Path(sys.executable).parent / "uv"  # erv's dev extra installs uv
        uv = str(beside) if beside.is_file() else shutil.which("uv")
        if uv is None:
            pytest.skip("no uv in this environment or on PATH (erv's dev extra installs it)")
        shutil.rmtree(self.site, ignore_errors=True)
        result = subprocess.run(
            [uv, "pip", "install", "--python", sys.executable, "--offline", "--no-deps",
             "--quiet", "--target", str(self.site), str(package)],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        self.installed, self.stale = package, False

    def write(self, rel: str, text: str) -> None:
        path = self.home / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if self.installed is not None and (self.installed / "src") in path.parents:
            self.stale = True

    def run(self, command: str, expected: list[str]) -> None:
        argv = shlex.split(command)
        if argv[0] == "cd":
            self.cwd = (self.cwd / argv[1]).resolve()
            assert self.cwd.is_dir(), f"$ {command}: no such folder"
            return
        if argv[:4] == ["uv", "pip", "install", "-e"]:
            self.install((self.cwd / argv[4]).resolve())
            return
        if self.stale:
            assert self.installed is not None
            self.install(self.installed)
        if argv[0] == "erv":
            argv = [sys.executable, "-c", "from erv_plugins.cli import main; main()", *argv[1:]]
        elif argv[0] == "pytest":
            argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv[1:]]
        else:
            raise AssertionError(f"the page runs {command!r}, which this test cannot follow")
        result = subprocess.run(argv, capture_output=True, text=True, cwd=self.cwd,
                                env=self.env(), timeout=600)
        output = result.stdout + result.stderr
        failing = any("error" in line for line in expected)
        assert (result.returncode != 0) == failing, f"$ {command} exited {result.returncode}:\n{output}"
        check_output(command, expected, output)


def test_every_console_block_is_marked():
    unmarked = [b.line for b in blocks(DOC.read_text()) if b.lang == "console" and b.directive is None]
    assert unmarked == []


@pytest.mark.slow
def test_following_the_tutorial_works(tmp_path):
    user = User(home=tmp_path / "work", site=tmp_path / "site")
    user.home.mkdir()
    (user.home / "erv").symlink_to(DOC.parents[1])  # step 0: the clone, beside the plugin
    ran = 0
    for block in blocks(DOC.read_text()):
        if block.directive is None or block.directive.startswith("skip"):
            continue
        if block.directive.startswith("file "):
            user.write(block.directive.removeprefix("file ").strip(), block.text)
        elif block.directive == "run":
            for command, expected in commands(block):
                user.run(command, expected)
                ran += 1
        else:
            raise AssertionError(f"docs line {block.line}: unknown mark {block.directive!r}")
    assert ran == 10  # every command of the page that does not set up the clone
    assert (user.home / "erv-repetition" / "src" / "erv_repetition" / "__init__.py").is_file()

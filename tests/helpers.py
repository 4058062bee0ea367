"""Shared test helpers: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from erv_plugins.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], args: Sequence[str]) -> Result:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    code = exit_info.value.code
    return Result(code if isinstance(code, int) else 1, captured.out, captured.err)

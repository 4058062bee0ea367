"""Reading JSONL inputs (predictions, completions, manifests, training texts) with errors
that name the file and the line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from erv_plugins.errors import ErvError


def iter_jsonl(path: str | os.PathLike[str], *,
               error: type[Exception] = ErvError) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(where, line number, object)`` for each non-blank line; ``where`` is
    ``"<path>:<line>"``. ``"-"`` reads standard input. A missing or unreadable file, a line
    that is not JSON or not an object raises ``error`` naming the file and line."""
    shown = "<stdin>" if os.fspath(path) == "-" else os.fspath(path)
    try:
        if shown == "<stdin>":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except FileNotFoundError:
        raise error(f"{shown}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{shown}: cannot read: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{shown}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, number, row

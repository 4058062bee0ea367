"""Reading JSONL inputs (predictions, completions, manifests, training texts) and the text
files of datasets, with errors that name the file and the line.

Whatever a reader cannot use is refused as ``file:line: reason``: a line that is not
UTF-8 (with the byte and column), not JSON, not an object, nested deeper than
``MAX_DEPTH`` levels (no ``RecursionError``), or longer than ``MAX_LINE_BYTES`` (so
``/dev/zero`` or a file without newlines cannot fill the memory). Lines are read one at a
time and split on ``\\n`` only, as JSON Lines defines them.
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Any

from erv_plugins.errors import ErvError

MAX_LINE_BYTES = 16 << 20  # one row; a completion is a few KiB
MAX_DEPTH = 64  # rows nest 5 levels at most (chat messages with content blocks)
MAX_TEXT_BYTES = 1 << 30  # a dataset's CSV or JSON file


def _check_file(path: str | os.PathLike[str], shown: str, error: type[Exception]) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{shown}: no such file") from None
    except OSError as exc:
        raise error(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{shown}: cannot read: a directory")
    if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        raise error(f"{shown}: cannot read: a device, not a regular file")


def _decode(raw: bytes, where: str, error: type[Exception], *, first: bool = False) -> str:
    try:
        return raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[:exc.start].decode("utf-8", "replace")) + 1
        raise error(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
                    f"{column})") from None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json(text: str | bytes, where: str, error: type[Exception] = ErvError) -> Any:
    """``json.loads`` with one-line errors naming ``where`` (too deep included)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise error(f"{where}: nested more than {MAX_DEPTH} levels deep") from None
    if too_deep(value):
        raise error(f"{where}: nested more than {MAX_DEPTH} levels deep")
    return value


def _lines(fh: IO[bytes], shown: str, error: type[Exception]) -> Iterator[tuple[int, bytes]]:
    number = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise error(f"{shown}:{number}: line longer than {MAX_LINE_BYTES >> 20} MiB")
        yield number, raw.rstrip(b"\r\n")


def iter_jsonl(path: str | os.PathLike[str], *,
               error: type[Exception] = ErvError) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(where, line number, object)`` for each non-blank line; ``where`` is
    ``"<path>:<line>"``. ``"-"`` reads standard input. A missing or unreadable file, and a
    line that is not UTF-8, not JSON, not an object or too deep, raise ``error`` naming the
    file and line."""
    shown = "<stdin>" if os.fspath(path) == "-" else os.fspath(path)
    if shown == "<stdin>":
        stream = getattr(sys.stdin, "buffer", None)
        fh: IO[bytes] = stream if stream is not None else io.BytesIO(sys.stdin.read().encode())
        yield from _rows(fh, shown, error)
        return
    _check_file(path, shown, error)
    try:
        with open(path, "rb") as fh:
            yield from _rows(fh, shown, error)
    except OSError as exc:
        raise error(f"{shown}: cannot read: {exc.strerror or exc}") from None


def _rows(fh: IO[bytes], shown: str, error: type[Exception]
          ) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for number, raw in _lines(fh, shown, error):
        where = f"{shown}:{number}"
        line = _decode(raw, where, error, first=number == 1)
        if not line.strip():
            continue
        row = parse_json(line, where, error)
        if not isinstance(row, dict):
            raise error(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, number, row


def read_text(path: str | os.PathLike[str], *, error: type[Exception] = ErvError) -> str:
    """A dataset's whole text file (CSV, JSON, a split list; a leading BOM dropped); bytes
    that are not UTF-8 are refused as ``file:line: not UTF-8 text (byte 0xff at column 3)``."""
    shown = os.fspath(path)
    _check_file(path, shown, error)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise error(f"{shown}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise error(f"{shown}: larger than {MAX_TEXT_BYTES >> 30} GiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
        raise error(f"{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at column "
                    f"{column})") from None

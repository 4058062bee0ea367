"""One writer per output: ``erv eval --out``, ``erv augment --out`` and ``erv run``'s run
directory are locked while a process writes there, so a second writer is refused at once
(two evaluations appending to one ``judgements.jsonl`` wrote every row twice).

The lock is an advisory ``flock`` on a small file (``<dir>/.erv.lock``, or
``.<name>.lock`` beside an output file) that records who holds it. The kernel drops the
lock when its process dies, however it dies, so a lock file left by a killed process is
simply taken over. Nested holds by one process (the eval stage inside ``erv run``,
``evaluate`` inside ``erv eval``) are counted, not refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from erv_plugins.errors import ErvError

LOCK_NAME = ".erv.lock"


class LockedError(ErvError):
    """Another process is writing the same output."""


_held: dict[str, list[int]] = {}  # real path of the lock file -> [fd, holds]
_guard = threading.Lock()


def lock_file_for(target: Path, *, directory: bool) -> Path:
    """The lock file of an output directory (inside it) or an output file (beside it)."""
    return target / LOCK_NAME if directory else target.with_name(f".{target.name}.lock")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on {info['host']}, {info['what']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


@contextlib.contextmanager
def hold(target: str | os.PathLike[str], what: str, *, directory: bool = True,
         wait: bool = False) -> Iterator[Path]:
    """Hold the lock of ``target`` (a directory, created if needed; or with
    ``directory=False`` an output file) while the body runs; ``LockedError`` when another
    live process holds it, or with ``wait`` block until it lets go (a shared input that
    the first process writes and the others then read, e.g. synthetic clips)."""
    import fcntl

    target = Path(target)
    (target if directory else target.parent).mkdir(parents=True, exist_ok=True)
    path = lock_file_for(target, directory=directory)
    key = os.path.realpath(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _guard:
                _held[key][1] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockedError(f"{target}: another erv process is writing there ({_holder(path)}); "
                          "wait for it to finish, or write somewhere else") from None
    except OSError:  # a file system without locks: go on unlocked rather than not at all
        pass
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                             "since": time.time()}).encode())
    with _guard:
        _held[key] = [fd, 1]
    try:
        yield path
    finally:
        with _guard:
            del _held[key]
        os.close(fd)  # releases the flock

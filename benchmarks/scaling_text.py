"""Thread scaling of the native scan (no Python objects) on this machine.

    python benchmarks/scaling_text.py

For 1 thread and for rayon's pool (RAYON_NUM_THREADS, default: all cores), prints the best
wall time of 20 scans of a 4,096-completion batch, and CPU time / wall time: about 2 when two
threads really run at once. On a machine other jobs keep busy, wall-time speed-up is capped by
the free cores while CPU/wall still shows the work split across threads.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_batch import make_batch  # noqa: E402

from erv_plugins import _native  # noqa: E402


def measure(texts: list[str], mode: str, parallel: bool, rounds: int = 20) -> tuple[float, float]:
    best_wall, ratio = float("inf"), 0.0
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        _native.sentence_counts(texts, mode, parallel=parallel)
        w, c = time.perf_counter() - w, time.process_time() - c
        if w < best_wall:
            best_wall, ratio = w, c / w
    return best_wall, ratio


def main() -> None:
    texts = make_batch(prompts=64, generations=16) * 4
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"{len(texts)} completions, {mb:.1f} MB, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    for mode in ("paper", "pragmatic"):
        s_wall, s_ratio = measure(texts, mode, parallel=False)
        p_wall, p_ratio = measure(texts, mode, parallel=True)
        print(f"{mode:9} 1 thread {mb / s_wall:6.0f} MB/s (cpu/wall {s_ratio:.2f})   "
              f"rayon {mb / p_wall:6.0f} MB/s (cpu/wall {p_ratio:.2f})   speed-up {s_wall / p_wall:.2f}x")


if __name__ == "__main__":
    main()

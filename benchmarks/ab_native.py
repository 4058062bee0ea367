"""A/B of two builds of ``erv_plugins._native`` in one process, rounds interleaved (what a
shared machine needs: both see the same load). CPU time, median and minimum per round.

    python benchmarks/ab_native.py OLD.so NEW.so [--rounds 200]

OLD.so: e.g. a wheel of an earlier commit, ``maturin build --release -m rust/Cargo.toml``,
unpacked. Cases: ``text.parse_and_split`` (paper) on the all-distinct batches and the
generated GRPO batch, and ``text.split_sentences`` (pragmatic) on one 20 MB text.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_batch import make_batch, make_distinct_batch  # noqa: E402

from erv_plugins import _text_pure, text  # noqa: E402


def load(path: str):
    loader = importlib.machinery.ExtensionFileLoader("erv_plugins._native", path)
    spec = importlib.util.spec_from_loader("erv_plugins._native", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    mods = {"old": load(a.old), "new": load(a.new)}
    long_text = "\n".join(p.think or "" for p in _text_pure.parse_completions(
        make_distinct_batch(14_500, quotes=True, seed=3)))
    cases = {
        "all distinct, no quotes": (text.parse_and_split, make_distinct_batch(1024, False, 1), "paper"),
        "all distinct, quoted speech": (text.parse_and_split, make_distinct_batch(1024, True, 2), "paper"),
        "GRPO batch (58 % repeated)": (text.parse_and_split, make_batch(64, 16, 0), "paper"),
        "one 20 MB text, pragmatic": (text.split_sentences, long_text, "pragmatic"),
    }
    for name, (fn, arg, mode) in cases.items():
        rounds = a.rounds if fn is text.parse_and_split else max(4, a.rounds // 40)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(rounds):
            for k, mod in mods.items():
                text._native = mod
                s = time.process_time()
                fn(arg, mode)
                times[k].append(time.process_time() - s)
        o, n = times["old"], times["new"]
        print(f"{name}: old {1e3 * statistics.median(o):.3f} ms (min {1e3 * min(o):.3f}), "
              f"new {1e3 * statistics.median(n):.3f} ms (min {1e3 * min(n):.3f}); "
              f"old/new {statistics.median(o) / statistics.median(n):.2f}x "
              f"(min {min(o) / min(n):.2f}x)")


if __name__ == "__main__":
    main()

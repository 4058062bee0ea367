"""Scores erv's pragmatic mode, pysbd and sentencex side by side on the classic English edge
cases of ``benchmarks/data/classic_en_cases.jsonl`` (how the set was built: its README).

    .venv/bin/python benchmarks/score_segmentation.py            # table by group
    .venv/bin/python benchmarks/score_segmentation.py --show erv  # and erv's misses

A case counts when the tool's sentences, stripped and without empty ones, equal the
expected list exactly. Boundary precision and recall count the cut positions (in characters
of the text with whitespace removed) over all cases. Writes ``.benchmarks/segmentation.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / "data" / "classic_en_cases.jsonl"


def load_cases(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def segmenters() -> dict[str, Callable[[str], list[str]]]:
    """Each tool as text -> stripped, non-empty sentences."""
    import pysbd
    import sentencex

    from erv_plugins import text

    seg = pysbd.Segmenter(language="en", clean=False)

    def clean(pieces: list[str]) -> list[str]:
        return [p.strip() for p in pieces if p.strip()]

    return {
        "erv": lambda t: text.split_sentences(t, "pragmatic"),
        "pysbd": lambda t: clean(seg.segment(t)),
        "sentencex": lambda t: clean(sentencex.segment("en", t)),
    }


def cuts(sentences: list[str]) -> set[int]:
    """Cut positions in the whitespace-free text: where each sentence but the last ends."""
    out, pos = set(), 0
    for s in sentences[:-1]:
        pos += len("".join(s.split()))
        out.add(pos)
    return out


def score(cases: list[dict], split: Callable[[str], list[str]]) -> dict:
    by_group: dict[str, list[int]] = {}
    misses = []
    tp = fp = fn = 0
    for c in cases:
        got = split(c["text"])
        ok = got == c["sentences"]
        g = by_group.setdefault(c["group"], [0, 0])
        g[0] += ok
        g[1] += 1
        if not ok:
            misses.append({"source": c["source"], "text": c["text"], "got": got,
                           "expected": c["sentences"]})
        want, have = cuts(c["sentences"]), cuts(got)
        if "".join("".join(got).split()) != "".join(c["text"].split()):
            have = set()  # a tool that changed the text gets no boundary credit
        tp += len(want & have)
        fp += len(have - want)
        fn += len(want - have)
    exact = sum(g[0] for g in by_group.values())
    return {"exact": exact, "cases": len(cases), "groups": by_group, "misses": misses,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show", action="append", default=[], help="print this tool's misses")
    ap.add_argument("--out", type=Path, default=HERE.parent / ".benchmarks" / "segmentation.json")
    args = ap.parse_args()
    cases = load_cases()
    results = {name: score(cases, fn) for name, fn in segmenters().items()}
    names = list(results)
    groups = list(dict.fromkeys(c["group"] for c in cases))
    print(f"{'group':<26}{'cases':>6}" + "".join(f"{n:>12}" for n in names))
    for g in groups:
        n = results[names[0]]["groups"][g][1]
        print(f"{g:<26}{n:>6}" + "".join(f"{results[k]['groups'][g][0]:>12}" for k in names))
    print(f"{'all (exact)':<26}{len(cases):>6}" + "".join(
        f"{results[k]['exact']:>5} ({100 * results[k]['exact'] / len(cases):4.1f}%)" for k in names))
    for metric in ("precision", "recall"):
        print(f"{'boundary ' + metric:<32}" + "".join(f"{results[k][metric]:>12.3f}" for k in names))
    for name in args.show:
        print(f"\n{name} misses:")
        for m in results[name]["misses"]:
            print(f"  [{m['source']}] {m['text']!r}\n      got      {m['got']!r}\n      expected {m['expected']!r}")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

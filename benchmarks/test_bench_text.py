"""Text hot path benchmarks: native vs the release's `re` code, vs pysbd, vs a memchr scan.

    pytest benchmarks/test_bench_text.py --benchmark-enable -p no:randomly \
        --benchmark-columns=min,median,mean,rounds --benchmark-sort=name

Add --benchmark-timer=time.process_time on a shared machine: CPU time is far steadier than
wall time there (but sums threads, so read the 2-thread scaling from a wall-time run).
The ratios (medians and minima, all from the same run) are printed at the end and written to
.benchmarks/text.json. Without --benchmark-enable each function runs once: a smoke test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from baselines import release_text  # noqa: E402
from gen_batch import make_batch  # noqa: E402

from erv_plugins import _text_pure, text  # noqa: E402

pytestmark = pytest.mark.skipif(not text.NATIVE, reason="erv_plugins._native is not built")
native = text._native

BATCH = make_batch(prompts=64, generations=16, seed=0)  # 1,024 completions, ~1.4 MB
EXPLANATIONS = [p.think or "" for p in _text_pure.parse_completions(BATCH)]
PYSBD_SUBSET = EXPLANATIONS[:32]  # pysbd is slow; it gets one explanation at a time
CASES = [json.loads(line) for line in
         (HERE.parent / "tests" / "data" / "segmentation_cases.jsonl").read_text("utf-8").splitlines()]


def nbytes(texts: list[str]) -> int:
    return sum(len(t.encode("utf-8")) for t in texts)


MEDIANS: dict[str, float] = {}
MINS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report(request):
    yield
    if not MEDIANS:
        return
    m = MEDIANS
    lines: dict[str, object] = {}

    def ratio(name: str, slow: str, fast: str) -> None:
        if slow in m and fast in m:
            lines[name] = f"{m[slow] / m[fast]:.1f} (best-of: {MINS[slow] / MINS[fast]:.1f})"

    ratio("parse+paper split: native (auto) vs release re", "release_re", "native_parse_split")
    ratio("parse+paper split: native 1 thread vs release re", "release_re", "native_parse_split_serial")
    ratio("parse+paper split: text.parse_and_split (Parsed objects) vs release re", "release_re", "public_api_parse_split")
    ratio("parse+paper split: two native calls vs release re", "release_re", "native_two_calls")
    ratio("parse+paper split: native vs twin (precompiled re)", "twin_re", "native_parse_split")
    ratio("parse+paper split: 2 threads vs 1 thread", "native_parse_split_serial", "native_parse_split_parallel")
    ratio("pragmatic: 2 threads vs 1 thread", "pragmatic_serial", "pragmatic_parallel")
    ratio("scan only, paper: 2 threads vs 1 thread (wall time)", "scan_paper_serial", "scan_paper_parallel")
    ratio("scan only, pragmatic: 2 threads vs 1 thread (wall time)", "scan_pragmatic_serial", "scan_pragmatic_parallel")
    ratio("pragmatic vs pysbd, same 32 explanations", "pysbd", "pragmatic_subset")
    ratio("tag scan vs memchr scan (times slower)", "tag_scan", "memchr_scan")
    ratio("parse_completions (with Parsed objects) vs memchr scan (times slower)", "parse_completions", "memchr_scan")
    mb = nbytes(EXPLANATIONS) / 1e6
    for key in ("pragmatic_serial", "pragmatic_spans_serial", "paper_serial"):
        if key in m:
            lines[f"{key} MB/s"] = f"{mb / m[key]:.0f} (best-of: {mb / MINS[key]:.0f})"
    if "pysbd" in m:
        sub = nbytes(PYSBD_SUBSET) / 1e6
        lines["pysbd MB/s"] = f"{sub / m['pysbd']:.3f} (best-of: {sub / MINS['pysbd']:.3f})"
    lines.update(quality())
    timer = request.config.getoption("benchmark_timer")
    out = {"ratios": lines, "medians_s": m, "mins_s": MINS, "cpus": os.cpu_count(), "timer": str(timer),
           "batch": {"completions": len(BATCH), "bytes": nbytes(BATCH),
                     "explanation_bytes": nbytes(EXPLANATIONS)}}
    dest = HERE.parent / ".benchmarks" / "text.json"  # .benchmarks/ is git-ignored
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        tr.write_line(f"\nText hot path, medians (and minima) of this run, timer {timer}:")
        for k, v in lines.items():
            tr.write_line(f"  {k}: {v}")


def quality() -> dict[str, float]:
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False)
    ours = native.split_sentences_batch([c["text"] for c in CASES], "pragmatic")
    theirs = [[s.strip() for s in seg.segment(c["text"]) if s.strip()] for c in CASES]
    return {
        f"hard cases ({len(CASES)}) exact, native pragmatic %":
            round(100 * sum(o == c["sentences"] for o, c in zip(ours, CASES)) / len(CASES), 1),
        f"hard cases ({len(CASES)}) exact, pysbd %":
            round(100 * sum(t == c["sentences"] for t, c in zip(theirs, CASES)) / len(CASES), 1),
    }


def run(benchmark, name, fn, *args, **kwargs):
    result = benchmark(fn, *args, **kwargs)
    if benchmark.stats is not None:
        MEDIANS[name] = benchmark.stats.stats.median
        MINS[name] = benchmark.stats.stats.min
    return result


# --- parse + paper split -------------------------------------------------------------------
def native_parse_split(batch, parallel=None):
    """One native call: tags found and the explanation split where it lies in the completion."""
    parsed, sentences = native.parse_and_split(batch, "paper", parallel=parallel)
    return [(f, t, a, s) for (f, t, a), s in zip(parsed, sentences)]


def native_two_calls(batch):
    parsed = native.parse_completions(batch)
    sentences = native.split_sentences_batch([p[1] or "" for p in parsed], "paper")
    return [(f, t, a, s) for (f, t, a), s in zip(parsed, sentences)]


def twin_parse_split(batch):
    return [(p.format_ok, p.think, p.answer, _text_pure.split_paper(p.think or ""))
            for p in _text_pure.parse_completions(batch)]


EXPECTED = release_text.parse_and_split(BATCH)


def test_release_re(benchmark):
    assert run(benchmark, "release_re", release_text.parse_and_split, BATCH) == EXPECTED


def test_twin_re(benchmark):
    assert run(benchmark, "twin_re", twin_parse_split, BATCH) == EXPECTED


def test_native_parse_split(benchmark):
    assert run(benchmark, "native_parse_split", native_parse_split, BATCH) == EXPECTED


def test_native_parse_split_serial(benchmark):
    assert run(benchmark, "native_parse_split_serial", native_parse_split, BATCH, False) == EXPECTED


def test_native_parse_split_parallel(benchmark):
    assert run(benchmark, "native_parse_split_parallel", native_parse_split, BATCH, True) == EXPECTED


def test_native_two_calls(benchmark):
    assert run(benchmark, "native_two_calls", native_two_calls, BATCH) == EXPECTED


def test_public_api_parse_split(benchmark):
    parsed, sentences = run(benchmark, "public_api_parse_split", text.parse_and_split, BATCH, "paper")
    assert [(p.format_ok, p.think, p.answer, s) for p, s in zip(parsed, sentences)] == EXPECTED


def test_paper_serial(benchmark):
    run(benchmark, "paper_serial", native.split_sentences_batch, EXPLANATIONS, "paper", parallel=False)


# --- scan-only scaling (no Python objects): what rayon can speed up ------------------------
BIG = BATCH * 4  # 4,096 completions, ~5.6 MB


@pytest.mark.parametrize("mode", ["paper", "pragmatic"])
@pytest.mark.parametrize("threads", ["serial", "parallel"])
def test_scan_scaling(benchmark, mode, threads):
    run(benchmark, f"scan_{mode}_{threads}", native.sentence_counts, BIG, mode, parallel=threads == "parallel")


# --- pragmatic -----------------------------------------------------------------------------
def test_pragmatic_serial(benchmark):
    got = run(benchmark, "pragmatic_serial", native.split_sentences_batch, EXPLANATIONS, "pragmatic",
              parallel=False)
    assert got[:50] == [_text_pure.split_pragmatic(t) for t in EXPLANATIONS[:50]]


def test_pragmatic_spans_serial(benchmark):
    run(benchmark, "pragmatic_spans_serial", native.sentence_spans, EXPLANATIONS, "pragmatic", parallel=False)


def test_pragmatic_parallel(benchmark):
    run(benchmark, "pragmatic_parallel", native.split_sentences_batch, EXPLANATIONS, "pragmatic", parallel=True)


def test_pragmatic_subset(benchmark):
    run(benchmark, "pragmatic_subset", lambda: [native.split_sentences_batch([t], "pragmatic")
                                                for t in PYSBD_SUBSET])


def test_pysbd(benchmark):
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False)
    benchmark.pedantic(lambda: [seg.segment(t) for t in PYSBD_SUBSET], rounds=3, iterations=1)
    if benchmark.stats is not None:
        MEDIANS["pysbd"] = benchmark.stats.stats.median
        MINS["pysbd"] = benchmark.stats.stats.min


# --- tag parsing against the memchr floor --------------------------------------------------
def test_memchr_scan(benchmark):
    assert run(benchmark, "memchr_scan", native.memchr_scan, BATCH) > 0


def test_tag_scan(benchmark):
    ok, think, answer = run(benchmark, "tag_scan", native.tag_scan, BATCH)
    assert ok == sum(e[0] for e in EXPECTED) and think == sum(e[1] is not None for e in EXPECTED)


def test_parse_completions(benchmark):
    run(benchmark, "parse_completions", native.parse_completions, BATCH, parallel=False)

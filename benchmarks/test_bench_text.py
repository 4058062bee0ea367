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
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from baselines import release_text  # noqa: E402
from gen_batch import make_batch, make_distinct_batch  # noqa: E402

from erv_plugins import _text_pure, text  # noqa: E402

pytestmark = pytest.mark.skipif(not text.NATIVE, reason="erv_plugins._native is not built")
native = text._native
# memchr_scan and tag_scan are bench-only exports (rust/src/bench.rs), in a build with the cargo
# feature `bench` (scripts/setup builds dev installs so); the product wheel has neither.
BENCH_EXPORTS = native is not None and hasattr(native, "tag_scan")
needs_bench_exports = pytest.mark.skipif(
    not BENCH_EXPORTS,
    reason="erv_plugins._native was built without the cargo feature bench (memchr_scan, tag_scan): "
    "rebuild with `maturin develop --release --features pyo3/extension-module,bench`")

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
    ratio("parse+paper split, no repeated sentences: text.parse_and_split vs release re",
          "release_re_distinct", "public_api_parse_split_distinct")
    ratio("parse+paper split, all distinct, no quotes: text.parse_and_split vs release re",
          "release_re_all_distinct_plain", "public_api_all_distinct_plain")
    ratio("parse+paper split, all distinct, quoted speech: text.parse_and_split vs release re",
          "release_re_all_distinct_quoted", "public_api_all_distinct_quoted")
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
    for key in [k for k in m if k.startswith("all_distinct_")]:
        lines[f"{key} ms, best-of (share of text.parse_and_split)"] = \
            f"{1e3 * MINS[key]:.3f} ({100 * MINS[key] / MINS['public_api_all_distinct_plain']:.0f} %)" \
            if "public_api_all_distinct_plain" in m else f"{1e3 * MINS[key]:.3f}"
    for key, texts in (("long_text_single_call", [LONG_TEXT]), ("long_text_batch", LONG_PARAGRAPHS),
                       ("long_text_scan_only", [LONG_TEXT]),
                       ("long_text_single_call_fresh_non_ascii", [LONG_TEXT_NON_ASCII])):
        if key in m:
            lines[f"{key} MB/s (pragmatic, one thread)"] = \
                f"{nbytes(texts) / 1e6 / m[key]:.0f} (best-of: {nbytes(texts) / 1e6 / MINS[key]:.0f})"
    if "pysbd" in m:
        sub = nbytes(PYSBD_SUBSET) / 1e6
        lines["pysbd MB/s"] = f"{sub / m['pysbd']:.3f} (best-of: {sub / MINS['pysbd']:.3f})"
    lines.update(quality())
    timer = request.config.getoption("benchmark_timer")
    out = {"ratios": lines, "medians_s": m, "mins_s": MINS, "cpus": os.cpu_count(), "timer": str(timer),
           "batch": {"completions": len(BATCH), "bytes": nbytes(BATCH),
                     "explanation_bytes": nbytes(EXPLANATIONS),
                     "sentences": sum(len(e[3]) for e in EXPECTED),
                     "distinct_sentences": len({s for e in EXPECTED for s in e[3]}),
                     "distinct_batch_sentences": sum(len(e[3]) for e in EXPECTED_DISTINCT),
                     "distinct_batch_distinct": len({s for e in EXPECTED_DISTINCT for s in e[3]}),
                     "all_distinct_plain_bytes": nbytes(ALL_DISTINCT["plain"]),
                     "all_distinct_quoted_bytes": nbytes(ALL_DISTINCT["quoted"]),
                     "all_distinct_sentences": [sum(len(e[3]) for e in EXPECTED_ALL_DISTINCT[k])
                                                for k in ("plain", "quoted")],
                     "long_text_bytes": nbytes([LONG_TEXT])}}
    dest = HERE.parent / ".benchmarks" / "text.json"  # .benchmarks/ is git-ignored
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        tr.write_line(f"\nText hot path, medians (and minima) of this run, timer {timer}:")
        for k, v in lines.items():
            tr.write_line(f"  {k}: {v}")
        tr.write_line(f"  batch: {out['batch']}")


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

# The same batch with (almost) no sentence repeated anywhere in it: each completion's sentences
# carry its number. erv builds one str per distinct sentence, and the generated batch repeats
# most of its sentences (33,098 sentences, 1,358 distinct); this batch shows the cost when a
# batch repeats nothing.
DISTINCT_BATCH = [re.sub(r"([.!?]) ", rf"\1 #{i} ", c).replace("<think>", f"<think>#{i} ")
                  for i, c in enumerate(BATCH)]
EXPECTED_DISTINCT = release_text.parse_and_split(DISTINCT_BATCH)


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


def test_release_re_distinct(benchmark):
    assert run(benchmark, "release_re_distinct", release_text.parse_and_split, DISTINCT_BATCH) == \
        EXPECTED_DISTINCT


def test_public_api_parse_split_distinct(benchmark):
    parsed, sentences = run(benchmark, "public_api_parse_split_distinct", text.parse_and_split,
                            DISTINCT_BATCH, "paper")
    assert [(p.format_ok, p.think, p.answer, s) for p, s in zip(parsed, sentences)] == \
        EXPECTED_DISTINCT


# Batches in which no explanation sentence occurs twice (benchmarks/gen_batch.py,
# make_distinct_batch: 1,024 completions, 12,288 sentences, all distinct), without and with
# quoted speech: deduplication cannot help, every sentence becomes a str.
ALL_DISTINCT = {"plain": make_distinct_batch(1024, quotes=False, seed=1),
                "quoted": make_distinct_batch(1024, quotes=True, seed=2)}
EXPECTED_ALL_DISTINCT = {k: release_text.parse_and_split(b) for k, b in ALL_DISTINCT.items()}
ALL_DISTINCT_THINK = [p.think or "" for p in _text_pure.parse_completions(ALL_DISTINCT["plain"])]


@pytest.mark.parametrize("kind", ["plain", "quoted"])
def test_release_re_all_distinct(benchmark, kind):
    assert run(benchmark, f"release_re_all_distinct_{kind}", release_text.parse_and_split,
               ALL_DISTINCT[kind]) == EXPECTED_ALL_DISTINCT[kind]


@pytest.mark.parametrize("kind", ["plain", "quoted"])
def test_public_api_all_distinct(benchmark, kind):
    parsed, sentences = run(benchmark, f"public_api_all_distinct_{kind}", text.parse_and_split,
                            ALL_DISTINCT[kind], "paper")
    assert [(p.format_ok, p.think, p.answer, s) for p, s in zip(parsed, sentences)] == \
        EXPECTED_ALL_DISTINCT[kind]


# Where text.parse_and_split's time goes on the plain all-distinct batch, one part at a time.
ALL_DISTINCT_PARTS = {
    "tags_only": (getattr(native, "tag_scan", None), (ALL_DISTINCT["plain"],), {}),
    "paper_scan_only": (native.sentence_counts, (ALL_DISTINCT_THINK, "paper"), {"parallel": False}),
    "parsed_objects": (native.parse_completions, (ALL_DISTINCT["plain"],), {"parallel": False, "cls": text.Parsed}),
    "split_unique_full_dedup": (native.split_unique, (ALL_DISTINCT_THINK, "paper"), {"parallel": False}),
    "sentence_lists": (native.split_sentences_batch, (ALL_DISTINCT_THINK, "paper"), {"parallel": False}),
}


@pytest.mark.parametrize("part", list(ALL_DISTINCT_PARTS))
def test_all_distinct_parts(benchmark, part):
    fn, args, kwargs = ALL_DISTINCT_PARTS[part]
    if fn is None:
        pytest.skip(needs_bench_exports.kwargs["reason"])
    run(benchmark, f"all_distinct_{part}", fn, *args, **kwargs)


# One call on one long text (about 20 MB: all-distinct explanations with quoted speech, one
# paragraph a line) against the batch path on its paragraphs: pragmatic mode ends a sentence
# at every line break, so both give the same sentences.
LONG_PARAGRAPHS = [p.think or "" for p in _text_pure.parse_completions(
    make_distinct_batch(14_500, quotes=True, seed=3))]
LONG_TEXT = "\n".join(LONG_PARAGRAPHS)
LONG_TEXT_NON_ASCII = LONG_TEXT.replace("can't", "can\u2019t")


def test_long_text_single_call(benchmark):
    got = run(benchmark, "long_text_single_call", text.split_sentences, LONG_TEXT, "pragmatic")
    assert got == [s for p in native.split_sentences_batch(LONG_PARAGRAPHS, "pragmatic") for s in p]


def test_long_text_single_call_fresh_non_ascii(benchmark):
    # A new str each round with a non-ASCII character: CPython builds its UTF-8 form (cached
    # on the str afterwards) in the timed call, as for a document read from a file.
    def fresh():
        return (LONG_TEXT_NON_ASCII[:-1] + LONG_TEXT_NON_ASCII[-1], "pragmatic"), {}

    benchmark.pedantic(text.split_sentences, setup=fresh, rounds=8, iterations=1)
    if benchmark.stats is not None:
        MEDIANS["long_text_single_call_fresh_non_ascii"] = benchmark.stats.stats.median
        MINS["long_text_single_call_fresh_non_ascii"] = benchmark.stats.stats.min


def test_long_text_batch(benchmark):
    run(benchmark, "long_text_batch", native.split_sentences_batch, LONG_PARAGRAPHS, "pragmatic",
        parallel=False)


def test_long_text_scan_only(benchmark):
    run(benchmark, "long_text_scan_only", native.sentence_counts, [LONG_TEXT], "pragmatic",
        parallel=False)


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
@needs_bench_exports
def test_memchr_scan(benchmark):
    assert run(benchmark, "memchr_scan", native.memchr_scan, BATCH) > 0


@needs_bench_exports
def test_tag_scan(benchmark):
    ok, think, answer = run(benchmark, "tag_scan", native.tag_scan, BATCH)
    assert ok == sum(e[0] for e in EXPECTED) and think == sum(e[1] is not None for e in EXPECTED)


def test_parse_completions(benchmark):
    run(benchmark, "parse_completions", native.parse_completions, BATCH, parallel=False)

"""The effect experiment over seeds: ERV (R_E + R_format + R_answer) against the answer-only
baseline (R1-Omni: R_format + R_answer), both from the same SFT model (issue 15).

For each seed it writes two small recipes on top of ``recipes/tiny_cpu.toml`` and
``recipes/tiny_cpu_baseline.toml`` that set every seed of the run (the tiny policy's
initialisation, SFT, the verifier, GRPO, eval; the synthetic clips stay those of seed 0),
runs ``erv run`` (stages sft, train_verifier, grpo, eval, compare: the baseline runs inside),
and reads ``compare/table.json``. It writes the mean and spread (sample standard
deviation) of every metric, the per-seed figures, the acceptance checks of issue 15 and
the wall time of each run with the machine's load to ``benchmarks/RESULTS.md`` (the
section between the ``demo_effect`` markers; the rest of the file is kept).

    .venv/bin/python benchmarks/demo_effect.py                  # seeds 0 1 2
    .venv/bin/python benchmarks/demo_effect.py --seeds 0 --work /tmp/effect
    .venv/bin/python benchmarks/demo_effect.py --collect runs/a runs/b   # report only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
METRICS = ("EEA", "FCR", "EPC", "WAR", "UAR")
DIFF = ("EEA", "FCR", "EPC", "WAR")
BEGIN, END = "<!-- demo_effect: begin -->", "<!-- demo_effect: end -->"

SEED_TABLES = """
[model]
options = {{ seed = {s} }}
[sft]
seed = {s}
[train_verifier]
seed = {s}
[grpo]
seed = {s}
[eval]
seed = {s}
"""


def write_recipes(work: Path, seed: int) -> Path:
    """seed<N>.toml (extends tiny_cpu.toml) and its baseline (extends tiny_cpu_baseline.toml),
    with the same seeds; returns the first."""
    work.mkdir(parents=True, exist_ok=True)
    tables = SEED_TABLES.format(s=seed)
    base = work / f"seed{seed}_baseline.toml"
    base.write_text(f'extends = "{REPO / "recipes" / "tiny_cpu_baseline.toml"}"\n'
                    f'name = "tiny_cpu_baseline_seed{seed}"\nseed = {seed}\n{tables}')
    ours = work / f"seed{seed}.toml"
    ours.write_text(f'extends = "{REPO / "recipes" / "tiny_cpu.toml"}"\n'
                    f'name = "tiny_cpu_seed{seed}"\nseed = {seed}\n{tables}'
                    f'[compare]\nbaseline = "{base.name}"\n')
    return ours


def run_seed(work: Path, seed: int, erv: str) -> dict[str, Any]:
    recipe = write_recipes(work, seed)
    run_dir = work / f"seed{seed}"
    load = os.getloadavg()[0]
    start = time.perf_counter()
    log = work / f"seed{seed}.log"
    with log.open("w") as fh:
        rc = subprocess.call([erv, "run", str(recipe), "--run-dir", str(run_dir)],
                             stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"seed {seed}: erv run failed (exit {rc}); see {log}")
    return read_seed(run_dir, seed, wall, load)


def read_seed(run_dir: Path, seed: int, wall: float, load: float) -> dict[str, Any]:
    """One seed's figures from its finished run directory."""
    table = json.loads((run_dir / "compare" / "table.json").read_text())
    stages = {}
    for d in (run_dir, run_dir / "baseline"):
        for done in sorted(d.glob("*/.done")):
            key = f"{'baseline/' if d != run_dir else ''}{done.parent.name}"
            stages[key] = json.loads(done.read_text()).get("seconds")
    cues = {row["method"]: cue_agreement(d / "eval" / "predictions.jsonl")
            for row, d in zip(table["rows"], (run_dir / "baseline", run_dir), strict=True)}
    return {"seed": seed, "wall_s": round(wall, 1), "load_start": round(load, 2),
            "load_end": round(os.getloadavg()[0], 2), "stages_s": stages, "cues": cues,
            **table}


def cue_agreement(predictions: Path) -> float:
    """Percent of the evaluated explanations that cite the clip's own colour and tone: a
    check from outside the loop, as neither R_E's verifier (scene sentences are neutral to
    it) nor the lexicon judge reads colours or tones."""
    from erv_plugins.datasets.synthetic import STYLE

    rows = [json.loads(line) for line in predictions.read_text().splitlines() if line]
    hits = 0
    for row in rows:
        _, _, colour, tone = STYLE[row["label"]]
        think = row["completion"].split("</think>")[0]
        hits += colour in think and tone in think
    return 100.0 * hits / len(rows) if rows else 0.0


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f}"


def report(results: list[dict[str, Any]], command: str) -> str:
    base_name, ours_name = (r["method"] for r in results[0]["rows"])
    lines = [BEGIN, "## The demo's effect: ERV vs the answer-only baseline (issue 15)", "",
             f"Command: `{command}` (each seed: `erv run` of a recipe extending "
             "`recipes/tiny_cpu.toml` with every seed set; the baseline from the same SFT "
             "model). Judge: the lexicon judge of `[eval.judge]` (plugin erv-lexicon-"
             "verifier), not the reward's verifier. Values in percent on the "
             f"{results[0]['rows'][0].get('n', '?')} test clips; mean ± sample standard "
             "deviation over seeds.", ""]
    header = "| metric | " + " | ".join([base_name, ours_name, "ours - baseline"]) + " |"
    lines += [header, "|---|---:|---:|---:|"]
    for m in METRICS:
        b = [r["rows"][0][m] for r in results if r["rows"][0].get(m) is not None]
        o = [r["rows"][1][m] for r in results if r["rows"][1].get(m) is not None]
        d = [r["difference"][m] for r in results] if m in DIFF else []
        lines.append(f"| {m} | {_mean_sd(b)} | {_mean_sd(o)} | {_mean_sd(d)} |")
    if all("cues" in r for r in results):
        cues = [[r["cues"][name] for r in results] for name in (base_name, ours_name)]
        lines.append("| explanation cites the clip's own colour and tone (read by neither "
                     f"reward nor judge) | {_mean_sd(cues[0])} | {_mean_sd(cues[1])} | "
                     f"{_mean_sd([o - b for b, o in zip(*cues, strict=True)])} |")
    for key, label in (("explanation", "R_E (reward verifier)"),
                       ("epc", "EPC on rollouts (judge)")):
        for who, name in ((0, base_name), (1, ours_name)):
            rise = [r["curves"][name][key]["last_fifth"] - r["curves"][name][key]["first_fifth"]
                    for r in results]
            lines.append(f"| {label}, last - first fifth of GRPO, {name} | "
                         f"{_mean_sd(rise) if who == 0 else ''} | "
                         f"{_mean_sd(rise) if who == 1 else ''} | |")
    lines += ["", "Per seed (ours - baseline with the paired 95 % bootstrap interval):", "",
              "| seed | EEA | FCR | EPC | WAR | R_E rise (ours) | wall (s) | load 1 min "
              "(start, end) |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    checks = []
    for r in results:
        d = r["difference"]
        cells = []
        for m in DIFF:
            ci = d.get("ci", {}).get(m)
            cells.append(f"{d[m]:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        c = r["curves"][ours_name]["explanation"]
        rise = c["last_fifth"] - c["first_fifth"]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + f" | {rise:+.3f} | "
                     f"{r['wall_s']:.0f} | {r['load_start']}, {r['load_end']} |")
        checks.append((r["seed"], d["EPC"] >= 10, d["EEA"] >= 10, abs(d["WAR"]) <= 5,
                       rise >= 0.15))
    lines += ["", "Acceptance (issue 15), per seed: EPC +10, EEA +10, |WAR| <= 5, R_E rise "
              ">= 0.15:", ""]
    for seed, *ok in checks:
        lines.append(f"- seed {seed}: " + ", ".join(
            f"{name} {'yes' if flag else 'NO'}"
            for name, flag in zip(("EPC", "EEA", "WAR", "R_E"), ok, strict=True)))
    lines += ["", "Stage seconds per seed: " + "; ".join(
        f"seed {r['seed']}: " + ", ".join(f"{k} {v:.0f}" for k, v in r["stages_s"].items()
                                           if v is not None) for r in results), "", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "demo_effect")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md")
    ap.add_argument("--erv", default=str(Path(sys.executable).parent / "erv"))
    ap.add_argument("--collect", type=Path, nargs="+", default=None, metavar="WORK",
                    help="Run nothing: report the seeds of these work directories (their "
                         "results.json and run directories; seeds run by separate "
                         "invocations, e.g. side by side).")
    args = ap.parse_args(argv)
    command = "python benchmarks/demo_effect.py" + (
        f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
    results = []
    if args.collect:
        for work in args.collect:  # figures read again from the run directories
            for r in json.loads((work / "results.json").read_text()):
                fresh = read_seed(work / f"seed{r['seed']}", r["seed"], r["wall_s"],
                                  r["load_start"])
                results.append({**fresh, "load_end": r["load_end"]})
        results.sort(key=lambda r: r["seed"])
        command += " (seeds run as: " + "; ".join(
            f"--seeds {' '.join(str(r['seed']) for r in json.loads((w / 'results.json').read_text()))}"
            f" --work {w}" for w in args.collect) + ")"
    for seed in [] if args.collect else args.seeds:
        print(f"seed {seed} ...", flush=True)
        results.append(run_seed(args.work, seed, args.erv))
        print(json.dumps({k: results[-1][k] for k in ("seed", "wall_s", "difference")}),
              flush=True)
        # Written after every seed, so a later --collect can use what finished.
        (args.work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    section = report(results, command)
    text = args.out.read_text() if args.out.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    args.out.write_text(text)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Stage ``compare``: the answer-only baseline beside this run, as in paper Table 1.

Table 1 puts R1-Omni (GRPO with R = R_format + R_answer) beside ERV (R = R_E + R_format +
R_answer, eq. 5), both from the same SFT model. This stage runs the recipe named by
``[compare] baseline`` into ``<run dir>/baseline/`` from *this* run's SFT model and with
this run's verifier (so the two differ only in what the baseline recipe changes, e.g. the
weight of R_E), reusing what a previous call left there (its stages' ``.done`` marks).
Then it writes into ``<run dir>/compare/``:

- ``table.md`` / ``table.json``: both rows (EEA FCR EPC WAR UAR with their 95 % bootstrap
  intervals) and the difference ours - baseline with a *paired* bootstrap interval
  (the same test clips are resampled for both runs);
- ``curves.png``: R_E (the reward's verifier) and EPC (the evaluation judge, on the GRPO
  rollouts: the weight-0 ``epc`` reward) over the GRPO steps of both runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from erv_plugins.errors import ErvError
from erv_plugins.evaluation.metrics import METRICS, OUTSIDE, UNJUDGED, Outcomes
from erv_plugins.labels import LabelSpace

BASELINE_DIR = "baseline"
DIFF_METRICS: tuple[str, ...] = ("EEA", "FCR", "EPC", "WAR")  # per-sample means: paired


def outcomes_from_judgements(path: Path, space: LabelSpace, protocol: str
                             ) -> tuple[list[str], Outcomes]:
    """Sample ids and coded (g, p, j) of an evaluation's ``judgements.jsonl``, read as
    ``erv eval`` read them (``evaluation.run``)."""
    from erv_plugins.evaluation import protocols
    from erv_plugins.evaluation.run import _load_judgements

    rows = _load_judgements(path)
    if not rows:
        raise ErvError(f"{path}: no judgements")
    ids, g, p, j, pj = [], [], [], [], []
    for r in rows:
        label = protocols.judge_label(protocol, r, space)
        if label is None:  # erv protocol: a failed request leaves N
            continue
        ids.append(str(r["id"]))
        g.append(r["label"])
        p.append(r["pred"])
        j.append(label if r.get("judged", True) else None)
        pj.append(r.get("pred_judged", r["pred"]))
    return ids, Outcomes.from_words(space.labels, g, p, j, pj,
                                    uar_rule=protocols.uar_rule(protocol, space))  # type: ignore[arg-type]


def _indicators(o: Outcomes) -> dict[str, np.ndarray]:
    """Per sample, 1.0 where it counts for the metric (EEA, FCR, EPC, WAR)."""
    ok = o.j != UNJUDGED
    return {"EEA": (ok & (o.j == o.g)).astype(float),
            "FCR": (ok & (o.j == o.g) & (o.p_judged == o.g)).astype(float),
            "EPC": (ok & (o.j == o.p_judged) & (o.p_judged != OUTSIDE)).astype(float),
            "WAR": (o.p == o.g).astype(float)}


def paired_difference(ours: tuple[list[str], Outcomes], baseline: tuple[list[str], Outcomes],
                      *, bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95
                      ) -> dict[str, Any]:
    """Ours - baseline in points on the samples both runs judged, with a paired percentile
    bootstrap interval (one resample of the sample ids serves both runs)."""
    ids_a, a = ours
    ids_b, b = baseline
    common = sorted(set(ids_a) & set(ids_b))
    if not common:
        raise ErvError("compare: the two evaluations share no sample ids")
    ia = {s: i for i, s in enumerate(ids_a)}
    ib = {s: i for i, s in enumerate(ids_b)}
    sel_a = np.array([ia[s] for s in common])
    sel_b = np.array([ib[s] for s in common])
    da, db = _indicators(a), _indicators(b)
    diff = {m: da[m][sel_a] - db[m][sel_b] for m in DIFF_METRICS}
    out: dict[str, Any] = {"n": len(common),
                           **{m: round(100.0 * float(d.mean()), 4) for m, d in diff.items()}}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(common), size=(bootstrap, len(common)))
        alpha = (1.0 - confidence) / 2.0
        out["ci"] = {m: [round(100.0 * float(q), 4)
                         for q in np.quantile(d[idx].mean(1), [alpha, 1.0 - alpha])]
                     for m, d in diff.items()}
        out["ci_level"] = confidence
        out["bootstrap"] = bootstrap
    return out


def _cell(metrics: Mapping[str, Any], m: str, signed: bool = False) -> str:
    value = metrics.get(m)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{float(value):+.2f}" if signed else f"{float(value):.2f}"
    ci = (metrics.get("ci") or {}).get(m)
    if ci:
        text += f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if signed else f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def comparison_markdown(rows: Sequence[tuple[str, Mapping[str, Any]]],
                        diff: Mapping[str, Any] | None, dataset: str) -> str:
    """Table 1's layout with intervals: one row per run, then ours - baseline (paired)."""
    title = dataset.upper()
    header = ["Method"] + [f"{title} {m}" for m in METRICS]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * len(METRICS)) + "|"]
    for name, metrics in rows:
        lines.append("| " + " | ".join([name] + [_cell(metrics, m) for m in METRICS]) + " |")
    if diff is not None:
        lines.append("| " + " | ".join(["ours - baseline (paired)"] + [
            _cell(diff, m, signed=True) if m in DIFF_METRICS else "-" for m in METRICS]) + " |")
    level = next((r[1].get("ci_level") for r in rows if r[1].get("ci_level")), None)
    n = ", ".join(f"{name} N = {m.get('n')}" for name, m in rows)
    note = f"{100 * level:g} % bootstrap intervals in brackets; " if level else ""
    judge = str(rows[0][1].get("judge", "?")) if rows else "?"
    inner = (rows[0][1].get("judge_info") or {}).get("verifier") if rows else None
    if isinstance(inner, str):  # the verifier judge: say which verifier reads (lexicon, hf)
        judge += f" ({inner.split(':')[0]})"
    return "\n".join(lines) + f"\n\n{note}{n}; judge: {judge}."


def step_series(metrics_jsonl: Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one logged key of a training ``metrics.jsonl``."""
    steps: list[int] = []
    values: list[float] = []
    if not metrics_jsonl.is_file():
        return steps, values
    for line in metrics_jsonl.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        v = row.get(key)
        if isinstance(v, (int, float)) and not math.isnan(float(v)):
            steps.append(int(row["step"]))
            values.append(float(v))
    return steps, values


CURVES: tuple[tuple[str, str], ...] = (
    ("rewards/explanation/mean", "R_E (reward verifier)"),
    ("rewards/epc/mean", "EPC on rollouts (eval judge)"),
)


def plot_curves(runs: Sequence[tuple[str, Path]], path: Path, *, window: int = 8) -> Path:
    """R_E and EPC over GRPO steps, one panel each, one line per run (moving mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(5.5 * len(CURVES), 3.6))
    for ax, (key, title) in zip(axes, CURVES, strict=True):
        for name, metrics_jsonl in runs:
            steps, values = step_series(metrics_jsonl, key)
            if not steps:
                continue
            w = max(1, min(window, len(values)))
            smooth = np.convolve(values, np.ones(w) / w, mode="valid")
            (line,) = ax.plot(steps, values, alpha=0.25, linewidth=1)
            ax.plot(steps[w - 1:], smooth, color=line.get_color(), linewidth=2,
                    label=f"{name} (moving mean, {w} steps)")
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fifths(metrics_jsonl: Path, key: str) -> tuple[float, float]:
    from erv_plugins.training.runlog import fifth_means

    return fifth_means(step_series(metrics_jsonl, key)[1])


class CompareStage:
    """Run the answer-only baseline from this run's SFT model; Table 1 side by side."""

    name: ClassVar[str] = "compare"

    def __call__(self, ctx: Any) -> dict[str, Any] | None:
        import msgspec

        from erv_plugins.recipe import CompareTable, load_recipe
        from erv_plugins.stages import run_recipe

        recipe = ctx.recipe
        cfg = recipe.table(self.name)  # [compare], registered as this stage's options
        assert isinstance(cfg, CompareTable)
        baseline = load_recipe(cfg.baseline, ctx.plugins)
        reused = [s for s in baseline.stages if s in ("sft", "train_verifier", "compare")]
        if reused:
            raise ErvError(f"{cfg.baseline}: $.stages: the baseline reuses this run's SFT model "
                           f"and verifier; it must not list {', '.join(reused)}")
        if "eval" not in baseline.stages:
            raise ErvError(f"{cfg.baseline}: $.stages: the baseline needs an eval stage")
        run_dir = ctx.run_dir / BASELINE_DIR
        # Same SFT checkpoint and the same verifier: the runs differ only in the baseline's
        # own lines (R_E's weight).
        model = baseline.model
        if model is not None:
            model = msgspec.structs.replace(model, path=str(ctx.run_dir / "sft" / "model"))
        verifier = baseline.verifier
        if verifier is not None and hasattr(verifier.options, "path") \
                and "train_verifier" in recipe.stages:
            verifier = msgspec.structs.replace(verifier, options=msgspec.structs.replace(
                verifier.options, path=str(ctx.run_dir / "train_verifier" / "model")))
        baseline = msgspec.structs.replace(baseline, run_dir=str(run_dir), model=model,
                                           verifier=verifier)
        baseline.source = cfg.baseline
        ctx.echo(f"erv: compare: baseline {cfg.baseline} into {run_dir} "
                 f"(from {ctx.run_dir / 'sft' / 'model'})")
        run_recipe(baseline, ctx.plugins, force=ctx.force, echo=ctx.echo)

        assert recipe.eval is not None and baseline.eval is not None
        ours_dir, base_dir = ctx.run_dir / "eval", run_dir / "eval"
        ours_m = _read_metrics(ours_dir)
        base_m = _read_metrics(base_dir)
        space = ctx.plugins.label_space(str(ours_m["dataset"]))
        diff = paired_difference(
            outcomes_from_judgements(ours_dir / "judgements.jsonl", space, recipe.eval.protocol),
            outcomes_from_judgements(base_dir / "judgements.jsonl", space,
                                     baseline.eval.protocol),
            bootstrap=recipe.eval.bootstrap, seed=recipe.eval.seed)
        base_name = cfg.baseline_name or baseline.name
        rows = [(base_name, base_m), (cfg.name, ours_m)]
        table = comparison_markdown(rows, diff, space.name)
        ctx.out.mkdir(parents=True, exist_ok=True)
        (ctx.out / "table.md").write_text(table + "\n", encoding="utf-8")
        grpo = {cfg.name: ctx.run_dir / "grpo" / "metrics.jsonl",
                base_name: run_dir / "grpo" / "metrics.jsonl"}
        curves = {name: {key.split("/")[1]: dict(zip(("first_fifth", "last_fifth"),
                                                      fifths(path, key)))
                         for key, _ in CURVES}
                  for name, path in grpo.items()}
        (ctx.out / "table.json").write_text(json.dumps(
            {"rows": [{"method": n, **{k: m.get(k) for k in (*METRICS, "ci", "n")}}
                      for n, m in rows],
             "difference": diff, "curves": curves}, indent=2) + "\n", encoding="utf-8")
        plot_curves([(base_name, grpo[base_name]), (cfg.name, grpo[cfg.name])],
                    ctx.out / "curves.png")
        ctx.echo("")
        ctx.echo(table)
        ctx.echo(f"erv: compare: wrote {ctx.out}/table.md, table.json, curves.png")
        summary: dict[str, Any] = {f"diff_{m}": diff[m] for m in DIFF_METRICS}
        for who, name in (("ours", cfg.name), ("baseline", base_name)):
            summary.update({f"{who}_{k}_{f}": round(v, 4) for k, fs in curves[name].items()
                            for f, v in fs.items() if not math.isnan(v)})
        return summary


def _read_metrics(out: Path) -> dict[str, Any]:
    path = out / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ErvError(f"{path}: cannot read metrics: {exc.strerror or exc}") from None

"""``erv reward INPUT``: score completions with the recipe's rewards and show the arithmetic."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING, Any

import click

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins
    from erv_plugins.rewards.engine import RewardEngine

CHUNK = 1024  # completions scored per engine call


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--recipe", type=click.Path(dir_okay=False), default=None,
              help="Take rewards, weights and the verifier from this recipe.")
@click.option("--verifier", "verifier_dir", type=click.Path(file_okay=False), default=None,
              help="A saved Hugging Face verifier directory (uses the 'hf' verifier plugin).")
@click.option("--tau", type=click.FloatRange(0.0, 1.0), default=None,
              help="Probability threshold of the explanation reward (paper 0.5, release 0.1).")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="At most this many labels per sentence (paper: 2).")
@click.option("--segmentation", type=click.Choice(["paper", "pragmatic"]), default=None,
              help="Sentence splitter: the release's regex or the pragmatic one.")
@click.option("--neutral-rule", type=click.Choice(["release", "paper"]), default=None,
              help="Neutral sentence: label set exactly {neutral} (release) or containing it.")
@click.option("--answer-mode", type=click.Choice(["paper", "release"]), default=None,
              help="paper: only <answer> counts; release: its single-line search and fall-back.")
@click.option("--no-neutral-filter", is_flag=True,
              help="Ablation: R_E = c / N always (no neutral filtering).")
@click.option("--paragraph", is_flag=True,
              help="Ablation: classify the whole explanation once (no sentence level).")
@click.option("--explain", is_flag=True,
              help="Per sentence: label set with probabilities, counted or neutral, and R_E.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input line.")
def reward(input_path: str, recipe: str | None, verifier_dir: str | None, tau: float | None,
           top_k: int | None, segmentation: str | None, neutral_rule: str | None,
           answer_mode: str | None, no_neutral_filter: bool, paragraph: bool, explain: bool,
           as_json: bool) -> None:
    """Score the completions in INPUT (JSONL, or - for stdin) with R = R_E + R_format +
    R_answer (paper eq. 5).

    Each line holds at least {"completion": "...", "label": "happiness", "dataset": "mafw"};
    "completion" may also be a list of chat messages. Settings come from --recipe or from
    the flags (flags override the recipe). Without a verifier the explanation reward is
    left out.

    \b
    Examples:
      erv reward samples.jsonl --verifier runs/paper/verifier/model --explain
      erv reward samples.jsonl --recipe recipes/release_0_5b.toml --json
      cat samples.jsonl | erv reward - --answer-mode release
    """
    from erv_plugins.plugins import get_plugins

    plugins = get_plugins()
    rows = _read_rows(input_path)
    overrides = {
        "explanation": {k: v for k, v in {
            "tau": tau, "top_k": top_k, "segmentation": segmentation,
            "neutral_rule": neutral_rule,
            "neutral_filter": False if no_neutral_filter else None,
            "sentence_level": False if paragraph else None,
        }.items() if v is not None},
        "answer": {"mode": answer_mode} if answer_mode else {},
    }
    verifier = _load_verifier(plugins, verifier_dir) if verifier_dir else None
    engine = _build_engine(plugins, recipe, verifier, overrides)
    if "label" not in {k for r in rows for k in r} and rows:
        raise ErvError(f"{input_path}: no line has a 'label' (the ground-truth emotion)")
    _check_rows(rows, engine, plugins, input_path)

    sums: dict[str, list[float]] = {}
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        scores = _score_chunk(engine, chunk, start, input_path, explain, as_json)
        for name, values in [("total", scores.total), *scores.per_reward.items()]:
            sums.setdefault(name, []).extend(v for v in values if not math.isnan(v))
    if not as_json and len(rows) > 1:
        means = "  ".join(f"{name} {sum(v) / len(v):.3f}" if v else f"{name} failed"
                          for name, v in sums.items())
        click.echo(f"mean over {len(rows)} completions: {means}")
    failed = {name: n for name, n in engine.failures.items() if n}
    if failed:  # a failed term is left out of the totals above: never a quiet success
        name = next(iter(failed))
        raise ErvError(f"{input_path}: reward {name!r} failed ({engine.last_errors.get(name)}); "
                       "the totals above leave it out")


def _check_rows(rows: list[dict[str, Any]], engine: RewardEngine, plugins: Plugins,
                path: str) -> None:
    """Refuse, as ``file:line: reason``, a row the rewards cannot score: no label, an
    unknown dataset, a label outside the dataset's label space."""
    shown = "<stdin>" if path == "-" else path
    rewards = [engine.reward(n) for n in engine.names]
    if not any("label" in getattr(r, "requires", ()) for r in rewards):
        return
    spaces = plugins.label_spaces()
    # Rows without a dataset are read in each label-reading reward's default label space.
    defaults = sorted({getattr(getattr(r, "options", None), "label_space", None) or "mafw"
                       for r in rewards if "label" in getattr(r, "requires", ())})
    for row in rows:
        where = f"{shown}:{row['_line']}"
        label = row.get("label")
        if label is None:
            raise ErvError(f"{where}: no 'label' (the ground-truth emotion)")
        dataset = row.get("dataset")
        if dataset is not None and not isinstance(dataset, str):
            raise ErvError(f"{where}: 'dataset' must be a string")
        names = [dataset] if dataset else defaults
        for name in names:
            space = spaces.get(name.lower())
            if space is None:
                raise ErvError(f"{where}: unknown dataset {name!r} (known: "
                               f"{', '.join(sorted(spaces))})")
            if space.normalize(label) not in space:
                raise ErvError(f"{where}: label {label!r} is not a {space.name.upper()} label "
                               f"({', '.join(space.labels)})")


def _read_rows(path: str) -> list[dict[str, Any]]:
    from erv_plugins.jsonl import iter_jsonl

    shown = "<stdin>" if path == "-" else path
    rows = []
    for where, number, row in iter_jsonl(path):
        completion = row.get("completion")
        if not isinstance(completion, (str, list)):
            raise ErvError(f"{where}: 'completion' must be a string or a list of chat messages")
        if "label" in row and not isinstance(row["label"], str):
            raise ErvError(f"{where}: 'label' must be a string")
        row["_line"] = number
        rows.append(row)
    if not rows:
        raise ErvError(f"{shown}: no completions (expected JSON lines with 'completion')")
    return rows


def _load_verifier(plugins: Plugins, path: str) -> Any:
    import msgspec

    from erv_plugins.errors import PluginError

    if not os.path.isdir(path):
        raise ErvError(f"--verifier {path}: no such directory")
    try:
        reg = plugins.get("verifier", "hf")
    except PluginError:
        raise ErvError(
            f"--verifier {path}: the Hugging Face verifier plugin 'hf' is not installed "
            "(erv_plugins.verifiers.hf); pass --recipe with another [verifier] instead"
        ) from None
    options = msgspec.convert({"path": path}, reg.options) if reg.options else None
    try:
        return reg.build(options)
    except ErvError:
        raise
    except Exception as exc:
        raise ErvError(f"--verifier {path}: cannot load the verifier: "
                       f"{type(exc).__name__}: {exc}") from exc


def _build_engine(plugins: Plugins, recipe_path: str | None, verifier: Any,
                  overrides: dict[str, dict[str, Any]]) -> RewardEngine:
    import msgspec

    from erv_plugins.recipe import Recipe, RewardSpec, load_recipe
    from erv_plugins.rewards.engine import RewardEngine

    if recipe_path is not None:
        recipe = load_recipe(recipe_path, plugins)
    else:
        rewards = {"format": RewardSpec(plugin="format"), "answer": RewardSpec(plugin="answer")}
        if verifier is not None:
            rewards["explanation"] = RewardSpec(plugin="explanation")
        elif overrides["explanation"]:
            raise ErvError("explanation flags given but no verifier: pass --verifier DIR "
                           "or a --recipe with a [verifier] table")
        for spec in rewards.values():
            reg = plugins.get("reward", spec.plugin or "")
            spec.options = reg.options() if reg.options else None
        recipe = Recipe(name="erv-reward", stages=[], rewards=rewards, source="erv reward")
    for spec in recipe.rewards.values():
        changes = overrides.get(spec.plugin or "", {})
        if changes and spec.options is not None:
            spec.options = msgspec.structs.replace(spec.options, **changes)
    columns = {"label", "dataset", "id", "video", "prompt"}
    return RewardEngine.from_recipe(recipe, plugins, verifier=verifier, columns=columns)


def _fmt(value: float) -> str:
    return "failed" if math.isnan(value) else f"{value:.3f}"


def _score_chunk(engine: RewardEngine, rows: list[dict[str, Any]], offset: int, path: str,
                 explain: bool, as_json: bool) -> Any:
    keys = sorted({k for r in rows for k in r} - {"completion", "prompt", "_line"})
    columns = {k: [r.get(k) for r in rows] for k in keys}
    completions = [r["completion"] for r in rows]
    try:
        batch = engine.make_batch(completions, columns)
    except (TypeError, ValueError) as exc:
        raise ErvError(f"{path}: {exc}") from None
    scores = engine.score_batch(batch)
    details = None
    if explain and "explanation" in engine.names:
        explainer = engine.reward("explanation")
        if hasattr(explainer, "explain"):
            try:
                details = explainer.explain(batch)
            except ValueError as exc:
                raise ErvError(f"{path}: {exc}") from None
    for i, row in enumerate(rows):
        line = row["_line"]
        if as_json:
            obj: dict[str, Any] = {"line": line, "total": _num(scores.total[i])}
            for name in engine.names:
                obj[name] = _num(scores.per_reward[name][i])
            if details is not None:
                obj["explanation_detail"] = _detail_json(details[i])
            click.echo(json.dumps(obj, ensure_ascii=False))
            continue
        parts = "  ".join(f"{n} {_fmt(scores.per_reward[n][i])}" for n in engine.names)
        click.echo(f"line {line}: total {_fmt(scores.total[i])}  {parts}")
        if explain:
            _print_explanation(engine, scores, i, row, details[i] if details else None)
    return scores


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


def _detail_json(d: Any) -> dict[str, Any]:
    return {
        "ground_truth": d.ground_truth, "c": d.c, "n": d.n, "n_neutral": d.n_neutral,
        "denominator": d.denominator, "formula": d.formula, "value": d.value,
        "sentences": [{"text": s.text, "labels": [[lab, round(p, 4)] for lab, p in s.labels],
                       "counted": s.counted, "neutral": s.neutral} for s in d.sentences],
    }


def _print_explanation(engine: RewardEngine, scores: Any, i: int, row: dict[str, Any],
                       d: Any) -> None:
    terms = " + ".join(f"{scores.weights[n]:g} x {n} {_fmt(scores.per_reward[n][i])}"
                       for n in engine.names)
    click.echo(f"  R = {terms} = {_fmt(scores.total[i])}")
    if d is None:
        return
    dataset = row.get("dataset") or "default"
    click.echo(f"  ground truth: {row.get('label')!s} ({dataset}) -> verifier label "
               f"{d.ground_truth or '-'}")
    if not d.sentences:
        click.echo("  explanation: no <think> text or no sentence -> R_E = 0")
        return
    click.echo(f"  explanation: {d.n} sentence(s)")
    for k, s in enumerate(d.sentences, 1):
        mark = "counted" if s.counted else ("neutral" if s.neutral else "-")
        if s.counted and s.neutral:
            mark = "counted, neutral"
        labels = ", ".join(f"{lab} {p:.2f}" for lab, p in s.labels)
        text = s.text if len(s.text) <= 70 else s.text[:67] + "..."
        click.echo(f"    {k}. [{mark}] {{{labels}}}  {json.dumps(text, ensure_ascii=False)}")
    if d.formula == "c / N":
        arithmetic = f"c / N = {d.c} / {d.n}"
    else:
        arithmetic = f"c / (N - N_neu) = {d.c} / ({d.n} - {d.n_neutral})"
    tail = f" = {d.value:.3f}" if d.denominator > 0 else " -> denominator 0, R_E = 0"
    click.echo(f"  R_E = {arithmetic}{tail}")

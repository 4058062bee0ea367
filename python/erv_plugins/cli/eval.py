"""``erv eval``: judge explanations and report EEA, FCR, EPC, WAR, UAR (paper section 4.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r}: expected KEY=VALUE", param_hint="--judge-option")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@click.command("eval")
@click.option("--predictions", type=click.Path(dir_okay=False), default=None,
              help="JSONL of model outputs, one {\"id\", \"completion\", \"label\"} a line.")
@click.option("--policy", type=click.Path(), default=None,
              help="Generate the completions with this policy checkpoint instead "
                   "(temperature 0.3, top_p 0.9, up to 2048 new tokens).")
@click.option("--dataset", default=None, metavar="NAME",
              help="Label space of the predictions: mafw, dfew (or emer); with --policy, "
                   "the dataset plugin to generate on.")
@click.option("--dataset-root", type=click.Path(file_okay=False), default=None,
              help="With --policy: where the dataset's files are.")
@click.option("--split", default="test", show_default=True, help="With --policy: the split.")
@click.option("--limit", type=int, default=None, help="Only the first N samples.")
@click.option("--temperature", type=float, default=0.3, show_default=True,
              help="With --policy: sampling temperature (the paper's evaluation setting).")
@click.option("--top-p", type=float, default=0.9, show_default=True,
              help="With --policy: nucleus sampling.")
@click.option("--max-new-tokens", type=int, default=2048, show_default=True,
              help="With --policy: longest completion.")
@click.option("--batch-size", type=int, default=4, show_default=True,
              help="With --policy: clips per generation call.")
@click.option("--device", default="auto", show_default=True,
              help="With --policy: cpu, cuda, cuda:1 ... (auto: cuda when present).")
@click.option("--protocol", type=click.Choice(["release", "paper", "erv"]), default="release",
              show_default=True,
              help="How predictions and judge replies are read (docs/fidelity.md). release: "
                   "the authors' eval scripts bit for bit (Table 1's numbers came from them); "
                   "paper: the label list permuted per sample (Figure 3), else as release; "
                   "erv: tolerant reply matching, failed requests left out of N.")
@click.option("--judge", "judge_name", default="openai", show_default=True,
              help="Judge plugin: openai (an OpenAI-compatible chat model) or verifier.")
@click.option("--base-url", default=None,
              help="openai judge: the server's base URL, e.g. http://localhost:8000/v1 "
                   "(default: api.openai.com).")
@click.option("--model", default=None,
              help="openai judge: the judge model (default gpt-4.1-mini, as in the paper).")
@click.option("--api-key-env", default=None,
              help="openai judge: environment variable holding the API key "
                   "(default OPENAI_API_KEY). The key itself is never written anywhere.")
@click.option("--verifier", "verifier_path", type=click.Path(exists=True, file_okay=False),
              default=None, help="verifier judge: a local verifier checkpoint directory (the "
                                 "hf verifier plugin), e.g. a copy of Rhatanii/Emo_Classifier.")
@click.option("--judge-option", "judge_options", multiple=True, metavar="KEY=VALUE",
              help="Any option of the judge plugin (VALUE may be JSON), e.g. concurrency=16.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output directory (judgements.jsonl, metrics.json, table.md, table.json, "
                   "confusion.png). Rerunning into it resumes.")
@click.option("--name", default=None,
              help="Method name in the table (default: the predictions file's name).")
@click.option("--bootstrap", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the confidence intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--compare", multiple=True, type=click.Path(exists=True), metavar="DIR",
              help="Place this earlier run (its directory or metrics.json) beside the new one "
                   "in the table; repeatable. Alone, just prints the table.")
@click.option("--paper", is_flag=True, help="Add the paper's Table-1 rows (0.5B) to the table.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def eval_(predictions: str | None, policy: str | None, dataset: str | None,
          dataset_root: str | None, split: str, limit: int | None, temperature: float,
          top_p: float, max_new_tokens: int, batch_size: int, device: str, protocol: str,
          judge_name: str,
          base_url: str | None, model: str | None, api_key_env: str | None,
          verifier_path: str | None, judge_options: tuple[str, ...], out: str | None,
          name: str | None, bootstrap: int, seed: int, compare: tuple[str, ...], paper: bool,
          no_progress: bool) -> None:
    """Judge the explanations of a model's outputs and score them as in Table 1.

    Each completion's <answer> is the prediction p; a judge reads only its <think>
    explanation and names the emotion j it argues for. Against the ground truth g:
    EEA = P(j=g), FCR = P(p=g and j=g), EPC = P(p=j), WAR, UAR, and FCR/WAR, per class
    and overall, with bootstrap intervals. Verdicts stream to DIR/judgements.jsonl; an
    interrupted evaluation resumes where it stopped, and the openai judge caches every
    reply, so a rerun asks nothing again.

    \b
    Examples:
      erv eval --predictions r1omni_mafw.jsonl --dataset mafw --judge openai \\
               --base-url http://localhost:8000/v1 --model Qwen2.5-7B-Instruct --out runs/r1
      erv eval --predictions ours.jsonl --dataset dfew --judge verifier \\
               --verifier checkpoints/verifier --out runs/v
      erv eval --compare runs/r1 --compare runs/ours --paper
    """
    from erv_plugins.errors import ErvError
    from erv_plugins.evaluation import tables

    entries = [tables.load_run(c) for c in compare]
    if predictions is None and policy is None:
        if not entries and not paper:
            raise ErvError("erv eval: give --predictions FILE (or --policy PATH) to evaluate, "
                           "or --compare DIR to print earlier runs")
        if paper:
            for line in tables.protocol_warnings(entries):
                click.echo(line, err=True)
            entries += list(tables.PAPER_TABLE1)
        click.echo(tables.table1_markdown(entries))
        # The table has point values only; each compared run's intervals follow it.
        for e in entries:
            if e.metrics.get("ci"):
                click.echo(f"{e.name} on {e.dataset}: " + tables.summary_line(e.metrics))
        return
    if predictions is not None and policy is not None:
        raise ErvError("erv eval: --predictions and --policy exclude each other")
    if out is None:
        raise ErvError("erv eval: --out DIR is required")
    if dataset is None:
        raise ErvError("erv eval: --dataset is required (mafw or dfew)")

    from erv_plugins.evaluation.stage import build_judge
    from erv_plugins.plugins import get_plugins

    plugins = get_plugins()
    raw: dict[str, Any] = dict(_parse_option(o) for o in judge_options)
    for flag, key, value in (("--base-url", "base_url", base_url), ("--model", "model", model),
                             ("--api-key-env", "api_key_env", api_key_env)):
        if value is not None:
            if judge_name != "openai":
                raise ErvError(f"erv eval: {flag} is an option of the openai judge, "
                               f"not of {judge_name!r}")
            raw[key] = value
    if verifier_path is not None:
        if judge_name != "verifier":
            raise ErvError(f"erv eval: --verifier is an option of the verifier judge, "
                           f"not of {judge_name!r}")
        raw.update(plugin="hf", options={**raw.get("options", {}), "path": verifier_path})
    from erv_plugins.evaluation.protocols import judge_request_defaults

    judge = build_judge(plugins, judge_name, judge_request_defaults(protocol, judge_name, raw),
                        where="erv eval: --judge-option")
    out_dir = Path(out)
    from erv_plugins.locking import hold

    # One writer per --out, generation included; released when the command ends.
    click.get_current_context().with_resource(hold(out_dir, "erv eval"))
    if policy is not None:
        from erv_plugins.evaluation.generate import generate_for_dataset

        pred_path, label_space = generate_for_dataset(
            plugins, policy, dataset, root=dataset_root, split=split, limit=limit,
            out=out_dir, echo=click.echo, progress=not no_progress, temperature=temperature,
            top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device,
            seed=seed)
        run_name = name or Path(policy).name
    else:
        assert predictions is not None
        label_space = plugins.label_space(dataset)
        pred_path = Path(predictions)
        run_name = name or pred_path.stem

    from erv_plugins.evaluation.run import evaluate, read_predictions

    preds = read_predictions(pred_path)
    if limit is not None:
        preds = preds[:limit]
    result = evaluate(preds, label_space, judge, out_dir, run_name=run_name,
                      protocol=protocol, bootstrap=bootstrap, seed=seed,
                      progress=not no_progress, echo=click.echo)
    tables.report(result.metrics, entries, paper=paper, echo=click.echo)
    stats = getattr(judge, "stats", None)
    if stats:
        click.echo("judge: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    click.echo(f"wrote {out_dir}/metrics.json, table.md, table.json, judgements.jsonl, "
               "confusion.png")
    if result.failed:
        first_id, first_error = next(iter(sorted(result.failed.items())))
        counted = (f"the metrics above count them as neutral, as the {protocol} protocol "
                   "does" if protocol != "erv" else
                   f"the metrics above cover the {result.metrics['judged']} judged")
        raise ErvError(
            f"{len(result.failed)} of {len(preds)} samples could not be judged (e.g. "
            f"{first_id!r}: {first_error}); {counted}. Run the same command again to ask "
            "for them again.")

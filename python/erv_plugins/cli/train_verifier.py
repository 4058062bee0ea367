"""``erv train-verifier``: fine-tune the Emotional Rationale Verifier (paper section 3.2)."""

from __future__ import annotations

import click


@click.command("train-verifier")
@click.option("--train", "train_files", multiple=True, type=click.Path(dir_okay=False),
              metavar="FILE", help="Training data (repeatable): JSONL with {\"text\", "
              "\"labels\"} per line; an EMER .csv or a MERR-fine .json is read as such.")
@click.option("--base", type=click.Path(), metavar="DIR",
              help="Starting checkpoint: a local directory (or a hub id already in the "
              "local HF cache), e.g. roberta-base-go_emotions; 'tiny' builds a tiny one.")
@click.option("--out", type=click.Path(file_okay=False), metavar="DIR",
              help="Where the trained verifier, metrics.json and metrics.png go.")
@click.option("--eval", "eval_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Held-out data (default: --eval-fraction of the training data).")
@click.option("--epochs", type=float, default=None, help="Epochs (paper: 10).")
@click.option("--batch-size", type=int, default=None, help="Batch size (paper: 64).")
@click.option("--lr", type=float, default=None, help="Learning rate (paper: 3e-5).")
@click.option("--label-space", default=None, metavar="NAME",
              help="The verifier's labels: goemotions (paper), mafw, dfew, emer "
              "(default: the base checkpoint's own id2label).")
@click.option("--reinit-head", is_flag=True,
              help="Start a new classification head over --label-space.")
@click.option("--max-length", type=int, default=None, help="Tokens per text (default 128).")
@click.option("--eval-fraction", type=float, default=None,
              help="Held-out share when no --eval is given (default 0.1).")
@click.option("--warmup-ratio", type=float, default=None, help="Linear warmup share (0).")
@click.option("--seed", type=int, default=None, help="Seed for the split and training (42).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 or auto (default auto).")
@click.option("--recipe", type=click.Path(dir_okay=False), metavar="RECIPE",
              help="Take everything from RECIPE's [train_verifier] table instead; --out "
              "then defaults to <run_dir>/verifier.")
def train_verifier(train_files: tuple[str, ...], base: str | None, out: str | None,
                   eval_file: str | None, epochs: float | None, batch_size: int | None,
                   lr: float | None, label_space: str | None, reinit_head: bool,
                   max_length: int | None, eval_fraction: float | None,
                   warmup_ratio: float | None, seed: int | None, device: str | None,
                   recipe: str | None) -> None:
    """Fine-tune a multi-label emotion classifier on explanation texts.

    BCE over the checkpoint's labels with the paper's defaults (10 epochs, batch 64,
    lr 3e-5). Labels may be named as in the checkpoint's id2label or in a dataset's words
    (happiness, angry, worried, ...), which the release's label map translates. OUT
    receives a checkpoint that `erv reward --verifier OUT` loads, metrics.json (micro/macro
    F1, per-label F1, mAP, best tau) and metrics.png.

    \b
    Examples:
      erv train-verifier --train pseudo.jsonl --train emer.csv \\
          --base models/roberta-base-go_emotions --out verifiers/erv
      erv train-verifier --recipe recipes/paper_0_5b.toml
    """
    from pathlib import Path

    from erv_plugins.errors import ErvError

    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                 "max_length": max_length, "eval_fraction": eval_fraction,
                 "warmup_ratio": warmup_ratio, "seed": seed, "device": device}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if recipe is not None:
        if train_files or base or eval_file:
            raise ErvError("--recipe takes the data and base from the recipe; "
                           "drop --train/--base/--eval or drop --recipe")
        _from_recipe(recipe, out, overrides, label_space, reinit_head)
        return
    if not train_files or not base or not out:
        raise ErvError("train-verifier needs --train FILE, --base DIR and --out DIR "
                       "(or --recipe RECIPE)")
    from erv_plugins.plugins import get_plugins
    from erv_plugins.verifiers.training import TINY_BASE, read_records
    from erv_plugins.verifiers.training import train_verifier as train

    records = [r for f in train_files for r in read_records(f)]
    held = read_records(eval_file) if eval_file else None
    labels = get_plugins().label_space(label_space).labels if label_space else None
    if base == TINY_BASE:
        from erv_plugins.verifiers.tiny import build_tiny_verifier

        base = str(build_tiny_verifier(Path(out) / "base", labels=labels or
                                       get_plugins().label_space("mafw").labels))
    train(records, base=base, out=out, eval=held, labels=labels, reinit_head=reinit_head,
          echo=click.echo, **overrides)
    click.echo(f"wrote {Path(out) / 'metrics.json'} and {Path(out) / 'metrics.png'}")


def _from_recipe(path: str, out: str | None, overrides: dict[str, object],
                 label_space: str | None, reinit_head: bool) -> None:
    from pathlib import Path

    import msgspec

    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import StageContext
    from erv_plugins.errors import ErvError
    from erv_plugins.verifiers.stage import VerifierStage

    plugins = get_plugins()
    recipe = load_recipe(path, plugins)
    if recipe.train_verifier is None:
        raise ErvError(f"{path}: the recipe has no [train_verifier] table")
    changes: dict[str, object] = dict(overrides)
    if label_space:
        changes["label_space"] = label_space
    if reinit_head:
        changes["reinit_head"] = True
    recipe.train_verifier = msgspec.structs.replace(recipe.train_verifier, **changes)
    run_dir = recipe.resolved_run_dir()
    target = Path(out) if out else run_dir / "train_verifier"
    target.mkdir(parents=True, exist_ok=True)
    summary = VerifierStage()(StageContext(recipe, run_dir, target, plugins, echo=click.echo))
    click.echo(f"verifier checkpoint: {summary['model']}")

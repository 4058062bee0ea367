"""``erv data``: write the synthetic demo data; decode a recipe's clips once to check them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from erv_plugins.cli.options import recipe_argument
from erv_plugins.errors import ErvError

# The paper's 0.5B policy: 8 frames of 224 px, whisper-large-v3 (128 mels, 30 s).
DEFAULT_MEDIA: dict[str, Any] = {"frames": 8, "image_size": 224, "n_mels": 128,
                                 "chunk_length": 30.0, "aspect_ratio": "pad"}


@click.group()
def data() -> None:
    """Datasets and clips: synthetic demo data, checks of a recipe's clips."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@data.command()
@click.option("--out", "out_dir", default="data/synthetic", show_default=True,
              type=click.Path(file_okay=False), help="Directory to write the data set into.")
@click.option("--per-label", default=4, show_default=True, type=click.IntRange(min=1),
              help="Clips per emotion (every 4th, from the 2nd, goes to the test split).")
@click.option("--labels", default="happiness,sadness,anger,neutral", show_default=True,
              help="Emotions, in MAFW's words, comma-separated.")
@click.option("--layouts", default="mafw,dfew,jsonl,emer,merr", show_default=True,
              help="Dataset layouts to write, comma-separated.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--size", default=32, show_default=True, type=click.IntRange(min=16),
              help="Frame width and height in pixels.")
@click.option("--seconds", default=1.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--fps", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--drift", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of each label's train clips whose explanation argues for another "
                   "emotion while the label stays right (as R1-Omni's outputs do).")
@click.option("--drift-to", default="any", show_default=True, type=click.Choice(["any", "next"]),
              help="Which emotion a drifting explanation argues for: any other (drawn "
                   "uniformly) or always the next label (one systematic confusion).")
@click.option("--test-every", default=4, show_default=True, type=click.IntRange(min=2),
              help="Every N-th clip of a label, from the 2nd, goes to the test split.")
@click.option("--explanations", default="varied", show_default=True,
              type=click.Choice(["varied", "short"]),
              help="Explanation templates: three phrasings, or one short one.")
def synth(out_dir: str, per_label: int, labels: str, layouts: str, seed: int, size: int,
          seconds: float, fps: int, drift: float, drift_to: str, test_every: int,
          explanations: str) -> None:
    """Write small synthetic mp4 clips (a colour and a tone per emotion) with labels and
    explanations, laid out as MAFW, DFEW, EMER, MERR-fine and a JSONL manifest.

    The default demo data and the test data: a tiny model can learn the emotion from the
    colour or the tone. Same seed, same files."""
    from erv_plugins.datasets.synthetic import write_synthetic

    try:
        result = write_synthetic(out_dir, per_label, _csv(labels), _csv(layouts), seed,
                                 seconds=seconds, fps=fps, size=size, drift=drift,
                                 drift_to=drift_to, test_every=test_every,
                                 explanations=explanations,
                                 progress=True)
    except ValueError as exc:
        raise ErvError(str(exc)) from None
    splits = {s: sum(c.split == s for c in result.clips) for s in ("train", "test")}
    drifting = sum(c.drifts for c in result.clips)
    click.echo(f"wrote {len(result.clips)} clips to {result.root} "
               f"({splits['train']} train, {splits['test']} test"
               + (f"; {drifting} drifting explanations" if drifting else "") + ")")
    roots = {"mafw": "mafw", "dfew": "dfew", "emer": "emer", "merr": "merr",
             "jsonl": "manifest.jsonl"}
    for layout in result.files:
        click.echo(f"  {layout:<6} {Path(out_dir) / roots[layout]}")


def _media_settings(recipe: Any) -> dict[str, Any]:
    """decode_clip settings of the recipe's model, as its model plugin says (a checkpoint
    dir, a tiny model, the family's default); the paper's 0.5B policy without a [model]."""
    model = recipe.model
    if model is None:
        return dict(DEFAULT_MEDIA)
    from erv_plugins.hub import local_model
    from erv_plugins.plugins import get_plugins

    factory = get_plugins().get("model", model.plugin).factory
    settings = getattr(factory, "media_settings", None)
    if not callable(settings):
        return dict(DEFAULT_MEDIA)
    path = (str(local_model(model.path, where=f"{recipe.source}: $.model.path"))
            if model.path else None)
    return dict(settings(model.options, path))


def _recipe_datasets(recipe: Any) -> list[tuple[str, Any]]:
    specs: list[tuple[str, Any]] = []
    for table in ("sft", "grpo", "eval"):
        section = getattr(recipe, table, None)
        spec = getattr(section, "dataset", None) if section is not None else None
        if spec is not None:
            specs.append((f"{table}.dataset", spec))
    return specs


@data.command()
@recipe_argument
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Decoded-clip cache to warm [default: the model's cache_dir, else "
                   "<run dir>/cache/clips].")
@click.option("--no-cache", is_flag=True, help="Decode without reading or writing a cache.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="DataLoader worker processes for decoding.")
def check(recipe: str, cache_dir: str | None, no_cache: bool, workers: int) -> None:
    """Decode every clip of RECIPE's datasets once, with the model's media settings.

    Reports each file that is missing or cannot be decoded and each clip without audio
    (it gets silence), with counts per dataset, and warms the cache so training never
    decodes a clip twice. Exit code 2 when a dataset with on_error = "stop" has errors."""
    from erv_plugins.datasets.base import build_dataset
    from erv_plugins.datasets.media import decode_many
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe

    loaded = load_recipe(recipe)
    settings = _media_settings(loaded)
    if not no_cache and cache_dir is None:
        model_cache = getattr(getattr(loaded.model, "options", None), "cache_dir", None)
        cache_dir = model_cache or str(loaded.resolved_run_dir() / "cache" / "clips")
    click.echo(f"media: {settings['frames']} frames of {settings['image_size']} px, "
               f"{settings['n_mels']} mels x {settings['chunk_length']} s; cache "
               f"{'off' if no_cache else cache_dir}")
    specs = _recipe_datasets(loaded)
    if not specs:
        raise ErvError(f"{recipe}: no [sft], [grpo] or [eval] dataset to check")
    fatal = []
    plugins = get_plugins()
    for where, spec in specs:
        dataset = build_dataset(spec, plugins)
        samples = [s for s in dataset.samples() if s.video is not None]
        report = decode_many([s.video for s in samples], workers=workers,
                             cache_dir=None if no_cache else cache_dir, **settings)
        skipped = getattr(dataset, "skipped", {})
        errors = {**skipped, **report["errors"]}
        click.echo(f"{where} ({spec.plugin}, split {spec.split}): {len(samples) + len(skipped)} "
                   f"clips, {report['ok']} ok, {len(report['silent'])} without audio, "
                   f"{len(errors)} errors")
        for path in report["silent"]:
            click.echo(f"  no audio (silence used): {path}")
        for path, reason in errors.items():
            click.echo(f"  error: {path}: {reason}")
        if errors and getattr(dataset, "on_error", "skip") == "stop":
            fatal.append(f"{where}: {len(errors)} clips failed (on_error = \"stop\")")
    if fatal:
        raise ErvError("; ".join(fatal))

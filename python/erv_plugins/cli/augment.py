"""``erv augment``: build the verifier's training data with an LLM (paper appendix B.1)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

_BASE_URL_ENV = "OPENAI_BASE_URL"


def _chat_options(default_model: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options every augmentation command shares: where to ask and how hard to push.

    Unset flags come from --recipe's [train_verifier.augment] table, else the defaults shown.
    """

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--recipe", type=click.Path(dir_okay=False), default=None,
                         help="Take the API settings from RECIPE's [train_verifier.augment]."),
            click.option("--model", default=None,
                         help=f"Chat model name at the API [default: {default_model}]."),
            click.option("--base-url", default=None, metavar="URL",
                         help=f"OpenAI-compatible API base URL (default ${_BASE_URL_ENV}, "
                         "else OpenAI), e.g. http://127.0.0.1:8000/v1 for a local vLLM."),
            click.option("--api-key-env", default=None, metavar="NAME",
                         help="Environment variable holding the API key [default: "
                         "OPENAI_API_KEY] (the key itself is never printed or written)."),
            click.option("--concurrency", type=int, default=None,
                         help="Requests in flight at once [default: 8]."),
            click.option("--timeout", "timeout_s", type=float, default=None,
                         help="Seconds per request [default: 60]."),
            click.option("--retries", type=int, default=None,
                         help="Retries on 429, 5xx, timeouts [default: 5]."),
            click.option("--backoff", "backoff_s", default=1.0, show_default=True,
                         help="First backoff in seconds (doubles each retry, max 60)."),
            click.option("--limit", type=int, default=None,
                         help="Ask at most N new questions this run (a budget)."),
            click.option("--price-in", type=float, default=None,
                         help="USD per 1M prompt tokens, for the cost count [default: 0]."),
            click.option("--price-out", type=float, default=None,
                         help="USD per 1M completion tokens, for the cost count [default: 0]."),
            click.option("--seed", default=0, show_default=True,
                         help="Seed for label permutations and exemplar draws."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _settings(task: str, recipe: str | None, flags: dict[str, Any], temperature: float,
              backoff_s: float) -> Any:
    """ChatSettings from the flags, then the recipe's [train_verifier.augment], then defaults."""
    from erv_plugins.augment.runner import ChatSettings
    from erv_plugins.errors import ErvError
    from erv_plugins.recipe import AugmentConfig

    config = AugmentConfig()
    if recipe is not None:
        from erv_plugins.recipe import load_recipe

        loaded = load_recipe(recipe)
        if loaded.train_verifier is None or loaded.train_verifier.augment is None:
            raise ErvError(f"{recipe}: no [train_verifier.augment] table")
        config = loaded.train_verifier.augment
    model = config.label_model if task == "label" else config.complement_model

    def pick(name: str, default: Any) -> Any:
        return flags[name] if flags.get(name) is not None else default

    return ChatSettings(
        model=pick("model", model),
        base_url=pick("base_url", config.base_url) or os.environ.get(_BASE_URL_ENV),
        api_key_env=pick("api_key_env", config.api_key_env),
        concurrency=pick("concurrency", config.concurrency),
        timeout_s=pick("timeout_s", config.timeout_s),
        max_retries=pick("retries", config.retries), backoff_s=backoff_s,
        price_in=pick("price_in", config.price_in), price_out=pick("price_out", config.price_out),
        temperature=temperature)


def _report(stats: Any, out: str, base_url: str | None = None) -> None:
    import json
    from pathlib import Path

    from erv_plugins.augment.runner import AugmentError, side_files

    rejects, failures = side_files(Path(out))
    click.echo(f"{out}: {stats.line()}")
    if stats.rejected:
        click.echo(f"  rejected replies: {rejects}")
    if stats.failed:
        click.echo(f"  failed requests: {failures} (asked again on the next run)")
    summary = Path(out).with_name(Path(out).name.removesuffix(".jsonl") + ".summary.json")
    summary.write_text(json.dumps(stats.to_json(), indent=2) + "\n")
    if stats.pending and stats.failed == stats.pending:
        from erv_plugins.judges.chat import _without_credentials

        raise AugmentError(
            f"{out}: all {stats.pending} requests failed (last: {stats.last_error}); check "
            f"the server at {_without_credentials(base_url)} and rerun (the failed ones are "
            "asked again)")


def _lock(out: str) -> None:
    """One writer per --out (all rounds of a command); released when the command ends."""
    from erv_plugins.locking import hold

    click.get_current_context().with_resource(hold(out, "erv augment", directory=False))


@click.group()
def augment() -> None:
    """Make verifier training data with an OpenAI-compatible chat API.

    \b
    label       pseudo-label explanations with up to two emotions (paper Figure 6)
    complement  write descriptions for rare emotions from two exemplars (Figure 7)

    Results are appended to the output JSONL as they arrive; run the same command again
    to resume after an interruption: nothing already answered is asked again.
    """


@augment.command("label")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Results JSONL ({id, text, labels, source}); rejects go beside it.")
@click.option("--labels", "label_space", default="mafw", show_default=True,
              help="Label list: a label space (mafw, dfew, emer, goemotions) or a comma list.")
@click.option("--max-labels", default=2, show_default=True, help="Labels allowed per reply.")
@click.option("--source", default="pseudo", show_default=True,
              help="Source name in the results (Table-5 rows, e.g. dfew, mafw).")
@_chat_options("gpt-4.1")
def label(inputs: tuple[str, ...], out: str, label_space: str, max_labels: int, source: str,
          recipe: str | None, backoff_s: float, limit: int | None, seed: int, quiet: bool,
          **flags: Any) -> None:
    """Pseudo-label the explanations in INPUTS (JSONL with "id" and "text").

    \b
    Example (R1-Omni explanations on MAFW's training clips):
      erv augment label r1omni_mafw_train.jsonl --out pseudo_mafw.jsonl --source mafw
    """
    from erv_plugins.augment.tasks import pseudo_label
    from erv_plugins.labels import BUILTIN_LABEL_SPACES

    space = BUILTIN_LABEL_SPACES.get(label_space)
    labels = space.labels if space else tuple(x.strip() for x in label_space.split(",")
                                              if x.strip())
    settings = _settings("label", recipe, flags, temperature=0.0, backoff_s=backoff_s)
    _lock(out)
    stats = pseudo_label(inputs, out, settings, labels=labels, max_labels=max_labels,
                         source=source, seed=seed, limit=limit, progress=not quiet)
    _report(stats, out, settings.base_url)


@augment.command("complement")
@click.option("--pseudo", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Pseudo-labelled JSONL (repeatable): exemplars and starting counts.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Results JSONL ({id, text, labels, source: complemented}).")
@click.option("--emotions", default="disgust,fear,contempt,disappointment,neutral,helplessness",
              show_default=True, help="Comma list of the labels to complement.")
@click.option("--target", default=1000, show_default=True,
              help="Examples wanted per label, pseudo-labelled ones included.")
@click.option("--no-count-existing", is_flag=True,
              help="Generate TARGET new descriptions per label regardless of the pseudo data.")
@_chat_options("gpt-4.1-mini")
def complement(pseudo: tuple[str, ...], out: str, emotions: str, target: int,
               no_count_existing: bool, recipe: str | None, backoff_s: float,
               limit: int | None, seed: int, quiet: bool, **flags: Any) -> None:
    """Generate descriptions for under-represented emotions until each has TARGET.

    \b
    Example:
      erv augment complement --pseudo pseudo_dfew.jsonl --pseudo pseudo_mafw.jsonl \\
          --out complemented.jsonl --target 1000
    """
    from erv_plugins.augment.tasks import complement as run_complement

    settings = _settings("complement", recipe, flags, temperature=1.0, backoff_s=backoff_s)
    _lock(out)
    wanted = tuple(e.strip() for e in emotions.split(",") if e.strip())
    stats = run_complement(pseudo, out, settings, emotions=wanted, target=target,
                           count_existing=not no_count_existing, seed=seed, limit=limit,
                           progress=not quiet)
    _report(stats, out, settings.base_url)

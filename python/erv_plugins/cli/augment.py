"""``erv augment``: build the verifier's training data with an LLM (paper appendix B.1)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

_BASE_URL_ENV = "OPENAI_BASE_URL"


def _chat_options(default_model: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options every augmentation command shares: where to ask and how hard to push."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--model", default=default_model, show_default=True,
                         help="Chat model name at the API."),
            click.option("--base-url", default=None, metavar="URL",
                         help=f"OpenAI-compatible API base URL (default ${_BASE_URL_ENV}, "
                         "else OpenAI), e.g. http://127.0.0.1:8000/v1 for a local vLLM."),
            click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                         metavar="NAME", help="Environment variable holding the API key "
                         "(the key itself is never printed or written)."),
            click.option("--concurrency", default=8, show_default=True,
                         help="Requests in flight at once."),
            click.option("--timeout", "timeout_s", default=60.0, show_default=True,
                         help="Seconds per request."),
            click.option("--retries", default=5, show_default=True,
                         help="Retries on 429, 5xx, timeouts (exponential backoff)."),
            click.option("--backoff", "backoff_s", default=1.0, show_default=True,
                         help="First backoff in seconds (doubles each retry, max 60)."),
            click.option("--limit", type=int, default=None,
                         help="Ask at most N new questions this run (a budget)."),
            click.option("--price-in", default=0.0, show_default=True,
                         help="USD per 1M prompt tokens, for the cost count."),
            click.option("--price-out", default=0.0, show_default=True,
                         help="USD per 1M completion tokens, for the cost count."),
            click.option("--seed", default=0, show_default=True,
                         help="Seed for label permutations and exemplar draws."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _settings(model: str, base_url: str | None, api_key_env: str, concurrency: int,
              timeout_s: float, retries: int, backoff_s: float, price_in: float,
              price_out: float, temperature: float | None) -> Any:
    from erv_plugins.augment.runner import ChatSettings

    return ChatSettings(model=model, base_url=base_url or os.environ.get(_BASE_URL_ENV),
                        api_key_env=api_key_env, concurrency=concurrency, timeout_s=timeout_s,
                        max_retries=retries, backoff_s=backoff_s, price_in=price_in,
                        price_out=price_out, temperature=temperature)


def _report(stats: Any, out: str) -> None:
    import json
    from pathlib import Path

    from erv_plugins.augment.runner import side_files

    rejects, failures = side_files(Path(out))
    click.echo(f"{out}: {stats.line()}")
    if stats.rejected:
        click.echo(f"  rejected replies: {rejects}")
    if stats.failed:
        click.echo(f"  failed requests: {failures} (asked again on the next run)")
    summary = Path(out).with_name(Path(out).name.removesuffix(".jsonl") + ".summary.json")
    summary.write_text(json.dumps(stats.to_json(), indent=2) + "\n")


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
          model: str, base_url: str | None, api_key_env: str, concurrency: int,
          timeout_s: float, retries: int, backoff_s: float, limit: int | None,
          price_in: float, price_out: float, seed: int, quiet: bool) -> None:
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
    settings = _settings(model, base_url, api_key_env, concurrency, timeout_s, retries,
                         backoff_s, price_in, price_out, temperature=0.0)
    stats = pseudo_label(inputs, out, settings, labels=labels, max_labels=max_labels,
                         source=source, seed=seed, limit=limit, progress=not quiet)
    _report(stats, out)


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
               no_count_existing: bool, model: str, base_url: str | None, api_key_env: str,
               concurrency: int, timeout_s: float, retries: int, backoff_s: float,
               limit: int | None, price_in: float, price_out: float, seed: int,
               quiet: bool) -> None:
    """Generate descriptions for under-represented emotions until each has TARGET.

    \b
    Example:
      erv augment complement --pseudo pseudo_dfew.jsonl --pseudo pseudo_mafw.jsonl \\
          --out complemented.jsonl --target 1000
    """
    from erv_plugins.augment.tasks import complement as run_complement

    settings = _settings(model, base_url, api_key_env, concurrency, timeout_s, retries,
                         backoff_s, price_in, price_out, temperature=1.0)
    wanted = tuple(e.strip() for e in emotions.split(",") if e.strip())
    stats = run_complement(pseudo, out, settings, emotions=wanted, target=target,
                           count_existing=not no_count_existing, seed=seed, limit=limit,
                           progress=not quiet)
    _report(stats, out)

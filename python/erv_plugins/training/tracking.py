"""Experiment trackers (``[logging] report_to``) for the training stages.

TRL and transformers' Trainer report every logged scalar to each tracker: for GRPO, each
reward's ``rewards/<name>/mean`` and ``/std`` (TRL) and the reward engine's statistics as
``erv/<reward>/<statistic>`` (R_E's sentences per explanation, neutral share, ...). erv adds
the per-completion table: TRL logs it to W&B and Trackio itself (``log_completions``);
``CompletionTableCallback`` writes it to TensorBoard as a text summary. Its columns: the
prompt id, the completion, each reward, the advantage and the explanation's label sets (one
``label,label`` group per sentence, ``|`` between sentences).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from erv_plugins.recipe import Recipe
    from erv_plugins.rewards.engine import RewardEngine


def report_to(recipe: Recipe) -> list[str] | str:
    """TRL's / transformers' ``report_to`` for this recipe ("none" without trackers)."""
    return list(recipe.logging.report_to) or "none"


def use_trackers(recipe: Recipe, stage_dir: Path) -> None:
    """Each tracker's files go under ``stage_dir`` (TENSORBOARD_LOGGING_DIR, WANDB_DIR)."""
    trackers = recipe.logging.report_to
    if "tensorboard" in trackers:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(stage_dir / "tensorboard")
    if "wandb" in trackers:
        (stage_dir / "wandb").mkdir(parents=True, exist_ok=True)
        os.environ["WANDB_DIR"] = str(stage_dir / "wandb")
        os.environ.setdefault("WANDB_PROJECT", "erv")
        os.environ.setdefault("WANDB_NAME", f"{recipe.name}-{stage_dir.name}")


def label_set_text(detail: Any) -> str:
    """One completion's label sets (``ExplanationDetail``): ``joy,love | neutral``."""
    return " | ".join(",".join(label for label, _ in s.labels) or "-" for s in detail.sentences)


def with_completion_columns(functions: list[Callable[..., Any]], engine: RewardEngine
                            ) -> list[Callable[..., Any]]:
    """TRL reward functions whose first one also hands TRL's completion table the prompt id
    and the explanation's label sets (TRL's ``log_extra``); the scores are unchanged."""
    if not functions:
        return functions
    first = functions[0]
    explainers = [t for t in engine.terms if callable(getattr(t.reward, "explain", None))]

    def reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> Any:
        log_extra = kwargs.get("log_extra")
        out = first(prompts=prompts, completions=completions, **kwargs)
        if log_extra is not None:
            if "id" in kwargs:
                log_extra("id", [str(i) for i in kwargs["id"]])
            step = int(getattr(kwargs.get("trainer_state"), "global_step", 0) or 0)
            columns = {k: v for k, v in kwargs.items() if k not in ("log_extra", "log_metric",
                                                                    "trainer_state")}
            from erv_plugins.rewards.engine import completion_text

            texts = [completion_text(c) for c in completions or []]
            batch = engine.make_batch(texts, columns, prompts=prompts, step=step)
            for term in explainers:
                details = term.reward.explain(batch)
                log_extra(f"{term.name}_label_sets", [label_set_text(d) for d in details])
        return out

    reward.__name__ = reward.__qualname__ = first.__name__
    return [reward, *functions[1:]]


def completion_rows(logs: dict[str, Any]) -> list[dict[str, Any]]:
    """TRL's ``trainer._logs`` (the last logged completions) as one dict per completion."""
    prompts, completions = list(logs.get("prompt", ())), list(logs.get("completion", ()))
    rewards = {name: list(v) for name, v in logs.get("rewards", {}).items()}
    extra = {name: list(v) for name, v in logs.get("extra", {}).items()}
    advantages = list(logs.get("advantages", ()))
    ids = extra.get("id", [])
    rows = []
    for i, completion in enumerate(completions):
        row: dict[str, Any] = {"id": ids[i] if i < len(ids) else ""}
        row["prompt"] = _text(prompts[i]) if i < len(prompts) else ""
        row["completion"] = _text(completion)
        for name, values in rewards.items():
            row[name] = values[i] if i < len(values) else math.nan
        row["advantage"] = advantages[i] if i < len(advantages) else math.nan
        for name, values in extra.items():
            if name != "id":
                row[name] = values[i] if i < len(values) else ""
        rows.append(row)
    return rows


def _text(value: Any) -> str:
    from erv_plugins.rewards.engine import completion_text

    return completion_text(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as a Markdown table (TensorBoard renders text summaries as Markdown)."""
    if not rows:
        return ""
    keys = [k for k in rows[0] if k != "prompt"]

    def cell(v: Any) -> str:
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        # One line per row: every run of whitespace or control characters becomes a space.
        return " ".join(text.split()).replace("|", "\\|")

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def completion_table_callback(trainer: Any) -> Any:
    """A ``TrainerCallback`` writing the completion table of each logging step to the
    TensorBoard writer of transformers' ``TensorBoardCallback`` (tag ``completions``)."""
    from transformers import TrainerCallback
    from transformers.integrations import TensorBoardCallback

    class CompletionTableCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kwargs: Any) -> None:
            # Only the logging steps that carry rewards (not the run's closing summary).
            if not state.is_world_process_zero or not any(
                    k.startswith("rewards/") for k in logs or {}):
                return
            writer = next((cb.tb_writer for cb in trainer.callback_handler.callbacks
                           if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None),
                          None)
            rows = completion_rows(getattr(trainer, "_logs", {}))
            if writer is None or not rows:
                return
            writer.add_text("completions", markdown_table(rows), state.global_step)
            writer.flush()

    return CompletionTableCallback()

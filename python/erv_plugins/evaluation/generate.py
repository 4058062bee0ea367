"""Generation mode of the evaluation: the policy writes a completion for every test clip.

Sampling as the paper evaluates: temperature 0.3, top_p 0.9, up to 2048 new tokens. The
completions go to ``<out>/predictions.jsonl`` (id, completion, label), the same format
``erv eval --predictions`` reads, so generated and external outputs are scored alike.
Rows are appended as they are generated; a rerun skips the samples already there.

The omni policy (``erv_plugins.models.omni``: ``load_omni(path, device, dtype) ->
(model, processor)``) comes from the media part of erv; without it this mode says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erv_plugins.errors import ErvError
from erv_plugins.labels import LabelSpace

if TYPE_CHECKING:
    from erv_plugins.datasets.base import Sample
    from erv_plugins.plugins import Plugins
    from erv_plugins.stages import StageContext

PREDICTIONS = "predictions.jsonl"
# The question of the release's prompt (after the video and audio placeholders).
QUESTION = ("As an emotional recognition expert; throughout the video, which emotion conveyed "
            "by the characters is the most obvious to you? Output the thinking process in "
            "<think> </think> and final emotion in <answer> </answer> tags.")


def _load_omni() -> Callable[..., Any]:
    try:
        from erv_plugins.models.omni import load_omni  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ErvError(
            "generation mode needs the omni policy (erv_plugins.models.omni.load_omni), which "
            f"this installation lacks ({exc}); score existing outputs with --predictions FILE"
        ) from None
    return load_omni


def _done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interruption: generated again
    return ids


def generate_predictions(policy: str, samples: Sequence[Sample], out: Path, *,
                         temperature: float = 0.3, top_p: float = 0.9,
                         max_new_tokens: int = 2048, device: str = "auto",
                         dtype: str = "auto", progress: bool = True) -> Path:
    """Generate one completion per sample into ``out/predictions.jsonl`` (resumable)."""
    load_omni = _load_omni()
    import torch

    out.mkdir(parents=True, exist_ok=True)
    path = out / PREDICTIONS
    done = _done_ids(path)
    todo = [s for s in samples if s.id not in done]
    if not todo:
        return path
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = load_omni(policy, device=device, dtype=dtype)
    from tqdm import tqdm

    with path.open("a", encoding="utf-8") as f:
        for sample in tqdm(todo, desc="generating", unit="clip", disable=not progress):
            inputs = processor(text=QUESTION, videos=[sample.video], audios=[sample.video],
                               return_tensors="pt").to(device)
            with torch.inference_mode():
                ids = model.generate(**inputs, do_sample=True, temperature=temperature,
                                     top_p=top_p, max_new_tokens=max_new_tokens)
            new = ids[0, inputs["input_ids"].shape[1]:]
            completion = processor.decode(new, skip_special_tokens=True)
            f.write(json.dumps({"id": sample.id, "completion": completion,
                                "label": sample.label}, ensure_ascii=False) + "\n")
            f.flush()
    return path


def _dataset(plugins: Plugins, name: str, options: Any, root: str | None, split: str,
             limit: int | None) -> Any:
    reg = plugins.get("dataset", name)
    return reg.build(options, root=root, split=split, limit=limit)


def generate_for_dataset(plugins: Plugins, policy: str, dataset: str, *, root: str | None,
                         split: str, limit: int | None, out: Path,
                         echo: Callable[[str], None] = print) -> tuple[Path, LabelSpace]:
    """``erv eval --policy``: generate on a dataset plugin's split."""
    _load_omni()  # fail before reading any data
    ds = _dataset(plugins, dataset, None, root, split, limit)
    samples = list(ds.samples())
    echo(f"erv eval: generating with {policy} on {len(samples)} {dataset} {split} clips")
    return generate_predictions(policy, samples, out), ds.label_space


def generate_from_recipe(ctx: StageContext) -> tuple[Path, LabelSpace]:
    """The eval stage without ``predictions``: the recipe's model on ``eval.dataset``."""
    cfg = ctx.recipe.eval
    assert cfg is not None
    if cfg.dataset is None:
        raise ErvError(f"{ctx.recipe.source}: $.eval: give predictions or a dataset")
    model = ctx.recipe.model
    policy = model.path if model is not None and model.path else None
    if policy is None:  # the policy trained by an earlier stage of this run
        for stage in ("grpo", "sft"):
            if (ctx.run_dir / stage / "final").is_dir():
                policy = str(ctx.run_dir / stage / "final")
                break
    if policy is None:
        raise ErvError(f"{ctx.recipe.source}: $.eval: no policy to generate with "
                       "(set model.path or run the sft/grpo stages first)")
    _load_omni()
    spec = cfg.dataset
    ds = _dataset(ctx.plugins, spec.plugin, spec.options, spec.root, spec.split, spec.limit)
    path = generate_predictions(policy, list(ds.samples()), ctx.out,
                                temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, device=cfg.device,
                                dtype=cfg.dtype)
    return path, ds.label_space

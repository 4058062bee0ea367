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


def _load_omni() -> Callable[..., Any]:
    try:
        from erv_plugins.models.omni import load_omni
    except ImportError as exc:
        raise ErvError(
            "generation mode needs the omni policy (erv_plugins.models.omni.load_omni), which "
            f"this installation lacks ({exc}); score existing outputs with --predictions FILE"
        ) from None
    return load_omni


def _done_ids(path: Path) -> set[str]:
    """Ids already generated; a last line cut short by an interruption is removed."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    ids, offset = set(), 0
    for line in data.split(b"\n"):
        if line.strip():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                with path.open("r+b") as f:  # only the torn tail can fail to parse
                    f.truncate(offset)
                break
        offset += len(line) + 1
    return ids


def _completion(processor: Any, ids: Any, eos: set[int]) -> str:
    """Decode generated ids up to the first end token, keeping <think>/<answer> tags (a
    tokenizer may hold them as special tokens, which skip_special_tokens would drop)."""
    out = []
    for t in ids.tolist():
        if t in eos:
            break
        out.append(t)
    return str(processor.decode(out, skip_special_tokens=False)).strip()


def generate_predictions(policy: str, samples: Sequence[Sample], out: Path, *,
                         temperature: float = 0.3, top_p: float = 0.9,
                         max_new_tokens: int = 2048, batch_size: int = 4,
                         device: str = "auto", dtype: str = "auto", seed: int = 0,
                         progress: bool = True) -> Path:
    """Generate one completion per sample into ``out/predictions.jsonl`` (resumable).

    Sampling as in the paper's evaluation (temperature 0.3, top_p 0.9, up to 2048 new
    tokens); prompts are the release's (media placeholders, then the emotion question).
    """
    load_omni = _load_omni()
    import torch
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    path = out / PREDICTIONS
    done = _done_ids(path)
    todo = [s for s in samples if s.id not in done]
    if not todo:
        return path
    missing = [s.id for s in todo if s.video is None]
    if missing:
        raise ErvError(f"sample {missing[0]!r} has no video clip to generate from")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, processor = load_omni(policy, device=device, dtype=None if dtype == "auto" else dtype)
    eos = {t for t in (processor.eos_token_id, processor.pad_token_id,
                       *_as_list(model.generation_config.eos_token_id)) if t is not None}
    prompt = processor.prompt()
    torch.manual_seed(seed)
    with path.open("a", encoding="utf-8") as f, \
            tqdm(total=len(todo), desc="generating", unit="clip", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            inputs = processor([prompt] * len(batch), videos=[s.video for s in batch],
                               padding_side="left").to(device)
            with torch.inference_mode():
                ids = model.generate(**inputs, do_sample=True, temperature=temperature,
                                     top_p=top_p, max_new_tokens=max_new_tokens)
            width = inputs["input_ids"].shape[1]
            for sample, row in zip(batch, ids[:, width:], strict=True):
                f.write(json.dumps({"id": sample.id, "completion": _completion(processor, row, eos),
                                    "label": sample.label}, ensure_ascii=False) + "\n")
            f.flush()
            bar.update(len(batch))
    return path


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _dataset(plugins: Plugins, name: str, options: Any, root: str | None, split: str,
             limit: int | None) -> Any:
    reg = plugins.get("dataset", name)
    return reg.build(options, root=root, split=split, limit=limit)


def generate_for_dataset(plugins: Plugins, policy: str, dataset: str, *, root: str | None,
                         split: str, limit: int | None, out: Path,
                         echo: Callable[[str], None] = print, progress: bool = True,
                         **sampling: Any) -> tuple[Path, LabelSpace]:
    """``erv eval --policy``: generate on a dataset plugin's split (``sampling``: the
    keyword arguments of ``generate_predictions``)."""
    _load_omni()  # fail before reading any data
    ds = _dataset(plugins, dataset, None, root, split, limit)
    samples = list(ds.samples())
    if not samples:
        raise ErvError(f"dataset {dataset} ({root}, split {split}) has no samples")
    echo(f"erv eval: generating with {policy} on {len(samples)} {dataset} {split} clips")
    return generate_predictions(policy, samples, out, progress=progress, **sampling), \
        ds.label_space


def generate_from_recipe(ctx: StageContext) -> tuple[Path, LabelSpace]:
    """The eval stage without ``predictions``: the recipe's model on ``eval.dataset``."""
    cfg = ctx.recipe.eval
    assert cfg is not None
    if cfg.dataset is None:
        raise ErvError(f"{ctx.recipe.source}: $.eval: give predictions or a dataset")
    model = ctx.recipe.model
    policy = None
    # The policy this run trains (its last training stage's model), else [model].path.
    for stage in ("grpo", "sft"):  # where those stages save their model
        if stage in ctx.recipe.stages:
            trained = ctx.run_dir / stage / "model"
            if not (trained / "config.json").is_file():
                raise ErvError(f"{trained}: stage {stage} has not produced a model yet "
                               f"(run it first: erv run {ctx.recipe.source} --stage {stage})")
            policy = str(trained)
            break
    if policy is None and model is not None and model.path:
        policy = model.path
    if policy is None:
        raise ErvError(f"{ctx.recipe.source}: $.eval: no policy to generate with "
                       "(set model.path or run the sft/grpo stages first)")
    _load_omni()
    spec = cfg.dataset
    ds = _dataset(ctx.plugins, spec.plugin, spec.options, spec.root, spec.split, spec.limit)
    path = generate_predictions(policy, list(ds.samples()), ctx.out,
                                temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                                device=cfg.device, dtype=cfg.dtype, seed=cfg.seed)
    return path, ds.label_space

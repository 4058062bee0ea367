"""Generation mode of the evaluation: the policy writes a completion for every test clip.

Sampling as the paper evaluates: temperature 0.3 (paper section 4), top_p 0.9; the recipe
sets the limit of new tokens (the release's eval: 512). The completions go to
``<out>/predictions.jsonl`` (id, completion, label), the same format ``erv eval
--predictions`` reads, so generated and external outputs are scored alike. Rows are
appended as they are generated; a rerun skips the samples already there.

How a protocol generates (``[eval] protocol``; docs/fidelity.md):

==============  =========================================================================
release, paper  as the release's eval (``eval_shard.sh`` -> ``eval_shard.py`` ->
                ``mm_infer``): its instruction (two spaces before "Output"), also the BERT
                gate's text; frames resized to the tower's square *without* padding (its
                eval processor; training pads to square); ``generate(do_sample=True,
                temperature, top_p, max_new_tokens)`` and otherwise the checkpoint's own
                generation_config (top_k, repetition_penalty, ...); the completion
                decoded with special tokens skipped. The paper names nothing else.
erv             the prompt the policy was trained with (the paper's question) and frames
                as the checkpoint decodes them (pad to square); tags kept when decoding.
==============  =========================================================================

The policy directory is opened by the model plugin that owns it (``models.base.
policy_owner``; the omni and qwen_omni plugins): it names the protocol's question and
builds the generation batch; a directory no model plugin owns cannot generate here.
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


def _owner(policy: str | Path, plugins: Plugins | None = None) -> Any:
    """The model plugin that opens ``policy`` (fails before any data is read)."""
    from erv_plugins.models.base import model_directory, policy_owner

    model_directory(policy)  # fails before any data is read
    owner = policy_owner(policy, plugins)
    if owner is None:
        raise ErvError(f"{policy}: no model plugin owns this directory (erv plugins lists "
                       "them), so generation mode cannot open it; score existing outputs "
                       "with --predictions FILE")
    return owner


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


def _completion(policy: Any, ids: Any, eos: set[int], skip_special: bool = False) -> str:
    """Decode generated ids up to the first end token. ``skip_special`` False keeps
    <think>/<answer> tags a tokenizer may hold as special tokens; True is the release's
    ``batch_decode(..., skip_special_tokens=True)``."""
    out = []
    for t in ids.tolist():
        if t in eos:
            break
        out.append(t)
    return str(policy.decode(out, skip_special_tokens=skip_special)).strip()


PROTOCOLS = ("release", "paper", "erv")


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ErvError(f"unknown evaluation protocol {protocol!r}; use one of "
                       f"{', '.join(PROTOCOLS)}")


def generate_predictions(policy: str, samples: Sequence[Sample], out: Path, *,
                         protocol: str = "release", temperature: float = 0.3,
                         top_p: float = 0.9, max_new_tokens: int = 2048, batch_size: int = 4,
                         device: str = "auto", dtype: str = "auto", seed: int = 0,
                         progress: bool = True, options: Any = None,
                         model_plugin: str | None = None, plugins: Plugins | None = None
                         ) -> Path:
    """Generate one completion per sample into ``out/predictions.jsonl`` (resumable).

    ``protocol``: how to prompt, decode frames and decode completions (module docstring);
    sampling: temperature 0.3 and top_p 0.9 (the paper's and the release's eval), at
    most ``max_new_tokens``. ``options``: the recipe's ``[model.options]``, handed to the
    owning plugin when it is the recipe's ``model_plugin`` (e.g. encoder sources).
    """
    check_protocol(protocol)
    owner = _owner(policy, plugins)
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
    opened = owner.factory.open(policy, options if model_plugin == owner.name else None,
                                device=device, dtype=None if dtype == "auto" else dtype)
    question, skip_special = opened.generation_question(protocol)
    eos = opened.end_ids()
    suppress = ({"suppress_tokens": list(opened.suppressed_ids)}
                if opened.suppressed_ids else {})
    torch.manual_seed(seed)
    with path.open("a", encoding="utf-8") as f, \
            tqdm(total=len(todo), desc="generating", unit="clip", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            inputs = opened.generation_inputs(batch, question).to(device)
            with torch.inference_mode():
                # As mm_infer: these four set, the rest from the checkpoint's
                # generation_config.
                ids = opened.model.generate(**inputs, do_sample=True, temperature=temperature,
                                            top_p=top_p, max_new_tokens=max_new_tokens,
                                            **suppress)
            width = inputs["input_ids"].shape[1]
            for sample, row in zip(batch, ids[:, width:], strict=True):
                text = _completion(opened, row, eos, skip_special)
                f.write(json.dumps({"id": sample.id, "completion": text,
                                    "label": sample.label}, ensure_ascii=False) + "\n")
            f.flush()
            bar.update(len(batch))
    return path


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _dataset(plugins: Plugins, name: str, options: Any, root: str | None, split: str,
             limit: int | None) -> Any:
    from erv_plugins.datasets.base import build_dataset
    from erv_plugins.recipe import DataSpec

    return build_dataset(DataSpec(plugin=name, root=root, split=split, limit=limit,
                                  options=options), plugins)


def generate_for_dataset(plugins: Plugins, policy: str, dataset: str, *, root: str | None,
                         split: str, limit: int | None, out: Path,
                         echo: Callable[[str], None] = print, progress: bool = True,
                         **sampling: Any) -> tuple[Path, LabelSpace]:
    """``erv eval --policy``: generate on a dataset plugin's split (``sampling``: the
    keyword arguments of ``generate_predictions``)."""
    _owner(policy, plugins)  # fail before reading any data
    ds = _dataset(plugins, dataset, None, root, split, limit)
    samples = list(ds.samples())
    if not samples:
        raise ErvError(f"dataset {dataset} ({root}, split {split}) has no samples")
    echo(f"erv eval: generating with {policy} on {len(samples)} {dataset} {split} clips")
    return generate_predictions(policy, samples, out, progress=progress, plugins=plugins,
                                **sampling), ds.label_space


def trained_policy(ctx: StageContext) -> str | None:
    """The policy this run trains (its last training stage's model: GRPO's, else SFT's),
    else the recipe's ``model.path``. A training stage of the recipe that has not produced
    its model yet is an error: never the untrained checkpoint in its place."""
    for stage in ("grpo", "sft"):  # where those stages save their model
        if stage in ctx.recipe.stages:
            trained = ctx.run_dir / stage / "model"
            if not (trained / "config.json").is_file():
                raise ErvError(f"{trained}: stage {stage} has not produced a model yet "
                               f"(run it first: erv run {ctx.recipe.source} --stage {stage})")
            return str(trained)
    model = ctx.recipe.model
    return model.path if model is not None and model.path else None


def generate_from_recipe(ctx: StageContext, spec: Any, out: Path) -> tuple[Path, LabelSpace]:
    """The eval stage without ``predictions``: the policy this run trained (else the
    recipe's model) on one of ``eval.dataset(s)``, into ``out``."""
    cfg = ctx.recipe.eval
    assert cfg is not None
    policy = trained_policy(ctx)
    if policy is None:
        raise ErvError(f"{ctx.recipe.source}: $.eval: no policy to generate with "
                       "(set model.path or run the sft/grpo stages first)")
    _owner(policy, ctx.plugins)
    model = ctx.recipe.model
    ds = _dataset(ctx.plugins, spec.plugin, spec.options, spec.root, spec.split, spec.limit)
    path = generate_predictions(policy, list(ds.samples()), out, protocol=cfg.protocol,
                                temperature=cfg.temperature, top_p=cfg.top_p,
                                max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                                device=cfg.device, dtype=cfg.dtype, seed=cfg.seed,
                                options=model.options if model is not None else None,
                                model_plugin=model.plugin if model is not None else None,
                                plugins=ctx.plugins)
    return path, ds.label_space

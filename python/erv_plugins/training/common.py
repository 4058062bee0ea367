"""What the SFT and GRPO stages share: data, the policy to start from, device settings, resume."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from erv_plugins.errors import ErvError
from erv_plugins.hub import local_model
from erv_plugins.training.launching import LaunchedStage

if TYPE_CHECKING:
    from erv_plugins.datasets.base import Dataset, Sample
    from erv_plugins.recipe import DataSpec, Recipe, SyntheticData
    from erv_plugins.stages import StageContext



def build_dataset(spec: DataSpec, ctx: StageContext, where: str) -> Dataset:
    """The dataset plugin named by ``spec``, built with the stage's ``BuildContext``
    (``context.spec`` = ``spec``: root, split, limit; ``run_dir``)."""
    from erv_plugins.datasets import base

    try:
        return base.build_dataset(spec, context=ctx.build_context())
    except (FileNotFoundError, ValueError) as exc:
        raise ErvError(f"{ctx.recipe.source}: {where}: {exc}") from None


class TrainingStage(LaunchedStage):
    """A stage that trains the policy (``sft``, ``grpo``; its recipe table has the stage's
    name): synthetic clips are written once, here, before any process reads them."""

    def prepare(self, ctx: StageContext) -> None:
        cfg = getattr(ctx.recipe, self.name)
        if cfg is not None:
            ensure_synthetic(cfg.synthetic, ctx.echo)


def ensure_synthetic(spec: SyntheticData | None, echo: Any = print) -> None:
    """Write the synthetic clips once (a marker file says they are complete)."""
    if spec is None:
        return
    from erv_plugins.locking import hold

    out = Path(spec.out)
    marker = out / ".complete.json"
    settings = {k: getattr(spec, k) for k in spec.__struct_fields__}

    def complete() -> bool:
        return marker.is_file() and json.loads(marker.read_text()) == settings

    if complete():  # the common case: no lock file, no wait
        return
    # Runs started together (benchmarks/demo_effect.py's seeds) share the clips: the first
    # writes them, the others wait and then find the marker.
    with hold(out, "writing synthetic clips", wait=True):
        if complete():
            return
        from erv_plugins.datasets.synthetic import write_synthetic

        echo(f"erv: writing synthetic clips to {out}")
        write_synthetic(out, spec.n_per_label, spec.labels, spec.layouts, spec.seed,
                        seconds=spec.seconds, fps=spec.fps, size=spec.size, drift=spec.drift,
                        drift_to=spec.drift_to, test_every=spec.test_every,
                        explanations=spec.explanations,
                        progress=True)
        marker.write_text(json.dumps(settings) + "\n")


def load_samples(spec: DataSpec, ctx: StageContext, where: str) -> tuple[Dataset, list[Sample]]:
    dataset = build_dataset(spec, ctx, where)
    samples = list(dataset.samples())
    if spec.limit is not None:
        samples = samples[: spec.limit]
    if not samples:
        raise ErvError(f"{ctx.recipe.source}: {where}: dataset {spec.plugin!r} "
                       f"(split {spec.split!r}) has no samples")
    return dataset, samples


def policy_source(ctx: StageContext, *, after_sft: bool) -> Path:
    """The checkpoint a stage starts from.

    GRPO starts from this run's SFT model when the recipe has an SFT stage; otherwise
    (and for SFT itself) from the checkpoint the ``[model]`` plugin names: its ``path``,
    or a tiny model it builds into the run directory.
    """
    recipe = ctx.recipe
    if after_sft and "sft" in recipe.stages:
        sft_model = ctx.run_dir / "sft" / "model"
        if not (sft_model / "config.json").is_file():
            raise ErvError(f"{sft_model}: the SFT stage has not produced a model yet "
                           f"(run the sft stage first: erv run {recipe.source} --stage sft)")
        return sft_model
    if recipe.model is None:
        raise ErvError(f"{recipe.source}: $.model: a [model] table is needed to train")
    # The model plugin resolves the checkpoint: its path, or a tiny model it builds.
    reg = ctx.plugins.get("model", recipe.model.plugin)
    # A hub id is read from the local Hugging Face cache (erv download fills it).
    local = (str(local_model(recipe.model.path, where=f"{recipe.source}: $.model.path"))
             if recipe.model.path else None)
    spec = msgspec.structs.replace(recipe.model, path=local)
    model = reg.build(recipe.model.options, context=ctx.build_context(spec=spec))
    path = Path(model.model_path())
    if not (path / "config.json").is_file():
        raise ErvError(f"{recipe.source}: $.model: {path} is not a model directory")
    return path


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def device_args(recipe: Recipe, *, bf16: bool) -> dict[str, Any]:
    """TrainingArguments settings for this machine and launch configuration.

    On CPU, bf16 is turned off (the paper's bf16 assumes a GPU) and multi-process runs use
    gloo. DeepSpeed on CPU needs ``use_cpu=False`` (with ``use_cpu=True`` accelerate skips
    DeepSpeed; docs/stack.md).
    """
    gpu = on_gpu()
    launch = recipe.launch
    args: dict[str, Any] = {"bf16": bool(bf16 and gpu)}
    if launch.deepspeed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # `accelerate launch --use_deepspeed --deepspeed_config_file` hands the config to
        # the Trainer; naming it here too made the batch-size check count one process.
        if not gpu:
            args["use_cpu"] = False
            args["ddp_backend"] = "gloo"
    else:
        args["use_cpu"] = launch.use_cpu or not gpu
        if not gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            args["ddp_backend"] = "gloo"
    return args


def last_checkpoint(checkpoints: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` directory (one a kill interrupted is skipped)."""
    if not checkpoints.is_dir():
        return None
    found = []
    for d in checkpoints.iterdir():
        if d.is_dir() and d.name.startswith("checkpoint-") and d.name[11:].isdigit():
            if (d / "trainer_state.json").is_file():
                found.append((int(d.name[11:]), d))
    return max(found)[1] if found else None


def checkpoint_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def label_space_name(dataset: Any, spec: DataSpec) -> str:
    space = getattr(dataset, "label_space", None)
    return getattr(space, "name", spec.plugin)


def settings_table(obj: Any, keys: Sequence[str]) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in keys}


@dataclass(frozen=True)
class StageData:
    """One dataset a training stage reads: its spec, plugin object, samples and the name of
    its label space (the ``dataset`` column the rewards see)."""

    spec: DataSpec
    dataset: Dataset
    samples: list[Sample]
    space: str
    where: str  # its place in the recipe, e.g. "$.grpo.datasets[1]"


def stage_specs(cfg: Any, stage: str) -> list[tuple[str, DataSpec]]:
    """(recipe place, spec) of every dataset of a stage's table."""
    from erv_plugins.recipe import format_path

    if hasattr(cfg, "data_specs"):
        return [(format_path(path), spec) for path, spec in cfg.data_specs()]
    return [(f"$.{stage}.dataset", cfg.dataset)]


def start_training(ctx: StageContext, stage: str) -> tuple[list[StageData], Path, Any]:
    """What both training stages start with: known warnings quieted, the stage's seed set,
    the samples of its dataset(s), and the policy to train (from ``policy_source``, with its
    trainable parts as the recipe says). Returns ``(data, source, policy)``."""
    import torch

    from erv_plugins.training.policy import load_policy

    cfg = getattr(ctx.recipe, stage)
    assert cfg is not None
    quiet_known_warnings()
    torch.manual_seed(cfg.seed)
    data = []
    for where, spec in stage_specs(cfg, stage):
        dataset, samples = load_samples(spec, ctx, where)
        data.append(StageData(spec, dataset, samples, label_space_name(dataset, spec), where))
    source = policy_source(ctx, after_sft=stage != "sft")
    model = ctx.recipe.model
    policy = load_policy(source, frames=cfg.frames, image_size=cfg.image_size,
                         cache_dir=ctx.run_dir / "cache" / "media",
                         train_vision_tower=trains_vision_tower(ctx.recipe, stage),
                         options=model.options if model is not None else None,
                         model_plugin=model.plugin if model is not None else None,
                         plugins=ctx.plugins)
    return data, source, policy


def trains_vision_tower(recipe: Any, stage: str) -> bool:
    """Whether ``stage`` trains the vision tower (a media policy): the stage table's
    ``train_vision_tower`` (paper Table 8: SFT yes, GRPO no), else the model's option."""
    own = getattr(getattr(recipe, stage, None), "train_vision_tower", None)
    if own is not None:
        return bool(own)
    options = recipe.model.options if recipe.model is not None else None
    return bool(getattr(options, "train_vision_tower", False))


def freeze(model: Any, prefixes: Sequence[str], where: str) -> int:
    """Freeze the parameters whose names start with one of ``prefixes``; returns how many.

    A prefix that matches nothing is an error (a typo would silently train everything).
    """
    if not prefixes:
        return 0
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(n.startswith(prefix) for n in names):
            close = sorted({n.split(".")[0] + "." + n.split(".")[1] if "." in n else n
                            for n in names})[:12]
            raise ErvError(f"{where}: no parameter name starts with {prefix!r} "
                           f"(names start with e.g. {', '.join(close)})")
    count = 0
    for name, param in model.named_parameters():
        if any(name.startswith(p) for p in prefixes):
            param.requires_grad_(False)
            count += 1
    return count


def quiet_known_warnings() -> None:
    """Hide warnings a user cannot act on (TRL passes transformers' old argument names)."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*checkpointing.* is deprecated",
                            category=FutureWarning)

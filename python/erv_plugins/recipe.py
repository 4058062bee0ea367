"""Recipes: TOML files that assemble a run (stages, model, data, rewards, verifier, judge).

Decoded with msgspec structs that forbid unknown fields. A recipe may ``extends`` another
one (path relative to itself): tables merge key by key, anything else is replaced, so an
ablation is a few lines on top of the paper recipe. A plugin's own ``options`` table is
decoded with the plugin's struct. Every error names the file that supplied the value, the
path inside the recipe and what was expected::

    recipes/x.toml: $.grpo.beta: Expected float, got str
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from erv_plugins.errors import PluginError, RecipeError

if TYPE_CHECKING:
    from erv_plugins.plugins import Kind, Plugins


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class PluginSpec(_Strict):
    """A reference to a registered component and its own option table."""

    plugin: str
    options: Any = msgspec.field(default_factory=dict)


class DataSpec(_Strict):
    """A dataset plugin, where its files live and which split to read."""

    plugin: str
    root: str | None = None
    split: str = "train"
    limit: int | None = None
    options: Any = msgspec.field(default_factory=dict)


class WeightSchedule(_Strict):
    """A reward weight that changes over training steps (from ``weight`` to ``end``)."""

    kind: Literal["constant", "linear", "cosine", "step"] = "constant"
    end: float | None = None
    steps: int | None = None
    milestones: list[int] = msgspec.field(default_factory=list)
    values: list[float] = msgspec.field(default_factory=list)


class RewardSpec(_Strict):
    """One term of the total reward R (paper eq. 5) with its weight."""

    plugin: str | None = None  # defaults to the table's key
    weight: float = 1.0
    schedule: WeightSchedule | None = None
    timeout_s: float | None = None
    retries: int = 0
    options: Any = msgspec.field(default_factory=dict)


class ModelSpec(_Strict):
    plugin: str = "omni"
    path: str | None = None  # a local checkpoint directory; None = build from options
    options: Any = msgspec.field(default_factory=dict)


class LaunchConfig(_Strict):
    """How stages that train are launched (accelerate, DeepSpeed)."""

    num_processes: int = 1
    deepspeed: str | None = None  # a DeepSpeed JSON config, relative to the recipe
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    use_cpu: bool = False


class SyntheticData(_Strict):
    """Synthetic clips a training stage writes (once) before it reads its dataset: the
    learnable colour + tone task of ``erv data synth`` (tiny demos, tests)."""

    out: str = "data/synthetic"
    n_per_label: int = 4
    labels: list[str] = msgspec.field(
        default_factory=lambda: ["happiness", "sadness", "anger", "neutral"])
    layouts: list[str] = msgspec.field(default_factory=lambda: ["mafw", "jsonl", "emer"])
    seed: int = 0
    size: int = 32
    seconds: float = 1.0
    fps: int = 8


class SFTConfig(_Strict):
    """Supervised fine-tuning on EMER (paper section 3.1, eq. 2)."""

    dataset: DataSpec
    epochs: float = 5.0
    lr: float = 2e-5
    scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    batch_size: int = 32
    grad_accum: int = 1
    bf16: bool = False
    max_length: int = 2048
    max_steps: int = -1
    save_steps: int = 500
    seed: int = 42
    # Clip decoding (paper Table 8): frames sampled per clip and their square resolution;
    # None = the policy checkpoint's own (its config's num_frames and vision image size).
    frames: int | None = None
    image_size: int | None = None
    # Parameter name prefixes kept frozen (paper Table 8 lists what each stage trains).
    freeze: list[str] = msgspec.field(default_factory=list)
    # Whether this stage trains the vision tower (omni policy); None: the [model]
    # option. Table 8: SFT trains it (0.5B and 7B), GRPO does not.
    train_vision_tower: bool | None = None
    synthetic: SyntheticData | None = None
    gradient_checkpointing: bool = False
    # The SFT sequence: "policy" = the eval prompt (the checkpoint's chat template, media
    # placeholders, the question), then the target and EOS; "release" = as the release's
    # train_humanomni.py builds it from "<video>\n<audio>\n" + question (three newlines
    # before the question, its BERT gate text, the chat template's close of the assistant
    # turn in the target).
    prompt_template: Literal["policy", "release"] = "policy"


class AugmentConfig(_Strict):
    """The chat API behind ``erv augment`` (paper appendix B.1). The key itself never
    goes in a recipe: ``api_key_env`` names the environment variable that holds it."""

    base_url: str | None = None  # None: $OPENAI_BASE_URL, else OpenAI
    label_model: str = "gpt-4.1"  # paper: pseudo-labels by GPT-4.1 (Figure 6)
    complement_model: str = "gpt-4.1-mini"  # paper: complements by GPT-4.1-mini (Figure 7)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 60.0
    retries: int = 5
    price_in: float = 0.0  # USD per 1M prompt tokens, for the cost count
    price_out: float = 0.0  # USD per 1M completion tokens


class VerifierTrainingConfig(_Strict):
    """Fine-tuning the Emotional Rationale Verifier (paper section 3.2, Table 5)."""

    base: str
    train: list[DataSpec] = msgspec.field(default_factory=list)
    eval: DataSpec | None = None
    label_space: str = "goemotions"
    epochs: float = 10.0
    batch_size: int = 64
    lr: float = 3e-5
    max_length: int = 128
    eval_fraction: float = 0.1
    seed: int = 42
    options: Any = msgspec.field(default_factory=dict)
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    device: str = "auto"  # auto: cuda when available (bf16), else cpu
    reinit_head: bool = False  # True: a new head over label_space (base head size may differ)
    augment: AugmentConfig | None = None  # the LLM of `erv augment --recipe`


class GRPOConfig(_Strict):
    """GRPO with the total reward R (paper eq. 3 and 5).

    Every setting that changes the update is passed to TRL explicitly (``erv run --dry-run``
    prints TRL's arguments by their own names); the defaults are the paper's, and where the
    paper is silent, the authors' release (docs/fidelity.md).
    """

    dataset: DataSpec | None = None
    # Several datasets trained on as one mixed list, each sample keeping its own label
    # space and answer normaliser (the release trains on one MAFW + DFEW list). Give either
    # ``dataset`` or ``datasets``.
    datasets: list[DataSpec] = msgspec.field(default_factory=list)
    num_generations: int = 16
    beta: float = 0.04
    lr: float = 1e-6
    scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    batch_size: int = 16
    grad_accum: int = 2
    epochs: float = 2.0
    max_steps: int = -1
    bf16: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    # Rollouts keep only the k most probable tokens: the release samples with generate's
    # default top_k = 50 (TRL's default, 0, turns it off).
    top_k: int = 50
    max_prompt_length: int | None = None
    max_completion_length: int = 512
    # The rollout prompt: "policy" = the policy's own chat template (as in SFT and eval);
    # "qwen2_vl" = as the release builds it during RL (the Qwen2-VL processor's chat
    # template, its default system turn and vision tokens, then the HumanOmni media
    # placeholders and the question).
    prompt_template: Literal["policy", "qwen2_vl"] = "policy"
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    epsilon: float = 0.2
    # TRL 1.16 multiplies the k3 KL term by the importance ratio by default; the paper's
    # eq. 3 and the release have no such correction.
    use_bias_correction_kl: bool = False
    # The release trains in train mode, with the dropout its modules declare (TRL's
    # disable_dropout zeroes it); the reference model always runs in eval mode.
    disable_dropout: bool = False
    # Precision of the log-softmax of the policy's logits: "logits", the dtype the model
    # computes them in (bf16 under bf16 training), as the release does; or "float32"
    # (upcast first, TRL's way).
    logprob_dtype: Literal["float32", "logits"] = "logits"
    logging_steps: int = 1
    save_steps: int = 100
    seed: int = 42
    use_vllm: bool = False
    frames: int | None = None
    image_size: int | None = None
    freeze: list[str] = msgspec.field(default_factory=list)
    train_vision_tower: bool | None = None  # as in [sft]; Table 8: GRPO does not train it
    synthetic: SyntheticData | None = None
    gradient_checkpointing: bool = False

    def data_specs(self) -> list[tuple[tuple[str | int, ...], DataSpec]]:
        """(recipe path, spec) of every dataset the stage trains on."""
        if self.dataset is not None:
            return [(("grpo", "dataset"), self.dataset)]
        return [(("grpo", "datasets", i), d) for i, d in enumerate(self.datasets)]


# Evaluation protocols (docs/fidelity.md):
#   release: the authors' eval scripts bit for bit (fixed label order, the judge's reply
#            taken verbatim, a failed call counts as neutral, their answer parsing and UAR
#            denominators, generation as their eval runs it). Table 1's numbers came from it.
#   paper:   the paper's text where it speaks (a permutation of the label list per sample,
#            Figure 3), the release where it is silent.
#   erv:     erv's own robust protocol (permutation per sample, tolerant reply matching,
#            failed judge calls excluded from N).
EvalProtocol = Literal["release", "paper", "erv"]


class EvalConfig(_Strict):
    """Judged evaluation: EEA, FCR, EPC beside WAR and UAR (paper section 4.2)."""

    protocol: EvalProtocol = "release"
    dataset: DataSpec | None = None
    # Several test sets, each judged and scored on its own (into eval/<label space>/) and
    # put side by side in one Table-1 layout (Table 1 has MAFW and DFEW).
    datasets: list[DataSpec] = msgspec.field(default_factory=list)
    predictions: str | None = None  # score an existing predictions JSONL instead
    label_space: str | None = None  # labels of `predictions` (mafw, dfew) without a dataset
    device: str = "auto"  # generation: "auto" (cuda if present), "cpu", "cuda:0", ...
    dtype: str = "auto"  # generation: "auto", "float32", "bfloat16", "float16"
    batch_size: int = 4  # generation: clips per generate() call
    judge: PluginSpec = msgspec.field(default_factory=lambda: PluginSpec(plugin="verifier"))
    temperature: float = 0.3
    top_p: float = 0.9
    max_new_tokens: int = 2048
    bootstrap: int = 1000
    seed: int = 0


class Recipe(_Strict):
    """A whole run. Paths inside are relative to the current directory unless noted."""

    name: str
    stages: list[str]
    description: str = ""
    extends: str | None = None
    run_dir: str | None = None
    seed: int = 0
    model: ModelSpec | None = None
    verifier: PluginSpec | None = None
    rewards: dict[str, RewardSpec] = msgspec.field(default_factory=dict)
    launch: LaunchConfig = msgspec.field(default_factory=LaunchConfig)
    sft: SFTConfig | None = None
    train_verifier: VerifierTrainingConfig | None = None
    grpo: GRPOConfig | None = None
    eval: EvalConfig | None = None

    # Set by ``load_recipe``; not part of the file.
    source: str = ""

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def to_builtins(self) -> dict[str, Any]:
        """The fully resolved recipe as plain data (plugin options decoded, Nones dropped)."""
        return _drop_none(msgspec.to_builtins(self))


# Which table each stage reads; ``erv run`` refuses a recipe whose stage lacks its table.
STAGE_TABLES: dict[str, str] = {
    "sft": "sft",
    "verifier": "train_verifier",
    "grpo": "grpo",
    "eval": "eval",
}


def to_toml(data: dict[str, Any]) -> str:
    """Plain recipe data as TOML text (what ``erv run --dry-run`` prints)."""
    import tomli_w

    return tomli_w.dumps(_drop_none(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# -- loading ------------------------------------------------------------------------------

_Path = tuple[str | int, ...]


def format_path(path: _Path) -> str:
    """A recipe path as errors show it: ``$.grpo.datasets[1].root``."""
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _parse_path(text: str) -> _Path:
    parts: list[str | int] = []
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", text.removeprefix("$")):
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return tuple(parts)


class _Loaded:
    """The merged TOML data of a recipe and its ancestors, with the file behind each key."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.origin: dict[_Path, str] = {}

    def file_for(self, path: _Path) -> str:
        for n in range(len(path), -1, -1):
            if path[:n] in self.origin:
                return self.origin[path[:n]]
        return self.origin[()]


def _read_toml(path: Path, shown: str, where: str | None) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if where:
            raise RecipeError(f"{where}: included recipe {shown} does not exist") from None
        raise RecipeError(f"{shown}: no such recipe file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{shown}: cannot read recipe: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{shown}: invalid TOML: {exc}") from None


def _merge(into: dict[str, Any], new: dict[str, Any], loaded: _Loaded, file: str,
           prefix: _Path = ()) -> None:
    for key, value in new.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            loaded.origin[path] = file
            _merge(into[key], value, loaded, file, path)
        else:
            into[key] = value
            for p in [p for p in loaded.origin if p[: len(path)] == path]:
                del loaded.origin[p]
            for sub in _leaf_paths(value, path):
                loaded.origin[sub] = file


def _leaf_paths(value: Any, path: _Path) -> Iterator[_Path]:
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, (*path, k))


def _load_chain(path: Path, shown: str, seen: list[Path], where: str | None) -> _Loaded:
    real = path.resolve()
    if real in seen:
        cycle = " -> ".join(str(p.name) for p in [*seen, real])
        raise RecipeError(f"{where or shown}: recipe includes itself ({cycle})")
    data = _read_toml(path, shown, where)
    parent_ref = data.get("extends")
    if parent_ref is not None and not isinstance(parent_ref, str):
        raise RecipeError(f"{shown}: $.extends: Expected str, got {type(parent_ref).__name__}")
    if parent_ref:
        parent_path = path.parent / parent_ref
        parent_shown = os.path.normpath(os.path.join(os.path.dirname(shown), parent_ref))
        loaded = _load_chain(parent_path, parent_shown, [*seen, real], f"{shown}: $.extends")
    else:
        loaded = _Loaded()
        loaded.origin[()] = shown
    own = {k: v for k, v in data.items() if k != "extends"}
    _merge(loaded.data, own, loaded, shown)
    loaded.origin[()] = shown
    if parent_ref:
        loaded.data["extends"] = parent_ref
        loaded.origin[("extends",)] = shown
    return loaded


def _validation_message(exc: msgspec.ValidationError, prefix: _Path = ()) -> tuple[_Path, str]:
    """Turn msgspec's "Expected `float`, got `str` - at `$.a.b`" into (path, message)."""
    text = str(exc)
    m = re.match(r"(?s)(.*?)(?: - at `(\$[^`]*)`)?$", text)
    assert m is not None
    message, at = m.group(1), m.group(2) or "$"
    path = (*prefix, *_parse_path(at))
    unknown = re.match(r"Object contains unknown field `([^`]*)`", message)
    if unknown:
        return (*path, unknown.group(1)), "unknown field"
    missing = re.match(r"Object missing required field `([^`]*)`", message)
    if missing:
        return (*path, missing.group(1)), "required field is missing"
    return path, message.replace("`", "")


def _error(loaded: _Loaded, path: _Path, message: str) -> RecipeError:
    return RecipeError(f"{loaded.file_for(path)}: {format_path(path)}: {message}")


def load_recipe(path: str | os.PathLike[str], plugins: Plugins | None = None) -> Recipe:
    """Read, merge, decode and check a recipe against the installed plugins."""
    shown = os.fspath(path)
    loaded = _load_chain(Path(shown), shown, [], None)
    rewards = loaded.data.get("rewards")
    if isinstance(rewards, dict):
        # msgspec cannot name a dict key in its error path ("$.rewards[...]"): check the
        # entries one by one first so the error names the reward.
        for key, value in rewards.items():
            try:
                msgspec.convert(value, type=RewardSpec)
            except msgspec.ValidationError as exc:
                raise _error(loaded, *_validation_message(exc, ("rewards", key))) from None
    try:
        recipe = msgspec.convert(loaded.data, type=Recipe)
    except msgspec.ValidationError as exc:
        raise _error(loaded, *_validation_message(exc)) from None
    recipe.source = shown
    if plugins is None:
        from erv_plugins.plugins import get_plugins

        plugins = get_plugins()
    _resolve_plugins(recipe, loaded, plugins)
    return recipe


def _decode_options(spec: Any, kind: Kind, name: str, path: _Path, loaded: _Loaded,
                    plugins: Plugins) -> None:
    try:
        reg = plugins.get(kind, name)
    except PluginError as exc:
        raise _error(loaded, (*path, "plugin"), str(exc)) from None
    raw = spec.options
    if reg.options is None:
        if raw:
            raise _error(loaded, (*path, "options"), f"{kind} {name!r} takes no options")
        spec.options = None
        return
    try:
        spec.options = msgspec.convert(raw, type=reg.options)
    except msgspec.ValidationError as exc:
        raise _error(loaded, *_validation_message(exc, (*path, "options"))) from None


def _resolve_plugins(recipe: Recipe, loaded: _Loaded, plugins: Plugins) -> None:
    for i, stage in enumerate(recipe.stages):
        try:
            plugins.get("stage", stage)
        except PluginError as exc:
            raise _error(loaded, ("stages", i), str(exc)) from None
        table = STAGE_TABLES.get(stage)
        if table is not None and getattr(recipe, table) is None:
            raise _error(loaded, ("stages", i), f"stage {stage!r} needs a [{table}] table")
    if len(set(recipe.stages)) != len(recipe.stages):
        raise _error(loaded, ("stages",), "a stage is named twice")
    if recipe.model is not None:
        _decode_options(recipe.model, "model", recipe.model.plugin, ("model",), loaded, plugins)
    if recipe.verifier is not None:
        _decode_options(recipe.verifier, "verifier", recipe.verifier.plugin, ("verifier",),
                        loaded, plugins)
    for key, spec in recipe.rewards.items():
        spec.plugin = spec.plugin or key
        _decode_options(spec, "reward", spec.plugin, ("rewards", key), loaded, plugins)
        if spec.retries < 0:
            raise _error(loaded, ("rewards", key, "retries"), "must be >= 0")
        if spec.timeout_s is not None and spec.timeout_s <= 0:
            raise _error(loaded, ("rewards", key, "timeout_s"), "must be > 0")
    datasets: list[tuple[_Path, DataSpec]] = []
    if recipe.sft is not None:
        datasets.append((("sft", "dataset"), recipe.sft.dataset))
    if recipe.grpo is not None:
        grpo = recipe.grpo
        if (grpo.dataset is None) == (not grpo.datasets):
            raise _error(loaded, ("grpo", "dataset" if grpo.dataset is not None else "datasets"),
                         "give either dataset or datasets (a list), not both"
                         if grpo.dataset is not None else "a dataset (or datasets) is needed")
        datasets += [(path, spec) for path, spec in grpo.data_specs()]
    if recipe.train_verifier is not None:
        datasets += [(("train_verifier", "train", i), d)
                     for i, d in enumerate(recipe.train_verifier.train)]
        if recipe.train_verifier.eval is not None:
            datasets.append((("train_verifier", "eval"), recipe.train_verifier.eval))
    if recipe.eval is not None:
        if recipe.eval.dataset is not None and recipe.eval.datasets:
            raise _error(loaded, ("eval", "datasets"),
                         "give either dataset or datasets (a list), not both")
        if recipe.eval.dataset is not None:
            datasets.append((("eval", "dataset"), recipe.eval.dataset))
        datasets += [(("eval", "datasets", i), d) for i, d in enumerate(recipe.eval.datasets)]
        _decode_options(recipe.eval.judge, "judge", recipe.eval.judge.plugin,
                        ("eval", "judge"), loaded, plugins)
    for path, spec in datasets:
        _decode_options(spec, "dataset", spec.plugin, path, loaded, plugins)
    if recipe.launch.deepspeed is not None:
        # Relative to the recipe file that named it (which may be an ancestor).
        where = ("launch", "deepspeed")
        ds = Path(loaded.file_for(where)).parent / recipe.launch.deepspeed
        if not ds.is_file():
            raise _error(loaded, where, f"DeepSpeed config {ds} does not exist")
        recipe.launch.deepspeed = os.fspath(ds)

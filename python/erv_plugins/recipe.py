"""Recipes: TOML files that assemble a run (stages, model, data, rewards, verifier, judge).

Decoded with msgspec structs that forbid unknown fields. A recipe may ``extends`` another
one (path relative to itself): tables merge key by key, anything else is replaced, so an
ablation is a few lines on top of the paper recipe. A plugin's own ``options`` table is
decoded with the plugin's struct. Every error names the file that supplied the value, the
path inside the recipe and what was expected::

    recipes/x.toml: $.grpo.beta: Expected float, got str
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from erv_plugins.errors import PluginError, RecipeError

if TYPE_CHECKING:
    from erv_plugins.plugins import Kind, Plugins


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# -- value ranges -------------------------------------------------------------------------
# Each field declares its range with its type; msgspec checks it while decoding and
# ``load_recipe`` words a failure "must be >= 2, got 0" (a pattern's failure with the
# ``description``). A field added later takes one of these or its own
# ``Annotated[..., msgspec.Meta(...)]``; rules between fields are in ``RULES`` below.
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
AtLeast2 = Annotated[int, msgspec.Meta(ge=2)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Ratio = Annotated[float, msgspec.Meta(ge=0, le=1)]
OpenRatio = Annotated[float, msgspec.Meta(gt=0, lt=1)]
# transformers reads warmup_steps >= 1 as a number of steps, below 1 as a ratio.
WarmupRatio = Annotated[float, msgspec.Meta(ge=0, lt=1)]
TopP = Annotated[float, msgspec.Meta(gt=0, le=1)]
Seed = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]  # numpy's seed range
MaxSteps = Annotated[int, msgspec.Meta(  # 0 is refused by a rule below
    ge=-1, description="-1 (train for `epochs`) or >= 1")]
PlainName = Annotated[str, msgspec.Meta(
    pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*$",
    description="a plain name (letters, digits, '.', '_', '-'; no '/', not starting with '.')")]
Device = Annotated[str, msgspec.Meta(pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$",
                                     description="auto, cpu, mps, cuda or cuda:N")]
Url = Annotated[str, msgspec.Meta(pattern=r"^https?://[^/\s]+",
                                  description="an http:// or https:// URL")]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# TRL 1.16 GRPOTable.loss_type and scale_rewards; transformers' SchedulerType names that
# need no extra arguments (tests/test_reliability_recipes.py checks both lists against
# the installed packages).
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]
ScaleRewards = Literal["group", "batch", "none"]
# TRL 1.16 GRPOConfig.multi_objective_aggregation: sum the weighted rewards, then normalise
# (paper eq. 5, then the group advantage), or GDPO's normalise each reward per group, then sum.
Aggregation = Literal["sum_then_normalize", "normalize_then_sum"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                    "constant_with_warmup", "inverse_sqrt"]
Layout = Literal["mafw", "dfew", "jsonl", "emer", "merr"]


class PluginSpec(_Strict):
    """A reference to a registered component and its own option table."""

    plugin: str
    options: Any = msgspec.field(default_factory=dict)


class DataSpec(_Strict):
    """A dataset plugin, where its files live and which split to read."""

    plugin: str
    root: str | None = None
    split: str = "train"
    limit: Positive | None = None
    options: Any = msgspec.field(default_factory=dict)


class WeightSchedule(_Strict):
    """A reward weight that changes over training steps (from ``weight`` to ``end``)."""

    kind: Literal["constant", "linear", "cosine", "step"] = "constant"
    end: float | None = None
    steps: Positive | None = None
    milestones: list[NonNegative] = msgspec.field(default_factory=list)
    values: list[float] = msgspec.field(default_factory=list)


class RewardSpec(_Strict):
    """One term of the total reward R (paper eq. 5) with its weight."""

    plugin: str | None = None  # defaults to the table's key
    weight: float = 1.0
    schedule: WeightSchedule | None = None
    timeout_s: PositiveFloat | None = None
    retries: NonNegative = 0
    options: Any = msgspec.field(default_factory=dict)


class ModelSpec(_Strict):
    plugin: str = "omni"
    path: str | None = None  # a local checkpoint directory; None = build from options
    options: Any = msgspec.field(default_factory=dict)


class LaunchConfig(_Strict):
    """How stages that train are launched (accelerate, DeepSpeed)."""

    num_processes: Positive = 1  # in all, over every machine (accelerate's --num_processes)
    deepspeed: str | None = None  # a DeepSpeed JSON config, relative to the recipe
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    use_cpu: bool = False
    # Several machines (accelerate's multi-node launch): each machine runs `erv run` with
    # its own machine_rank (0 = the one at main_process_ip); recipes/slurm_*.sh set it from
    # SLURM_NODEID through ERV_MACHINE_RANK, which overrides this field.
    num_machines: Positive = 1
    machine_rank: NonNegative = 0
    main_process_ip: NonEmpty | None = None
    main_process_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 29500


# transformers' reporting integrations (INTEGRATION_TO_CALLBACK; tests/test_tracking.py
# checks this list against the installed transformers).
Tracker = Literal["azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive",
                  "flyte", "kubeflow", "mlflow", "neptune", "swanlab", "tensorboard",
                  "trackio", "wandb"]
# The package each tracker imports (a tracker whose package is missing is a recipe error).
TRACKER_PACKAGES = {"azure_ml": "azureml", "comet_ml": "comet_ml", "tensorboard": "tensorboard",
                    "wandb": "wandb", "trackio": "trackio", "mlflow": "mlflow",
                    "neptune": "neptune", "clearml": "clearml", "dvclive": "dvclive",
                    "swanlab": "swanlab", "codecarbon": "codecarbon", "dagshub": "dagshub",
                    "flyte": "flytekit", "kubeflow": "kubeflow"}


class LoggingTable(_Strict):
    """Experiment trackers the training stages report to (TRL's and transformers'
    ``report_to``). Each stage writes under its own directory: TensorBoard event files in
    ``<stage>/tensorboard``, W&B's in ``<stage>/wandb``."""

    report_to: list[Tracker] = msgspec.field(default_factory=list)
    # GRPO: the per-completion table (prompt id, completion, each reward, the advantage,
    # the explanation's label sets) at every logging step, to every tracker.
    log_completions: bool = True


class SyntheticData(_Strict):
    """Synthetic clips a training stage writes (once) before it reads its dataset: the
    learnable colour + tone task of ``erv data synth`` (tiny demos, tests)."""

    out: str = "data/synthetic"
    n_per_label: Positive = 4
    labels: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["happiness", "sadness", "anger", "neutral"])
    layouts: list[Layout] = msgspec.field(default_factory=lambda: ["mafw", "jsonl", "emer"])
    seed: Seed = 0
    size: Annotated[int, msgspec.Meta(ge=16)] = 32
    seconds: Annotated[float, msgspec.Meta(ge=0.1)] = 1.0
    fps: Positive = 8
    # Every test_every-th clip of a label (the 2nd, ...) is a test clip.
    test_every: Annotated[int, msgspec.Meta(ge=2)] = 4
    # The share of each label's train clips whose explanation drifts to another emotion
    # (cites its cues while the answer stays right), as R1-Omni's do (datasets/synthetic.py);
    # drift_to: "any" other emotion, or always the "next" label (one systematic confusion).
    drift: Ratio = 0.0
    drift_to: Literal["any", "next"] = "any"
    # "varied": three explanation templates (the default demo's); "short": one ~25-token
    # template a tiny policy reproduces cleanly (the effect experiment's).
    explanations: Literal["varied", "short"] = "varied"


class SFTTable(_Strict):
    """Supervised fine-tuning on EMER (paper section 3.1, eq. 2)."""

    dataset: DataSpec
    epochs: PositiveFloat = 5.0
    lr: PositiveFloat = 2e-5
    scheduler: Scheduler = "cosine"
    warmup_ratio: WarmupRatio = 0.03
    batch_size: Positive = 32
    grad_accum: Positive = 1
    bf16: bool = False
    max_length: Positive = 2048
    max_steps: MaxSteps = -1
    save_steps: Positive = 500
    seed: Seed = 42
    # Clip decoding (paper Table 8): frames sampled per clip and their square resolution;
    # None = the policy checkpoint's own (its config's num_frames and vision image size).
    frames: Positive | None = None
    image_size: Positive | None = None
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

    base_url: Url | None = None  # None: $OPENAI_BASE_URL, else OpenAI
    label_model: NonEmpty = "gpt-4.1"  # paper: pseudo-labels by GPT-4.1 (Figure 6)
    complement_model: NonEmpty = "gpt-4.1-mini"  # paper: complements by GPT-4.1-mini (Figure 7)
    api_key_env: NonEmpty = "OPENAI_API_KEY"
    concurrency: Positive = 8
    timeout_s: PositiveFloat = 60.0
    retries: NonNegative = 5
    price_in: NonNegativeFloat = 0.0  # USD per 1M prompt tokens, for the cost count
    price_out: NonNegativeFloat = 0.0  # USD per 1M completion tokens


class VerifierTrainingTable(_Strict):
    """Fine-tuning the Emotional Rationale Verifier (paper section 3.2, Table 5)."""

    base: str
    train: list[DataSpec] = msgspec.field(default_factory=list)
    eval: DataSpec | None = None
    label_space: str = "goemotions"
    epochs: PositiveFloat = 10.0
    batch_size: Positive = 64
    lr: PositiveFloat = 3e-5
    max_length: Positive = 128
    eval_fraction: OpenRatio = 0.1
    seed: Seed = 42
    options: Any = msgspec.field(default_factory=dict)
    warmup_ratio: Ratio = 0.0
    weight_decay: NonNegativeFloat = 0.0
    device: Device = "auto"  # auto: cuda when available (bf16), else cpu
    reinit_head: bool = False  # True: a new head over label_space (base head size may differ)
    augment: AugmentConfig | None = None  # the LLM of `erv augment --recipe`


class GRPOTable(_Strict):
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
    num_generations: AtLeast2 = 16
    beta: NonNegativeFloat = 0.04
    lr: PositiveFloat = 1e-6
    scheduler: Scheduler = "cosine"
    warmup_ratio: WarmupRatio = 0.0
    batch_size: Positive = 16
    grad_accum: Positive = 2
    epochs: PositiveFloat = 2.0
    max_steps: MaxSteps = -1
    bf16: bool = False
    temperature: PositiveFloat = 1.0
    top_p: TopP = 1.0
    # Rollouts keep only the k most probable tokens: the release samples with generate's
    # default top_k = 50 (TRL's default, 0, turns it off).
    top_k: NonNegative = 50
    max_prompt_length: Positive | None = None
    max_completion_length: Positive = 512
    # The rollout prompt: "policy" = the policy's own chat template (as in SFT and eval);
    # "qwen2_vl" = as the release builds it during RL (the Qwen2-VL processor's chat
    # template, its default system turn and vision tokens, then the HumanOmni media
    # placeholders and the question).
    prompt_template: Literal["policy", "qwen2_vl"] = "policy"
    loss_type: LossType = "grpo"
    scale_rewards: ScaleRewards = "group"
    # "normalize_then_sum" is GDPO (arXiv 2601.05242): R_E, R_format and R_answer are on
    # different scales. A failed reward (NaN, passed to TRL as None) is left out of both.
    multi_objective_aggregation: Aggregation = "sum_then_normalize"
    epsilon: PositiveFloat = 0.2
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
    logging_steps: Positive = 1
    save_steps: Positive = 100
    seed: Seed = 42
    use_vllm: bool = False
    frames: Positive | None = None
    image_size: Positive | None = None
    freeze: list[str] = msgspec.field(default_factory=list)
    train_vision_tower: bool | None = None  # as in [sft]; Table 8: GRPO does not train it
    synthetic: SyntheticData | None = None
    gradient_checkpointing: bool = False
    # Issue 16: each distinct clip encoded once per pass, frozen encoders once per step,
    # log-probs from the completion positions with the LM head in chunks; false: the old
    # path (every row encodes its clip in every pass, full logits), for comparison.
    fast_path: bool = True
    # The rollouts' KV cache: "dynamic" (transformers' default) or "static" (preallocated;
    # on a GPU transformers then compiles the decoding step); not measured yet
    # (benchmarks/RESULTS.md), so the default stays dynamic.
    generation_cache: Literal["dynamic", "static"] = "dynamic"

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


class EvalTable(_Strict):
    """Judged evaluation: EEA, FCR, EPC beside WAR and UAR (paper section 4.2)."""

    protocol: EvalProtocol = "release"
    dataset: DataSpec | None = None
    # Several test sets, each judged and scored on its own (into eval/<label space>/) and
    # put side by side in one Table-1 layout (Table 1 has MAFW and DFEW).
    datasets: list[DataSpec] = msgspec.field(default_factory=list)
    predictions: str | None = None  # score an existing predictions JSONL instead
    label_space: str | None = None  # labels of `predictions` (mafw, dfew) without a dataset
    device: Device = "auto"  # generation: "auto" (cuda if present), "cpu", "cuda:0", ...
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # generation
    batch_size: Positive = 4  # generation: clips per generate() call
    judge: PluginSpec = msgspec.field(default_factory=lambda: PluginSpec(plugin="verifier"))
    temperature: PositiveFloat = 0.3
    top_p: TopP = 0.9
    max_new_tokens: Positive = 2048
    bootstrap: NonNegative = 1000
    seed: Seed = 0


class CompareTable(_Strict):
    """Stage ``compare``'s table: the answer-only baseline run beside this one (paper
    Table 1 puts R1-Omni, R = R_format + R_answer, beside ERV). The baseline recipe trains
    from this run's SFT model with this run's verifier, into ``<run dir>/baseline/``; then
    the two evaluations go side by side with their bootstrap intervals and the paired
    difference (evaluation/compare.py)."""

    baseline: NonEmpty  # a recipe file, relative to the recipe that names it
    name: NonEmpty = "ours"  # this run's row in the table
    baseline_name: NonEmpty | None = None  # the baseline's row; None: its recipe's name


class Recipe(_Strict):
    """A whole run. Relative paths inside are relative to the working directory ``erv``
    runs in, except ``extends`` and ``launch.deepspeed``, which name files relative to the
    recipe that names them; what a stage of the run produces is found in its run dir."""

    name: PlainName
    stages: list[str]
    description: str = ""
    extends: str | None = None
    run_dir: str | None = None
    seed: Seed = 0
    model: ModelSpec | None = None
    verifier: PluginSpec | None = None
    rewards: dict[str, RewardSpec] = msgspec.field(default_factory=dict)
    launch: LaunchConfig = msgspec.field(default_factory=LaunchConfig)
    logging: LoggingTable = msgspec.field(default_factory=LoggingTable)
    sft: SFTTable | None = None
    train_verifier: VerifierTrainingTable | None = None
    grpo: GRPOTable | None = None
    eval: EvalTable | None = None

    # Set by ``load_recipe``; not part of the file.
    source: str = ""
    # The tables of plugin stages (``[<stage>]``, decoded with the struct the stage
    # registered as its options); built-in stages' tables are the fields above.
    stage_tables: dict[str, Any] | None = None

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def table(self, stage: str) -> Any:
        """The decoded ``[<stage>]`` table of ``stage`` (None when the recipe has none)."""
        if self.stage_tables and stage in self.stage_tables:
            return self.stage_tables[stage]
        if stage in _STAGE_FIELDS:
            return getattr(self, stage)
        return None

    def to_builtins(self) -> dict[str, Any]:
        """The fully resolved recipe as plain data (plugin options decoded, Nones dropped);
        plugin stages' tables at the top level, where the file has them."""
        data = msgspec.to_builtins(self)
        data.update(data.pop("stage_tables", None) or {})
        return _drop_none(data)


# Recipe fields that are the table of the built-in stage of the same name.
_STAGE_FIELDS = frozenset({"sft", "train_verifier", "grpo", "eval"})


# Stage names an earlier erv accepted, and the name that replaced each.
RENAMED_STAGES: dict[str, str] = {"verifier": "train_verifier"}


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


# A recipe is a few KiB; anything far larger (or a device such as /dev/zero) is refused
# before it is read, so a wrong path cannot hang erv or fill its memory.
MAX_RECIPE_BYTES = 1 << 20


def _read_toml(path: Path, shown: str, where: str | None) -> dict[str, Any]:
    try:
        info = path.stat()
    except FileNotFoundError:
        if where:
            raise RecipeError(f"{where}: included recipe {shown} does not exist") from None
        raise RecipeError(f"{shown}: no such recipe file") from None
    except OSError as exc:
        raise RecipeError(f"{shown}: cannot read recipe: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise RecipeError(f"{shown}: cannot read recipe: {kind}")
    if info.st_size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{shown}: cannot read recipe: {info.st_size} bytes, more than "
                          f"a recipe's {MAX_RECIPE_BYTES} bytes at most")
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError(f"{shown}: cannot read recipe: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise RecipeError(f"{shown}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})"
                          ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{shown}: invalid TOML: {exc}") from None
    except RecursionError:
        raise RecipeError(f"{shown}: invalid TOML: arrays or tables nested too deeply"
                          ) from None


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


def _validation_message(exc: msgspec.ValidationError, prefix: _Path = (),
                        loaded: _Loaded | None = None, root: Any = None) -> tuple[_Path, str]:
    """Turn msgspec's "Expected `float`, got `str` - at `$.a.b`" into (path, message).

    A value outside its declared range reads "must be >= 2, got 0": the value is looked
    up in ``loaded`` and the field's declaration in ``root`` (the struct decoded at
    ``prefix``), for a choice's values and a pattern's description.
    """
    text = str(exc)
    m = re.match(r"(?s)(.*?)(?: - at `(\$[^`]*)`)?$", text)
    assert m is not None
    message, at = m.group(1), m.group(2) or "$"
    relative = _parse_path(at)
    path = (*prefix, *relative)
    unknown = re.match(r"Object contains unknown field `([^`]*)`", message)
    if unknown:
        return (*path, unknown.group(1)), "unknown field"
    missing = re.match(r"Object missing required field `([^`]*)`", message)
    if missing:
        return (*path, missing.group(1)), "required field is missing"
    got = _value_at(loaded.data, path) if loaded is not None else _MISSING
    shown = "" if got is _MISSING else f", got {_show(got)}"
    described = _description_at(root, relative) if root is not None else None
    bound = re.fullmatch(r"Expected `(?:int|float)` (>=|>|<=|<) (\S+)", message)
    if bound:
        rule = described or f"{bound.group(1)} {_number(bound.group(2))}"
        return path, f"must be {rule}{shown}"
    if re.fullmatch(r"Expected `(?:str|array)` of length >= 1", message):
        return path, f"must not be empty{shown}"
    info = _type_at(root, relative) if root is not None else None
    if message.startswith("Invalid enum value") and isinstance(info, msgspec.inspect.LiteralType):
        tail = "" if got is _MISSING else f"; got {_show(got)}"
        return path, f"must be one of {', '.join(map(str, info.values))}{tail}"
    if message.startswith("Expected `str` matching regex") and described:
        return path, f"must be {described}{shown}"
    return path, message.replace("`", "")


_MISSING = object()


def _value_at(data: Any, path: _Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)


def _number(text: str) -> str:
    value = float(text)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _inspect(tp: Any) -> Any:
    return msgspec.inspect.type_info(tp) if not isinstance(tp, msgspec.inspect.Type) else tp


def _unwrap(info: Any, *, keep_meta: bool = False) -> Any:
    """The one non-None member of an optional type, with or without its metadata."""
    while True:
        if isinstance(info, msgspec.inspect.UnionType):
            members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
            if len(members) != 1:
                return info
            info = members[0]
        elif isinstance(info, msgspec.inspect.Metadata) and not keep_meta:
            info = info.type
        else:
            return info


def _field_info(root: Any, path: _Path) -> Any:
    """The declared type (``msgspec.inspect`` info, metadata kept) at ``path`` below
    ``root``; None where the path leaves declared structure (plugin options, Any)."""
    info = _inspect(root)
    for part in path:
        info = _unwrap(info)
        if isinstance(info, msgspec.inspect.StructType) and isinstance(part, str):
            field = next((f for f in info.fields if f.name == part), None)
            if field is None:
                return None
            info = field.type
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        elif isinstance(info, msgspec.inspect.ListType) and isinstance(part, int):
            info = info.item_type
        else:
            return None
    return _unwrap(info, keep_meta=True)


def _type_at(root: Any, path: _Path) -> Any:
    info = _field_info(root, path)
    return _unwrap(info) if info is not None else None


def _description_at(root: Any, path: _Path) -> str | None:
    info = _field_info(root, path)
    if isinstance(info, msgspec.inspect.Metadata):
        return (info.extra_json_schema or {}).get("description")
    return None


def _check_finite(loaded: _Loaded, value: Any, path: _Path = ()) -> None:
    """TOML has ``nan`` and ``inf``; no setting of a recipe means either."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(loaded, path, f"must be a finite number, got {_show(value)}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(loaded, v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(loaded, v, (*path, i))


def _error(loaded: _Loaded, path: _Path, message: str) -> RecipeError:
    return RecipeError(f"{loaded.file_for(path)}: {format_path(path)}: {message}")


def load_recipe(path: str | os.PathLike[str], plugins: Plugins | None = None) -> Recipe:
    """Read, merge, decode and check a recipe against the installed plugins."""
    shown = os.fspath(path)
    loaded = _load_chain(Path(shown), shown, [], None)
    _check_finite(loaded, loaded.data)
    rewards = loaded.data.get("rewards")
    if isinstance(rewards, dict):
        # msgspec cannot name a dict key in its error path ("$.rewards[...]"): check the
        # entries one by one first so the error names the reward.
        for key, value in rewards.items():
            try:
                msgspec.convert(value, type=RewardSpec)
            except msgspec.ValidationError as exc:
                raise _error(loaded, *_validation_message(exc, ("rewards", key), loaded,
                                                          RewardSpec)) from None
    if plugins is None:
        from erv_plugins.plugins import get_plugins

        plugins = get_plugins()
    if "stage_tables" in loaded.data:  # set by load_recipe, never written in a file
        raise _error(loaded, ("stage_tables",), "unknown field")
    tables = _plugin_stage_tables(loaded, plugins)
    try:
        recipe = msgspec.convert({k: v for k, v in loaded.data.items() if k not in tables},
                                 type=Recipe)
    except msgspec.ValidationError as exc:
        raise _error(loaded, *_validation_message(exc, (), loaded, Recipe)) from None
    recipe.source = shown
    recipe.stage_tables = tables or None
    _resolve_plugins(recipe, loaded, plugins)
    for rule in RULES:
        for where, message in rule(recipe):
            raise _error(loaded, where, message)
    return recipe


def _plugin_stage_tables(loaded: _Loaded, plugins: Plugins) -> dict[str, Any]:
    """The top-level tables that belong to a plugin stage (a registered stage with an
    options struct, not a field of ``Recipe``), each decoded with that struct."""
    tables: dict[str, Any] = {}
    for key, raw in loaded.data.items():
        if key in Recipe.__struct_fields__ or key not in plugins.registries["stage"]:
            continue
        struct = plugins.get("stage", key).options
        if struct is None:
            continue
        try:
            tables[key] = msgspec.convert(raw, type=struct)
        except msgspec.ValidationError as exc:
            raise _error(loaded, *_validation_message(exc, (key,), loaded, struct)) from None
    return tables


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
        raise _error(loaded, *_validation_message(exc, (*path, "options"), loaded,
                                                  reg.options)) from None


def _resolve_plugins(recipe: Recipe, loaded: _Loaded, plugins: Plugins) -> None:
    for i, stage in enumerate(recipe.stages):
        if stage in RENAMED_STAGES and stage not in plugins.registries["stage"]:
            new = RENAMED_STAGES[stage]
            raise _error(loaded, ("stages", i),
                         f"stage {stage!r} is now called {new!r} (it reads [{new}])")
        try:
            reg = plugins.get("stage", stage)
        except PluginError as exc:
            raise _error(loaded, ("stages", i), str(exc)) from None
        # A stage that registered a table struct (its options) needs its [<stage>] table.
        if reg.options is not None and recipe.table(stage) is None:
            raise _error(loaded, ("stages", i), f"stage {stage!r} needs a [{stage}] table")
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
    for key, table in (recipe.stage_tables or {}).items():
        if isinstance(table, CompareTable):
            # Relative to the recipe file that named it, as extends is.
            table.baseline = os.fspath(
                Path(loaded.file_for((key, "baseline"))).parent / table.baseline)
    if recipe.launch.deepspeed is not None:
        # Relative to the recipe file that named it (which may be an ancestor); whether it
        # exists is checked with the other paths (preflight.py) before anything starts.
        where = ("launch", "deepspeed")
        ds = Path(loaded.file_for(where)).parent / recipe.launch.deepspeed
        recipe.launch.deepspeed = os.fspath(ds)


# -- rules between fields --------------------------------------------------------------------
# Each rule yields (path, message) for what it refuses; ``load_recipe`` reports the first,
# naming the file that supplied the value at the path. A rule for a new field goes here.
Rule = Callable[[Recipe], Iterator[tuple[_Path, str]]]

# Built-in stages that read what another one writes: (producer, consumer, what).
_STAGE_PRODUCTS: tuple[tuple[str, str, str], ...] = (
    ("sft", "grpo", "the SFT model GRPO starts from"),
    ("train_verifier", "grpo", "the verifier of the explanation reward"),
    ("sft", "eval", "the policy eval generates with"),
    ("grpo", "eval", "the policy eval generates with"),
    ("sft", "compare", "the SFT model the baseline starts from"),
    ("eval", "compare", "the evaluation compared with the baseline's"),
)


def _stage_order(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    for producer, consumer, what in _STAGE_PRODUCTS:
        if producer in recipe.stages and consumer in recipe.stages:
            i, j = recipe.stages.index(producer), recipe.stages.index(consumer)
            if j < i:
                yield ("stages", j), (f"stage {consumer!r} comes before stage {producer!r}, "
                                      f"which writes {what}")


def _training_steps(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    for table in ("sft", "grpo"):
        cfg = getattr(recipe, table)
        if cfg is not None and cfg.max_steps == 0:
            yield (table, "max_steps"), "must be -1 (train for `epochs`) or >= 1, got 0"


def _grpo_groups(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    """TRL 1.16 (GRPOTable.__post_init__) generates per_device_train_batch_size x
    num_processes x gradient_accumulation_steps completions at a time, whole groups of G."""
    cfg = recipe.grpo
    if cfg is None:
        return
    n = recipe.launch.num_processes
    total = cfg.batch_size * cfg.grad_accum * n
    if total % cfg.num_generations:
        yield ("grpo", "batch_size"), (
            f"batch_size x grad_accum x launch.num_processes = {cfg.batch_size} x "
            f"{cfg.grad_accum} x {n} = {total} completions per generation, not a multiple "
            f"of num_generations = {cfg.num_generations} (GRPO needs whole groups)")


def _schedules(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    if not any(s.schedule is not None for s in recipe.rewards.values()):
        return
    from erv_plugins.rewards.schedules import check_schedule

    for key, spec in recipe.rewards.items():
        try:
            check_schedule(spec.weight, spec.schedule)
        except ValueError as exc:
            yield ("rewards", key, "schedule"), str(exc)


def _label_spaces(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    from erv_plugins.labels import BUILTIN_LABEL_SPACES

    known = ", ".join(BUILTIN_LABEL_SPACES)
    for table, cfg in (("train_verifier", recipe.train_verifier), ("eval", recipe.eval)):
        name = getattr(cfg, "label_space", None)
        if name is not None and name not in BUILTIN_LABEL_SPACES:
            yield (table, "label_space"), f"must be one of {known}; got {name!r}"


def _eval_inputs(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    cfg = recipe.eval
    if cfg is None or "eval" not in recipe.stages:
        return
    has_data = cfg.dataset is not None or bool(cfg.datasets)
    if cfg.predictions is None and not has_data:
        yield ("eval",), "give a dataset to generate on, or predictions to score"
    elif cfg.predictions is not None and not has_data and cfg.label_space is None:
        yield ("eval", "predictions"), ("name the labels of the predictions with "
                                        "label_space (mafw, dfew) or dataset")


def _synthetic_labels(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    from erv_plugins.labels import MAFW_LABELS, normalize_mafw

    for table in ("sft", "grpo"):
        spec = getattr(getattr(recipe, table), "synthetic", None)
        for i, label in enumerate(spec.labels if spec is not None else ()):
            if normalize_mafw(label) not in MAFW_LABELS:
                yield (table, "synthetic", "labels", i), (
                    f"must be a MAFW label ({', '.join(MAFW_LABELS)}), got {label!r}")


def _machines(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    launch = recipe.launch
    if launch.machine_rank >= launch.num_machines:
        yield ("launch", "machine_rank"), (f"must be below num_machines = "
                                           f"{launch.num_machines}, got {launch.machine_rank}")
    if launch.num_processes % launch.num_machines:
        yield ("launch", "num_processes"), (
            f"{launch.num_processes} processes in all do not split evenly over "
            f"num_machines = {launch.num_machines}")
    if launch.num_machines > 1 and launch.main_process_ip is None:
        yield ("launch", "main_process_ip"), (
            "is needed with num_machines > 1: the address of machine_rank 0")


def _trackers(recipe: Recipe) -> Iterator[tuple[_Path, str]]:
    import importlib.util

    seen: set[str] = set()
    for i, tracker in enumerate(recipe.logging.report_to):
        if tracker in seen:
            yield ("logging", "report_to", i), f"{tracker!r} is listed twice"
        seen.add(tracker)
        package = TRACKER_PACKAGES[tracker]
        if importlib.util.find_spec(package) is None:
            yield ("logging", "report_to", i), (
                f"{tracker!r} needs the {package!r} package, which is not installed")


RULES: list[Rule] = [_stage_order, _training_steps, _grpo_groups, _schedules, _label_spaces,
                     _eval_inputs, _synthetic_labels, _trackers, _machines]

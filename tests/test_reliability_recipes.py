"""Bad recipes are refused by the recipe itself, before anything runs: ``erv validate``,
``erv run --dry-run`` and ``erv run`` all give the same one line, naming the file that
supplied the value, the place in the recipe and what was expected (issue 14)."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest
import tomli_w
from helpers import run_cli

from erv_plugins.recipe import Positive

# Every table, with built-in plugins; valid as it is (no file is read by validation).
BASE: dict[str, Any] = {
    "name": "t",
    "stages": ["sft", "train_verifier", "grpo", "eval"],
    "model": {"plugin": "omni", "options": {"tiny": True}},
    "verifier": {"plugin": "hf", "options": {"path": "verifier"}},
    "rewards": {"format": {}, "answer": {"options": {"label_space": "mafw"}}},
    "sft": {"dataset": {"plugin": "mafw", "root": "data"}},
    "train_verifier": {"base": "tiny", "train": [{"plugin": "text_generated"}],
                       "augment": {}},
    "grpo": {"dataset": {"plugin": "mafw", "root": "data"}, "num_generations": 8,
             "batch_size": 16, "grad_accum": 1},
    "eval": {"dataset": {"plugin": "mafw", "root": "data", "split": "test"}},
}

MAFW = ("anger, disgust, fear, happiness, neutral, sadness, surprise, contempt, anxiety, "
        "helplessness, disappointment")
LOSS_TYPES = "bnpo, cispo, dapo, dr_grpo, grpo, luspo, sapo, vespo"
SCHEDULERS = ("constant, constant_with_warmup, cosine, cosine_with_restarts, inverse_sqrt, "
              "linear, polynomial")
GROUPS = "completions per generation, not a multiple of num_generations"

# (id, {path: value} set on BASE, expected "<path>: <message>")
CASES: list[tuple[str, dict[tuple[Any, ...], Any], str]] = [
    ("G-0", {("grpo", "num_generations"): 0}, "$.grpo.num_generations: must be >= 2, got 0"),
    ("G-negative", {("grpo", "num_generations"): -4},
     "$.grpo.num_generations: must be >= 2, got -4"),
    ("G-1", {("grpo", "num_generations"): 1}, "$.grpo.num_generations: must be >= 2, got 1"),
    ("batch-not-multiple-of-G", {("grpo", "batch_size"): 15},
     f"$.grpo.batch_size: batch_size x grad_accum x launch.num_processes = 15 x 1 x 1 = 15 "
     f"{GROUPS} = 8 (GRPO needs whole groups)"),
    ("batch-times-processes", {("grpo", "batch_size"): 4, ("grpo", "num_generations"): 16,
                               ("launch", "num_processes"): 2},
     f"$.grpo.batch_size: batch_size x grad_accum x launch.num_processes = 4 x 1 x 2 = 8 "
     f"{GROUPS} = 16 (GRPO needs whole groups)"),
    ("batch-0", {("grpo", "batch_size"): 0}, "$.grpo.batch_size: must be >= 1, got 0"),
    ("batch-negative", {("sft", "batch_size"): -8}, "$.sft.batch_size: must be >= 1, got -8"),
    ("grad-accum-0", {("grpo", "grad_accum"): 0}, "$.grpo.grad_accum: must be >= 1, got 0"),
    ("lr-negative", {("grpo", "lr"): -1e-6}, "$.grpo.lr: must be > 0, got -1e-06"),
    ("lr-0", {("sft", "lr"): 0.0}, "$.sft.lr: must be > 0, got 0"),
    ("max-completion-0", {("grpo", "max_completion_length"): 0},
     "$.grpo.max_completion_length: must be >= 1, got 0"),
    ("rollout-temperature-0", {("grpo", "temperature"): 0.0},
     "$.grpo.temperature: must be > 0, got 0"),
    ("eval-temperature-negative", {("eval", "temperature"): -0.3},
     "$.eval.temperature: must be > 0, got -0.3"),
    ("loss-type", {("grpo", "loss_type"): "ppo"},
     f"$.grpo.loss_type: must be one of {LOSS_TYPES}; got 'ppo'"),
    ("scale-rewards", {("grpo", "scale_rewards"): "std"},
     "$.grpo.scale_rewards: must be one of batch, group, none; got 'std'"),
    ("scheduler-unknown", {("grpo", "scheduler"): "cosin"},
     f"$.grpo.scheduler: must be one of {SCHEDULERS}; got 'cosin'"),
    ("scheduler-needs-eval", {("sft", "scheduler"): "reduce_lr_on_plateau"},
     f"$.sft.scheduler: must be one of {SCHEDULERS}; got 'reduce_lr_on_plateau'"),
    ("warmup-ratio-5", {("grpo", "warmup_ratio"): 5.0}, "$.grpo.warmup_ratio: must be < 1, got 5"),
    ("warmup-ratio-1-is-a-step-count", {("sft", "warmup_ratio"): 1.0},
     "$.sft.warmup_ratio: must be < 1, got 1"),
    ("warmup-ratio-negative", {("train_verifier", "warmup_ratio"): -0.1},
     "$.train_verifier.warmup_ratio: must be >= 0, got -0.1"),
    ("epochs-0", {("sft", "epochs"): 0.0}, "$.sft.epochs: must be > 0, got 0"),
    ("epochs-negative", {("train_verifier", "epochs"): -1.0},
     "$.train_verifier.epochs: must be > 0, got -1"),
    ("beta-negative", {("grpo", "beta"): -0.04}, "$.grpo.beta: must be >= 0, got -0.04"),
    ("epsilon-0", {("grpo", "epsilon"): 0.0}, "$.grpo.epsilon: must be > 0, got 0"),
    ("save-steps-0", {("grpo", "save_steps"): 0}, "$.grpo.save_steps: must be >= 1, got 0"),
    ("logging-steps-0", {("grpo", "logging_steps"): 0},
     "$.grpo.logging_steps: must be >= 1, got 0"),
    ("max-steps-negative", {("grpo", "max_steps"): -5},
     "$.grpo.max_steps: must be -1 (train for `epochs`) or >= 1, got -5"),
    ("max-steps-0", {("sft", "max_steps"): 0},
     "$.sft.max_steps: must be -1 (train for `epochs`) or >= 1, got 0"),
    ("bootstrap-negative", {("eval", "bootstrap"): -1}, "$.eval.bootstrap: must be >= 0, got -1"),
    ("eval-batch-0", {("eval", "batch_size"): 0}, "$.eval.batch_size: must be >= 1, got 0"),
    ("max-new-tokens-0", {("eval", "max_new_tokens"): 0},
     "$.eval.max_new_tokens: must be >= 1, got 0"),
    ("top-p-0", {("eval", "top_p"): 0.0}, "$.eval.top_p: must be > 0, got 0"),
    ("top-p-above-1", {("grpo", "top_p"): 1.5}, "$.grpo.top_p: must be <= 1, got 1.5"),
    ("eval-fraction-1", {("train_verifier", "eval_fraction"): 1.0},
     "$.train_verifier.eval_fraction: must be < 1, got 1"),
    ("weight-decay-negative", {("train_verifier", "weight_decay"): -0.01},
     "$.train_verifier.weight_decay: must be >= 0, got -0.01"),
    ("seed-negative", {("grpo", "seed"): -1}, "$.grpo.seed: must be >= 0, got -1"),
    ("seed-above-numpy", {("seed",): 2**32}, "$.seed: must be <= 4294967295, got 4294967296"),
    ("name-escapes-runs", {("name",): "../escape"},
     "$.name: must be a plain name (letters, digits, '.', '_', '-'; no '/', not starting "
     "with '.'), got '../escape'"),
    ("name-with-slash", {("name",): "a/b"},
     "$.name: must be a plain name (letters, digits, '.', '_', '-'; no '/', not starting "
     "with '.'), got 'a/b'"),
    ("name-empty", {("name",): ""},
     "$.name: must be a plain name (letters, digits, '.', '_', '-'; no '/', not starting "
     "with '.'), got ''"),
    ("lr-inf", {("grpo", "lr"): float("inf")}, "$.grpo.lr: must be a finite number, got inf"),
    ("weight-nan", {("rewards", "format", "weight"): float("nan")},
     "$.rewards.format.weight: must be a finite number, got nan"),
    ("reward-timeout-0", {("rewards", "format", "timeout_s"): 0.0},
     "$.rewards.format.timeout_s: must be > 0, got 0"),
    ("schedule-without-steps", {("rewards", "format", "schedule"): {"kind": "linear", "end": 0.5}},
     "$.rewards.format.schedule: a linear schedule needs 'end' and 'steps' > 0"),
    ("schedule-steps-0", {("rewards", "format", "schedule"): {"kind": "cosine", "end": 0.5,
                                                             "steps": 0}},
     "$.rewards.format.schedule.steps: must be >= 1, got 0"),
    ("processes-0", {("launch", "num_processes"): 0},
     "$.launch.num_processes: must be >= 1, got 0"),
    ("dataset-limit-0", {("grpo", "dataset", "limit"): 0},
     "$.grpo.dataset.limit: must be >= 1, got 0"),
    ("frames-0", {("sft", "frames"): 0}, "$.sft.frames: must be >= 1, got 0"),
    ("device", {("train_verifier", "device"): "gpu"},
     "$.train_verifier.device: must be auto, cpu, mps, cuda or cuda:N, got 'gpu'"),
    ("dtype", {("eval", "dtype"): "fp8"},
     "$.eval.dtype: must be one of auto, bfloat16, float16, float32; got 'fp8'"),
    ("augment-url", {("train_verifier", "augment", "base_url"): "localhost:8000/v1"},
     "$.train_verifier.augment.base_url: must be an http:// or https:// URL, "
     "got 'localhost:8000/v1'"),
    ("augment-concurrency-0", {("train_verifier", "augment", "concurrency"): 0},
     "$.train_verifier.augment.concurrency: must be >= 1, got 0"),
    ("augment-price-negative", {("train_verifier", "augment", "price_in"): -2.0},
     "$.train_verifier.augment.price_in: must be >= 0, got -2"),
    ("augment-key-env-empty", {("train_verifier", "augment", "api_key_env"): ""},
     "$.train_verifier.augment.api_key_env: must not be empty, got ''"),
    ("grpo-before-sft", {("stages",): ["grpo", "sft", "train_verifier", "eval"]},
     "$.stages[0]: stage 'grpo' comes before stage 'sft', which writes the SFT model GRPO "
     "starts from"),
    ("eval-before-grpo", {("stages",): ["sft", "train_verifier", "eval", "grpo"]},
     "$.stages[2]: stage 'eval' comes before stage 'grpo', which writes the policy eval "
     "generates with"),
    ("verifier-label-space", {("train_verifier", "label_space"): "emotions"},
     "$.train_verifier.label_space: must be one of dfew, mafw, emer, goemotions; "
     "got 'emotions'"),
    ("eval-label-space", {("eval", "label_space"): "MAFW11"},
     "$.eval.label_space: must be one of dfew, mafw, emer, goemotions; got 'MAFW11'"),
    ("eval-without-inputs", {("eval", "dataset"): None},
     "$.eval: give a dataset to generate on, or predictions to score"),
    ("predictions-without-labels", {("eval", "dataset"): None, ("eval", "predictions"): "p.jsonl"},
     "$.eval.predictions: name the labels of the predictions with label_space (mafw, dfew) "
     "or dataset"),
    ("synthetic-label", {("sft", "synthetic"): {"labels": ["happiness", "joy"]}},
     f"$.sft.synthetic.labels[1]: must be a MAFW label ({MAFW}), got 'joy'"),
    ("synthetic-layout", {("grpo", "synthetic"): {"layouts": ["mafw", "kinetics"]}},
     "$.grpo.synthetic.layouts[1]: must be one of dfew, emer, jsonl, mafw, merr; "
     "got 'kinetics'"),
    ("synthetic-size", {("grpo", "synthetic"): {"size": 8}},
     "$.grpo.synthetic.size: must be >= 16, got 8"),
    ("synthetic-no-labels", {("sft", "synthetic"): {"labels": []}},
     "$.sft.synthetic.labels: must not be empty, got []"),
]


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    if value is None:
        data.pop(path[-1], None)
    else:
        data[path[-1]] = value


def _recipe(tmp_path: Path, changes: dict[tuple[Any, ...], Any], name: str = "x.toml") -> str:
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        _set(data, path, value)
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data))
    return str(path)


def test_the_base_recipe_is_valid(tmp_path, capsys):
    r = run_cli(capsys, ["validate", _recipe(tmp_path, {})])
    assert (r.code, r.err) == (0, "")


@pytest.mark.parametrize(("changes", "message"), [pytest.param(c, m, id=i) for i, c, m in CASES])
def test_bad_recipe_is_refused_by_validate_dry_run_and_run(tmp_path, capsys, changes, message):
    path = _recipe(tmp_path, changes)
    expected = f"erv: error: {path}: {message}\n"
    for command in (["validate"], ["run", "--dry-run"], ["run", "--run-dir", str(tmp_path / "r")]):
        r = run_cli(capsys, [*command, path])
        assert (r.code, r.out, r.err) == (2, "", expected), command
    assert not (tmp_path / "r").exists()  # refused before the run directory is made


def test_the_file_that_supplied_the_value_is_named(tmp_path, capsys):
    base = _recipe(tmp_path, {("grpo", "num_generations"): 0}, "base.toml")
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\nname = "child"\n[grpo]\nbeta = 0.1\n')
    r = run_cli(capsys, ["validate", str(child)])
    assert (r.code, r.err) == (2, f"erv: error: {base}: $.grpo.num_generations: must be >= 2, "
                                  "got 0\n")
    # A rule between fields names the file of the value at its path.
    child.write_text('extends = "base.toml"\n[grpo]\nnum_generations = 8\nbatch_size = 12\n')
    r = run_cli(capsys, ["validate", str(child)])
    assert r.err == (f"erv: error: {child}: $.grpo.batch_size: batch_size x grad_accum x "
                     f"launch.num_processes = 12 x 1 x 1 = 12 {GROUPS} = 8 (GRPO needs whole "
                     "groups)\n")


# Recipe files erv must refuse without reading them whole (or at all).
def _huge(tmp_path: Path) -> str:
    path = tmp_path / "huge.toml"
    path.write_bytes(b'name = "t"\n' + b"# padding\n" * 120_000)
    return str(path)


def _latin1(tmp_path: Path) -> str:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "t"\nstages = []\ndescription = "caf\xe9"\n')
    return str(path)


def _deep(tmp_path: Path) -> str:
    path = tmp_path / "deep.toml"
    path.write_text("name = " + "[" * 5000 + "]" * 5000 + "\n")
    return str(path)


FILE_CASES = [
    ("dev-zero", lambda tmp: "/dev/zero", "/dev/zero: cannot read recipe: not a regular file"),
    ("fifo", lambda tmp: (os.mkfifo(tmp / "fifo.toml"), str(tmp / "fifo.toml"))[1],
     "{tmp}/fifo.toml: cannot read recipe: not a regular file"),
    ("huge", _huge, "{tmp}/huge.toml: cannot read recipe: 1200011 bytes, more than a recipe's "
                    "1048576 bytes at most"),
    ("not-utf8", _latin1, "{tmp}/latin1.toml:3: not UTF-8 text (byte 0xe9)"),
    ("nested-too-deep", _deep, "{tmp}/deep.toml: invalid TOML: arrays or tables nested too "
                               "deeply"),
]


@pytest.mark.parametrize(("make", "message"), [pytest.param(f, m, id=i) for i, f, m in FILE_CASES])
def test_unreadable_recipe_files_are_refused_at_once(tmp_path, capsys, make, message):
    r = run_cli(capsys, ["validate", make(tmp_path)])
    assert (r.code, r.err) == (2, "erv: error: " + message.format(tmp=tmp_path) + "\n")


def test_every_shipped_recipe_passes(capsys):
    for path in sorted(Path(__file__).resolve().parents[1].glob("recipes/*.toml")):
        r = run_cli(capsys, ["validate", str(path)])
        assert r.code == 0, r.err


# -- the choices are the installed libraries' ---------------------------------------------

def test_loss_types_and_reward_scalings_are_trls():
    import typing

    from trl import GRPOConfig

    from erv_plugins.recipe import LossType, ScaleRewards

    fields = GRPOConfig.__dataclass_fields__
    help_loss = fields["loss_type"].metadata["help"]
    listed = re.search(r"Supported values are (.*?)\. ", help_loss).group(1)
    assert set(typing.get_args(LossType)) == set(re.findall(r"'(\w+)'", listed))
    help_scale = fields["scale_rewards"].metadata["help"]
    assert set(typing.get_args(ScaleRewards)) == {"group", "batch", "none"}
    assert all(re.search(rf"\b{v}\b", help_scale) for v in ("group", "batch", "none"))


def test_schedulers_are_those_transformers_runs_without_extra_arguments(tmp_path):
    import typing
    import warnings

    import torch
    from transformers import TrainingArguments
    from transformers.optimization import get_scheduler
    from transformers.trainer_utils import SchedulerType

    from erv_plugins.recipe import Scheduler

    accepted = set(typing.get_args(Scheduler))
    assert accepted <= {s.value for s in SchedulerType}

    def runs(name: str) -> bool:
        warnings.simplefilter("ignore")
        try:
            args = TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type=name,
                                     warmup_steps=0.1, report_to="none", use_cpu=True)
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            get_scheduler(args.lr_scheduler_type, opt, num_warmup_steps=10,
                          num_training_steps=100,
                          scheduler_specific_kwargs=args.lr_scheduler_kwargs)
            return True
        except (ValueError, TypeError):
            return False

    assert {s.value for s in SchedulerType if runs(s.value)} == accepted


@pytest.mark.parametrize(("batch", "accum", "G"), [
    (16, 1, 8), (15, 1, 8), (12, 2, 8), (8, 2, 16), (4, 2, 16), (16, 2, 16), (6, 1, 4),
    (5, 3, 3), (7, 1, 2),
])
def test_the_group_rule_is_trls(tmp_path, batch, accum, G):
    """erv refuses exactly the batch shapes TRL 1.16's GRPOConfig refuses (one process)."""
    import tomllib
    import warnings

    import msgspec
    from trl import GRPOConfig

    from erv_plugins.recipe import Recipe, _grpo_groups

    path = _recipe(tmp_path, {("grpo", "batch_size"): batch, ("grpo", "grad_accum"): accum,
                              ("grpo", "num_generations"): G})
    recipe = msgspec.convert(tomllib.loads(Path(path).read_text()), Recipe)
    erv_ok = not list(_grpo_groups(recipe))
    warnings.simplefilter("ignore")
    try:
        GRPOConfig(output_dir=str(tmp_path / "o"), per_device_train_batch_size=batch,
                   gradient_accumulation_steps=accum, num_generations=G, use_cpu=True,
                   report_to="none")
        trl_ok = True
    except ValueError:
        trl_ok = False
    assert erv_ok == trl_ok == ((batch * accum) % G == 0)


class NewTable(msgspec.Struct, forbid_unknown_fields=True):
    """A table another branch might add: each field declares its range with its type."""

    top_k: Positive = 50
    mode: Annotated[str, msgspec.Meta(pattern="^(a|b)$", description="a or b")] = "a"


def test_a_field_added_later_follows_the_same_pattern():
    """What a new field needs to be checked and worded like the others: one annotation."""
    from erv_plugins.recipe import _validation_message

    for raw, expected in (({"top_k": 0}, "must be >= 1"), ({"mode": "c"}, "must be a or b")):
        with pytest.raises(msgspec.ValidationError) as info:
            msgspec.convert(raw, NewTable)
        assert _validation_message(info.value, ("grpo",), None, NewTable)[1] == expected

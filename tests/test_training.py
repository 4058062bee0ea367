"""Training stages: the run log, the TRL settings of a recipe, SFT -> GRPO end to end on a
tiny text-only policy, resume after a kill, and two-process GRPO over gloo."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from erv_plugins.training.runlog import (
    MetricsLog,
    fifth_means,
    plot_rewards,
    reward_series,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]

# A recipe on the text stand-in task (erv_plugins.training.demo): SFT teaches the format,
# GRPO then raises the total reward. Sized for 2 CPU cores.
TEXT_RECIPE = """\
name = "tiny_text"
stages = ["sft", "grpo"]

[model]
plugin = "tiny-text"

[verifier]
plugin = "keywords"

[rewards.format]
[rewards.answer]
options = {{ label_space = "cue-text" }}
[rewards.explanation]
options = {{ tau = 0.5 }}

[launch]
num_processes = {procs}

[sft]
dataset = {{ plugin = "cue-text", options = {{ n_per_label = 16 }} }}
epochs = 12
lr = 3e-3
batch_size = 8
warmup_ratio = 0.0

[grpo]
dataset = {{ plugin = "cue-text", options = {{ n_per_label = 8, seed = 1 }} }}
num_generations = 4
beta = 0.04
lr = 5e-4
batch_size = {batch}
grad_accum = 1
epochs = 1
max_steps = {steps}
max_completion_length = 48
save_steps = 10
"""

DRIVER = """\
import sys, torch
torch.set_num_threads(1)
import erv_plugins.testing.rewards, erv_plugins.training.demo
from erv_plugins.plugins import Plugins
from erv_plugins.recipe import load_recipe
from erv_plugins.stages import run_recipe
plugins = Plugins(extra=[erv_plugins.training.demo, erv_plugins.testing.rewards])
recipe = load_recipe(sys.argv[1], plugins)
recipe.run_dir = sys.argv[2]
run_recipe(recipe, plugins, only=sys.argv[3:] or None)
"""


def write_recipe(tmp_path: Path, *, procs: int = 1, batch: int = 8, steps: int = 30,
                 stages: str | None = None) -> Path:
    text = TEXT_RECIPE.format(procs=procs, batch=batch, steps=steps)
    if stages is not None:
        text = text.replace('stages = ["sft", "grpo"]', f"stages = {stages}")
    path = tmp_path / "tiny_text.toml"
    path.write_text(text)
    return path


def run_driver(recipe: Path, run_dir: Path, *stages: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(recipe), str(run_dir), *stages],
                            env=env, cwd=recipe.parent, **kw)


# -- run log -----------------------------------------------------------------------------
def test_metrics_log_cuts_back_to_the_resumed_step_and_keeps_earlier_lines(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 8):
        log.append({"step": step, "reward": step / 10})
    with log.path.open("a") as f:
        f.write('{"step": 8, "rew')  # a kill mid-write
    assert [r["step"] for r in log.read()] == [1, 2, 3, 4, 5, 6, 7]
    log.truncate_after(5)
    log.append({"step": 6, "reward": 0.66})
    assert [(r["step"], r["reward"]) for r in log.read()] == [
        (1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (5, 0.5), (6, 0.66)]
    assert log.last_step() == 6


def test_reward_series_and_fifths_from_trl_log_keys():
    rows = [{"step": s, "reward": float(s), "rewards/format/mean": 1.0,
             "rewards/explanation/mean": float("nan") if s == 3 else 0.5, "loss": 0.1}
            for s in range(1, 11)]
    series = reward_series(rows)
    assert sorted(series) == ["explanation", "format", "total"]
    assert series["explanation"][0] == [1, 2, 4, 5, 6, 7, 8, 9, 10]  # NaN steps are gaps
    assert fifth_means(series["total"][1]) == (1.5, 9.5)


def test_plots_and_report_name_every_reward(tmp_path):
    rows = [{"step": s, "reward": s / 20, "rewards/format/mean": min(1.0, s / 10),
             "rewards/answer/mean": 0.25} for s in range(1, 21)]
    plots = plot_rewards(rows, tmp_path)
    assert sorted(p.name for p in plots) == ["reward_answer.png", "reward_format.png",
                                            "reward_total.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    report = write_report(rows, tmp_path / "report.md", title="GRPO: t",
                          settings={"beta": 0.04}, plots=plots).read_text()
    assert "| total | 0.125 | 0.925 | +0.800 |" in report
    assert "| format | 0.250 | 1.000 | +0.750 |" in report
    assert "- beta: 0.04" in report
    assert "![reward_total](reward_total.png)" in report


# -- settings ----------------------------------------------------------------------------
def test_trl_settings_carry_every_paper_value(tmp_path):
    import msgspec
    from erv_plugins.recipe import DataSpec, GRPOTable, Recipe
    from erv_plugins.training.grpo import trl_settings

    cfg = GRPOTable(dataset=DataSpec(plugin="mafw"), bf16=True)
    recipe = Recipe(name="p", stages=["grpo"], grpo=cfg)
    s = trl_settings(cfg, recipe, tmp_path)
    assert (s["num_generations"], s["beta"], s["learning_rate"], s["lr_scheduler_type"],
            s["per_device_train_batch_size"], s["gradient_accumulation_steps"],
            s["num_train_epochs"], s["temperature"], s["loss_type"], s["scale_rewards"]) == (
        16, 0.04, 1e-6, "cosine", 16, 2, 2.0, 1.0, "grpo", "group")
    from trl import GRPOConfig as TRLConfig

    trl = TRLConfig(**s)  # TRL accepts them (and its defaults differ: beta 0, "dapo")
    assert (trl.beta, trl.loss_type, trl.num_generations) == (0.04, "grpo", 16)
    assert msgspec.structs.asdict(cfg)["beta"] == 0.04


# -- end to end --------------------------------------------------------------------------
@pytest.mark.slow
def test_sft_then_grpo_raises_the_total_reward(tmp_path):
    recipe = write_recipe(tmp_path)
    proc = run_driver(recipe, tmp_path / "run")
    assert proc.wait(timeout=600) == 0
    run = tmp_path / "run"
    sft = json.loads((run / "sft" / ".done").read_text())
    assert sft["last_loss"] < sft["first_loss"] / 4
    rows = MetricsLog(run / "grpo" / "metrics.jsonl").read()
    assert [r["step"] for r in rows] == list(range(1, 31))
    first, last = fifth_means([r["reward"] for r in rows])
    assert last > first
    for name in ("total", "format", "answer", "explanation"):
        assert (run / "grpo" / f"reward_{name}.png").is_file()
    assert (run / "grpo" / "model" / "model.safetensors").is_file()
    assert "| total |" in (run / "grpo" / "report.md").read_text()


# GRPO on the tiny omni policy (random weights, no SFT: rewards stay 0, steps are real),
# synthetic clips written by the stage.
OMNI_RESUME_RECIPE = """\
name = "tiny_omni_resume"
stages = ["grpo"]

[model]
plugin = "omni"
options = { tiny = true }

[verifier]
plugin = "keywords"

[rewards.format]
[rewards.answer]
options = { label_space = "mafw" }
[rewards.explanation]

[grpo]
dataset = { plugin = "mafw", root = "data/t/mafw" }
synthetic = { out = "data/t", n_per_label = 4, layouts = ["mafw"] }
num_generations = 4
batch_size = 4
grad_accum = 1
lr = 1e-4
max_steps = 24
max_completion_length = 12
save_steps = 10
"""


@pytest.mark.slow
def test_killed_grpo_resumes_without_duplicated_or_missing_steps(tmp_path):
    recipe = tmp_path / "tiny_omni_resume.toml"
    recipe.write_text(OMNI_RESUME_RECIPE)
    run = tmp_path / "run"
    metrics = run / "grpo" / "metrics.jsonl"
    proc = run_driver(recipe, run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    # Kill after checkpoint-10 and a few more logged steps, i.e. mid-run.
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 13:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "GRPO finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged = [r["step"] for r in MetricsLog(metrics).read()]
    assert logged[:13] == list(range(1, 14)) and not (run / "grpo" / ".done").exists()
    assert (run / "grpo" / "checkpoints" / "checkpoint-10").is_dir()
    out = subprocess.run([sys.executable, "-c", DRIVER, str(recipe), str(run)], cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming from checkpoint-10" in out.stdout
    rows = MetricsLog(metrics).read()
    assert [r["step"] for r in rows] == list(range(1, 25))
    assert all(r["completions/mean_length"] > 0 for r in rows)
    assert (run / "grpo" / ".done").is_file()


@pytest.mark.slow
def test_two_processes_run_real_grpo_steps_over_gloo(tmp_path):
    """DDP over gloo, launched by the stage itself through ``accelerate launch``."""
    from erv_plugins.training.demo import TinyTextOptions, tiny_text_model

    policy = tiny_text_model(TinyTextOptions(), out_dir=tmp_path / "policy")
    recipe = write_recipe(tmp_path, procs=2, batch=4, steps=4, stages='["grpo"]')
    recipe.write_text(recipe.read_text().replace(
        'plugin = "tiny-text"', f'plugin = "tiny-text"\npath = "{policy}"'))
    out = subprocess.run([sys.executable, "-c", DRIVER, str(recipe), str(tmp_path / "run")],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                         text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "erv: launching: accelerate launch --num_processes 2" in out.stdout
    summary = json.loads((tmp_path / "run" / "grpo" / ".done").read_text())
    assert summary["world_size"] == 2
    # 2 processes x 4 completions per step = 8 completions = 2 prompts of G = 4 per step.
    rows = MetricsLog(tmp_path / "run" / "grpo" / "metrics.jsonl").read()
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["num_tokens"] > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None
                    or shutil.which("c++") is None or importlib.util.find_spec("ninja") is None,
                    reason="DeepSpeed on CPU builds an op: needs deepspeed, a C++ compiler, ninja")
def test_two_processes_run_real_grpo_steps_with_deepspeed_zero3_on_cpu(tmp_path):
    """ZeRO-3 over gloo on CPU (DeepSpeed compiles its CPU op once, about 45 s)."""
    from erv_plugins.training.demo import TinyTextOptions, tiny_text_model

    policy = tiny_text_model(TinyTextOptions(), out_dir=tmp_path / "policy")
    ds = REPO / "recipes" / "deepspeed" / "zero3_cpu.json"
    recipe = write_recipe(tmp_path, procs=2, batch=4, steps=3, stages='["grpo"]')
    recipe.write_text(recipe.read_text()
                      .replace('plugin = "tiny-text"', f'plugin = "tiny-text"\npath = "{policy}"')
                      .replace("num_processes = 2", f'num_processes = 2\ndeepspeed = "{ds}"'))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the op is cached in ~/.cache/torch_extensions
    out = subprocess.run([sys.executable, "-c", DRIVER, str(recipe), str(tmp_path / "run")],
                         env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "--use_deepspeed --deepspeed_config_file" in out.stdout
    summary = json.loads((tmp_path / "run" / "grpo" / ".done").read_text())
    assert (summary["world_size"], summary["deepspeed"]) == (2, True)
    rows = MetricsLog(tmp_path / "run" / "grpo" / "metrics.jsonl").read()
    assert [r["step"] for r in rows] == [1, 2, 3]


# -- errors ------------------------------------------------------------------------------
def test_a_freeze_prefix_that_matches_nothing_is_an_error_naming_the_setting():
    import torch
    from erv_plugins.errors import ErvError
    from erv_plugins.training.common import freeze

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    assert freeze(model, ["0."], "r.toml: $.grpo.freeze") == 2  # weight and bias
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]
    with pytest.raises(ErvError, match=r"r.toml: \$.grpo.freeze: no parameter name starts "
                                       r"with 'vision_tower.'"):
        freeze(model, ["vision_tower."], "r.toml: $.grpo.freeze")


def test_train_vision_tower_unfreezes_siglip_and_survives_a_save(tmp_path):
    """Paper Table 8 trains the 0.5B vision tower; the Whisper encoder stays frozen."""
    from erv_plugins.models.omni import build_tiny_omni, load_omni
    from erv_plugins.training.policy import load_policy

    path = build_tiny_omni(tmp_path / "tiny")

    def trainable(model, part):
        flags = {p.requires_grad for p in getattr(model.model, part).parameters()}
        assert len(flags) == 1, f"{part} is partly frozen"
        return flags.pop()

    frozen = load_policy(path).model
    assert (trainable(frozen, "vision_tower"), trainable(frozen, "audio_tower")) == (False, False)
    policy = load_policy(path, train_vision_tower=True)
    assert (trainable(policy.model, "vision_tower"),
            trainable(policy.model, "audio_tower")) == (True, False)
    policy.model.save_pretrained(tmp_path / "saved")
    policy.processor.save_pretrained(tmp_path / "saved")
    reloaded, _ = load_omni(tmp_path / "saved")
    assert (trainable(reloaded, "vision_tower"), trainable(reloaded, "audio_tower")) == (True, False)


def test_grpo_trains_siglip_as_its_stage_says_not_as_the_sft_model_was_saved(tmp_path):
    """Paper Table 8: SFT trains SigLIP, GRPO does not. The SFT checkpoint's config says
    its tower is trainable; GRPO's policy (opened by TRL from that path) follows [grpo]
    train_vision_tower, handed to the trainer; None keeps the checkpoint's choice."""
    from datasets import Dataset
    from trl import GRPOConfig

    from erv_plugins.models.omni import build_tiny_omni
    from erv_plugins.models.omni.policy import open_omni
    from erv_plugins.training.policy import load_policy
    from erv_plugins.training.trainer import OmniGRPOTrainer

    sft = load_policy(build_tiny_omni(tmp_path / "tiny"), train_vision_tower=True)
    sft.model.save_pretrained(tmp_path / "sft")
    sft.processor.save_pretrained(tmp_path / "sft")
    opened = open_omni(tmp_path / "sft")
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=2,
                      per_device_train_batch_size=2, beta=0.04, use_cpu=True, bf16=False,
                      report_to=[])

    def tower(given):
        model = OmniGRPOTrainer(
            model=str(tmp_path / "sft"), processing_class=opened.tokenizer,
            reward_funcs=[lambda completions, **_: [0.0] * len(completions)], args=args,
            train_dataset=Dataset.from_list([{"prompt": "x"}]), media=opened,
            **({} if given is None else {"train_vision_tower": given})).model
        flags = {p.requires_grad for p in model.model.vision_tower.parameters()}
        return (flags, model.model.vision_tower.frozen, model.config.freeze_vision_tower,
                {p.requires_grad for p in model.model.audio_tower.parameters()})

    assert tower(False) == ({False}, True, True, {False})
    assert tower(True) == ({True}, False, False, {False})
    assert tower(None) == ({True}, False, False, {False})  # as SFT saved it
    refrozen = load_policy(tmp_path / "sft", train_vision_tower=False).model
    assert {p.requires_grad for p in refrozen.model.vision_tower.parameters()} == {False}


def test_grpo_without_the_sft_model_says_which_stage_to_run(tmp_path):
    import erv_plugins.testing.rewards
    import erv_plugins.training.demo
    from erv_plugins.errors import ErvError
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import StageContext
    from erv_plugins.training.common import policy_source

    plugins = Plugins(extra=[erv_plugins.training.demo, erv_plugins.testing.rewards])
    recipe = load_recipe(write_recipe(tmp_path), plugins)
    ctx = StageContext(recipe, tmp_path / "run", tmp_path / "run" / "grpo", plugins)
    with pytest.raises(ErvError, match=r"the SFT stage has not produced a model yet \(run the "
                                       r"sft stage first: erv run .*tiny_text.toml --stage sft\)"):
        policy_source(ctx, after_sft=True)

"""Stage ``grpo``: GRPO with R = R_E + R_format + R_answer (paper eq. 3-5) on TRL.

The policy starts from this run's SFT model; the reward engine scores each group of G
completions (the explanation reward through the verifier, this run's trained one when the
recipe has a verifier stage). Every paper value is passed to TRL explicitly, since TRL's
defaults differ (beta 0, loss "dapo", G = 8):

=====================  =========  ===========================================
paper (section 4)      recipe     TRL ``GRPOConfig``
=====================  =========  ===========================================
G = 16                 16         ``num_generations``
beta = 0.04            0.04       ``beta`` (KL: k3 estimator, TRL's only one)
lr 1e-6, cosine        1e-6       ``learning_rate``, ``lr_scheduler_type``
batch 16               16         ``per_device_train_batch_size`` (completions)
grad. accumulation 2   2          ``gradient_accumulation_steps``
2 epochs               2          ``num_train_epochs``
bf16                   true       ``bf16`` (GPU only; CPU runs in float32)
temperature 1.0        1.0        ``temperature``
GRPO loss              "grpo"     ``loss_type="grpo"`` (per-sequence token mean)
(r-mean)/(std+1e-4)    "group"    ``scale_rewards="group"``: TRL computes exactly
                                  ``(r - mean_group) / (std_group + 1e-4)``
=====================  =========  ===========================================

TRL 1.16 has no ``max_prompt_length`` any more: prompts are never truncated (a truncated
prompt would lose the media placeholders); a prompt longer than the recipe's limit is an
error here. Outputs: ``grpo/model``, ``grpo/checkpoints``, ``grpo/metrics.jsonl`` (one line
per step), ``grpo/reward_<name>.png`` per reward and ``reward_total.png``,
``grpo/report.md``. A killed run resumes from its last checkpoint; the metrics file is
cut back to that step first, so no step is duplicated or missing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erv_plugins.errors import ErvError
from erv_plugins.stages import StageContext
from erv_plugins.training import common, tracking

if TYPE_CHECKING:
    from erv_plugins.recipe import GRPOTable as GRPOSettings
    from erv_plugins.recipe import Recipe
    from erv_plugins.verifiers.base import Verifier


class GRPOStage(common.TrainingStage):
    name: ClassVar[str] = "grpo"

    def run(self, ctx: StageContext) -> dict[str, Any] | None:
        return run_grpo(ctx)

    def trainer_arguments(self, recipe: Recipe, run_dir: Path) -> tuple[str, dict[str, Any]]:
        """What ``erv run --dry-run`` shows: the class and keyword arguments erv passes
        (``reward_weights`` come from the reward engine: the recipe's weights at step 0)."""
        assert recipe.grpo is not None
        settings = trl_settings(recipe.grpo, recipe, run_dir / "grpo" / "checkpoints")
        settings["reward_weights"] = [spec.weight for spec in recipe.rewards.values()]
        return "trl.GRPOConfig", settings


def trl_settings(cfg: GRPOSettings, recipe: Recipe, output_dir: str | Path) -> dict[str, Any]:
    """The keyword arguments of TRL's ``GRPOConfig`` for this recipe and machine.

    Every argument that changes the update is set here, whatever TRL's default, so a run
    does not drift when TRL changes one (``erv run --dry-run`` prints them).
    """
    return {
        "output_dir": str(output_dir),
        "num_generations": cfg.num_generations,
        "beta": cfg.beta,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": cfg.scheduler,
        "warmup_steps": cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "top_k": cfg.top_k,
        "min_p": None,
        "repetition_penalty": 1.0,
        "max_completion_length": cfg.max_completion_length,
        "loss_type": cfg.loss_type,
        "scale_rewards": cfg.scale_rewards,
        # "sum_then_normalize": R = the weighted sum of the terms (eq. 5), then A (eq. 4);
        # "normalize_then_sum": GDPO, each term normalised within its group first.
        "multi_objective_aggregation": cfg.multi_objective_aggregation,
        "epsilon": cfg.epsilon,
        "num_iterations": 1,  # one update per rollout: the ratio is exp(logp - logp.detach())
        "importance_sampling_level": "token",
        "use_bias_correction_kl": cfg.use_bias_correction_kl,
        "mask_truncated_completions": False,
        "disable_dropout": cfg.disable_dropout,
        "cast_lm_head_to_fp32": False,
        "sync_ref_model": False,
        "top_entropy_quantile": 1.0,
        # The optimiser of transformers' Trainer as the release's TRL 0.14 used it.
        "optim": "adamw_torch",
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "use_vllm": cfg.use_vllm,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "seed": cfg.seed,
        "report_to": tracking.report_to(recipe),  # [logging]; each reward's mean/std is TRL's
        # The per-completion table (training/tracking.py adds the ids and label sets).
        "log_completions": bool(recipe.logging.report_to) and recipe.logging.log_completions,
        "num_completions_to_print": 2,  # on the terminal; the trackers get every completion
        "remove_unused_columns": False,
        "gradient_checkpointing": cfg.gradient_checkpointing,  # TRL's default is on
        # The omni model hands its media to the first generation step only, so decoding
        # must use the KV cache (a checkpoint saved by a Trainer may say use_cache=false).
        "generation_kwargs": {"use_cache": True, **(
            {"cache_implementation": "static"} if cfg.generation_cache == "static" else {})},
        **common.device_args(recipe, bf16=cfg.bf16),
    }


def run_verifier(ctx: StageContext) -> Verifier | None:
    """This run's trained verifier (``<run dir>/train_verifier/model``) when the recipe trains one;
    else None, and the reward engine builds the recipe's ``[verifier]``."""
    from erv_plugins.stages import trained_verifier_spec

    recipe = ctx.recipe
    trained = ctx.run_dir / "train_verifier" / "model"
    if "train_verifier" not in recipe.stages or recipe.verifier is None:
        return None
    if not (trained / "config.json").is_file():
        raise ErvError(f"{trained}: the verifier stage has not produced a checkpoint yet")
    spec = trained_verifier_spec(recipe, ctx.run_dir)
    assert spec is not None
    return ctx.plugins.get("verifier", spec.plugin).build(spec.options)


def build_rows(policy: Any, data: Sequence[common.StageData], cfg: GRPOSettings,
               source: str) -> list[dict[str, Any]]:
    """TRL dataset rows: the prompt plus the columns rewards read (label, dataset, id, video).

    Each row's ``dataset`` is its own dataset's label space, so one mixed list keeps every
    sample's labels and answer normaliser; with several datasets, ids are prefixed by the
    label space to stay distinct.
    """
    rows = []
    for part in data:
        rows += _rows_of(policy, part, cfg, f"{source}: {part.where}", len(data) > 1)
    return rows


def _rows_of(policy: Any, part: common.StageData, cfg: GRPOSettings, where: str,
             prefix: bool) -> list[dict[str, Any]]:
    rows = []
    space = part.space
    for s in part.samples:
        prompt = policy.prompt(s, template=cfg.prompt_template)
        if cfg.max_prompt_length is not None:
            n = policy.prompt_length(prompt)  # the omni policy: as the release counts
            if n > cfg.max_prompt_length:
                raise ErvError(f"{where}: sample {s.id}: prompt has {n} tokens, more than "
                               f"$.grpo.max_prompt_length = {cfg.max_prompt_length}")
        rows.append({"id": f"{space}/{s.id}" if prefix else str(s.id), "prompt": prompt,
                     "label": s.label, "dataset": space,
                     "video": str(s.video) if s.video is not None else ""})
    return rows


def run_grpo(ctx: StageContext) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig

    from erv_plugins.rewards.engine import RewardEngine
    from erv_plugins.training.rewards_adapter import TRLRewards
    from erv_plugins.training.runlog import (
        MetricsLog,
        fifth_means,
        plot_rewards,
        reward_series,
        write_report,
    )
    from erv_plugins.training.policy import QUESTION
    from erv_plugins.training.trainer import MetricsCallback, OmniGRPOTrainer, use_compact_progress

    recipe = ctx.recipe
    cfg = recipe.grpo
    assert cfg is not None
    data, source, policy = common.start_training(ctx, "grpo")
    if cfg.use_vllm and policy.multimodal:
        raise ErvError(f"{recipe.source}: $.grpo.use_vllm: vLLM does not run a media "
                       "policy (video and audio inputs); use it with a text-only policy")
    engine = RewardEngine.from_recipe(recipe, ctx.plugins, verifier=run_verifier(ctx))
    rows = build_rows(policy, data, cfg, recipe.source)

    batch_fn = None
    if policy.multimodal:
        by_id = {row["id"]: s for row, s in zip(rows, (s for d in data for s in d.samples))}

        def batch_fn(batch: Sequence[dict[str, Any]]) -> tuple[list[list[int]], dict[str, Any]]:
            # A text gate (the omni policy's BERT) reads the bare question, whatever the
            # prompt template.
            return policy.encode([by_id[r["id"]] for r in batch], [r["prompt"] for r in batch],
                                 questions=[QUESTION] * len(batch))

    checkpoints = ctx.out / "checkpoints"
    resume = None if ctx.force else common.last_checkpoint(checkpoints)
    log = MetricsLog(ctx.out / "metrics.jsonl")
    if common.is_main_process():
        log.truncate_after(common.checkpoint_step(resume))
    ctx.echo(f"erv: grpo: {len(rows)} prompts from "
             f"{' + '.join(d.spec.plugin for d in data)}, G = "
             f"{cfg.num_generations}, policy {source}"
             + (f", resuming from {resume.name}" if resume else ""))
    settings = trl_settings(cfg, recipe, checkpoints)
    tracking.use_trackers(recipe, ctx.out)
    # A sampled media placeholder would not match the clip's features in the next pass:
    # the model plugin names the ids never to generate (none for the omni policy, whose
    # placeholder ids are negative, the release's).
    if policy.suppressed_ids:
        settings["generation_kwargs"]["suppress_tokens"] = list(policy.suppressed_ids)
    trl_rewards = TRLRewards(engine)
    reward_funcs = trl_rewards.reward_functions()
    if settings["log_completions"]:
        reward_funcs = tracking.with_completion_columns(reward_funcs, engine)
    args = GRPOConfig(**settings, reward_weights=trl_rewards.reward_weights(0))
    trainer = OmniGRPOTrainer(
        model=str(source), processing_class=policy.tokenizer,
        reward_funcs=reward_funcs, args=args,
        train_dataset=Dataset.from_list(rows), callbacks=[MetricsCallback(log)],
        batch_fn=batch_fn, logprob_dtype=cfg.logprob_dtype,
        # The fast path needs a model that takes its arguments (models.base.MediaPolicy).
        fast_path=cfg.fast_path and policy.fast_path, media=policy if policy.multimodal else None,
        # TRL opens the policy by path: the stage's choice, not the checkpoint's (Table 8).
        train_vision_tower=common.trains_vision_tower(recipe, "grpo"),
    )
    common.freeze(trainer.model, cfg.freeze, f"{recipe.source}: $.grpo.freeze")
    trainer.add_callback(trl_rewards.callback(trainer))
    if settings["log_completions"] and "tensorboard" in recipe.logging.report_to:
        trainer.add_callback(tracking.completion_table_callback(trainer))
    use_compact_progress(trainer)
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        engine.close()
    seconds = time.perf_counter() - start
    model_dir = ctx.out / "model"
    trainer.model.config.use_cache = True  # for generation by whoever loads it
    # Every process: under ZeRO-3 saving gathers the shards (a collective).
    trainer.save_model(str(model_dir))
    if not trainer.is_world_process_zero():
        # What this process trained (a multi-machine run's other machines report it).
        return {"global_step": trainer.state.global_step, "world_size": trainer.args.world_size,
                "process_index": trainer.args.process_index}
    policy.tokenizer.save_pretrained(model_dir)
    policy.save(model_dir)  # the processor, as the model plugin writes it
    rows_logged = log.read()
    plots = plot_rewards(rows_logged, ctx.out)
    write_report(rows_logged, ctx.out / "report.md", title=f"GRPO: {recipe.name}",
                 settings={"prompts": len(rows), "policy": str(source),
                           **{k: v for k, v in trl_settings(cfg, recipe, checkpoints).items()
                              if k not in ("output_dir", "report_to")}},
                 plots=plots, seconds=seconds)
    total = reward_series(rows_logged).get("total", ([], []))[1]
    first, last = fifth_means(total)
    return {"steps": len(rows_logged), "global_step": trainer.state.global_step,
            "process_index": trainer.args.process_index, "reward_first_fifth": round(first, 4),
            "reward_last_fifth": round(last, 4), "model": str(model_dir),
            "world_size": trainer.args.world_size,
            "deepspeed": trainer.is_deepspeed_enabled}

"""Stage ``sft``: supervised fine-tuning of the policy on EMER (paper section 3.1, eq. 2).

The target of each clip is its explanation in ``<think>`` and its label in ``<answer>``;
the loss is the token cross-entropy of the target given the clip and the question (prompt
tokens are masked with -100). Paper settings: 5 epochs, lr 2e-5, cosine, warmup 0.03,
batch 32.

transformers' ``Trainer`` runs it (TRL's ``SFTTrainer`` tokenises its own dataset and has
no place for video and audio tensors); the collator adds the clip's ``videos``/``audios``.
Outputs: ``sft/model`` (the fine-tuned policy), ``sft/checkpoints``, ``sft/metrics.jsonl``
and ``sft/report.md``. A killed run resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from erv_plugins.errors import ErvError
from erv_plugins.stages import StageContext
from erv_plugins.training import common, tracking

if TYPE_CHECKING:
    from erv_plugins.recipe import Recipe
    from erv_plugins.recipe import SFTTable as SFTSettings


class SFTStage(common.TrainingStage):
    name: ClassVar[str] = "sft"

    def run(self, ctx: StageContext) -> dict[str, Any] | None:
        return run_sft(ctx)

    def trainer_arguments(self, recipe: Recipe, run_dir: Path) -> tuple[str, dict[str, Any]]:
        """What ``erv run --dry-run`` shows: the class and keyword arguments erv passes."""
        assert recipe.sft is not None
        return ("transformers.TrainingArguments",
                sft_settings(recipe.sft, recipe, run_dir / "sft" / "checkpoints"))


def sft_settings(cfg: SFTSettings, recipe: Recipe, output_dir: str | Path) -> dict[str, Any]:
    """The keyword arguments of transformers' ``TrainingArguments`` for this recipe."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": cfg.scheduler,
        "warmup_steps": cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "optim": "adamw_torch",
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "report_to": tracking.report_to(recipe),  # [logging]
        "seed": cfg.seed,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        **common.device_args(recipe, bf16=cfg.bf16),
    }


def build_examples(policy: Any, samples: list[Any], max_length: int,
                   template: str = "policy") -> list[dict[str, Any]]:
    """Token ids and labels of each (prompt, target) pair; prompt tokens are not learned.

    ``template`` (``[sft] prompt_template``): "policy", or a template the policy's model
    plugin knows (the omni policy's "release"); each example keeps the text gate's input
    (if the policy has one) for its collator.
    """
    from erv_plugins.training.policy import QUESTION, target_text

    examples = []
    for i, s in enumerate(samples):
        if not s.explanation:
            raise ErvError(f"SFT sample {s.id}: no explanation (SFT needs EMER-style "
                           f"explanations; the dataset gave none)")
        ids, labels, gate = policy.sft_example(s, QUESTION, target_text(s.explanation, s.label),
                                               template)
        examples.append({"index": i, "input_ids": ids[:max_length],
                         "labels": labels[:max_length], "gate": gate})
    return examples


class SFTCollator:
    """Right-pads a batch and stacks its clips' media."""

    def __init__(self, policy: Any, samples: list[Any]) -> None:
        self.policy = policy
        self.samples = samples

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        pad = self.policy.tokenizer.pad_token_id
        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), pad, dtype=torch.long)
        labels = torch.full((len(batch), n), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for row, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[row, :k] = torch.tensor(b["input_ids"])
            labels[row, :k] = torch.tensor(b["labels"])
            mask[row, :k] = 1
        out: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.policy.multimodal:
            media = self.policy.encode([self.samples[b["index"]] for b in batch],
                                       questions=[b["gate"] for b in batch])[1]
            out.update(self.policy.model_inputs(media))
        return out


def run_sft(ctx: StageContext) -> dict[str, Any]:
    from transformers import Trainer, TrainingArguments

    from erv_plugins.training.runlog import MetricsLog, write_report
    from erv_plugins.training.trainer import MetricsCallback, use_compact_progress

    cfg = ctx.recipe.sft
    assert cfg is not None
    data, source, policy = common.start_training(ctx, "sft")
    samples = data[0].samples
    common.freeze(policy.model, cfg.freeze, f"{ctx.recipe.source}: $.sft.freeze")
    examples = build_examples(policy, samples, cfg.max_length, cfg.prompt_template)
    checkpoints = ctx.out / "checkpoints"
    resume = None if ctx.force else common.last_checkpoint(checkpoints)
    log = MetricsLog(ctx.out / "metrics.jsonl")
    if common.is_main_process():
        log.truncate_after(common.checkpoint_step(resume))
    ctx.echo(f"erv: sft: {len(examples)} samples from {cfg.dataset.plugin}, policy {source}"
             + (f", resuming from {resume.name}" if resume else ""))
    tracking.use_trackers(ctx.recipe, ctx.out)
    args = TrainingArguments(**sft_settings(cfg, ctx.recipe, checkpoints))
    start = time.perf_counter()
    trainer = Trainer(model=policy.model, args=args, train_dataset=examples,
                      data_collator=SFTCollator(policy, samples),
                      callbacks=[MetricsCallback(log)])
    use_compact_progress(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - start
    model_dir = ctx.out / "model"
    trainer.model.config.use_cache = True  # the Trainer turns it off while training
    # Every process: under ZeRO-3 saving gathers the shards (a collective).
    trainer.save_model(str(model_dir))
    if not trainer.is_world_process_zero():
        return {}
    policy.tokenizer.save_pretrained(model_dir)
    policy.save(model_dir)  # the processor, as the model plugin writes it
    rows = log.read()
    write_report(rows, ctx.out / "report.md", title=f"SFT: {ctx.recipe.name}",
                 settings={"samples": len(examples), "epochs": cfg.epochs, "lr": cfg.lr,
                           "scheduler": cfg.scheduler, "warmup_ratio": cfg.warmup_ratio,
                           "batch_size": cfg.batch_size, "policy": str(source),
                           "prompt_template": cfg.prompt_template},
                 plots=plot_loss(rows, ctx.out), seconds=seconds)
    losses = [r["loss"] for r in rows if "loss" in r]
    return {"steps": len(rows), "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None, "model": str(model_dir)}


def plot_loss(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    if not pts:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in pts], [p[1] for p in pts])
    ax.set_xlabel("SFT step")
    ax.set_ylabel("cross-entropy (eq. 2)")
    ax.set_title("SFT loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]

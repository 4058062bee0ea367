"""erv's GRPO update against the release's loss, written out from its formula.

The release (``HumanOmniERVGRPOTrainer.compute_loss`` in Rhatanii/ERV, on TRL 0.14) takes one
gradient step per rollout with

    A_i   = (r_i - mean_group) / (std_group + 1e-4)
    KL_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1           (k3, no importance ratio)
    loss  = mean_i [ sum_t m_it * -(exp(logp_t - logp_t.detach()) * A_i - beta * KL_t)
                     / sum_t m_it ]

erv hands the update to TRL 1.16; with the release recipe's settings (no KL bias correction,
one iteration) the gradient must be the same, and with TRL's default bias correction it is
not (so the test can tell).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import torch

from erv_plugins.recipe import load_recipe
from erv_plugins.training.grpo import trl_settings

REPO = Path(__file__).resolve().parents[1]
BETA = 0.04


def release_advantages(rewards: torch.Tensor, g: int) -> torch.Tensor:
    grouped = rewards.view(-1, g)
    mean = grouped.mean(dim=1).repeat_interleave(g)
    std = grouped.std(dim=1).repeat_interleave(g)  # torch's unbiased std, as released
    return (rewards - mean) / (std + 1e-4)


def release_loss(model, ids, mask, completion_mask, media, ref, advantages, c):
    logits = model(input_ids=ids, attention_mask=mask, **media).logits
    logits, targets = logits[:, :-1, :][:, -c:], ids[:, 1:][:, -c:]
    logps = torch.stack([row.log_softmax(dim=-1).gather(1, t.unsqueeze(1)).squeeze(1)
                         for row, t in zip(logits, targets)])
    kl = torch.exp(ref - logps) - (ref - logps) - 1
    per_token = -(torch.exp(logps - logps.detach()) * advantages.unsqueeze(1) - BETA * kl)
    return ((per_token * completion_mask).sum(dim=1) / completion_mask.sum(dim=1)).mean()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from datasets import Dataset
    from trl import GRPOConfig

    from erv_plugins.models.omni import load_omni
    from erv_plugins.models.omni.policy import open_omni
    from erv_plugins.models.omni.tiny import build_tiny_omni
    from erv_plugins.training.trainer import OmniGRPOTrainer

    path = build_tiny_omni(tmp_path_factory.mktemp("omni"), seed=0)
    _, processor = load_omni(path)
    opened = open_omni(path)  # the model contract's policy: media keys, model inputs
    recipe = load_recipe(REPO / "recipes" / "release_0_5b.toml")
    cfg = msgspec.structs.replace(recipe.grpo, num_generations=4, batch_size=4, grad_accum=1)
    out = tmp_path_factory.mktemp("trainer")

    def make(**overrides):
        settings = {**trl_settings(cfg, recipe, out), "use_cpu": True, "bf16": False,
                    "ddp_backend": None, **overrides}
        settings.pop("ddp_backend")
        trainer = OmniGRPOTrainer(
            model=str(path), processing_class=processor.tokenizer,
            reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
            args=GRPOConfig(**settings), train_dataset=Dataset.from_list([{"prompt": "x"}]),
            media=opened)
        trainer.current_gradient_accumulation_steps = 1
        return trainer

    torch.manual_seed(0)
    prompt = processor.prompt("Which emotion?")
    batch = processor([prompt] * 4, videos=[torch.rand(8, 3, 32, 32)] * 4,
                      audios=[torch.rand(16, 198)] * 4)
    media = {k: batch[k] for k in ("videos", "audios", "gate_input_ids", "gate_attention_mask")}
    c = 6
    completion_ids = torch.randint(10, 200, (4, c))
    completion_mask = torch.ones(4, c, dtype=torch.long)
    completion_mask[1, 4:] = 0  # one completion ended early (its EOS at position 3)
    advantages = release_advantages(torch.tensor([1.0, 0.0, 0.5, 2.0]), 4)
    return make, batch, media, completion_ids, completion_mask, advantages, c


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None}


def _erv_and_release_grads(setup, **overrides):
    make, batch, media, completion_ids, completion_mask, advantages, c = setup
    trainer = make(**overrides)
    model = trainer.model
    model.train()
    ids = torch.cat([batch["input_ids"], completion_ids], dim=1)
    mask = torch.cat([batch["attention_mask"], completion_mask], dim=1)
    with torch.no_grad():  # a reference that differs from the policy, so KL != 0
        ref_model = trainer.ref_model
        for p in ref_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        logits = ref_model(input_ids=ids, attention_mask=mask, **media).logits
        ref = torch.log_softmax(logits[:, :-1, :][:, -c:], -1).gather(
            2, ids[:, 1:][:, -c:].unsqueeze(2)).squeeze(2)
    inputs = {"prompt_ids": batch["input_ids"], "prompt_mask": batch["attention_mask"],
              "completion_ids": completion_ids, "completion_mask": completion_mask,
              "advantages": advantages, "ref_per_token_logps": ref,
              "old_per_token_logps": None, **media}
    model.zero_grad()
    torch.manual_seed(1)
    trainer._compute_loss(model, inputs).backward()
    ours = _grads(model)
    model.zero_grad()
    torch.manual_seed(1)
    release_loss(model, ids, mask, completion_mask, media, ref, advantages, c).backward()
    theirs = _grads(model)
    assert ours.keys() == theirs.keys() and len(ours) > 10
    return max(float((ours[n] - theirs[n]).abs().max()) for n in ours), \
        max(float(g.abs().max()) for g in theirs.values())


@pytest.mark.slow
def test_release_settings_give_the_release_gradient(setup) -> None:
    diff, scale = _erv_and_release_grads(setup)
    assert scale > 1e-3  # a real gradient
    assert diff < 1e-6, diff  # measured: 9.7e-08 (float32 rounding), max |grad| 0.46


@pytest.mark.slow
def test_trl_default_kl_bias_correction_gives_another_gradient(setup) -> None:
    diff, _ = _erv_and_release_grads(setup, use_bias_correction_kl=True)
    assert diff > 1e-6  # measured: 2.7e-04


def test_release_advantages_are_trls_group_scaling() -> None:
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 3.0, 3.0, 1.0, 0.0])
    grouped = rewards.view(-1, 4)
    trl = (rewards - grouped.nanmean(1).repeat_interleave(4)) / (
        nanstd(grouped, dim=1).repeat_interleave(4) + 1e-4)
    assert torch.allclose(trl, release_advantages(rewards, 4), atol=0, rtol=0)

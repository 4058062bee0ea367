"""GRPO (paper eq. 3) on TRL's ``GRPOTrainer`` with a video + audio policy.

TRL 1.16 knows images (``pixel_values``) but not HumanOmni-style video and audio. This
subclass uses four extension points of its ``GRPOTrainer`` and leaves the algorithm to TRL:

* ``_generate_and_score_completions``: before TRL's rollout, the media of the batch rows
  (one row per completion: TRL repeats each prompt G times) are stacked into
  ``videos``/``audios``; after it, they are put in the output dict, so TRL's own
  splitting and shuffling of the generation batch keeps them aligned with their rows.
* ``_tokenize_prompts``: the media become "multimodal fields" that TRL's generation
  path passes to ``model.generate``.
* ``_generate_single_turn``: the omni model may return only the new tokens (it generates
  from embeddings); both conventions are accepted.
* ``_get_per_token_logps_and_entropies``: log-probabilities of the completion tokens
  under the policy (and the reference model, for the k3 KL term) with the media passed to
  the forward. TRL's fused LM head runs only the text backbone, so the log-probs are taken
  from the full forward's logits (divided by the rollout temperature, as TRL does).

Everything else is TRL's: advantages ``(r - mean_group) / (std_group + 1e-4)``
(``scale_rewards="group"``), the clipped surrogate with ``loss_type="grpo"``, KL with the
k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` weighted by ``beta``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback
from trl import GRPOTrainer
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from erv_plugins.training.policy import MEDIA_KEYS
from erv_plugins.training.runlog import MetricsLog

MediaFn = Callable[[Sequence[Any]], dict[str, torch.Tensor]]


class OmniGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rollouts and log-probs see each row's video and audio.

    ``media_fn(ids)`` returns the stacked media of the rows whose ``id`` column is given
    (``{}`` for a text-only policy, which then runs TRL's code unchanged).
    """

    def __init__(self, *args: Any, media_fn: MediaFn | None = None, **kwargs: Any) -> None:
        self._media_fn = media_fn
        self._media: dict[str, torch.Tensor] = {}
        super().__init__(*args, **kwargs)

    # -- rollout -------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self._media_fn is None:
            return super()._generate_and_score_completions(inputs)
        device = self.accelerator.device
        self._media = {k: v.to(device) for k, v in self._media_fn([x["id"] for x in inputs]).items()}
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            media, self._media = self._media, {}
        output.update(media)
        return output

    def _tokenize_prompts(self, prompts: list) -> tuple[Any, Any, dict[str, Any]]:
        prompt_ids, images, fields = super()._tokenize_prompts(prompts)
        return prompt_ids, images, {**fields, **self._media}

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                              has_tool_images=False):
        if not self._media or self.use_vllm:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields,
                                                 num_generations, has_tool_images)
        from trl.models import unwrap_model_for_generation
        from trl.trainer.utils import pad

        device = self.accelerator.device
        tensors = [torch.tensor(ids) for ids in prompt_ids]
        input_ids = pad(tensors, padding_value=self._tokenizer.pad_token_id,
                        padding_side="left").to(device)
        attention_mask = pad([torch.ones_like(t) for t in tensors], padding_value=0,
                             padding_side="left").to(device)
        with (
            unwrap_model_for_generation(
                self.model_wrapped, self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
            ) as unwrapped,
            torch.no_grad(),
        ):
            out = unwrapped.generate(input_ids=input_ids, attention_mask=attention_mask,
                                     generation_config=self.generation_config, **self._media)
        n = input_ids.size(1)
        # HF generate returns prompt + completion from input_ids, only the completion
        # from inputs_embeds; accept both.
        if out.size(1) > n and torch.equal(out[:, :n], input_ids):
            out = out[:, n:]
        eos = torch.tensor(self.eos_token_ids, device=out.device)
        completion_ids = []
        for row in out.cpu().tolist():
            for i, tok in enumerate(row):
                if tok in self.eos_token_ids:
                    row = row[: i + 1]
                    break
            completion_ids.append(row)
        del eos
        return completion_ids, None

    # -- log-probabilities ---------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        self._media = {k: inputs[k] for k in MEDIA_KEYS if k in inputs}
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._media = {}

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False,
                                           compute_aux_loss=False, **kwargs):
        if not self._media:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **kwargs)
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids = input_ids[start:end]
            media = {k: v[start:end] for k, v in self._media.items()}
            with self.accelerator.autocast():
                logits = model(input_ids=ids, attention_mask=attention_mask[start:end],
                               **media).logits
            # Media placeholders may expand inside the prompt: the completion is always at
            # the end, so its logits are the last ones (position t predicts token t + 1).
            logits = logits[:, -logits_to_keep - 1:-1, :].float() / self.temperature
            targets = ids[:, -logits_to_keep:]
            all_logps.append(selective_log_softmax(logits, targets))
            if compute_entropy:
                with torch.no_grad():
                    all_entropies.append(entropy_from_logits(logits))
        logps = torch.cat(all_logps)
        entropies = torch.cat(all_entropies) if compute_entropy else None
        return logps, entropies, None


class MetricsCallback(TrainerCallback):
    """Writes one ``metrics.jsonl`` line per optimisation step (main process only)."""

    def __init__(self, log: MetricsLog, on_step: Callable[[dict[str, Any]], None] | None = None):
        self.log = log
        self.last = log.last_step()
        self.on_step = on_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" not in logs and "reward" not in logs:
            return  # the end-of-training summary, not a step
        step = int(state.global_step)
        if step <= self.last:
            return
        row = {"step": step, "epoch": logs.get("epoch", state.epoch), **logs}
        self.log.append(row)
        self.last = step
        if self.on_step is not None:
            self.on_step(row)


class CompactProgress(ProgressCallback):
    """A progress bar whose postfix shows the step's loss and rewards (not a dict per line)."""

    KEYS: tuple[tuple[str, str], ...] = (("loss", "loss"), ("reward", "R"))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        post = {short: f"{logs[k]:.3g}" for k, short in self.KEYS if isinstance(logs.get(k), float)}
        for key, value in logs.items():
            if key.startswith("rewards/") and key.endswith("/mean") and isinstance(value, float):
                post[key[8:-5]] = f"{value:.2f}"
        if post:
            self.training_bar.set_postfix(post, refresh=False)


def use_compact_progress(trainer: Any) -> None:
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(CompactProgress())

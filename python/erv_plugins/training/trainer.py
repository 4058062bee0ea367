"""GRPO (paper eq. 3) on TRL's ``GRPOTrainer`` with a video + audio policy.

TRL 1.16 knows images (``pixel_values``) but not the omni policies' video and audio. This
subclass uses these extension points of its ``GRPOTrainer`` and leaves the algorithm to TRL;
what the media are is the model plugin's (``models.base.MediaPolicy``, handed in as
``media``):

* ``_generate_and_score_completions``: before TRL's rollout, the rows of the batch (one
  row per completion: TRL repeats each prompt G times) go through the policy's
  ``encode``: prompt ids with the video/audio placeholders expanded, and the rows'
  media, row-first (the omni policy: ``videos``, ``audios`` and BERT-gate ids; qwen_omni:
  video patches padded per row, audio features); after it, the media are put in the
  output dict, so TRL's own splitting and shuffling of the generation batch keeps them
  aligned with their rows.
* ``_tokenize_prompts``: returns those ids, and the media (``model_inputs``: the model's
  own keyword arguments) as the "multimodal fields" that TRL's generation path passes to
  ``model.generate``.
* ``_compute_loss`` / ``_get_per_token_logps_and_entropies``: log-probabilities of the
  completion tokens under the policy (and the reference model, for the k3 KL term) with
  a slice of rows' media (``model_inputs``) passed to the forward. On the fast path
  TRL's fused LM head runs only the text backbone, so the omni forward takes the targets
  (``logprob_targets``) and applies its LM head to the completion positions' hidden
  states, a few rows at a time (divided by the rollout temperature, as TRL does).

The fast path (``fast_path``, recipe ``[grpo] fast_path``, issue 16): rows carry a clip
id, so each distinct clip is encoded once per pass and expanded over its G rows, and the
frozen towers' outputs are kept for the step in one ``MediaFeatureCache`` that generation,
the reference and the policy passes share (keyed by clip and by what changes the
numbers: dtype, autocast); rollouts draw each token among the top-k candidates only
(``TopKSampler``: the distribution of transformers' sampling without its V-wide random
draw). ``fast_path=False`` is the old path: every row encodes its clip in every pass,
transformers' sampling, and the log-probs come from the full logits.

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
from trl.trainer import grpo_trainer as _grpo_module
from trl.trainer.utils import entropy_from_logits, selective_log_softmax

from erv_plugins.training.runlog import MetricsLog


def _create_model_from_path(model_id: str, architecture: Any = None, **kwargs: Any) -> Any:
    """TRL's model loader, which also loads the model plugins' checkpoints.

    TRL builds the policy and the reference model by path. A directory a model plugin
    owns (``models.base.policy_owner``) is opened by that plugin: a HumanOmni release
    leaves its encoders out (the omni plugin restores them from their directories and
    applies the model options' encoder sources), a Qwen2.5-Omni checkpoint holds a
    talker that is never loaded; ``from_pretrained`` alone would do neither.
    """
    model = _open_owned(model_id, kwargs.get("dtype")) if architecture is None else None
    if model is not None:
        return model
    return _trl_create_model_from_path(model_id, architecture, **kwargs)


def _open_owned(model_id: str, dtype: Any, **settings: Any) -> Any:
    """The model of a directory a model plugin owns, opened by it in train mode (on the
    CPU; ``settings``: ``open``'s, e.g. train_vision_tower), or None."""
    from erv_plugins.models.base import policy_owner

    owner = policy_owner(model_id)
    if owner is None:
        return None
    model = owner.factory.open(model_id, None, device="cpu", dtype=dtype, **settings).model
    model.train()
    return model


_trl_create_model_from_path = _grpo_module.create_model_from_path
_grpo_module.create_model_from_path = _create_model_from_path

# rows of a generation batch -> (prompt token ids, media keyword arguments)
BatchFn = Callable[[Sequence[dict[str, Any]]], tuple[list[list[int]], dict[str, torch.Tensor]]]


class OmniGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose rollouts and log-probs see each row's video and audio.

    ``batch_fn(rows)`` returns the rows' prompt token ids (media placeholders expanded
    by the policy's processor) and their row-first media; without it (a text-only policy)
    TRL's code runs unchanged. ``media``: the policy (``models.base.MediaPolicy``): its
    ``media_keys``, ``model_inputs`` (a slice of rows' media -> the model's keyword
    arguments) and ``media_cache``. ``train_vision_tower`` (the stage's, ``training.common.
    trains_vision_tower``): the policy given by path is opened with its vision tower
    trainable or frozen, whatever the checkpoint says; None: as the checkpoint says. The
    reference model is TRL's, from the same path, as the checkpoint says (no gradient).
    """

    def __init__(self, model: Any, *args: Any, batch_fn: BatchFn | None = None,
                 logprob_dtype: str = "float32", fast_path: bool = True,
                 media: Any = None, train_vision_tower: bool | None = None,
                 **kwargs: Any) -> None:
        self._batch_fn = batch_fn
        self._policy = media
        self._media_keys: tuple[str, ...] = tuple(getattr(media, "media_keys", ()))
        # Issue 16. True: each distinct clip encoded once per pass and a frozen tower once
        # per step (clip ids + one MediaFeatureCache for the policy and the reference),
        # log-probs from the completion positions' hidden states, the LM head in chunks.
        # False: every row encodes its clip in every pass, full logits (the old path).
        self.fast_path = fast_path
        self._media_cache: dict[Any, torch.Tensor] = {}
        # "logits": log-softmax in the dtype of the logits (bf16 under bf16), as the release
        # computes it; "float32": upcast first, as TRL does.
        self._upcast_logits = logprob_dtype == "float32"
        self._media: dict[str, torch.Tensor] = {}
        self._prompt_ids: list[list[int]] | None = None
        if train_vision_tower is not None and isinstance(model, str):
            # TRL would open it by path as the checkpoint says (a qwen_omni thinker: its
            # vision encoder frozen; an omni SFT model: SigLIP as SFT left it).
            init = getattr(kwargs.get("args"), "model_init_kwargs", None) or {}
            model = _open_owned(model, init.get("dtype"),
                                train_vision_tower=train_vision_tower) or model
        super().__init__(model, *args, **kwargs)

    # -- rollout -------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self._batch_fn is None:
            return super()._generate_and_score_completions(inputs)
        device = self.accelerator.device
        self._prompt_ids, media = self._batch_fn(inputs)
        self._media = {k: v.to(device) for k, v in media.items()}
        if self.fast_path:
            self._media["clip_ids"] = clip_ids(inputs).to(device)
            self._share_media_cache()
        policy = self.accelerator.unwrap_model(self.model)
        if hasattr(policy, "sample_top_k_only"):
            # Top-k sampling among the k candidates only (the same distribution).
            policy.sample_top_k_only = self.fast_path
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            media, self._media, self._prompt_ids = self._media, {}, None
        output.update(media)
        return output

    def _share_media_cache(self) -> None:
        """A fresh cache for this generation batch, on the policy and the reference model."""
        cache = self._policy.media_cache() if self._policy is not None else None
        if cache is None:
            return
        self._media_cache = cache
        for model in (self.model, self.ref_model):
            if model is not None:
                unwrapped = self.accelerator.unwrap_model(model)
                if hasattr(unwrapped, "media_cache"):
                    unwrapped.media_cache = self._media_cache

    def _tokenize_prompts(self, prompts: list) -> tuple[Any, Any, dict[str, Any]]:
        if self._prompt_ids is None:
            return super()._tokenize_prompts(prompts)
        # TRL's generation path hands tensor "multimodal fields" to model.generate.
        return self._prompt_ids, None, self._model_inputs(self._media)

    def _model_inputs(self, media: dict[str, Any]) -> dict[str, Any]:
        """Row-first media -> the model's keyword arguments (the model plugin's)."""
        if self._policy is None:
            return dict(media)
        return dict(self._policy.model_inputs(media))

    # -- log-probabilities ---------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        keys = (*self._media_keys, "clip_ids") if self.fast_path else self._media_keys
        self._media = {k: inputs[k] for k in keys if k in inputs}
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
            media = self._model_inputs({k: v[start:end] for k, v in self._media.items()})
            if self.fast_path:
                with self.accelerator.autocast():
                    out = model(input_ids=ids, attention_mask=attention_mask[start:end],
                                logprob_targets=ids[:, -logits_to_keep:],
                                logprob_temperature=self.temperature,
                                logprob_upcast=self._upcast_logits,
                                logprob_entropy=compute_entropy, **media)
                all_logps.append(out.log_probs)
                if compute_entropy:
                    all_entropies.append(out.entropy)
                continue
            with self.accelerator.autocast():
                logits = model(input_ids=ids, attention_mask=attention_mask[start:end],
                               logits_to_keep=logits_to_keep + 1, **media).logits
            # Position t predicts token t + 1: the last logit belongs to no completion token.
            # (A model without ``logits_to_keep`` returns every position's logits.)
            logits = logits[:, -(logits_to_keep + 1):-1, :]
            if self._upcast_logits:
                logits = logits.float()
            logits = logits / self.temperature
            targets = ids[:, -logits_to_keep:]
            all_logps.append(selective_log_softmax(logits, targets))
            if compute_entropy:
                with torch.no_grad():
                    all_entropies.append(entropy_from_logits(logits))
        logps = torch.cat(all_logps)
        entropies = torch.cat(all_entropies) if compute_entropy else None
        return logps, entropies, None


def clip_ids(rows: Sequence[dict[str, Any]]) -> torch.Tensor:
    """One int per row, equal for rows of the same clip (its video path, else its id),
    numbered in order of first appearance (TRL repeats each prompt G times)."""
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(str(r.get("video") or r.get("id") or f"row {i}"),
                                          len(index)) for i, r in enumerate(rows)],
                        dtype=torch.long)


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

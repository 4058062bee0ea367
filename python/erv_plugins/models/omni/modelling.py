"""The HumanOmni-compatible omni policy (paper section 3.1, eq. 1).

pi_theta(o | q, v, a): a Qwen2 language model reads the prompt q with the features of the
video v (8 frames, SigLIP vision tower, three visual branches weighed by a BERT text gate)
and of the audio a (frozen Whisper encoder, avg_pool1d(k=3), 2-layer GELU MLP projector).

Module and parameter names follow the public release (``humanomni/model/``) so that its
checkpoints load without missing or unexpected keys:

    model.embed_tokens / model.layers.* / model.norm / lm_head        Qwen2
    model.vision_tower.vision_tower.vision_model.*                     SigLIP
    model.mm_projector.{s1,sampler,s2,readout}_{video,body}.*,
    model.mm_projector.mlp_2xgelu_face.*                               "all_in_one(_small)"
    model.bert_model.* / model.bert_gate.{0,2}.*                       BERT text gate
    model.audio_tower.audio_tower.{encoder,projector,classifier}.*    Whisper
    model.audio_projector.{0,2}.*                                      audio MLP

Media positions: the release marks each modality with one negative id (-201 video, -202
audio) and splices the clip's feature sequence in its place. We use the same ids, which no
vocabulary holds (nothing is added to a published tokenizer), but the processor repeats
each once per feature, so ``input_ids``, ``attention_mask``, ``labels`` and the LM
positions keep one length and the features are written over the placeholders: the LM
sees the same embedding sequence. Per-token log-probabilities for GRPO are then the
ordinary gather, and ``generate`` (like the release's) starts from the prompt's
embeddings, so logits processors see the generated tokens only and a placeholder can
never be sampled.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    BertModel,
    Qwen2ForCausalLM,
    Qwen2Model,
    SiglipVisionModel,
    GenerationConfig,
    WhisperForAudioClassification,
)
from transformers.generation.logits_process import LogitsProcessor, LogitsProcessorList
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from erv_plugins.models.omni.configuration import OmniConfig

IGNORE_INDEX = -100


# -- RegNet stages of the visual projector ---------------------------------------------
# The release builds its projector from timm's RegStage (Bottleneck blocks, depth-wise
# 3x3 conv, squeeze-excite, LayerNorm2d + SiLU). These are the same layers with timm's
# parameter names, without depending on timm.


class _LayerNormAct2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor, then an activation (timm LayerNormAct2d)."""

    def __init__(self, channels: int, apply_act: bool = True) -> None:
        super().__init__(channels, eps=1e-5)
        self.act: nn.Module = nn.SiLU() if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return self.act(x.permute(0, 3, 1, 2))


class _ConvNormAct(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, groups: int = 1,
                 apply_act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=(kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.bn = _LayerNormAct2d(out_chs, apply_act=apply_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int, rd_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class _Bottleneck(nn.Module):
    """timm RegNet Bottleneck with bottle_ratio 1, group_size 1, se_ratio 0.25, stride 1."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = _ConvNormAct(in_chs, out_chs, 1)
        self.conv2 = _ConvNormAct(out_chs, out_chs, 3, groups=out_chs)
        self.se = _SqueezeExcite(out_chs, int(round(in_chs * 0.25)))
        self.conv3 = _ConvNormAct(out_chs, out_chs, 1, apply_act=False)
        self.downsample: nn.Module = (
            _ConvNormAct(in_chs, out_chs, 1, apply_act=False) if in_chs != out_chs
            else nn.Identity()
        )
        self.act3 = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv3(self.se(self.conv2(self.conv1(x))))
        return self.act3(x + self.downsample(shortcut))


class _RegStage(nn.Sequential):
    def __init__(self, depth: int, in_chs: int, out_chs: int) -> None:
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", _Bottleneck(in_chs if i == 0 else out_chs, out_chs))


def _mlp(in_features: int, hidden: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(in_features, hidden)]
    for _ in range(1, depth):
        layers += [nn.GELU(), nn.Linear(hidden, hidden)]
    return nn.Sequential(*layers)


class AllInOneProjector(nn.Module):
    """The release's visual projector: video, body and face branches.

    ``all_in_one_small`` (HumanOmni-0.5B): RegStage depth 2, temporal padding only;
    ``all_in_one`` (7B): depth 4, padding 1 on all three axes. Each of the video and body
    branches runs RegStage -> Conv3d(k=2, stride (1, 2, 2)) + SiLU (last time step
    dropped) -> RegStage -> 2-layer MLP; the face branch is a 2-layer GELU MLP per patch.
    """

    def __init__(self, config: OmniConfig) -> None:
        super().__init__()
        small = config.mm_projector_type == "all_in_one_small"
        depth = 2 if small else 4
        padding = (1, 0, 0) if small else (1, 1, 1)
        enc, hid = config.mm_hidden_size, config.hidden_size
        for branch in ("video", "body"):
            self.add_module(f"s1_{branch}", _RegStage(depth, enc, hid))
            self.add_module(f"sampler_{branch}", nn.Sequential(
                nn.Conv3d(hid, hid, kernel_size=(2, 2, 2), stride=(1, 2, 2), padding=padding),
                nn.SiLU()))
            self.add_module(f"s2_{branch}", _RegStage(depth, hid, hid))
            self.add_module(f"readout_{branch}", _mlp(hid, hid))
        self.mlp_2xgelu_face = _mlp(enc, hid)

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape
        side = math.isqrt(n)
        x = x.reshape(b * t, side, side, d).permute(0, 3, 1, 2)
        x = getattr(self, f"s1_{name}")(x)
        x = x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # b d t h w
        x = getattr(self, f"sampler_{name}")(x)[:, :, :-1]
        new_t = x.shape[2]
        x = x.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (b t) d h w
        x = getattr(self, f"s2_{name}")(x)
        x = x.reshape(b, new_t, *x.shape[1:]).permute(0, 1, 3, 4, 2).reshape(b, -1, x.shape[1])
        return getattr(self, f"readout_{name}")(x)

    def forward(self, video: torch.Tensor, body: torch.Tensor, face: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._branch("video", video), self._branch("body", body), self.mlp_2xgelu_face(face)


class VisionTower(nn.Module):
    """SigLIP; features of layer ``mm_vision_select_layer`` (release: -2), all patches."""

    def __init__(self, config: OmniConfig) -> None:
        super().__init__()
        self.vision_tower = SiglipVisionModel(config.vision_config)
        self.select_layer = config.mm_vision_select_layer
        self.frozen = config.freeze_vision_tower
        if self.frozen:
            self.vision_tower.requires_grad_(False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.vision_tower(frames.to(self.vision_tower.dtype), output_hidden_states=True)
        return out.hidden_states[self.select_layer]


class AudioTower(nn.Module):
    """The Whisper encoder (frozen, as in the release); last hidden state."""

    def __init__(self, config: OmniConfig) -> None:
        super().__init__()
        self.audio_tower = WhisperForAudioClassification(config.audio_config)
        self.frozen = config.freeze_audio_tower
        if self.frozen:
            self.audio_tower.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            enc = self.audio_tower.encoder(features.to(self.audio_tower.dtype), return_dict=True)
        return enc.last_hidden_state


def _distinct(ids: torch.Tensor) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """(distinct ids, the first row of each, each row's index into them)."""
    distinct, inverse = torch.unique(ids, return_inverse=True)
    rows = torch.arange(ids.shape[0], device=ids.device)
    first = torch.full((distinct.shape[0],), ids.shape[0], device=ids.device, dtype=rows.dtype)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return distinct.tolist(), first, inverse


@dataclass
class CompletionLogProbs(ModelOutput):
    """``OmniForCausalLM.forward`` with ``logprob_targets``: (B, K) log-probs, entropies."""

    log_probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


# Completion tokens whose logits exist at once in completion_token_log_probs: 256 x
# 151,936 float32 is 156 MB, against B x K x V for a whole batch (16 x 512: 5 GB, and
# the temperature-scaled copy as much again).
LOGPROB_CHUNK_TOKENS = 256


def _matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype ``lm_head(hidden)`` computes in: autocast's, else the inputs' own."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(hidden.dtype, weight.dtype)


# On a CPU, a chunk's logits at most this many bytes: glibc's malloc reuses freed blocks
# below its mmap threshold (32 MiB at most), where a larger block is mapped afresh and
# page-faulted on every allocation (measured: a 148 MiB chunk's exp twice as slow).
CPU_LOGPROB_CHUNK_BYTES = 16 * 2**20


# exp(z) summed without subtracting the row's maximum first (one pass over the vocabulary
# less) where the sum stays inside this range; other rows take the maximum first, as
# torch.logsumexp does (a real model's logits stay far below 69 = log 1e30).
_SAFE_EXP_SUM = (1e-30, 1e30)


class _ChunkedLogProbs(torch.autograd.Function):
    """log-softmax of ``hidden @ weight.T / temperature`` at the targets, a chunk at a time.

    What the full-logits path computes (logits in float32, divided by the temperature,
    logit minus logsumexp), with one chunk's logits alive at once, in two buffers reused
    by every chunk, and as few passes over the vocabulary as the arithmetic allows (on a
    CPU each pass over a chunk costs more than the projection): s = sum exp(z),
    logsumexp = log s (``_SAFE_EXP_SUM``), entropy log s - (exp(z) . z) / s. The forward
    keeps only each token's s; the backward projects the chunk again and writes the
    gradient of log p(t) = z_t - log s directly, d/dz = onehot(t) - exp(z) / s, in float32
    folded into the two products: dL/dh = g (W_t - (exp(z) @ W) / s) / temperature and
    dL/dW = (onehot(t) - exp(z) / s)^T (g h) / temperature (half-precision products get
    the gradient of the logits materialised and rounded, as autograd has it). No autograd
    graph over the vocabulary, where activation checkpointing would redo the forward.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor,  # noqa: ANN001
                targets: torch.Tensor, temperature: float, chunk_tokens: int,
                want_entropy: bool, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        n, vocab = hidden.shape[0], weight.shape[0]
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        # Per token: the offset subtracted before exp (0, or the row's max) and log s.
        offset = torch.zeros_like(logps)
        log_sum = torch.empty_like(logps)
        ents = torch.empty(n if want_entropy else 0, dtype=torch.float32, device=hidden.device)
        w = weight.to(dtype)
        z_buf = torch.empty((min(chunk_tokens, n), vocab), dtype=torch.float32,
                            device=hidden.device)
        e_buf = torch.empty_like(z_buf)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk_tokens):
                end = min(start + chunk_tokens, n)
                z, e = z_buf[:end - start], e_buf[:end - start]
                _project(hidden[start:end].to(dtype), w, z)
                if temperature != 1.0:
                    z.div_(temperature)
                target = z.gather(-1, targets[start:end, None]).squeeze(-1)
                total = torch.exp(z, out=e).sum(-1)
                if not bool(((total > _SAFE_EXP_SUM[0]) & (total < _SAFE_EXP_SUM[1])).all()):
                    top = z.amax(-1)  # as torch.logsumexp: exp(z - max)
                    offset[start:end] = top
                    z.sub_(top[:, None])
                    total = torch.exp(z, out=e).sum(-1)
                    target = target - top
                log_sum[start:end] = total.log()
                logps[start:end] = target - log_sum[start:end]
                if want_entropy:  # -(p * log p).sum(), p = e / s, log p = z - log s
                    dot = torch.bmm(e.unsqueeze(1), z.unsqueeze(2)).view(-1)
                    ents[start:end] = log_sum[start:end] - dot / total
        ctx.save_for_backward(hidden, weight, targets, offset, log_sum)
        ctx.temperature, ctx.chunk_tokens, ctx.dtype = temperature, chunk_tokens, dtype
        ctx.mark_non_differentiable(ents)
        return logps, ents

    @staticmethod
    def backward(ctx, grad_logps: torch.Tensor, _grad_ents: torch.Tensor  # noqa: ANN001
                 ) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, targets, offset, log_sum = ctx.saved_tensors
        temperature, dtype = ctx.temperature, ctx.dtype
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        w = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        n = hidden.shape[0]
        z_buf = torch.empty((min(ctx.chunk_tokens, n), weight.shape[0]), dtype=torch.float32,
                            device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, ctx.chunk_tokens):
                end = min(start + ctx.chunk_tokens, n)
                h = hidden[start:end].to(dtype)
                t = targets[start:end]
                z = _project(h, w, z_buf[:end - start])
                if temperature != 1.0:
                    z.div_(temperature)
                shift = offset[start:end]
                if dtype != torch.float32:
                    # Half-precision products: the gradient of the logits materialised
                    # and rounded as autograd rounds it, g * (onehot - p) / T.
                    g = grad_logps[start:end].float()
                    grad_z = z.sub_((shift + log_sum[start:end])[:, None]).exp_()
                    grad_z.mul_(-g[:, None]).scatter_add_(-1, t[:, None], g[:, None])
                    if temperature != 1.0:
                        grad_z.div_(temperature)
                    grad_z = grad_z.to(dtype)
                    if need_hidden:
                        grad_hidden[start:end] = (grad_z @ w).to(hidden.dtype)
                    if need_weight:
                        grad_weight += (grad_z.t() @ h).float()
                    continue
                # The incoming gradient, divided by the temperature (dz/dlogits = 1 / T).
                g = grad_logps[start:end].float() / temperature
                if bool(shift.any()):
                    z.sub_(shift[:, None])
                # p = exp(z - offset) / s: the 1 / s goes onto the small factors.
                e = z.exp_()
                scale = torch.exp(-log_sum[start:end])
                if need_hidden:
                    softmax_w = (e @ w) * scale[:, None]
                    grad_hidden[start:end] = (g[:, None] * (w[t] - softmax_w)).to(hidden.dtype)
                if need_weight:
                    gh = g[:, None] * h
                    grad_weight -= e.t() @ (gh * scale[:, None])
                    grad_weight.index_add_(0, t, gh)
        return (grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype),
                None, None, None, None, None)


def _project(h: torch.Tensor, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` (float32) = h @ w.T, computed in the dtype of ``h`` and ``w``."""
    if h.dtype == out.dtype:
        return torch.mm(h, w.t(), out=out)
    return out.copy_(torch.mm(h, w.t()))


def completion_token_log_probs(hidden: torch.Tensor, lm_head: nn.Module, targets: torch.Tensor,
                               *, temperature: float = 1.0, upcast: bool = True,
                               entropy: bool = False,
                               chunk_tokens: int = LOGPROB_CHUNK_TOKENS
                               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(o_t | ...) of ``targets`` (B, K) from the hidden states (B, K, H) before them.

    The LM head runs on ``chunk_tokens`` completion positions at a time, so only one
    chunk's logits exist at once, in the forward and in the backward (TRL's fused LM head
    likewise projects only completion positions, in tiles). Per token, the arithmetic is
    the full-logits path's: logits (float32 when ``upcast``, else their own dtype, as
    ``logprob_dtype``) divided by the temperature, then as TRL's ``selective_log_softmax``
    (logit minus logsumexp in float32, log-softmax in a half dtype); entropies without
    gradient as TRL's ``entropy_from_logits``. Float32 logits of a plain linear head go
    through ``_ChunkedLogProbs`` (the gradient written directly); other heads or half
    logits run each chunk under activation checkpointing.
    """
    from torch.utils.checkpoint import checkpoint
    from trl.trainer.utils import entropy_from_logits

    batch, keep = targets.shape
    flat_hidden, flat_targets = hidden.reshape(batch * keep, -1), targets.reshape(-1)
    weight = getattr(lm_head, "weight", None)
    if hidden.device.type == "cpu" and isinstance(weight, torch.Tensor):
        chunk_tokens = min(chunk_tokens, CPU_LOGPROB_CHUNK_BYTES // (4 * weight.shape[0]))
    chunk_tokens = max(1, chunk_tokens)
    if (type(lm_head) is nn.Linear and lm_head.bias is None and isinstance(weight, torch.Tensor)
            and (upcast or _matmul_dtype(flat_hidden, weight) in (torch.float32, torch.float64))):
        logps, ents = _ChunkedLogProbs.apply(flat_hidden, weight, flat_targets, float(temperature),
                                             chunk_tokens, entropy,
                                             _matmul_dtype(flat_hidden, weight))
        return logps.view(batch, keep), ents.view(batch, keep) if entropy else None

    def chunk(h: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = lm_head(h)
        if upcast:
            logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        if logits.dtype in (torch.float32, torch.float64):
            logps = logits.gather(-1, t[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        else:  # logsumexp is unstable in bfloat16 (TRL)
            logps = torch.log_softmax(logits, -1).gather(-1, t[:, None]).squeeze(-1)
        with torch.no_grad():
            ent = entropy_from_logits(logits) if entropy else logps.new_zeros(())
        return logps, ent

    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(
        p.requires_grad for p in lm_head.parameters()))
    logps, ents = [], []
    for start in range(0, flat_hidden.shape[0], chunk_tokens):
        h = flat_hidden[start:start + chunk_tokens]
        t = flat_targets[start:start + chunk_tokens]
        lp, ent = checkpoint(chunk, h, t, use_reentrant=False) if grad else chunk(h, t)
        logps.append(lp)
        ents.append(ent)
    return (torch.cat(logps).view(batch, keep),
            torch.cat(ents).view(batch, keep) if entropy else None)


# -- rollout sampling (issue 16) ---------------------------------------------------------
def sample_top_k(scores: torch.Tensor, top_k: int, *, temperature: float = 1.0,
                 top_p: float = 1.0, min_tokens_to_keep: int = 1,
                 full_noise: bool = False) -> torch.Tensor:
    """Next tokens (B,) drawn as transformers' sampling draws them with these warpers.

    transformers applies temperature, ``TopKLogitsWarper``, ``TopPLogitsWarper`` to the
    full (B, V) scores, then ``torch.multinomial`` over all V, which on a CPU draws V
    exponentials per row (the race argmax(p / E), E ~ Exp(1)): at the paper's vocabulary
    most of a decode step. The top k candidates hold all of the probability, so the race
    is run among them only: the same distribution from k random numbers a row.
    ``full_noise`` draws the V exponentials anyway and takes the candidates' (the same
    tokens as transformers at the same seed, at its cost: the equality test). Ties at
    the k-th score (which transformers keeps, all of them) fall back to the full scores.
    """
    vocab = scores.shape[-1]
    k = min(max(top_k, min_tokens_to_keep), vocab)
    values, index = torch.topk(scores, min(k + 1, vocab), dim=-1)
    if temperature != 1.0:  # monotone: the top k of scores / T are the top k of scores
        values = values / temperature
    if k < vocab:
        if bool((values[:, k] == values[:, k - 1]).any()):
            return _sample_full(scores, k, temperature, top_p, min_tokens_to_keep)
        values, index = values[:, :k], index[:, :k]
    if top_p < 1.0:  # TopPLogitsWarper on the candidates (ascending, as it sorts)
        ascending = values.flip(-1)
        remove = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[..., -min_tokens_to_keep:] = False
        values = ascending.masked_fill(remove, -float("inf")).flip(-1)
    probs = values.softmax(-1)
    if full_noise:
        noise = torch.empty_like(scores, dtype=probs.dtype).exponential_().gather(-1, index)
    else:
        noise = torch.empty_like(probs).exponential_()
    return index.gather(-1, (probs / noise).argmax(-1, keepdim=True)).squeeze(-1)


def _sample_full(scores: torch.Tensor, top_k: int, temperature: float, top_p: float,
                 min_tokens_to_keep: int) -> torch.Tensor:
    """transformers' own warpers and multinomial over the whole vocabulary."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    scores = TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep)(None, scores)
    return torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(1)


class TopKSampler(LogitsProcessor):
    """The last logits processor of a rollout: samples (``sample_top_k``) and returns scores
    that put the drawn token first (0 there, -inf elsewhere), so that ``generate`` runs
    greedy (no V-wide multinomial) and keeps everything else (processors before it,
    stopping, padding of finished rows, the KV cache) as it is."""

    def __init__(self, top_k: int, temperature: float = 1.0, top_p: float = 1.0,
                 min_tokens_to_keep: int = 1, full_noise: bool = False) -> None:
        self.top_k, self.temperature, self.top_p = top_k, temperature, top_p
        self.min_tokens_to_keep, self.full_noise = min_tokens_to_keep, full_noise

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor
                 ) -> torch.FloatTensor:
        tokens = sample_top_k(scores, self.top_k, temperature=self.temperature,
                              top_p=self.top_p, min_tokens_to_keep=self.min_tokens_to_keep,
                              full_noise=self.full_noise)
        out = torch.full_like(scores, -float("inf"))
        return out.scatter_(-1, tokens[:, None], 0.0)

    @classmethod
    def replacing(cls, config: GenerationConfig, full_noise: bool = False
                  ) -> tuple["TopKSampler", GenerationConfig] | None:
        """(sampler, the config to generate greedily with) for a top-k sampling config;
        None where it samples otherwise (beams, no top-k, other warpers, scores kept)."""
        if not (config.do_sample and (config.num_beams or 1) == 1 and config.top_k
                and config.top_k > 0 and not config.output_scores and not config.output_logits
                and config.min_p is None and config.top_h is None
                and (config.typical_p is None or config.typical_p >= 1.0)
                and not (config.epsilon_cutoff or 0.0) and not (config.eta_cutoff or 0.0)
                and not config.renormalize_logits and config.watermarking_config is None
                and (config.num_return_sequences or 1) == 1):
            return None
        sampler = cls(int(config.top_k), float(config.temperature or 1.0),
                      float(1.0 if config.top_p is None else config.top_p), 1, full_noise)
        greedy = copy.deepcopy(config)
        greedy.do_sample = False
        greedy.temperature = greedy.top_k = greedy.top_p = None
        return sampler, greedy


class MediaFeatureCache(dict):
    """Frozen towers' outputs per clip, shared by the passes of one GRPO step (issue 16).

    Keys: ((tower, parameter dtype, device, autocast dtype), clip id); the GRPO trainer
    clears it when it draws a new generation batch (clip ids are batch-local) and hands the
    same cache to the policy and the reference model.
    """


class OmniModel(Qwen2Model):
    """Qwen2 decoder plus the encoders, projectors and text gate (release HumanOmniQwen2Model)."""

    config_class = OmniConfig

    def __init__(self, config: OmniConfig) -> None:
        super().__init__(config)
        self.vision_tower = VisionTower(config)
        self.mm_projector = AllInOneProjector(config)
        # The text gate: BERT [CLS] of the question -> MLP -> softmax over 3 branches.
        self.bert_model = BertModel(config.text_gate_config, add_pooling_layer=True)
        self.bert_gate = nn.Sequential(
            nn.Linear(config.text_gate_config.hidden_size, config.text_gate_hidden_size),
            nn.GELU(),
            nn.Linear(config.text_gate_hidden_size, 3),
        )
        self.audio_tower = AudioTower(config)
        self.audio_projector = _mlp(config.audio_hidden_size, config.hidden_size)
        self.post_init()


class OmniForCausalLM(Qwen2ForCausalLM):
    """The omni policy: ``forward``/``generate`` accept video and audio beside the text.

    Media arguments (all optional, batch-first, one clip per row):
      videos: float (B, frames, 3, H, W), normalised pixels from ``decode_clip``
        (the release calls this ``images``; that name is accepted too);
      audios: float (B, n_mels, T) Whisper log-mel features;
      gate_input_ids / gate_attention_mask: the question in the BERT gate's vocabulary
        (the release passes them as ``prompts``); without them the three visual branches
        are weighed equally.
    ``input_ids`` must hold ``config.num_video_tokens`` copies of ``config.video_placeholder_id``
    (-201) for each clip and ``num_audio_tokens`` of ``audio_placeholder_id`` (-202):
    ``OmniProcessor`` does it.
    """

    config_class = OmniConfig
    _no_split_modules = ["Qwen2DecoderLayer", "SiglipEncoderLayer", "WhisperEncoderLayer",
                         "BertLayer"]
    # Not in the LM's loss: the media encoders' own heads are unused by the policy.
    _keys_to_ignore_on_load_unexpected = [r"^model\.bert_model\.embeddings\.position_ids$"]

    def __init__(self, config: OmniConfig) -> None:
        super(Qwen2ForCausalLM, self).__init__(config)
        self.model = OmniModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.freeze_encoders()
        # Set by the GRPO trainer (MediaFeatureCache); None: every pass encodes its media.
        self.media_cache: MediaFeatureCache | None = None
        # Set by the GRPO trainer's fast path: sampling generate draws from the top-k
        # candidates only (TopKSampler; the same distribution as transformers' sampling).
        self.sample_top_k_only = False

    def freeze_encoders(self) -> None:
        """requires_grad=False on the encoders the config marks frozen (release: both)."""
        if self.config.freeze_vision_tower:
            self.model.vision_tower.requires_grad_(False)
        if self.config.freeze_audio_tower:
            self.model.audio_tower.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):  # noqa: ANN002, ANN003, ANN206
        # Loading materialises fresh parameters; freeze again afterwards.
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.freeze_encoders()
        return loaded

    # -- encoders (release encode_images_or_videos / encode_audios) ------------------------
    def encode_videos(self, videos: torch.Tensor, gate_input_ids: torch.Tensor | None = None,
                      gate_attention_mask: torch.Tensor | None = None,
                      clip_keys: list[int] | None = None) -> torch.Tensor:
        """(B, T, 3, H, W) pixels -> (B, num_video_tokens, hidden) LM inputs.

        ``clip_keys`` (one per clip): lets a frozen vision tower's output come from
        ``media_cache``."""
        video, body, face = self.video_branches(videos, clip_keys)
        weights = self.branch_weights(videos.shape[0], gate_input_ids, gate_attention_mask,
                                      video.device)
        return self.mix_branches(video, body, face, weights)

    def video_branches(self, videos: torch.Tensor, clip_keys: list[int] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The video, body and face branch features of each clip (before the text gate)."""
        if videos.dim() != 5:
            raise ValueError(f"videos must be (batch, frames, 3, H, W); got shape {tuple(videos.shape)}")
        m = self.model
        b, t = videos.shape[:2]
        frame_features = self._tower_features(
            "video", m.vision_tower, videos, clip_keys,
            lambda x: m.vision_tower(x.flatten(0, 1)).unflatten(0, (x.shape[0], t)))
        per_clip = frame_features  # (B, T, N, C)
        video, body, face = m.mm_projector(per_clip, per_clip, frame_features.flatten(0, 1))
        face = self._pool_2d(face).reshape(b, -1, face.shape[-1])
        return video, body, face

    @staticmethod
    def mix_branches(video: torch.Tensor, body: torch.Tensor, face: torch.Tensor,
                     weights: torch.Tensor) -> torch.Tensor:
        """The gate's weighted sum of the three visual branches (release: per clip)."""
        weights = weights.to(video.dtype)
        return (video * weights[:, 0, None, None] + body * weights[:, 1, None, None]
                + face * weights[:, 2, None, None])

    def _tower_features(self, kind: str, tower: nn.Module, inputs: torch.Tensor,
                        clip_keys: list[int] | None,
                        encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``encode(inputs)``, one row per clip, with a frozen tower's rows from the cache.

        Only frozen towers are cached: their output needs no gradient and, within a step,
        is the same for the policy and its reference model (a frozen copy of the same
        checkpoint). The key also holds what changes the numbers (parameter dtype,
        autocast), so a pass under autocast never reuses a full-precision result.
        """
        cache = self.media_cache
        if cache is None or clip_keys is None or not getattr(tower, "frozen", False):
            return encode(inputs)
        param = next(tower.parameters())
        device = inputs.device.type
        context = (kind, str(param.dtype), str(inputs.device),
                   str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device)
                   else None)
        missing = [i for i, key in enumerate(clip_keys) if (context, key) not in cache]
        if missing:
            with torch.no_grad():
                fresh = encode(inputs[missing])
            for i, row in zip(missing, fresh, strict=True):
                cache[(context, clip_keys[i])] = row
        return torch.stack([cache[(context, key)] for key in clip_keys])

    @staticmethod
    def _pool_2d(features: torch.Tensor, stride: int = 2) -> torch.Tensor:
        """Release get_2dPool: bilinear downscale of each frame's patch grid by ``stride``."""
        frames, tokens, dim = features.shape
        side = math.isqrt(tokens)
        x = features.reshape(frames, side, side, dim).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=[math.ceil(side / stride)] * 2, mode="bilinear")
        return x.permute(0, 2, 3, 1).reshape(frames, -1, dim)

    def branch_weights(self, batch: int, gate_input_ids: torch.Tensor | None,
                       gate_attention_mask: torch.Tensor | None,
                       device: torch.device) -> torch.Tensor:
        """Softmax weights (B, 3) of the video, body and face branches from the question."""
        if gate_input_ids is None:
            return torch.full((batch, 3), 1.0 / 3.0, device=device)
        m = self.model
        out = m.bert_model(input_ids=gate_input_ids.to(device),
                           attention_mask=None if gate_attention_mask is None
                           else gate_attention_mask.to(device))
        cls = out.last_hidden_state[:, 0, :]
        return torch.softmax(m.bert_gate(cls), dim=1)

    def encode_audios(self, audios: torch.Tensor, clip_keys: list[int] | None = None
                      ) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, num_audio_tokens, hidden) LM inputs."""
        if audios.dim() == 4 and audios.shape[1] == 1:
            audios = audios.squeeze(1)
        if audios.dim() != 3:
            raise ValueError(f"audios must be (batch, n_mels, frames); got shape {tuple(audios.shape)}")
        features = self._tower_features("audio", self.model.audio_tower, audios, clip_keys,
                                        self.model.audio_tower).permute(0, 2, 1)
        features = F.avg_pool1d(features, kernel_size=3, stride=3).permute(0, 2, 1)
        return self.model.audio_projector(features.to(self.model.audio_projector[0].weight.dtype))

    def embed_multimodal(self, input_ids: torch.Tensor, videos: torch.Tensor | None = None,
                         audios: torch.Tensor | None = None,
                         gate_input_ids: torch.Tensor | None = None,
                         gate_attention_mask: torch.Tensor | None = None,
                         clip_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with the media features written over the placeholder tokens.

        ``clip_ids`` (one int per row, equal for rows of the same clip; GRPO repeats each
        prompt G times): each distinct clip is encoded once and its features expanded
        to its rows (``index_select``, so a training tower's gradient sums over them).
        """
        # Placeholder ids are negative (the release's): embed a valid id, then overwrite.
        embeds = self.model.embed_tokens(input_ids.clamp(min=0))
        for kind, media, token_id, count in (
            ("video", videos, self.config.video_placeholder_id, self.config.num_video_tokens),
            ("audio", audios, self.config.audio_placeholder_id, self.config.num_audio_tokens),
        ):
            if token_id is None:
                if media is not None:
                    raise ValueError(f"config.{kind}_placeholder_id is not set: set it to the "
                                     "processor's (OmniProcessor) before passing media")
                continue
            mask = input_ids == token_id
            per_row = mask.sum(dim=1)
            if media is None:
                if bool(per_row.any()):
                    raise ValueError(f"input_ids hold {kind} placeholder tokens but no "
                                     f"{kind}s were given")
                continue
            rows = per_row > 0
            bad = per_row[rows] != count
            if bool(bad.any()) or int(rows.sum()) != media.shape[0]:
                raise ValueError(
                    f"{kind}: each row needs exactly {count} placeholder tokens and one clip; "
                    f"got {per_row.tolist()} placeholders for {media.shape[0]} clips")
            if kind == "video":
                # Gate inputs come one per clip (the processor) or one per row.
                gi, gm = gate_input_ids, gate_attention_mask
                if gi is not None and gi.shape[0] != media.shape[0]:
                    gi = gi[rows]
                    gm = gm[rows] if gm is not None else None
                if clip_ids is None:
                    features = self.encode_videos(media, gi, gm)
                else:
                    keys, first, inverse = _distinct(clip_ids.to(rows.device)[rows])
                    branches = self.video_branches(media[first], keys)
                    weights = self._distinct_branch_weights(media.shape[0], gi, gm,
                                                            media.device)
                    features = self.mix_branches(*(x.index_select(0, inverse) for x in branches),
                                                 weights)
            elif clip_ids is None:
                features = self.encode_audios(media)
            else:
                keys, first, inverse = _distinct(clip_ids.to(rows.device)[rows])
                features = self.encode_audios(media[first], keys).index_select(0, inverse)
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), features.to(embeds.dtype))
        return embeds

    def _distinct_branch_weights(self, batch: int, gate_input_ids: torch.Tensor | None,
                                 gate_attention_mask: torch.Tensor | None,
                                 device: torch.device) -> torch.Tensor:
        """``branch_weights`` with the BERT gate run once per distinct question."""
        if gate_input_ids is None:
            return self.branch_weights(batch, None, None, device)
        rows = (gate_input_ids if gate_attention_mask is None
                else torch.cat([gate_input_ids, gate_attention_mask.to(gate_input_ids)], dim=1))
        _, inverse = torch.unique(rows, dim=0, return_inverse=True)
        _, first, inverse = _distinct(inverse)
        weights = self.branch_weights(
            len(first), gate_input_ids[first],
            None if gate_attention_mask is None else gate_attention_mask[first], device)
        return weights.index_select(0, inverse.to(weights.device))

    # -- causal LM ------------------------------------------------------------------------
    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,  # noqa: ANN001 - transformers Cache
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        videos: torch.Tensor | None = None,
        audios: torch.Tensor | None = None,
        gate_input_ids: torch.Tensor | None = None,
        gate_attention_mask: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        clip_ids: torch.Tensor | None = None,
        logprob_targets: torch.LongTensor | None = None,
        logprob_temperature: float = 1.0,
        logprob_upcast: bool = True,
        logprob_entropy: bool = False,
        **kwargs,  # noqa: ANN003
    ) -> CausalLMOutputWithPast | CompletionLogProbs:
        """The causal LM forward; ``clip_ids``: see ``embed_multimodal``.

        ``logprob_targets`` (B, K), the last K tokens of ``input_ids``: instead of logits,
        return their log-probabilities (and entropies with ``logprob_entropy``) from the
        hidden states of the K positions before them only, the LM head applied a few
        rows at a time (``completion_token_log_probs``).
        """
        videos = videos if videos is not None else images
        if inputs_embeds is None and input_ids is not None:
            inputs_embeds = self.embed_multimodal(input_ids, videos, audios, gate_input_ids,
                                                  gate_attention_mask, clip_ids)
            if labels is not None:
                # Features are inputs, never targets.
                cfg = self.config
                for token_id in (cfg.video_placeholder_id, cfg.audio_placeholder_id):
                    if token_id is not None:
                        labels = labels.masked_fill(input_ids == token_id, IGNORE_INDEX)
            input_ids = None
        if logprob_targets is not None:
            keep = logprob_targets.shape[1]
            hidden = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                position_ids=position_ids, use_cache=False,
                                **kwargs).last_hidden_state
            # Position t predicts token t + 1: the K positions before the last.
            log_probs, entropy = completion_token_log_probs(
                hidden[:, -keep - 1:-1], self.lm_head, logprob_targets,
                temperature=logprob_temperature, upcast=logprob_upcast,
                entropy=logprob_entropy)
            return CompletionLogProbs(log_probs=log_probs, entropy=entropy)
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels,
            use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs)

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor | None = None, **kwargs):  # noqa: ANN003, ANN201
        """``GenerationMixin.generate`` with the media keyword arguments of ``forward``.

        As the release's ``generate``: the prompt (features written over its placeholders)
        enters as ``inputs_embeds``, so logits processors (e.g. a checkpoint's
        repetition_penalty) see only the generated tokens. The prompt ids are put back in
        front of the result, so callers (TRL, erv eval) get prompt + completion as usual.
        """
        if self.sample_top_k_only:
            kwargs = self._top_k_sampling(kwargs)
        input_ids = kwargs.pop("input_ids", inputs)
        media = {k: kwargs.pop(k, None) for k in
                 ("videos", "audios", "gate_input_ids", "gate_attention_mask", "images",
                  "clip_ids")}
        videos = media["videos"] if media["videos"] is not None else media["images"]
        if input_ids is None or kwargs.get("inputs_embeds") is not None or (
                videos is None and media["audios"] is None
                and not bool((input_ids < 0).any())):
            return super().generate(input_ids, **kwargs)
        embeds = self.embed_multimodal(input_ids, videos, media["audios"],
                                       media["gate_input_ids"], media["gate_attention_mask"],
                                       media["clip_ids"])
        with warnings.catch_warnings():
            # Intended: the release's penalties, too, cover the generated tokens only.
            warnings.filterwarnings("ignore", message=r".*with `inputs_embeds` and without "
                                    r"`input_ids`", category=UserWarning)
            out = super().generate(inputs_embeds=embeds, **kwargs)
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        prompt = input_ids.to(sequences.device)
        if sequences.shape[0] != prompt.shape[0]:  # num_return_sequences > 1
            prompt = prompt.repeat_interleave(sequences.shape[0] // prompt.shape[0], dim=0)
        full = torch.cat([prompt, sequences], dim=1)
        if isinstance(out, torch.Tensor):
            return full
        out.sequences = full
        return out

    def _top_k_sampling(self, kwargs: dict, full_noise: bool = False) -> dict:
        """``generate``'s arguments with top-k sampling done by a ``TopKSampler``."""
        config = copy.deepcopy(kwargs.pop("generation_config", None) or self.generation_config)
        rest = config.update(**kwargs)
        replaced = TopKSampler.replacing(config, full_noise)
        if replaced is None:
            return {**rest, "generation_config": config}
        sampler, greedy = replaced
        processors = LogitsProcessorList([*(rest.pop("logits_processor", None) or []), sampler])
        return {**rest, "generation_config": greedy, "logits_processor": processors}

    def completion_log_probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                             logits_to_keep: int, temperature: float = 1.0,
                             **media: torch.Tensor | None) -> torch.Tensor:
        """log pi(o_t | q, v, a, o_<t) of the last ``logits_to_keep`` tokens (GRPO, eq. 3).

        ``input_ids`` is prompt + completion; returns (B, logits_to_keep).
        """
        logits = self(input_ids=input_ids, attention_mask=attention_mask,
                      logits_to_keep=logits_to_keep + 1, **media).logits
        logits = logits[:, :-1, :] / temperature
        targets = input_ids[:, -logits_to_keep:]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

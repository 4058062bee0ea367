"""GRPO step speed (issue 16): each clip encoded once per step, log-probs from the
completion positions with the LM head in chunks, the verifier on the process's device;
the fast path gives the old path's loss and gradients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from erv_plugins.datasets.synthetic import STYLE, write_clip  # noqa: E402
from erv_plugins.models.omni import (  # noqa: E402
    MediaFeatureCache,
    OmniForCausalLM,
    OmniProcessor,
    build_tiny_omni,
    load_omni,
)
from erv_plugins.models.omni.modelling import (  # noqa: E402
    TopKSampler,
    completion_token_log_probs,
    sample_top_k,
)
from erv_plugins.training.trainer import clip_ids  # noqa: E402
from erv_plugins.verifiers.hf import resolve_device  # noqa: E402

torch.set_num_threads(1)
G = 4  # completions per clip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[OmniForCausalLM, OmniProcessor]:
    return load_omni(build_tiny_omni(tmp_path_factory.mktemp("fast_omni"), seed=0))


@pytest.fixture(scope="module")
def group_batch(tiny: tuple[OmniForCausalLM, OmniProcessor],
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Two clips, each repeated G times (as TRL repeats a prompt), with G completions."""
    _, processor = tiny
    d = tmp_path_factory.mktemp("fast_clips")
    clips = [write_clip(d / f"{label}.mp4", STYLE[label][0], STYLE[label][1], seed=i)
             for i, label in enumerate(("happiness", "sadness"))]
    rows = [clips[0]] * G + [clips[1]] * G
    batch = processor([processor.prompt()] * len(rows), videos=rows)
    torch.manual_seed(1)
    completions = torch.randint(10, len(processor.tokenizer), (len(rows), 7))
    batch["input_ids"] = torch.cat([batch["input_ids"], completions], dim=1)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch["clip_ids"] = clip_ids([{"video": str(c)} for c in rows])
    return dict(batch)


class EncoderCalls:
    """Clips each encoder saw (forward hooks on the SigLIP and Whisper modules)."""

    def __init__(self, model: OmniForCausalLM, frames: int) -> None:
        self.clips = {"video": 0, "audio": 0}
        towers = model.model
        self._hooks = [
            towers.vision_tower.vision_tower.register_forward_hook(
                lambda m, args, out: self._add("video", args[0].shape[0] // frames)),
            towers.audio_tower.audio_tower.encoder.register_forward_hook(
                lambda m, args, out: self._add("audio", args[0].shape[0])),
        ]

    def _add(self, kind: str, n: int) -> None:
        self.clips[kind] += n

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def _loss_old(model: OmniForCausalLM, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    media = {key: batch[key] for key in ("videos", "audios", "gate_input_ids",
                                         "gate_attention_mask")}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=k + 1, **media).logits[:, :-1].float()
    logps = torch.log_softmax(logits, -1).gather(
        -1, batch["input_ids"][:, -k:, None]).squeeze(-1)
    return _surrogate(logps)


def _loss_new(model: OmniForCausalLM, batch: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    media = {key: batch[key] for key in ("videos", "audios", "gate_input_ids",
                                         "gate_attention_mask", "clip_ids")}
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                logprob_targets=batch["input_ids"][:, -k:], **media)
    return _surrogate(out.log_probs)


def _surrogate(logps: torch.Tensor) -> torch.Tensor:
    # The gradient of GRPO's on-policy surrogate (eq. 3, ratio 1) with fixed advantages,
    # written so that its value depends on the log-probs too.
    advantages = torch.linspace(-1.0, 1.0, logps.shape[0])[:, None]
    return -(logps * advantages).mean()


def _grads(model: OmniForCausalLM) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fast_path_loss_and_gradients_equal_the_old_path(
    tiny: tuple[OmniForCausalLM, OmniProcessor], group_batch: dict[str, torch.Tensor]
) -> None:
    model, _ = tiny
    model.eval()  # dropout off: the two paths draw different masks
    model.zero_grad()
    old = _loss_old(model, group_batch, 7)
    old.backward()
    old_grads = _grads(model)
    model.zero_grad()
    new = _loss_new(model, group_batch, 7)
    new.backward()
    new_grads = _grads(model)
    model.zero_grad()
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-5)
    assert new_grads.keys() == old_grads.keys()
    # The projectors and the BERT gate train: their gradient sums over a clip's G rows.
    assert "model.mm_projector.readout_video.2.weight" in new_grads
    assert "model.bert_gate.2.weight" in new_grads
    assert "model.audio_projector.0.weight" in new_grads
    for name, grad in old_grads.items():
        torch.testing.assert_close(new_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_a_training_vision_tower_gets_the_old_paths_gradient_through_the_expansion(
    tmp_path: Path, group_batch: dict[str, torch.Tensor]
) -> None:
    model, _ = load_omni(build_tiny_omni(tmp_path / "m", seed=0))
    model.config.freeze_vision_tower = False
    model.model.vision_tower.frozen = False
    model.model.vision_tower.requires_grad_(True)
    model.media_cache = MediaFeatureCache()  # a training tower is never cached
    model.eval()
    _loss_old(model, group_batch, 7).backward()
    old = _grads(model)
    model.zero_grad()
    _loss_new(model, group_batch, 7).backward()
    new = _grads(model)
    assert not any(key[0][0] == "video" for key in model.media_cache)
    name = "model.vision_tower.vision_tower.encoder.layers.0.mlp.fc1.weight"
    assert name in new and float(new[name].abs().sum()) > 0
    for key, grad in old.items():
        torch.testing.assert_close(new[key], grad, rtol=1e-5, atol=1e-5, msg=key)


def test_encoders_run_once_per_distinct_clip_per_step(
    tmp_path: Path, group_batch: dict[str, torch.Tensor]
) -> None:
    # One GRPO step: rollout (generate), reference log-probs, policy log-probs + backward.
    policy, processor = load_omni(build_tiny_omni(tmp_path / "m", seed=0))
    reference, _ = load_omni(tmp_path / "m")
    cache = MediaFeatureCache()
    policy.media_cache = reference.media_cache = cache
    k = 7
    prompt_width = group_batch["input_ids"].shape[1] - k
    prompt = {**group_batch, "input_ids": group_batch["input_ids"][:, :prompt_width],
              "attention_mask": group_batch["attention_mask"][:, :prompt_width]}
    counts = [EncoderCalls(m, processor.num_frames) for m in (policy, reference)]
    policy.generate(**prompt, do_sample=True, max_new_tokens=3)
    with torch.no_grad():
        _loss_new(reference, group_batch, k)
    _loss_new(policy, group_batch, k).backward()
    for c in counts:
        c.remove()
    # 2 distinct clips among 2 x G rows: each encoder sees each clip once in the step.
    assert counts[0].clips == {"video": 2, "audio": 2}
    assert counts[1].clips == {"video": 0, "audio": 0}
    # The old path: every row in every pass (3 passes x 2 G rows).
    old = [EncoderCalls(m, processor.num_frames) for m in (policy, reference)]
    plain = {key: v for key, v in prompt.items() if key != "clip_ids"}
    policy.generate(**plain, do_sample=True, max_new_tokens=3)
    with torch.no_grad():
        _loss_old(reference, group_batch, k)
    _loss_old(policy, group_batch, k).backward()
    for c in old:
        c.remove()
    assert [c.clips["audio"] for c in old] == [2 * 2 * G, 2 * G]
    assert [c.clips["video"] for c in old] == [2 * 2 * G, 2 * G]


def test_cache_keys_separate_precisions() -> None:
    # A pass under autocast does not reuse a full-precision tower output (or the reverse).
    model, _ = load_omni(build_tiny_omni(Path(os.environ.get("TMPDIR", "/tmp")) / "fast_keys"))
    model.media_cache = MediaFeatureCache()
    mels = torch.randn(1, model.config.audio_config.num_mel_bins, 198)
    model.encode_audios(mels, [0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.encode_audios(mels, [0])
    assert sorted(str(key[0][3]) for key in model.media_cache) == ["None", "torch.bfloat16"]


def test_chunked_lm_head_equals_full_logits_and_gradients() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(5, 3, 8, requires_grad=True)
    targets = torch.randint(0, 50, (5, 3))
    logps, ent = completion_token_log_probs(hidden, head, targets, temperature=0.7,
                                            entropy=True, chunk_tokens=6)  # 2 rows a chunk
    full = torch.log_softmax(head(hidden) / 0.7, -1)
    torch.testing.assert_close(logps, full.gather(-1, targets[..., None]).squeeze(-1))
    torch.testing.assert_close(ent, -(full.exp() * full).sum(-1))
    g_new = torch.autograd.grad(logps.sum(), (hidden, head.weight))
    g_old = torch.autograd.grad(full.gather(-1, targets[..., None]).sum(), (hidden, head.weight))
    for a, b in zip(g_new, g_old, strict=True):
        torch.testing.assert_close(a, b)
    assert not ent.requires_grad


class _CheckpointedHead(torch.nn.Linear):
    """Not a plain ``nn.Linear``: the chunks run under activation checkpointing."""


@pytest.mark.parametrize(("temperature", "scale"), [(1.0, 1.0), (0.7, 1.0), (1.0, 60.0)])
def test_direct_lm_head_gradient_equals_checkpointing_and_trls_entropy(
    temperature: float, scale: float
) -> None:
    # The plain linear head's gradient is written directly (_ChunkedLogProbs); any other
    # head is differentiated by autograd under checkpointing: the same numbers. Scale 60:
    # logits past exp's safe range, so the chunks subtract their maximum first.
    from trl.trainer.utils import entropy_from_logits

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    other = _CheckpointedHead(8, 50, bias=False)
    other.weight.data.copy_(head.weight.data)
    hidden = (torch.randn(4, 5, 8) * scale).requires_grad_(True)
    assert (float((head(hidden) / temperature).detach().amax()) > 69) == (scale > 1)
    targets = torch.randint(0, 50, (4, 5))
    out = {}
    for name, h in (("direct", head), ("checkpoint", other)):
        logps, ent = completion_token_log_probs(hidden, h, targets, temperature=temperature,
                                                entropy=True, chunk_tokens=7)
        weights = torch.linspace(-1.0, 2.0, 20).view(4, 5)  # a non-uniform upstream gradient
        out[name] = (logps, ent, *torch.autograd.grad((logps * weights).sum(),
                                                      (hidden, h.weight)))
    for a, b in zip(out["direct"], out["checkpoint"], strict=True):
        # float32 rounding grows with the logits (and the weight gradient with h)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(out["direct"][1], entropy_from_logits(head(hidden) / temperature),
                               rtol=1e-5, atol=1e-5)


def test_direct_lm_head_under_bf16_autocast_projects_in_bf16_as_the_head_does() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(3, 4, 8, requires_grad=True)
    targets = torch.randint(0, 50, (3, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logps, _ = completion_token_log_probs(hidden, head, targets)  # one chunk
        full = torch.log_softmax(head(hidden).float(), -1).gather(-1, targets[..., None])
    torch.testing.assert_close(logps, full.squeeze(-1), rtol=1e-6, atol=1e-6)
    g_new = torch.autograd.grad(logps.sum(), (hidden, head.weight))
    g_old = torch.autograd.grad(full.sum(), (hidden, head.weight))
    for a, b in zip(g_new, g_old, strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_top_k_sampler_draws_among_the_candidates_as_multinomial_does() -> None:
    torch.manual_seed(0)
    scores = torch.randn(6, 300)
    torch.manual_seed(7)
    tokens = sample_top_k(scores, 10, temperature=0.5)
    values, index = torch.topk(scores, 10)
    torch.manual_seed(7)
    expected = index.gather(-1, torch.multinomial((values / 0.5).softmax(-1), 1)).squeeze(-1)
    assert torch.equal(tokens, expected)
    # The full noise: transformers' warpers and multinomial over all 300 at the same seed.
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    warped = TopPLogitsWarper(0.8)(None, TopKLogitsWarper(10)(
        None, TemperatureLogitsWarper(0.5)(None, scores)))
    torch.manual_seed(7)
    reference = torch.multinomial(warped.softmax(-1), 1).squeeze(-1)
    torch.manual_seed(7)
    assert torch.equal(sample_top_k(scores, 10, temperature=0.5, top_p=0.8, full_noise=True),
                       reference)
    # A tie at the 10th score: transformers keeps every tied token; so does the fallback.
    tied = scores.clone()
    tied[0, torch.topk(scores[0], 11).indices[10]] = values[0, 9]
    torch.manual_seed(7)
    reference = torch.multinomial(TopKLogitsWarper(10)(None, tied).softmax(-1), 1).squeeze(-1)
    torch.manual_seed(7)
    assert torch.equal(sample_top_k(tied, 10), reference)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, 50, 1.0), (0.7, 20, 0.9)])
def test_top_k_sampling_generate_equals_transformers_sampling(
    tiny: tuple[OmniForCausalLM, OmniProcessor], temperature: float, top_k: int, top_p: float
) -> None:
    # generate with a TopKSampler and greedy selection: with the full noise, the tokens of
    # transformers' sampling at the same seed (processors, padding, cache unchanged).
    from transformers import GenerationConfig

    model, processor = tiny
    model.eval()
    torch.manual_seed(3)
    video = torch.randn(processor.num_frames, 3, processor.image_size, processor.image_size)
    audio = torch.randn(processor.n_mels, int(round(processor.audio_chunk_length * 100)))
    batch = dict(processor([processor.prompt()] * 3, videos=[video] * 3, audios=[audio] * 3))
    config = GenerationConfig(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p,
                              max_new_tokens=9, use_cache=True,
                              pad_token_id=processor.tokenizer.pad_token_id,
                              eos_token_id=processor.tokenizer.eos_token_id)
    torch.manual_seed(5)
    reference = model.generate(**batch, generation_config=config)
    torch.manual_seed(5)
    same = model.generate(**model._top_k_sampling({**batch, "generation_config": config},
                                                   full_noise=True))
    assert torch.equal(same, reference)
    sampler, greedy = TopKSampler.replacing(config)
    assert (greedy.do_sample, sampler.top_k, sampler.temperature, sampler.top_p) == (
        False, top_k, temperature, top_p)
    assert TopKSampler.replacing(GenerationConfig(do_sample=True, top_k=0)) is None
    assert TopKSampler.replacing(GenerationConfig(do_sample=True, top_k=5, min_p=0.1)) is None
    # The fast path's draws (k random numbers a token): other tokens, of the same shape.
    model.sample_top_k_only = True
    try:
        torch.manual_seed(5)
        fast = model.generate(**batch, generation_config=config)
    finally:
        model.sample_top_k_only = False
    assert fast.shape == reference.shape
    assert torch.equal(fast[:, :batch["input_ids"].shape[1]], batch["input_ids"])


def test_clip_ids_number_clips_in_order_of_first_appearance() -> None:
    rows = [{"video": "b.mp4", "id": "1"}, {"video": "a.mp4", "id": "2"},
            {"video": "b.mp4", "id": "1"}, {"video": "", "id": "t"}]
    assert clip_ids(rows).tolist() == [0, 1, 0, 2]


def test_verifier_device_auto_is_the_processes_accelerator() -> None:
    assert resolve_device("auto", cuda=False, local_rank=3) == "cpu"
    assert resolve_device("auto", cuda=True, local_rank=3) == "cuda:3"
    assert resolve_device("auto", cuda=True, local_rank=None) == "cuda:0"
    assert resolve_device("cuda:1", cuda=False, local_rank=0) == "cuda:1"  # as written
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_the_trainer_samples_among_the_top_k_only_on_the_fast_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GRPO rollout (trainer.py) sets the omni policy's ``sample_top_k_only`` from the
    trainer's ``fast_path`` before generating: on with ``[grpo] fast_path`` (the default),
    off with ``fast_path = false``, whatever a previous step left."""
    from datasets import Dataset
    from trl import GRPOConfig

    from erv_plugins.datasets.base import Sample
    from erv_plugins.models.omni.policy import open_omni
    from erv_plugins.training.trainer import OmniGRPOTrainer

    path = build_tiny_omni(tmp_path / "omni", seed=0)
    policy = open_omni(path)
    clip = write_clip(tmp_path / "clip.mp4", STYLE["happiness"][0], STYLE["happiness"][1])
    sample = Sample(id="c", label="happiness", video=clip)
    rows = [{"id": "c", "prompt": policy.prompt(sample), "video": str(clip)}] * 2
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), num_generations=2,
                      per_device_train_batch_size=2, max_completion_length=3, beta=0.0,
                      use_cpu=True, bf16=False, report_to=[])
    seen: list[bool] = []
    generate = OmniForCausalLM.generate

    def recording_generate(self: OmniForCausalLM, *a: object, **kw: object) -> torch.Tensor:
        seen.append(self.sample_top_k_only)
        return generate(self, *a, **kw)

    monkeypatch.setattr(OmniForCausalLM, "generate", recording_generate)
    for fast_path, stale in ((True, False), (False, True)):
        trainer = OmniGRPOTrainer(
            model=str(path), processing_class=policy.tokenizer,
            reward_funcs=[lambda completions, **_: [0.0] * len(completions)], args=args,
            train_dataset=Dataset.from_list(rows), media=policy, fast_path=fast_path,
            batch_fn=lambda batch: policy.encode([sample] * len(batch),
                                                 [r["prompt"] for r in batch]))
        trainer.model.sample_top_k_only = stale
        trainer._generate_and_score_completions(rows)
        assert trainer.model.sample_top_k_only is fast_path
    assert seen == [True, False]

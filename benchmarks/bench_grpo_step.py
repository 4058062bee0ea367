"""GRPO step time of the omni policy, old path and fast path side by side, per phase (issue 16).

One GRPO step of the paper's settings (G = 16 completions of one clip, temperature 1.0,
beta 0.04) through erv's GRPO stage: rollout, reward engine (format, answer, explanation
through a verifier on the process's device, ``device = "auto"``), reference and policy
log-probs, update. Each run trains twice in one process from the same random policy and
seed: ``[grpo] fast_path = false`` (every row encodes its clip in every pass, full
logits: the old path) then ``fast_path = true`` (each distinct clip encoded once per
pass, frozen towers once per step, rollout tokens drawn among the top-k candidates only,
chunked LM head over the completion positions with its gradient written directly).

Shapes (random weights; random pixels and log-mels of the processor's shapes in place of
decoded clips):
  paper: HumanOmni-0.5B (Qwen2 896 x 24 layers, vocab 151,936; SigLIP base 224 px x 8
         frames; whisper-large-v3 encoder; BERT-base gate), 512 new tokens, bf16 (GPU);
  small: the CPU shape, keeping the paper's ratios: the Whisper encoder (192 x 14 layers,
         ~6.4 M) larger than the language model (Qwen2 32 x 2 layers, the paper's vocab
         151,936, ~4.9 M) as whisper-large-v3 (635 M) is larger than Qwen2-0.5B (494 M);
         150 audio positions, 8 frames of 64 px, 96 new tokens, float32;
  tiny:  the test model (smoke test).
Random weights rarely emit EOS, so every completion has the full length.

    python benchmarks/bench_grpo_step.py --shape small --steps 3 --out small.json   # CPU
    python benchmarks/bench_grpo_step.py --shape paper --steps 4 --out paper.json   # GPU
    python benchmarks/bench_grpo_step.py --shape tiny --steps 2                     # smoke
    python benchmarks/bench_grpo_step.py --shape small --decode-only --steps 3      # sampler, KV cache

Phases (means over the steps after the first, a warm-up): generation = TRL's
``_generate_single_turn``; reference = the no-grad log-prob passes of the rollout (the
reference model's); rewards = the engine's ``score_batch``; policy = ``training_step``
less the rollout (policy log-prob forward, loss, backward); step = TRL's ``step_time``.
On one rollout batch of the fast run, both paths then compute the loss (equal to float
noise) and the peak memory of a log-prob pass: live tensor bytes allocated during the
pass (torch.profiler with ``profile_memory``, CPU; ``torch.cuda.max_memory_allocated``
above the start on GPU), for the reference pass (no grad) and the policy pass (forward
and backward of the loss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def build_policy(out: Path, shape: str) -> Path:
    from erv_plugins.models.omni import build_tiny_omni

    if shape == "tiny":
        return build_tiny_omni(out)
    if shape == "small":
        return build_tiny_omni(out, **small_shape())
    import torch
    from erv_plugins.models.omni import OmniConfig, OmniForCausalLM, OmniProcessor
    from erv_plugins.models.omni.tiny import build_tiny_gate_tokenizer, build_tiny_tokenizer
    from transformers import BertConfig

    tokenizer = build_tiny_tokenizer()
    gate_tokenizer = build_tiny_gate_tokenizer()
    # Qwen2-0.5B's language model; encoders from the release's names (built-in configs).
    config = OmniConfig(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1000000.0, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        text_gate_config=BertConfig(vocab_size=max(30522, len(gate_tokenizer))).to_dict(),
        text_gate_hidden_size=768, mm_vision_tower="google/siglip-base-patch16-224",
        mm_audio_tower="openai/whisper-large-v3", text_model_path=None,
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        audio_token_id=tokenizer.convert_tokens_to_ids("<audio>"),
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = OmniForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(out)
    del model
    OmniProcessor(
        tokenizer, gate_tokenizer, num_video_tokens=config.num_video_tokens,
        num_audio_tokens=config.num_audio_tokens, num_frames=config.num_frames,
        image_size=config.vision_config.image_size, n_mels=config.audio_config.num_mel_bins,
        audio_chunk_length=config.num_audio_frames / 100.0, mm_use_x_start_end=True,
        gate_max_length=512,
    ).save_pretrained(out)
    return out


def small_shape() -> dict:
    """Config overrides of the CPU shape (see the module docstring)."""
    from transformers import SiglipVisionConfig, WhisperConfig

    return dict(
        vocab_size=151936, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1,
        vision_config=SiglipVisionConfig(
            hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
            image_size=64, patch_size=8).to_dict(),
        audio_config=WhisperConfig(
            d_model=192, encoder_layers=14, encoder_attention_heads=4, encoder_ffn_dim=768,
            decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
            max_source_positions=150, max_target_positions=16, vocab_size=64,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1).to_dict(),
    )


def write_prompts(root: Path, n: int) -> None:
    """A MAFW-layout split file naming ``n`` clips (their media are drawn at random)."""
    split = root / "Train & Test Set" / "single" / "no_caption" / "set_5"
    split.mkdir(parents=True, exist_ok=True)
    (root / "data" / "clips").mkdir(parents=True, exist_ok=True)  # the preflight's
    labels = ("happiness", "sadness", "anger", "neutral")
    (split / "train.txt").write_text(
        "".join(f"clip_{i:04d}.mp4 {labels[i % 4]}\n" for i in range(n)))


def count_params(directory: Path, prefix: str = "") -> int:
    """Parameters stored under ``prefix`` (all by default; tied weights once)."""
    import math

    from safetensors import safe_open

    n = 0
    for f in directory.glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            n += sum(math.prod(h.get_slice(k).get_shape()) for k in h.keys()
                     if k.startswith(prefix))
    return n


RECIPE = """\
name = "bench_grpo_step"
stages = ["grpo"]

[model]
plugin = "omni"
path = "{policy}"

[verifier]
plugin = "hf"
options = {{ path = "{verifier}", device = "auto" }}

[rewards.format]
[rewards.answer]
options = {{ label_space = "mafw" }}
[rewards.explanation]
options = {{ tau = 0.5 }}

[grpo]
dataset = {{ plugin = "mafw", root = "{data}/mafw", split = "train" }}
num_generations = 16
beta = 0.04
lr = 1e-6
batch_size = 16
grad_accum = 1
epochs = 1.0
max_steps = {steps}
bf16 = {bf16}
temperature = 1.0
max_completion_length = {completion}
loss_type = "grpo"
save_steps = 100000
disable_dropout = true
fast_path = {fast_path}
"""


PHASES = ("generation", "reference", "rewards", "policy")


class Phases:
    """Wall time of each phase of each step, by wrapping the trainer's methods."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.times: dict[str, list[float]] = {k: [] for k in (*PHASES, "rollout", "step")}
        self.trainer = None
        self.first_batch = None

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def wrap(self, cls, name: str, phase: str, when=None):  # noqa: ANN001, ANN201
        original = getattr(cls, name)
        phases = self

        def timed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if when is not None and not when():
                return original(self, *args, **kwargs)
            phases._sync()
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                phases._sync()
                phases.times[phase].append(time.perf_counter() - start)

        setattr(cls, name, timed)
        return original

    def install(self):  # noqa: ANN201
        import torch
        from erv_plugins.rewards.engine import RewardEngine
        from erv_plugins.training.trainer import OmniGRPOTrainer

        saved = [(OmniGRPOTrainer, n, getattr(OmniGRPOTrainer, n)) for n in (
            "_generate_single_turn", "_get_per_token_logps_and_entropies", "_prepare_inputs",
            "training_step")] + [(RewardEngine, "score_batch", RewardEngine.score_batch)]
        self.wrap(OmniGRPOTrainer, "_generate_single_turn", "generation")
        self.wrap(OmniGRPOTrainer, "_get_per_token_logps_and_entropies", "reference",
                  when=lambda: not torch.is_grad_enabled())
        self.wrap(RewardEngine, "score_batch", "rewards")
        prepare = self.wrap(OmniGRPOTrainer, "_prepare_inputs", "rollout")
        self.wrap(OmniGRPOTrainer, "training_step", "step")
        phases = self
        timed_prepare = OmniGRPOTrainer._prepare_inputs

        def capture(self, batch):  # noqa: ANN001, ANN202
            out = timed_prepare(self, batch)
            if phases.first_batch is None:
                phases.trainer, phases.first_batch = self, out
            return out

        OmniGRPOTrainer._prepare_inputs = capture
        del prepare
        return saved

    def summary(self) -> dict[str, float]:
        def mean(xs: list[float]) -> float:
            xs = xs[1:] if len(xs) > 1 else xs
            return sum(xs) / len(xs) if xs else 0.0

        policy = [s - r for s, r in zip(self.times["step"], self.times["rollout"], strict=True)]
        out = {k: round(mean(self.times[k]), 4) for k in ("generation", "reference", "rewards")}
        out["policy"] = round(mean(policy), 4)
        out["step"] = round(mean(self.times["step"]), 4)
        return out


def peak_bytes(fn, cuda: bool) -> int:  # noqa: ANN001
    """Peak of the live tensor bytes allocated while ``fn`` runs (see the docstring)."""
    import torch

    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = top = 0
    for e in events:
        live += e.nbytes()
        top = max(top, live)
    return top


def same_batch(trainer, inputs, cuda: bool) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Loss and log-prob pass peak memory of both paths on one rollout batch."""
    import torch
    from erv_plugins.models.omni.policy import MEDIA_KEYS

    # Random weights score every completion alike (advantages 0, loss 0 in both paths):
    # fixed advantages make the comparison say something (the loss is linear in them).
    inputs = {**inputs, "advantages": torch.linspace(-1.0, 1.0, inputs["prompt_ids"].shape[0],
                                                     device=inputs["prompt_ids"].device)}
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    keep = inputs["completion_ids"].shape[1]
    out: dict[str, dict[str, float]] = {}
    for name, fast in (("old", False), ("new", True)):
        trainer.fast_path = fast
        trainer._share_media_cache()  # fresh: the run's last cache holds another batch
        if not fast:
            for m in (trainer.model, trainer.ref_model):
                trainer.accelerator.unwrap_model(m).media_cache = None
        keys = (*MEDIA_KEYS, "clip_ids") if fast else MEDIA_KEYS
        trainer._media = {k: inputs[k] for k in keys if k in inputs}

        logps: list = []

        def reference() -> None:
            with torch.no_grad():
                logps.append(trainer._get_per_token_logps_and_entropies(
                    trainer.ref_model, ids, mask, keep)[0])

        loss_box: list[float] = []

        def policy() -> None:
            loss = trainer.compute_loss(trainer.model, inputs)
            loss.backward()
            loss_box.append(float(loss.detach()))

        ref_peak = peak_bytes(reference, cuda)
        trainer.model.zero_grad()
        pol_peak = peak_bytes(policy, cuda)
        trainer.model.zero_grad()
        out[name] = {"loss": loss_box[0], "reference_peak_mib": round(ref_peak / 2**20, 1),
                     "policy_peak_mib": round(pol_peak / 2**20, 1), "_logps": logps[0]}
    diff = float((out["old"].pop("_logps") - out["new"].pop("_logps")).abs().max())
    out["reference_logps_max_abs_diff"] = diff  # type: ignore[assignment]
    trainer._media = {}
    return out


def run_path(work: Path, policy: Path, verifier: Path, args, fast: bool,  # noqa: ANN001
             cuda: bool) -> tuple[dict, object, object]:
    import torch
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import run_recipe
    from erv_plugins.training.runlog import MetricsLog

    name = "new" if fast else "old"
    phases = Phases(cuda)
    saved = phases.install()
    recipe_path = work / f"bench_{name}.toml"
    recipe_path.write_text(RECIPE.format(
        policy=policy, verifier=verifier, data=work / "data", steps=args.steps,
        completion=args.completion, bf16="true" if cuda else "false",
        fast_path="true" if fast else "false"))
    plugins = get_plugins()
    recipe = load_recipe(recipe_path, plugins)
    recipe.run_dir = str(work / f"run_{name}")
    torch.manual_seed(0)
    try:
        run_recipe(recipe, plugins, force=True)
    finally:
        for cls, attr, fn in saved:
            setattr(cls, attr, fn)
    rows = MetricsLog(work / f"run_{name}" / "grpo" / "metrics.jsonl").read()
    result = {"phases_s": phases.summary(),
              "step_times_s": [round(r["step_time"], 3) for r in rows],
              "losses": [r.get("loss") for r in rows],
              "completion_mean_tokens": round(sum(r["completions/mean_length"] for r in rows)
                                              / len(rows), 1)}
    return result, phases.trainer, phases.first_batch


def decode_only(policy: Path, new_tokens: int, repeats: int) -> dict[str, list[float]]:
    """Rollout decoding alone (16 rows of one clip, clip ids on, the recipe's sampling:
    temperature 1.0, top-k 50, top-p 1.0): transformers' sampling (the old path) and the
    fast path's ``TopKSampler``, each with a dynamic and a static KV cache (on CPU
    transformers does not compile; on a GPU static also compiles the step)."""
    import torch
    from erv_plugins.models.omni import load_omni
    from transformers import GenerationConfig

    model, processor = load_omni(policy)
    model.eval()
    p = processor
    video = torch.randn(p.num_frames, 3, p.image_size, p.image_size)
    audio = torch.randn(p.n_mels, int(round(p.audio_chunk_length * 100)))
    batch = dict(processor([processor.prompt()] * 16, videos=[video] * 16, audios=[audio] * 16))
    batch["clip_ids"] = torch.zeros(16, dtype=torch.long)
    if torch.cuda.is_available():
        model.to("cuda", torch.bfloat16)
        batch = {k: v.to("cuda") for k, v in batch.items()}
    times: dict[str, list[float]] = {}
    for sampler in ("transformers", "top_k"):
        model.sample_top_k_only = sampler == "top_k"
        for cache in ("dynamic", "static"):
            config = GenerationConfig(
                do_sample=True, temperature=1.0, top_k=50, top_p=1.0, use_cache=True,
                max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                pad_token_id=p.tokenizer.pad_token_id, eos_token_id=p.tokenizer.eos_token_id,
                **({"cache_implementation": "static"} if cache == "static" else {}))
            name = f"{sampler}_sampling_{cache}"
            times[name] = []
            for _ in range(repeats):
                torch.manual_seed(0)
                start = time.perf_counter()
                model.generate(**batch, generation_config=config)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                times[name].append(round(time.perf_counter() - start, 3))
    model.sample_top_k_only = False
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("paper", "small", "tiny"), default="small")
    parser.add_argument("--tiny", action="store_true", help="same as --shape tiny")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--completion", type=int, default=None,
                        help="max new tokens (default: paper 512, small 96, tiny 16)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="write the results JSON here")
    parser.add_argument("--decode-only", action="store_true",
                        help="time rollout decoding: both samplers, dynamic and static KV cache")
    args = parser.parse_args(argv)
    shape = "tiny" if args.tiny else args.shape
    if args.completion is None:
        args.completion = {"paper": 512, "small": 96, "tiny": 16}[shape]

    import torch
    from erv_plugins.models.omni.policy import OmniMediaPolicy
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_grpo_"))
    cuda = torch.cuda.is_available()
    t0 = time.perf_counter()
    policy = build_policy(work / "policy", shape)
    verifier = build_tiny_verifier(work / "verifier")
    write_prompts(work / "data" / "mafw", 12)
    setup_s = time.perf_counter() - t0
    if args.decode_only:
        times = decode_only(policy, args.completion, args.steps)
        print(json.dumps({"shape": shape, "new_tokens": args.completion, "decode_s": times}))
        return 0

    def random_clip(self, sample):  # noqa: ANN001, ANN202
        # Decoded pixels and log-mels of the processor's shapes: the step's cost does not
        # depend on their values, and no video library is needed on the GPU machine.
        p = self.processor
        g = torch.Generator().manual_seed(sum(map(ord, str(sample.id))))
        video = torch.randn(p.num_frames, 3, p.image_size, p.image_size, generator=g)
        audio = torch.randn(p.n_mels, int(round(p.audio_chunk_length * 100)), generator=g)
        return video, audio

    OmniMediaPolicy.clip = random_clip  # type: ignore[method-assign]
    old, _, _ = run_path(work, policy, verifier, args, fast=False, cuda=cuda)
    new, trainer, batch = run_path(work, policy, verifier, args, fast=True, cuda=cuda)
    same = same_batch(trainer, batch, cuda)
    speedup = old["phases_s"]["step"] / new["phases_s"]["step"]
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "shape": shape, "torch_threads": torch.get_num_threads(),
        "params_m": {"all": round(count_params(policy) / 1e6, 2),
                     "whisper_encoder": round(count_params(
                         policy, "model.audio_tower.audio_tower.encoder.") / 1e6, 2),
                     "siglip": round(count_params(policy, "model.vision_tower.") / 1e6, 2),
                     "language_model": round(sum(count_params(policy, p) for p in (
                         "model.embed_tokens.", "model.layers.", "model.norm.", "lm_head."))
                         / 1e6, 2)},
        "old": old, "new": new, "step_speedup": round(speedup, 2),
        "same_batch": same,
        "loss_abs_diff": abs(same["old"]["loss"] - same["new"]["loss"]),
        "policy_peak_ratio": round(same["old"]["policy_peak_mib"]
                                   / max(same["new"]["policy_peak_mib"], 1e-9), 2),
        "reference_peak_ratio": round(same["old"]["reference_peak_mib"]
                                      / max(same["new"]["reference_peak_mib"], 1e-9), 2),
        "setup_s": round(setup_s, 1),
        "settings": {"G": 16, "batch": 16, "max_completion_length": args.completion,
                     "bf16": cuda, "beta": 0.04, "steps": args.steps},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))

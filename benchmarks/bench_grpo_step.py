"""GRPO step time of the 0.5B-shaped omni policy (random weights) and the share spent in rewards.

One GRPO step of the paper's settings (G = 16 completions of one clip, up to 512 new
tokens at temperature 1.0, beta 0.04, bf16) through erv's GRPO stage: rollout, reward
engine (format, answer, explanation through a verifier on the same GPU), reference and
policy log-probs, update. The policy has HumanOmni-0.5B's shapes (Qwen2 896 x 24 layers,
SigLIP base 224 px x 8 frames, whisper-large-v3 encoder, BERT-base gate) with random
weights, and random pixels and log-mels of the real shapes (8 x 3 x 224 x 224, 128 x 3000)
in place of decoded clips; the verifier is a tiny RoBERTa (the reward share is then a
lower bound for a RoBERTa-base verifier). Random weights rarely emit EOS, so every
completion has the full 512 tokens: the worst case for the step, the best case for the
reward share.

    python benchmarks/bench_grpo_step.py --steps 4 --out results.json      # GPU
    python benchmarks/bench_grpo_step.py --tiny --steps 3                  # CPU smoke test

Reward time = wall time of the engine's ``score_batch`` (all rewards of a step's batch);
random weights write no ``<think>`` block, so the same engine is also timed on 16
well-formed completions (one group of ``synthetic_batch``), the share a trained policy's
step would spend;
step time = TRL's ``step_time`` (rollout + rewards + log-probs + backward + optimiser).
The first step (warm-up) is left out of the means.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def build_policy(out: Path, tiny: bool) -> Path:
    from erv_plugins.models.omni import build_tiny_omni

    if tiny:
        return build_tiny_omni(out)
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


def write_prompts(root: Path, n: int) -> None:
    """A MAFW-layout split file naming ``n`` clips (their media are drawn at random)."""
    split = root / "Train & Test Set" / "single" / "no_caption" / "set_5"
    split.mkdir(parents=True, exist_ok=True)
    labels = ("happiness", "sadness", "anger", "neutral")
    (split / "train.txt").write_text(
        "".join(f"clip_{i:04d}.mp4 {labels[i % 4]}\n" for i in range(n)))


def count_params(directory: Path) -> int:
    import math

    from safetensors import safe_open

    n = 0
    for f in directory.glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            n += sum(math.prod(h.get_slice(k).get_shape()) for k in h.keys())
    return n


RECIPE = """\
name = "bench_grpo_step"
stages = ["grpo"]

[model]
plugin = "omni"
path = "{policy}"

[verifier]
plugin = "hf"
options = {{ path = "{verifier}", device = "{device}" }}

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
bf16 = true
temperature = 1.0
max_completion_length = {completion}
loss_type = "grpo"
save_steps = 100000
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--completion", type=int, default=512)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=None, help="write the results JSON here")
    args = parser.parse_args(argv)

    import torch
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.rewards.engine import RewardEngine
    from erv_plugins.stages import run_recipe
    from erv_plugins.training.policy import Policy
    from erv_plugins.training.runlog import MetricsLog
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_grpo_"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.perf_counter()
    policy = build_policy(work / "policy", args.tiny)
    verifier = build_tiny_verifier(work / "verifier")
    write_prompts(work / "data" / "mafw", 12)
    setup_s = time.perf_counter() - t0

    reward_s: list[float] = []
    score_batch = RewardEngine.score_batch

    def timed(self, batch):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        try:
            return score_batch(self, batch)
        finally:
            if device == "cuda":
                torch.cuda.synchronize()
            reward_s.append(time.perf_counter() - start)

    RewardEngine.score_batch = timed  # type: ignore[method-assign]

    def random_clip(self, sample):  # noqa: ANN001, ANN202
        # Decoded pixels and log-mels of the processor's shapes: the step's cost does not
        # depend on their values, and no video library is needed on the GPU machine.
        p = self.processor
        g = torch.Generator().manual_seed(hash(sample.id) % 2**31)
        video = torch.randn(p.num_frames, 3, p.image_size, p.image_size, generator=g)
        audio = torch.randn(p.n_mels, int(round(p.audio_chunk_length * 100)), generator=g)
        return video, audio

    Policy.clip = random_clip  # type: ignore[method-assign]
    recipe_path = work / "bench.toml"
    recipe_path.write_text(RECIPE.format(policy=policy, verifier=verifier, device=device,
                                         data=work / "data", steps=args.steps,
                                         completion=args.completion))
    plugins = get_plugins()
    recipe = load_recipe(recipe_path, plugins)
    recipe.run_dir = str(work / "run")
    run_recipe(recipe, plugins, force=True)
    RewardEngine.score_batch = score_batch  # type: ignore[method-assign]
    # Random weights write no <think> block, so the verifier is hardly called in the loop.
    # The same engine on 16 well-formed completions (one GRPO group, 2-8 explanation
    # sentences each, erv_plugins.testing.rewards.synthetic_batch), cold cache each round,
    # gives the share a trained policy's step would spend in rewards.
    from erv_plugins.testing.rewards import synthetic_batch

    wellformed_s = []
    for seed in range(6):
        completions, columns = synthetic_batch(1, 16, seed=seed)
        engine = RewardEngine.from_recipe(recipe, plugins)
        start = time.perf_counter()
        engine.score(completions, columns)
        if device == "cuda":
            torch.cuda.synchronize()
        wellformed_s.append(time.perf_counter() - start)
        engine.close()
    wellformed_mean = sum(wellformed_s[1:]) / len(wellformed_s[1:])
    rows = MetricsLog(work / "run" / "grpo" / "metrics.jsonl").read()
    steps = [r["step_time"] for r in rows]
    measured = slice(1, None) if len(steps) > 1 else slice(None)
    step_mean = sum(steps[measured]) / len(steps[measured])
    reward_mean = sum(reward_s[measured]) / len(reward_s[measured])
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "policy_params_m": round(count_params(policy) / 1e6, 1),
        "steps": len(steps), "step_times_s": [round(s, 3) for s in steps],
        "reward_times_s": [round(s, 4) for s in reward_s],
        "step_mean_s": round(step_mean, 3), "reward_mean_s": round(reward_mean, 4),
        "reward_share": round(reward_mean / step_mean, 4),
        "reward_wellformed_group_s": round(wellformed_mean, 4),
        "reward_wellformed_share": round(wellformed_mean / step_mean, 4),
        "completion_mean_tokens": round(sum(r["completions/mean_length"] for r in rows)
                                        / len(rows), 1),
        "setup_s": round(setup_s, 1),
        "settings": {"G": 16, "batch": 16, "max_completion_length": args.completion,
                     "bf16": True, "beta": 0.04},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main(sys.argv[1:]))

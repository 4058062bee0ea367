"""Real models: a tiny Hugging Face RoBERTa verifier saved to disk (the ``hf`` plugin), the
release's reward loop as an independent check, and a real TRL GRPOTrainer using erv's
rewards on a tiny Qwen2."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from erv_plugins.plugins import get_plugins
from erv_plugins.recipe import load_recipe
from erv_plugins.rewards.engine import RewardEngine
from erv_plugins.testing.rewards import KeywordVerifier, build_tiny_roberta, synthetic_batch
from erv_plugins.training.rewards_adapter import TRLRewards

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # real models: torch and transformers imports, a TRL run
os.environ.setdefault("OMP_NUM_THREADS", "1")


def release_module():
    """benchmarks/baselines/release_reward.py: the release's loop, re-implemented apart."""
    path = ROOT / "benchmarks" / "baselines" / "release_reward.py"
    spec = importlib.util.spec_from_file_location("release_reward", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    return build_tiny_roberta(tmp_path_factory.mktemp("verifier"))


def release_recipe(tmp_path: Path, verifier: Path) -> Path:
    path = tmp_path / "release.toml"
    path.write_text(f"""
name = "release-rewards"
stages = []
[verifier]
plugin = "hf"
options = {{ path = "{verifier}" }}
[rewards.format]
[rewards.answer]
options = {{ mode = "release" }}
[rewards.explanation]
options = {{ tau = 0.1, top_k = 2, neutral_rule = "release", segmentation = "paper" }}
""")
    return path


def test_hf_verifier_rewards_equal_the_release_loop(roberta_dir: Path, tmp_path: Path) -> None:
    plugins = get_plugins()
    engine = RewardEngine.from_recipe(load_recipe(release_recipe(tmp_path, roberta_dir),
                                                  plugins), plugins)
    completions, columns = synthetic_batch(8, 4, seed=3)
    scores = engine.score(completions, columns)

    release = release_module()
    verifier = engine.reward("explanation").verifier
    classify = release.hf_classifier(verifier.tokenizer, verifier.model)
    expected = release.release_rewards(completions, columns["label"], columns["dataset"],
                                       classify, threshold=0.1)
    for name in ("format", "answer", "explanation"):
        assert scores.per_reward[name] == expected[name], name
    assert scores.total == expected["total"]
    # The tiny verifier's label sets differ between sentences, so R_E is not trivially 0.
    assert 0 < sum(scores.per_reward["explanation"]) < len(completions)
    # Each distinct sentence went to the verifier once.
    assert scores.info["explanation/verified_sentences"] == \
        scores.info["explanation/unique_sentences"]


def test_erv_reward_cli_loads_the_hf_verifier(roberta_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from erv_plugins.cli import main

    samples = ROOT / "tests" / "data" / "reward_samples.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", str(samples), "--verifier", str(roberta_dir), "--tau", "0.1",
              "--answer-mode", "release", "--json", "--explain"])
    assert exit_info.value.code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 5
    for row in rows:
        d = row["explanation_detail"]
        # R_E's arithmetic, as printed, reproduces the value.
        expected = d["c"] / d["denominator"] if d["denominator"] else 0.0
        assert row["explanation"] == pytest.approx(expected)
        assert row["total"] == pytest.approx(row["format"] + row["answer"] + row["explanation"])
        assert all(1 <= len(s["labels"]) <= 2 for s in d["sentences"])


# -- a real TRL GRPOTrainer --------------------------------------------------------------------
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen2(out: Path) -> Path:
    """A random 2-layer Qwen2 and a byte-level BPE tokenizer (think/answer tags as tokens)."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    corpus = ["<think>She smiles. He cries.</think><answer>happy</answer>",
              "Which emotion is the most obvious? user assistant system"] * 8
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t in ("<think>", "</think>", "<answer>", "</answer>")])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        tie_word_embeddings=True, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    ))
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def test_trl_grpo_trainer_logs_erv_rewards(tmp_path: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    from erv_plugins.recipe import WeightSchedule
    from erv_plugins.rewards.engine import RewardTerm
    from erv_plugins.rewards.explanation import ExplanationReward
    from erv_plugins.rewards.format_answer import AnswerReward, FormatReward

    torch.set_num_threads(1)
    model_dir = build_tiny_qwen2(tmp_path / "policy")
    engine = RewardEngine([
        RewardTerm("format", FormatReward(), 1.0, WeightSchedule(kind="linear", end=0.0, steps=2)),
        RewardTerm("answer", AnswerReward()),
        RewardTerm("explanation", ExplanationReward(verifier=KeywordVerifier())),
        # The random policy never writes the format: a length reward makes advantages vary.
        RewardTerm("length", lambda b: [len(c) / 100 for c in b.completions]),
    ])
    trl_rewards = TRLRewards(engine)
    question = "Which emotion is the most obvious?"
    data = Dataset.from_list([
        {"prompt": [{"role": "user", "content": question}], "label": label, "dataset": "mafw"}
        for label in ("happiness", "sadness", "anger", "neutral")
    ])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), use_cpu=True, max_steps=2, learning_rate=1e-4,
        per_device_train_batch_size=4, num_generations=4, max_completion_length=12,
        logging_steps=1, report_to=[], save_strategy="no", seed=0, bf16=False,
        reward_weights=trl_rewards.reward_weights(0), dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=str(model_dir), reward_funcs=trl_rewards.reward_functions(), args=args,
        train_dataset=data, processing_class=PreTrainedTokenizerFast.from_pretrained(model_dir),
    )
    trainer.add_callback(trl_rewards.callback(trainer))
    trainer.train()

    logged = {k for entry in trainer.state.log_history for k in entry}
    for name in ("format", "answer", "explanation", "length"):
        assert f"rewards/{name}/mean" in logged and f"rewards/{name}/std" in logged
    assert "erv/explanation/neutral_share" in logged
    # The scheduled weight of "format" at the last step (global_step 1): 1 -> 0 over 2 steps.
    assert trainer.reward_weights.tolist() == pytest.approx([0.5, 1.0, 1.0, 1.0])

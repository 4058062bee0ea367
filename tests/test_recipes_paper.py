"""The paper's recipes: `erv run --dry-run` prints every paper number, and each ablation
differs from the paper recipe only in its switch."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from erv_plugins.cli import build_cli

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def dry_run(name: str) -> tuple[str, dict]:
    result = CliRunner().invoke(build_cli(), ["run", str(RECIPES / name), "--dry-run"])
    assert result.exit_code == 0, result.output
    return result.output, tomllib.loads(result.output)


def without(data: dict, *paths: tuple[str, ...]) -> dict:
    """A deep copy of ``data`` without the given key paths and what names the file."""
    import copy

    out = copy.deepcopy(data)
    for key in ("name", "description", "extends", "source"):
        out.pop(key, None)
    for path in paths:
        node = out
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    return out


def test_paper_0_5b_dry_run_states_every_paper_number():
    text, r = dry_run("paper_0_5b.toml")
    assert r["stages"] == ["sft", "train_verifier", "grpo", "eval"]
    # Data (Table 8): 8 frames at 224 x 224 for SFT and GRPO.
    assert (r["sft"]["frames"], r["sft"]["image_size"]) == (8, 224)
    assert (r["grpo"]["frames"], r["grpo"]["image_size"]) == (8, 224)
    # SFT on EMER: 5 epochs, lr 2e-5, cosine, warmup 0.03, batch 32, bf16.
    sft = r["sft"]
    assert sft["dataset"]["plugin"] == "emer"
    assert (sft["epochs"], sft["lr"], sft["scheduler"], sft["warmup_ratio"],
            sft["batch_size"], sft["grad_accum"], sft["bf16"]) == (
        5.0, 2e-5, "cosine", 0.03, 32, 1, True)
    # Verifier (section 3.2): 10 epochs, batch 64, lr 3e-5, GoEmotions' 28 labels.
    tv = r["train_verifier"]
    assert (tv["epochs"], tv["batch_size"], tv["lr"], tv["label_space"]) == (
        10.0, 64, 3e-5, "goemotions")
    assert [d["plugin"] for d in tv["train"]] == ["text_emer", "text_merr_fine",
                                                   "text_jsonl", "text_jsonl"]
    # GRPO: G 16, beta 0.04, lr 1e-6 cosine, batch 16, grad accum 2, 2 epochs, bf16, T 1.0.
    g = r["grpo"]
    assert (g["num_generations"], g["beta"], g["lr"], g["scheduler"], g["batch_size"],
            g["grad_accum"], g["epochs"], g["bf16"], g["temperature"], g["loss_type"],
            g["scale_rewards"]) == (16, 0.04, 1e-6, "cosine", 16, 2, 2.0, True, 1.0,
                                    "grpo", "group")
    # Rewards (eq. 5, Algorithm 1): equal weights, tau 0.5 (the paper's), top-2 labels.
    assert {k: v["weight"] for k, v in r["rewards"].items()} == {
        "format": 1.0, "answer": 1.0, "explanation": 1.0}
    opts = r["rewards"]["explanation"]["options"]
    assert (opts["tau"], opts["top_k"], opts["neutral_filter"], opts["sentence_level"]) == (
        0.5, 2, True, True)
    # DeepSpeed ZeRO-3 on 8 processes, bf16.
    launch = r["launch"]
    assert (launch["num_processes"], launch["mixed_precision"]) == (8, "bf16")
    assert launch["deepspeed"].endswith("deepspeed/zero3.json")
    import json

    ds = json.loads((RECIPES / "deepspeed" / "zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3
    # Evaluation as the authors' scripts ran it (Table 1's numbers came from them): sampling
    # at temperature 0.3, top_p 0.9, at most 512 new tokens, GPT-4.1-mini asked with the
    # server's defaults, on MAFW and DFEW.
    e = r["eval"]
    assert (e["protocol"], e["temperature"], e["top_p"], e["max_new_tokens"]) == (
        "release", 0.3, 0.9, 512)
    assert [d["plugin"] for d in e["datasets"]] == ["mafw", "dfew"]
    assert e["judge"]["plugin"] == "openai"
    assert e["judge"]["options"]["model"] == "gpt-4.1-mini"
    assert e["judge"]["options"]["server_defaults"] is True
    assert "tau = 0.5" in text


@pytest.mark.parametrize(("recipe", "switch", "value"), [
    ("ablation_no_neutral_filter.toml", ("rewards", "explanation", "options", "neutral_filter"),
     False),
    ("ablation_no_sentence_level.toml", ("rewards", "explanation", "options", "sentence_level"),
     False),
    ("ablation_no_aug.toml", ("train_verifier", "train"),
     [{"plugin": "text_emer", "root": "data/EMER/EMER.csv"},
      {"plugin": "text_merr_fine", "root": "data/MERR/MERR_fine_grained.json"}]),
])
def test_each_ablation_differs_from_the_paper_only_in_its_switch(recipe, switch, value):
    _, paper = dry_run("paper_0_5b.toml")
    _, ablation = dry_run(recipe)
    node = ablation
    for key in switch:
        node = node[key]
    if isinstance(value, list):
        assert [{k: d[k] for k in ("plugin", "root")} for d in node] == value
    else:
        assert node == value
    assert ablation["name"] == recipe.removesuffix(".toml")
    assert without(ablation, switch) == without(paper, switch)


def test_release_recipe_names_what_differs_from_the_paper():
    _, paper = dry_run("paper_0_5b.toml")
    _, release = dry_run("release_0_5b.toml")
    assert release["rewards"]["explanation"]["options"]["tau"] == 0.1
    assert release["rewards"]["answer"]["options"]["mode"] == "release"
    assert (release["grpo"]["num_generations"], release["grpo"]["batch_size"],
            release["grpo"]["max_prompt_length"], release["grpo"]["max_completion_length"],
            release["grpo"]["temperature"]) == (4, 4, 256, 512, 1.0)
    assert release["grpo"]["beta"] == paper["grpo"]["beta"] == 0.04


def test_paper_7b_uses_384_px_and_ten_sft_epochs():
    _, r = dry_run("paper_7b.toml")
    assert (r["sft"]["image_size"], r["grpo"]["image_size"], r["sft"]["epochs"]) == (
        384, 384, 10.0)
    assert r["model"]["path"] == "checkpoints/HumanOmni-7B"


def test_vision_tower_is_trained_as_table_8_says_in_sft_only_and_never_in_the_release():
    for name in ("paper_0_5b.toml", "paper_7b.toml"):
        _, paper = dry_run(name)
        assert (paper["sft"]["train_vision_tower"], paper["grpo"]["train_vision_tower"]) == (
            True, False), name
    _, release = dry_run("release_0_5b.toml")
    assert (release["sft"]["train_vision_tower"], release["grpo"]["train_vision_tower"]) == (
        False, False)


def test_dry_run_shows_trainer_arguments_by_their_own_names():
    paper, _ = dry_run("paper_0_5b.toml")
    release, _ = dry_run("release_0_5b.toml")
    grpo = release[release.index("# stage grpo: trl.GRPOConfig(**arguments)"):]
    for line in ('#   use_bias_correction_kl = false', '#   top_k = 50',
                 '#   lr_scheduler_type = "linear"', '#   num_generations = 4',
                 '#   disable_dropout = false', '#   num_iterations = 1',
                 '#   optim = "adamw_torch"', '#   loss_type = "grpo"'):
        assert line in grpo.splitlines(), line
    assert '#   lr_scheduler_type = "cosine"' in \
        paper[paper.index("# stage grpo:"):].splitlines()
    sft = release[release.index("# stage sft: transformers.TrainingArguments"):
                  release.index("# stage grpo:")]
    assert '#   num_train_epochs = 10.0' in sft.splitlines()
    assert '#   seed = 17' in sft.splitlines()

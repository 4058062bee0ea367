"""The effect experiment's miniature Table 1 (issue 15, recipes/tiny_cpu*.toml): drifting SFT explanations, the answer-only
baseline recipe, the EPC monitor on GRPO rollouts and the side-by-side comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from erv_plugins.datasets.synthetic import write_synthetic
from erv_plugins.evaluation.compare import comparison_markdown, paired_difference
from erv_plugins.evaluation.metrics import Outcomes
from erv_plugins.labels import MAFW
from erv_plugins.recipe import load_recipe
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.text import parse_completions

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LABELS = ("happiness", "sadness", "anger", "neutral")


# -- the synthetic task: a share of the explanations drift ----------------------------------

def test_drift_gives_an_exact_share_of_each_labels_train_clips_to_another_emotion(
        tmp_path: Path) -> None:
    result = write_synthetic(tmp_path / "d", 8, layouts=("jsonl",), seed=0, drift=0.5,
                             explanations="short")
    # 8 clips a label: 2 test (the 2nd and 6th), 6 train, of which round(0.5 x 6) = 3 drift.
    drifting = [(c.id, c.explains) for c in result.clips if c.drifts]
    assert drifting == [
        ("sadness_0000", "neutral"), ("anger_0000", "happiness"), ("neutral_0000", "anger"),
        ("neutral_0002", "happiness"), ("happiness_0003", "neutral"),
        ("sadness_0004", "happiness"), ("anger_0004", "neutral"),
        ("happiness_0006", "sadness"), ("neutral_0006", "happiness"),
        ("happiness_0007", "neutral"), ("sadness_0007", "happiness"),
        ("anger_0007", "happiness")]
    for label in LABELS:
        mine = [c for c in result.clips if c.label == label]
        assert sum(c.drifts for c in mine) == 3
        assert not any(c.drifts for c in mine if c.split == "test")
    rows = [json.loads(line) for line in (tmp_path / "d" / "manifest.jsonl").read_text()
            .splitlines()]
    # The answer (label) stays the clip's; the text argues for another emotion, which the
    # verifier learns as the text's label.
    assert rows[1] == {
        "id": "sadness_0000", "video": "clips/sadness_0000.mp4", "label": "sadness",
        "explanation": "The light is plain grey and the tone is steady, flat. "
                       "The person feels neutral.",
        "split": "train", "labels": ["neutral"], "drift": True}
    assert rows[0] == {
        "id": "happiness_0000", "video": "clips/happiness_0000.mp4", "label": "happiness",
        "explanation": "The light is warm yellow and the tone is bright, high. "
                       "The person feels happiness.",
        "split": "train"}


def test_drift_to_next_is_one_systematic_confusion_per_label(tmp_path: Path) -> None:
    """drift_to = "next": the same clips drift as with "any" (same seed), each to the label
    after its own; test_every = 2 puts every 2nd clip of a label in the test split."""
    result = write_synthetic(tmp_path / "d", 8, layouts=("jsonl",), seed=0, drift=0.5,
                             drift_to="next", explanations="short", test_every=2)
    # 8 clips a label: 4 test (the 2nd, 4th, ...), 4 train, of which round(0.5 x 4) = 2 drift.
    drifting = [(c.id, c.explains) for c in result.clips if c.drifts]
    assert drifting == [
        ("sadness_0000", "anger"), ("anger_0000", "neutral"), ("neutral_0000", "happiness"),
        ("happiness_0002", "sadness"), ("sadness_0004", "anger"), ("happiness_0006", "sadness"),
        ("anger_0006", "neutral"), ("neutral_0006", "happiness")]
    anyway = write_synthetic(tmp_path / "e", 8, layouts=(), seed=0, drift=0.5, test_every=2)
    assert [c.id for c in anyway.clips if c.drifts] == [i for i, _ in drifting]
    assert sum(c.split == "test" for c in result.clips) == 16
    assert not any(c.drifts for c in result.clips if c.split == "test")
    with pytest.raises(ValueError, match=r"drift_to must be one of any, next, got 'last'"):
        write_synthetic(tmp_path / "c", 2, layouts=(), drift=0.5, drift_to="last")


def test_synthetic_vocabulary_makes_the_tasks_words_whole_tokens() -> None:
    """The effect demo's tiny tokenizer: the explanation in 18 tokens, not 32 byte pieces."""
    from erv_plugins.models.omni.tiny import build_tiny_tokenizer

    text = "The light is cold blue and the tone is low, slow. The person feels sadness."
    base = build_tiny_tokenizer()
    synthetic = build_tiny_tokenizer(2048, "synthetic")
    assert len(base(text)["input_ids"]) == 32
    assert [synthetic.decode([i]) for i in synthetic(text)["input_ids"]] == [
        "The", " light", " is", " cold", " blue", " and", " the", " tone", " is", " low", ",",
        " slow", ".", " The", " person", " feels", " sadness", "."]
    # BPE stops merging when the corpus has no pair left: 813 pieces + the 4 reasoning tags.
    assert len(synthetic) == 817


def test_drift_changes_explanations_only(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", 2, labels=("anger", "sadness"), layouts=(), seed=1)
    b = write_synthetic(tmp_path / "b", 2, labels=("anger", "sadness"), layouts=(), seed=1,
                        drift=1.0)
    assert [c.path.read_bytes() for c in a.clips] == [c.path.read_bytes() for c in b.clips]
    assert [(c.id, c.split, c.drifts) for c in b.clips] == [
        ("anger_0000", "train", True), ("sadness_0000", "train", True),
        ("anger_0001", "test", False), ("sadness_0001", "test", False)]
    assert not any(c.drifts for c in a.clips)
    with pytest.raises(ValueError, match=r"drift must be a share in \[0, 1\], got 1.5"):
        write_synthetic(tmp_path / "c", 1, layouts=(), drift=1.5)
    with pytest.raises(ValueError, match=r"explanations must be one of varied, short, "
                                         r"got 'long'"):
        write_synthetic(tmp_path / "c", 1, layouts=(), explanations="long")


# -- the demo's verifier: sentence-level text, not the drifting explanations ----------------

def test_verifier_sentences_have_one_label_each_in_the_clips_vocabulary() -> None:
    from collections import Counter

    from erv_plugins.datasets.synthetic import verifier_sentences

    assert verifier_sentences(8, labels=["anger", "sadness"]) == [
        ("The picture looks washed-out lavender.", "neutral"),
        ("The person shows anger.", "anger"),
        ("The screen is harsh red while the voice is grating, sour.", "neutral"),
        ("The person feels sadness.", "sadness"),
        ("The light is vivid pink.", "neutral"),
        ("They feel anger.", "anger"),
        ("The screen is washed-out lavender while the voice is low, slow.", "neutral"),
        ("The person shows sadness.", "sadness"),
    ]
    # Half scene sentences (neutral), half emotion sentences, balanced over the labels.
    counts = Counter(label for _, label in verifier_sentences(600))
    assert counts["neutral"] == 300 + 27
    assert sorted(v for k, v in counts.items() if k != "neutral") == [27] * 7 + [28] * 3
    with pytest.raises(ValueError, match="no synthetic style for labels \\['calm'\\]"):
        verifier_sentences(2, labels=["calm"])


def test_text_synthetic_is_a_registered_verifier_dataset() -> None:
    from erv_plugins.plugins import get_plugins
    from erv_plugins.verifiers.text_datasets import SyntheticTextOptions, text_synthetic

    assert "text_synthetic" in get_plugins().names("dataset")
    records = text_synthetic(SyntheticTextOptions(n=4, labels=["fear"])).records()
    assert [(r.text, r.labels, r.source, r.id) for r in records] == [
        ("The picture looks washed-out lavender.", ("neutral",), "synthetic", "synthetic:0"),
        ("The person shows fear.", ("fear",), "synthetic", "synthetic:1"),
        ("The screen is harsh red while the voice is grating, sour.", ("neutral",),
         "synthetic", "synthetic:2"),
        ("The person feels fear.", ("fear",), "synthetic", "synthetic:3"),
    ]


def test_the_demos_verifier_rewards_the_coherent_explanation_not_the_drift(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tiny_cpu.toml's train_verifier (about 10 s): R_E is 1 for the clip's own cues and
    emotion, 0 for a drifting explanation, and 0 for the shortcuts a policy could take to
    please a verifier that reads the cues (dropping the emotion sentence, "feels neutral")."""
    from click.testing import CliRunner

    from erv_plugins.cli import build_cli, main

    recipe = tmp_path / "v.toml"
    recipe.write_text(f'extends = "{RECIPES / "tiny_cpu.toml"}"\nstages = ["train_verifier"]\n'
                      f'run_dir = "{tmp_path / "run"}"\n')
    result = CliRunner().invoke(build_cli(), ["train-verifier", "--recipe", str(recipe)])
    assert result.exit_code == 0, result.output
    happy, sad = "warm yellow and the tone is bright, high", "cold blue and the tone is low, slow"
    thinks = [
        f"The light is {happy}. The person feels happiness.",  # coherent
        f"The light is {sad}. The person feels sadness.",      # drifts to the next label
        f"The light is {happy}.",                              # no emotion named
        f"The light is {happy}. The person feels neutral.",
        f"The light is {sad}. The person feels happiness.",    # the answer's emotion, wrong cues
    ]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"completion": f"<think>{t}</think><answer>happiness"
                                                      "</answer>", "label": "happiness",
                                        "dataset": "mafw"}) + "\n" for t in thinks))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", str(rows), "--recipe", str(recipe), "--verifier",
              str(tmp_path / "run" / "train_verifier" / "model"), "--json"])
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out
    assert [json.loads(line)["explanation"] for line in out.splitlines()] == [
        1.0, 0.0, 0.0, 0.0, 1.0]


# -- the two recipes ---------------------------------------------------------------------------

def test_baseline_recipe_is_the_effect_recipe_without_r_e_from_the_same_sft_model() -> None:
    ours = load_recipe(RECIPES / "tiny_cpu.toml")
    base = load_recipe(RECIPES / "tiny_cpu_baseline.toml")
    assert ours.stages == ["sft", "train_verifier", "grpo", "eval", "compare"]
    assert base.stages == ["grpo", "eval"]
    assert (base.name, base.run_dir, base.model.path) == (
        "tiny_cpu_baseline", "runs/tiny_cpu_baseline",
        "runs/tiny_cpu/sft/model")
    assert {k: s.weight for k, s in ours.rewards.items()} == {
        "format": 1.0, "answer": 1.0, "explanation": 1.0, "epc": 0.0}
    assert {k: s.weight for k, s in base.rewards.items()} == {
        "format": 1.0, "answer": 1.0, "explanation": 0.0, "epc": 0.0}
    # Everything else is shared through `extends`: data, seeds, GRPO settings, the judge.
    assert base.grpo == ours.grpo and base.eval == ours.eval and base.verifier == ours.verifier
    assert base.sft == ours.sft and base.seed == ours.seed
    assert ours.sft.synthetic == ours.grpo.synthetic
    synthetic = ours.sft.synthetic
    assert (synthetic.drift, synthetic.drift_to, synthetic.explanations) == (0.5, "next", "short")
    assert (synthetic.n_per_label, synthetic.test_every) == (24, 2)
    assert ours.model.options.tiny_vocabulary == "synthetic"
    judge = ours.eval.judge
    assert (judge.plugin, judge.options.plugin) == ("verifier", "lexicon")
    import msgspec

    # The monitor asks the eval judge (the same options, before and after decoding).
    monitor = ours.rewards["epc"].options.judge
    assert monitor.plugin == judge.plugin
    assert monitor.options == {k: v for k, v in msgspec.to_builtins(judge.options).items()
                               if k != "batch_size"}
    compare = ours.table("compare")  # the table the compare stage registered
    assert compare.baseline == str(RECIPES / "tiny_cpu_baseline.toml")
    assert (compare.name, compare.baseline_name) == (
        "ERV (R_E + R_format + R_answer)", "R1-Omni (R_format + R_answer)")


def test_compare_needs_the_sft_stage_before_it(tmp_path: Path) -> None:
    from erv_plugins.errors import RecipeError

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'extends = "{RECIPES / "tiny_cpu.toml"}"\n'
                      'stages = ["compare", "sft", "train_verifier", "grpo", "eval"]\n')
    with pytest.raises(RecipeError, match=r"r.toml: \$.stages\[0\]: stage 'compare' comes "
                                          r"before stage 'sft', which writes the SFT model"):
        load_recipe(recipe)


# -- EPC on GRPO rollouts, under the eval judge -------------------------------------------

def test_epc_monitor_scores_each_rollout_as_erv_eval_reads_it() -> None:
    from erv_plugins.plugins import get_plugins

    recipe = load_recipe(RECIPES / "tiny_cpu.toml")
    reward = get_plugins().get("reward", "epc").build(recipe.rewards["epc"].options)
    completions = [
        # coherent: the judge reads happiness, the answer says happiness
        "<think>The light is warm yellow. The person feels happiness.</think>\n"
        "<answer>happiness</answer>",
        # drifting: the judge reads sadness, the answer says happiness
        "<think>The light is cold blue. The person feels sadness.</think>\n"
        "<answer>happiness</answer>",
        # no emotion word: the judge says neutral, the answer anger
        "<think>The light is harsh red.</think>\n<answer>anger</answer>",
        # no answer tag: incoherent whatever the judge says (release protocol)
        "<think>The person feels anger.</think>",
    ]
    batch = RewardBatch(completions, parse_completions(completions),
                        {"label": ["happiness", "happiness", "anger", "anger"]})
    result = reward(batch)
    assert list(result.values) == [1.0, 0.0, 0.0, 0.0]
    assert result.info == {"EEA": 0.25}


# -- the side-by-side table ------------------------------------------------------------------

def _outcomes(g: list[str], p: list[str], j: list[str]) -> Outcomes:
    return Outcomes.from_words(MAFW.labels, g, p, j)


def test_paired_difference_and_the_table1_layout_with_intervals() -> None:
    g = ["happiness", "sadness", "anger", "neutral"]
    ours = (["a", "b", "c", "d"], _outcomes(g, g, ["happiness", "sadness", "anger", "neutral"]))
    base = (["a", "b", "c", "d"], _outcomes(g, g, ["sadness", "sadness", "neutral", "neutral"]))
    diff = paired_difference(ours, base, bootstrap=0)
    assert diff == {"n": 4, "EEA": 50.0, "FCR": 50.0, "EPC": 50.0, "WAR": 0.0}
    boot = paired_difference(ours, base, bootstrap=200, seed=0)
    assert boot["ci"]["WAR"] == [0.0, 0.0]
    assert boot["ci"]["EPC"][0] >= 0.0 and boot["ci"]["EPC"][1] <= 100.0
    rows = [("R1-Omni", {"EEA": 50.0, "FCR": 50.0, "EPC": 50.0, "WAR": 100.0, "UAR": 100.0,
                         "n": 4, "judge": "verifier", "ci_level": 0.95,
                         "ci": {"EEA": [0.0, 100.0]}}),
            ("ERV", {"EEA": 100.0, "FCR": 100.0, "EPC": 100.0, "WAR": 100.0, "UAR": 100.0,
                     "n": 4})]
    table = comparison_markdown(rows, diff, "mafw")
    assert table.splitlines() == [
        "| Method | MAFW EEA | MAFW FCR | MAFW EPC | MAFW WAR | MAFW UAR |",
        "|:---|---:|---:|---:|---:|---:|",
        "| R1-Omni | 50.00 [0.00, 100.00] | 50.00 | 50.00 | 100.00 | 100.00 |",
        "| ERV | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 |",
        "| ours - baseline (paired) | +50.00 | +50.00 | +50.00 | +0.00 | - |",
        "",
        "95 % bootstrap intervals in brackets; R1-Omni N = 4, ERV N = 4; judge: verifier."]


def test_paired_difference_uses_the_samples_both_runs_judged() -> None:
    g = ["happiness", "sadness"]
    ours = (["a", "b"], _outcomes(g, g, g))
    base = (["b", "z"], _outcomes(["sadness", "anger"], ["sadness", "anger"],
                                  ["neutral", "anger"]))
    diff = paired_difference(ours, base, bootstrap=0)
    assert diff == {"n": 1, "EEA": 100.0, "FCR": 100.0, "EPC": 100.0, "WAR": 0.0}


# -- the compare stage, with stand-ins for SFT and the verifier --------------------------------

# Tiny shapes: 2 clips a label (1 train, 1 test), 2 GRPO steps of 2 groups of 2, the
# SigLIP tower frozen (the default's: training it is the slow part of a step).
SHORT = """
[model]
options = { tiny = true }
[grpo.synthetic]
n_per_label = 2
fps = 4
[grpo]
max_steps = 2
num_generations = 2
batch_size = 4
max_completion_length = 12
save_steps = 50
[eval]
max_new_tokens = 12
bootstrap = 50
[eval.dataset]
limit = 3
"""


@pytest.mark.slow
def test_compare_stage_trains_the_baseline_from_this_runs_sft_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from erv_plugins.labels import MAFW_LABELS
    from erv_plugins.models.omni import build_tiny_omni
    from erv_plugins.plugins import get_plugins
    from erv_plugins.stages import run_recipe
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "elsewhere"
    build_tiny_omni(run / "sft" / "model")
    build_tiny_verifier(run / "train_verifier" / "model", labels=MAFW_LABELS)
    for stage in ("sft", "train_verifier"):
        (run / stage / ".done").write_text("{}\n")
    (tmp_path / "base.toml").write_text(
        f'extends = "{RECIPES / "tiny_cpu_baseline.toml"}"\n{SHORT}')
    (tmp_path / "ours.toml").write_text(
        f'extends = "{RECIPES / "tiny_cpu.toml"}"\nrun_dir = "elsewhere"\n{SHORT}'
        '[compare]\nbaseline = "base.toml"\n')
    lines: list[str] = []
    run_recipe(load_recipe(tmp_path / "ours.toml"), get_plugins(), echo=lines.append)

    assert not (tmp_path / "runs").exists()  # nothing under runs/tiny_cpu*: all in the run dir
    base = run / "baseline"
    assert (base / "grpo" / ".done").is_file() and (base / "eval" / ".done").is_file()
    # The same SFT model (the baseline has no SFT of its own) and this run's verifier.
    report = (base / "grpo" / "report.md").read_text()
    assert "- policy: elsewhere/sft/model" in report
    assert json.loads((base / "recipe.json").read_text())["verifier"]["options"]["path"] == \
        "elsewhere/train_verifier/model"
    rows = [json.loads(line) for line in (base / "grpo" / "metrics.jsonl").read_text()
            .splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all("rewards/explanation/mean" in r and "rewards/epc/mean" in r for r in rows)
    table = (run / "compare" / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:5]] == [
        "| R1-Omni (R_format + R_answer)", "| ERV (R_E + R_format + R_answer)",
        "| ours - baseline (paired)"]
    assert table[-1].startswith("95 % bootstrap intervals in brackets; R1-Omni (R_format + "
                                "R_answer) N = 3, ERV (R_E + R_format + R_answer) N = 3; judge: verifier (lexicon).")
    compared = json.loads((run / "compare" / "table.json").read_text())
    assert compared["difference"]["n"] == 3 and set(compared["difference"]["ci"]) == {
        "EEA", "FCR", "EPC", "WAR"}
    assert (run / "compare" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("erv: compare: baseline ") for line in lines)
    # A second run reuses the baseline's stages.
    lines.clear()
    run_recipe(load_recipe(tmp_path / "ours.toml"), get_plugins(), echo=lines.append)
    assert not any(line.startswith("erv: compare:") for line in lines)  # compare is done

"""Tests of the cue_grounding reward: hand-checked scores, its options, and erv's engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from erv_cue_grounding import CueGrounding, CueGroundingOptions, compile_cues
from erv_plugins.errors import RecipeError


def grounding(**options: object) -> CueGrounding:
    return CueGrounding(CueGroundingOptions(**options))  # type: ignore[arg-type]


def test_cues_found_per_modality():
    reward = CueGrounding()
    text = "Her voice trembles and tears run down her face. She sighs, then looks away."
    assert reward.cues(text) == {"visual": ["tears", "face", "looks away"],
                                 "acoustic": ["voice", "sighs"]}
    assert reward.score(text) == 1.0
    assert reward.score("She frowns.") == 0.5  # visual only
    assert reward.score("She seems sad.") == 0.0
    assert reward.score("") == 0.0
    assert reward.score(None) == 0.0


def test_negated_cues_do_not_count():
    reward = CueGrounding()
    text = "There are no tears and she doesn't raise her voice; her eyebrows are furrowed."
    assert reward.cues(text) == {"visual": ["eyebrows", "furrowed"], "acoustic": []}
    assert reward.score(text) == 0.5
    assert grounding(ignore_negated=False).cues(text)["acoustic"] == ["voice"]


def test_whole_words_only():
    reward = CueGrounding()
    # "heart", "brown", "sober", "utterly" contain cue stems but are not cues.
    text = "Heartbroken, the brown-haired man is sober and utterly still."
    assert reward.cues(text) == {"visual": [], "acoustic": []}
    assert compile_cues(["smil*", "body language"]).findall("Smiling; BODY  language") == [
        "Smiling", "BODY  language"]


def test_modes_and_minimum_mentions():
    text = "His voice rises while his fists clench."
    assert grounding(modalities=["visual", "acoustic", "verbal"]).score(text) == pytest.approx(2 / 3)
    assert grounding(modalities=["visual", "acoustic", "verbal"], mode="all").score(text) == 0.0
    assert grounding(mode="all").score(text) == 1.0
    assert grounding(min_mentions=2).score(text) == 0.5  # fists, clench: 2 visual; voice: 1


def test_custom_lexicon():
    reward = grounding(modalities=["visual", "context"],
                       lexicon={"context": ["funeral", "wedding"], "visual": ["smirk*"]})
    assert reward.cues("He smirks at the wedding.") == {"visual": ["smirks"],
                                                        "context": ["wedding"]}
    only = grounding(replace_lexicon=True, modalities=["visual"], lexicon={"visual": ["smirk*"]})
    assert only.score("Tears on her face.") == 0.0


def test_engine_scores_sample_completions(erv_score, erv_samples):
    scores = erv_score("cue_grounding", erv_samples)
    # tears: tears, face + voice; laughing: smiling + laughing; frown: frowns only;
    # no-think and unclosed: no explanation; wrong: stares, expression; empty-think: empty;
    # neutral: face + voice.
    assert scores.per_reward["cue_grounding"] == [1.0, 1.0, 0.5, 0.0, 0.5, 0.0, 0.0, 1.0]
    assert scores.info["cue_grounding/visual_share"] == 5 / 8
    assert scores.info["cue_grounding/acoustic_share"] == 3 / 8


def test_beside_the_paper_rewards(erv_score, erv_samples):
    scores = erv_score("cue_grounding", erv_samples, weight=0.2, paper_rewards=True)
    expected = [s.format + s.answer + 0.2 * c
                for s, c in zip(erv_samples, [1.0, 1.0, 0.5, 0.0, 0.5, 0.0, 0.0, 1.0])]
    assert scores.total == pytest.approx(expected)
    assert not any(math.isnan(v) for v in scores.total)


def test_recipe_errors_name_the_option(erv_score):
    with pytest.raises(RecipeError, match=r"\$\.rewards\.cue_grounding\.options: unknown "
                                          r"modality 'smell'; known: acoustic, verbal, visual"):
        erv_score("cue_grounding", options={"modalities": ["smell"]})
    with pytest.raises(RecipeError, match=r"\$\.rewards\.cue_grounding\.options\.mode: "
                                          r"must be one of all, fraction; got 'most'"):
        erv_score("cue_grounding", options={"mode": "most"})
    with pytest.raises(RecipeError, match=r"\$\.rewards\.cue_grounding\.options\.minimum: "
                                          r"unknown field"):
        erv_score("cue_grounding", options={"minimum": 2})


def test_listed_by_erv_plugins(erv_cli):
    result = erv_cli("plugins")
    assert result.exit_code == 0
    assert "cue_grounding 0.1.0 (entrypoint)\n  rewards: cue_grounding" in result.output


RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny_cue_grounding.toml"


@pytest.mark.slow
@pytest.mark.skipif(not (RECIPE.parents[3] / "recipes" / "tiny_cpu.toml").is_file(),
                    reason="needs an erv checkout: the recipe extends recipes/tiny_cpu.toml")
def test_tiny_recipe_with_cue_grounding_runs_grpo_steps(tmp_path, monkeypatch, erv_registry):
    """recipes/tiny_cue_grounding.toml, shortened: SFT, verifier, then GRPO steps in which
    cue_grounding is scored and logged beside the paper's rewards."""
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import run_recipe

    monkeypatch.chdir(tmp_path)  # the tiny recipe writes data/ and runs/ here
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    quick = tmp_path / "quick.toml"
    quick.write_text(f'extends = "{RECIPE}"\nname = "quick_cue"\n'
                     'stages = ["sft", "train_verifier", "grpo"]\n'
                     "[sft]\nmax_steps = 4\n[train_verifier]\nepochs = 0.5\n"
                     "[grpo]\nmax_steps = 2\n")
    registry = erv_registry()
    recipe = load_recipe(quick, registry)
    assert recipe.rewards["cue_grounding"].weight == 0.2
    run_dir = run_recipe(recipe, registry, echo=lambda _msg: None)
    rows = [json.loads(line) for line in (run_dir / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert 0.0 <= row["rewards/cue_grounding/mean"] <= 1.0
        assert row["erv/cue_grounding/weight"] == pytest.approx(0.2)
        assert {"rewards/format/mean", "rewards/answer/mean", "rewards/explanation/mean"} <= set(row)

"""Tests of the cue_grounding reward: hand-checked scores, its options, and erv's engine."""

from __future__ import annotations

import math

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
                                          r"Invalid enum value 'most'"):
        erv_score("cue_grounding", options={"mode": "most"})
    with pytest.raises(RecipeError, match=r"\$\.rewards\.cue_grounding\.options\.minimum: "
                                          r"unknown field"):
        erv_score("cue_grounding", options={"minimum": 2})


def test_listed_by_erv_plugins(erv_cli):
    result = erv_cli("plugins")
    assert result.exit_code == 0
    assert "cue_grounding 0.1.0 (entrypoint)\n  rewards: cue_grounding" in result.output

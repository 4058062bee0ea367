"""Tests of the lexicon verifier: probabilities by hand, its options, and its use by the
explanation reward and the verifier judge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from erv_lexicon_verifier import LexiconVerifier, LexiconVerifierOptions, label_counts
from erv_plugins.errors import ErvError, RecipeError
from erv_plugins.labels import GOEMOTIONS, MAFW
from erv_plugins.recipe import load_recipe
from erv_plugins.verifiers.base import Verifier

# EmoLex's word-level layout: word, emotion, association (0 or 1).
NRC = """\
happy\tjoy\t1
happy\tpositive\t1
happy\tanger\t0
tears\tsadness\t1
furious\tanger\t1
scream\tanger\t1
scream\tfear\t1
rely\ttrust\t1
"""


@pytest.fixture
def lexicon(tmp_path: Path) -> Path:
    path = tmp_path / "emolex.txt"
    path.write_text(NRC)
    return path


def verifier(path: Path, **options: object) -> LexiconVerifier:
    return LexiconVerifier(LexiconVerifierOptions(path=str(path), **options))  # type: ignore[arg-type]


def top(v: LexiconVerifier, text: str) -> dict[str, float]:
    row = v.predict_proba([text])[0]
    return {v.labels[i]: round(float(row[i]), 4) for i in np.flatnonzero(row > 0.5)}


def test_probabilities_by_hand(lexicon):
    v = verifier(lexicon)
    assert isinstance(v, Verifier) and v.labels == GOEMOTIONS
    assert top(v, "She is happy.") == {"joy": 0.6}
    assert top(v, "Happy, happy day.") == {"joy": 0.84}  # 1 - 0.4^2
    assert top(v, "He is not happy.") == {"neutral": 0.9}  # negated
    assert top(v, "A furious scream.") == {"anger": 0.84, "fear": 0.6}
    assert top(v, "You can rely on her.") == {"approval": 0.6}  # trust -> approval
    assert top(v, "The door.") == {"neutral": 0.9}
    assert v.predict_proba(["The door."])[0, GOEMOTIONS.index("joy")] == pytest.approx(0.01)
    assert v.predict_proba([]).shape == (0, 28)
    assert label_counts(v) == {"anger": 2, "approval": 1, "fear": 1, "joy": 1, "sadness": 1}


def test_inline_words_and_readme_example():
    v = LexiconVerifier(LexiconVerifierOptions(words={"joy": ["smiles"], "sadness": ["tears"]}))
    assert v.matches("She smiles through her tears, not sad at all.") == [
        ("smiles", ["joy"]), ("tears", ["sadness"])]
    # Another lexicon gives other outputs, so another cache key.
    assert v.cache_key != LexiconVerifier(LexiconVerifierOptions(words={"joy": ["smiles"]})).cache_key


def test_bad_lexicons_name_file_and_line(tmp_path, lexicon):
    bad = tmp_path / "bad.txt"
    bad.write_text("happy\tjoy\t1\nsad sadness 1\n")
    with pytest.raises(ErvError, match=r"bad\.txt:2: expected word<TAB>emotion<TAB>0\|1"):
        verifier(bad)
    with pytest.raises(ErvError, match=r"missing\.txt does not exist"):
        verifier(tmp_path / "missing.txt")
    with pytest.raises(ErvError, match=r"label 'positive' is not among the verifier's labels"):
        verifier(lexicon, drop=[])


def test_recipe_errors_carry_the_path(tmp_path, lexicon, erv_registry):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nstages = []\n[verifier]\nplugin = "lexicon"\n'
                      f'options = {{ path = "{lexicon}", label_map = {{ trust = "trust" }} }}\n')
    with pytest.raises(RecipeError, match=r"\$\.verifier\.options: label_map: 'trust' -> 'trust', "
                                          r"which is not one of labels"):
        load_recipe(recipe, erv_registry())
    recipe.write_text('name = "r"\nstages = []\n[verifier]\nplugin = "lexicon"\n')
    with pytest.raises(RecipeError, match=r"\$\.verifier\.options: give a lexicon file"):
        load_recipe(recipe, erv_registry())


def test_explanation_reward_with_the_lexicon(tmp_path, lexicon, erv_registry):
    from erv_plugins.rewards.engine import RewardEngine

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nstages = []\n[verifier]\nplugin = "lexicon"\n'
                      f'options = {{ path = "{lexicon}" }}\n'
                      '[rewards.explanation]\noptions = { tau = 0.5 }\n')
    registry = erv_registry()
    engine = RewardEngine.from_recipe(load_recipe(recipe, registry), registry)
    scores = engine.score(
        ["<think>She is happy. The door is open.</think><answer>happy</answer>",
         "<think>He is not happy. A furious scream.</think><answer>angry</answer>",
         "<think>He is not happy. A furious scream.</think><answer>angry</answer>"],
        {"label": ["happy", "happy", "angry"], "dataset": ["dfew"] * 3})
    # 1: {joy}, {neutral}: c = 1 of N - N_neu = 1. 2: {neutral}, {anger, fear}: happy is in
    # neither -> 0 / 1. 3: the same explanation with ground truth angry -> 1 / 1.
    assert scores.per_reward["explanation"] == [1.0, 0.0, 1.0]


def test_verifier_judge_reads_with_the_lexicon(lexicon, erv_registry):
    from erv_plugins.context import BuildContext
    from erv_plugins.judges.base import JudgeRequest

    reg = erv_registry().get("judge", "verifier")
    judge = reg.build(reg.options(plugin="lexicon", options={"path": str(lexicon)}),
                      context=BuildContext.create(erv_registry()))
    verdicts = {v.id: v.label for v in judge.judge(
        [JudgeRequest("a", "She is happy."), JudgeRequest("b", "Tears fall."),
         JudgeRequest("c", "The door.")], MAFW)}
    assert verdicts == {"a": "happiness", "b": "sadness", "c": "neutral"}


def test_listed_by_erv_plugins(erv_cli):
    assert "lexicon 0.1.0 (entrypoint)\n  verifiers: lexicon" in erv_cli("plugins").output

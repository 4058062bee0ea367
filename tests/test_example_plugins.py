"""The example plugins in plugins/ as erv sees them, and the fixtures of erv_plugins.testing.

CI installs every plugins/*/ package (scripts/setup); their own tests live in
plugins/<package>/tests and run in the same pytest session.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from typing import ClassVar

import msgspec
import pytest

from erv_plugins.hookspecs import hookimpl
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.testing import SAMPLE_COMPLETIONS, run_cli


def test_erv_plugins_lists_the_example_packages():
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    by_name = {p["name"]: p for p in json.loads(result.output)}
    assert {k: by_name[k] for k in ("cue_grounding", "lexicon", "ravdess")} == {
        "cue_grounding": {"name": "cue_grounding", "source": "entrypoint", "version": "0.1.0",
                          "hooks": ["erv_register_rewards"],
                          "registered": {"reward": ["cue_grounding"]}},
        "lexicon": {"name": "lexicon", "source": "entrypoint", "version": "0.1.0",
                    "hooks": ["erv_register_verifiers"], "registered": {"verifier": ["lexicon"]}},
        "ravdess": {"name": "ravdess", "source": "entrypoint", "version": "0.1.0",
                    "hooks": ["erv_register_datasets"], "registered": {"dataset": ["ravdess"]}},
    }


def test_load_plugins_env_restricts_entry_points():
    names = {p["name"] for p in json.loads(
        run_cli("plugins", "--json", env={"ERV_LOAD_PLUGINS": "ravdess"}).output)}
    assert "ravdess" in names and "cue_grounding" not in names


def test_sample_completions_agree_with_the_paper_rewards(erv_score, erv_samples):
    scores = erv_score("format", erv_samples, paper_rewards=True)
    assert scores.per_reward["format"] == [s.format for s in erv_samples]
    assert scores.per_reward["answer"] == [s.answer for s in erv_samples]
    assert [s.id for s in erv_samples] == [s.id for s in SAMPLE_COMPLETIONS]


def test_keyword_verifier_gives_hand_computed_explanation_rewards(erv_score, erv_samples,
                                                                 erv_verifier):
    scores = erv_score("explanation", erv_samples, verifier=erv_verifier, paper_rewards=True)
    # tears: {sadness} twice -> 2/2; laughing: "smiling" -> joy -> 1/1; frown, wrong: only
    # neutral sentences and a non-neutral truth -> 0 (N - N_neu = 0); no-think, unclosed,
    # empty: no explanation -> 0; neutral truth: 2 neutral sentences -> c/N = 2/2.
    assert scores.per_reward["explanation"] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert scores.total == [3.0, 3.0, 2.0, 1.0, 1.0, 0.0, 2.0, 3.0]


class Shouting:
    """A reward not installed anywhere: the share of letters in capitals."""

    name: ClassVar[str] = "shouting"

    class Options(msgspec.Struct, forbid_unknown_fields=True):
        invert: bool = False

    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: Options, /, **context: object) -> None:
        self.options = options

    def __call__(self, batch: RewardBatch) -> list[float | None]:
        out: list[float | None] = []
        for text in batch.completions:
            letters = [c for c in text if c.isalpha()]
            share = sum(c.isupper() for c in letters) / len(letters) if letters else None
            out.append(None if share is None else (1 - share if self.options.invert else share))
        return out


def test_score_a_reward_class_before_it_is_installed(erv_score):
    scores = erv_score(Shouting, ["ABcd", "abcd", "123"], options={"invert": True})
    assert scores.per_reward["shouting"][:2] == [0.5, 1.0]
    assert math.isnan(scores.per_reward["shouting"][2])
    assert math.isnan(scores.total[2])  # no reward applied: NaN, not 0.0


def test_registry_with_a_plugin_module(erv_registry):
    module = types.ModuleType("shouting_plugin")

    @hookimpl
    def erv_register_rewards(register):
        register(Shouting)

    module.erv_register_rewards = erv_register_rewards
    registry = erv_registry(module)
    assert registry.get("reward", "shouting").plugin == "shouting_plugin"
    assert "shouting" not in erv_registry().names("reward")


def test_testing_plugin_imports_nothing_heavy():
    code = ("import sys, erv_plugins.testing; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_tiny_hf_verifier_fixture(erv_hf_verifier):
    from erv_plugins.labels import GOEMOTIONS

    proba = erv_hf_verifier.predict_proba(["She smiles.", "He shouts at the driver."])
    assert proba.shape == (2, 28) and erv_hf_verifier.labels == GOEMOTIONS
    assert ((proba > 0) & (proba < 1)).all()


@pytest.mark.slow
def test_grpo_steps_with_the_cue_grounding_reward(erv_grpo):
    """Acceptance: a recipe using the example reward runs GRPO steps on the tiny recipe."""
    run = erv_grpo("cue_grounding", weight=0.2, steps=2, options={"mode": "all"})
    assert [s["step"] for s in run.steps] == [1, 2]
    values = run.rewards("cue_grounding")
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    # TRL averages logged metrics in float32.
    assert [s["erv/cue_grounding/weight"] for s in run.steps] == pytest.approx([0.2, 0.2])
    assert all("erv/cue_grounding/visual_share" in s for s in run.steps)
    assert (run.run_dir / "grpo" / ".done").is_file()

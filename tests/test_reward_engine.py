"""The reward engine: batching, dedup and cache, weights and schedules, timeouts, retries,
async rewards, observers, recipe checks and TRL's calling convention."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
import types
from pathlib import Path

import pytest

from erv_plugins.errors import RecipeError
from erv_plugins.hookspecs import hookimpl
from erv_plugins.plugins import get_plugins
from erv_plugins.recipe import WeightSchedule, load_recipe
from erv_plugins.testing import rewards as reward_testing
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.rewards.engine import RewardEngine, RewardTerm
from erv_plugins.rewards.schedules import scheduled_weight
from erv_plugins.rewards.explanation import ExplanationOptions, ExplanationReward
from erv_plugins.rewards.format_answer import FormatReward
from erv_plugins.testing.rewards import KeywordVerifier
from erv_plugins.training.rewards_adapter import TRLRewards

GOOD = "<think>She smiles. The room is bright.</think><answer>happy</answer>"
BAD = "just text"


def test_total_is_the_weighted_sum_of_the_rewards() -> None:
    e = RewardEngine({"format": FormatReward(), "const": lambda b: [0.5] * len(b)},
                     weights={"format": 2.0, "const": -1.0})
    s = e.score([GOOD, BAD])
    assert s.per_reward == {"format": [1.0, 0.0], "const": [0.5, 0.5]}
    assert s.total == [2.0 * 1.0 - 0.5, 2.0 * 0.0 - 0.5]
    assert s.info["format/mean"] == 0.5 and s.info["format/std"] == 0.5


@pytest.mark.parametrize(("schedule", "steps", "expected"), [
    (WeightSchedule(kind="constant"), [0, 50, 100], [1.0, 1.0, 1.0]),
    (WeightSchedule(kind="linear", end=0.0, steps=100), [0, 25, 100, 500], [1.0, 0.75, 0.0, 0.0]),
    (WeightSchedule(kind="cosine", end=0.0, steps=100), [0, 50, 100], [1.0, 0.5, 0.0]),
    (WeightSchedule(kind="step", milestones=[10, 20], values=[0.5, 0.25]), [0, 9, 10, 25],
     [1.0, 1.0, 0.5, 0.25]),
])
def test_scheduled_weights(schedule: WeightSchedule, steps: list[int],
                           expected: list[float]) -> None:
    assert [scheduled_weight(1.0, schedule, s) for s in steps] == pytest.approx(expected)
    e = RewardEngine([RewardTerm("format", FormatReward(), 1.0, schedule)])
    assert [e.score([GOOD], step=s).total[0] for s in steps] == pytest.approx(expected)
    assert TRLRewards(e).reward_weights(steps[-1]) == pytest.approx([expected[-1]])


def test_bad_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="'end' and 'steps'"):
        RewardTerm("format", FormatReward(), 1.0, WeightSchedule(kind="linear"))


def test_explanation_reward_verifies_each_distinct_sentence_once_and_caches() -> None:
    verifier = KeywordVerifier()
    reward = ExplanationReward(ExplanationOptions(batch_size=2), verifier=verifier)
    e = RewardEngine({"explanation": reward})
    batch = [GOOD, GOOD, "<think>She smiles. He cries a lot today.</think>", GOOD]
    s = e.score(batch, {"label": ["happiness"] * 4})
    # Three distinct sentences in eight occurrences, verified in length order, 2 at a time.
    assert verifier.calls == [["She smiles.", "The room is bright."], ["He cries a lot today."]]
    assert s.per_reward["explanation"] == [1.0, 1.0, 0.5, 1.0]
    assert s.info["explanation/unique_sentences"] == 3
    assert s.info["explanation/sentences_per_explanation"] == 2.0
    assert s.info["explanation/neutral_share"] == pytest.approx(3 / 8)
    assert s.info["explanation/gt_match_share"] == pytest.approx(4 / 8)
    e.score(batch, {"label": ["happiness"] * 4})
    assert len(verifier.calls) == 2  # all cached: no new verifier call


def test_a_failing_reward_gives_nan_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    def broken(batch: RewardBatch) -> list[float]:
        raise RuntimeError("judge unreachable")

    e = RewardEngine({"format": FormatReward(), "broken": broken})
    with caplog.at_level(logging.WARNING, logger="erv.rewards"):
        s = e.score([GOOD, BAD])
    assert all(math.isnan(v) for v in s.per_reward["broken"])
    assert s.total == [1.0, 0.0]  # NaN terms are left out of the sum, as in TRL
    assert s.info["broken/failure_rate"] == 1.0 and e.failures["broken"] == 1
    assert "judge unreachable" in caplog.text


def test_all_rewards_failing_gives_a_nan_total() -> None:
    e = RewardEngine({"none": lambda b: [None] * len(b)})
    assert math.isnan(e.score([GOOD]).total[0])


def test_wrong_length_is_a_failure_not_a_crash() -> None:
    e = RewardEngine({"short": lambda b: [1.0]})
    s = e.score([GOOD, BAD])
    assert all(math.isnan(v) for v in s.per_reward["short"])


def test_retries_recover_from_a_transient_failure() -> None:
    calls = []

    def flaky(batch: RewardBatch) -> list[float]:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return [1.0] * len(batch)

    e = RewardEngine([RewardTerm("flaky", flaky, retries=2)])
    assert e.score([GOOD]).per_reward["flaky"] == [1.0]
    assert len(calls) == 3 and e.failures["flaky"] == 0


def test_sync_timeout() -> None:
    def slow(batch: RewardBatch) -> list[float]:
        time.sleep(0.5)
        return [1.0] * len(batch)

    e = RewardEngine([RewardTerm("slow", slow, timeout_s=0.05)])
    start = time.perf_counter()
    s = e.score([GOOD])
    assert time.perf_counter() - start < 0.4
    assert math.isnan(s.per_reward["slow"][0]) and s.info["slow/failure_rate"] == 1.0
    e.close()


def test_async_rewards_run_concurrently_and_time_out() -> None:
    class Sleepy:
        def __init__(self, seconds: float, value: float) -> None:
            self.seconds, self.value = seconds, value

        async def __call__(self, batch: RewardBatch) -> list[float]:
            await asyncio.sleep(self.seconds)
            return [self.value] * len(batch)

    e = RewardEngine([RewardTerm("a", Sleepy(0.2, 1.0)), RewardTerm("b", Sleepy(0.2, 2.0)),
                      RewardTerm("late", Sleepy(5.0, 3.0), timeout_s=0.1),
                      RewardTerm("format", FormatReward())])
    start = time.perf_counter()
    s = e.score([GOOD])
    elapsed = time.perf_counter() - start
    assert elapsed < 0.35  # 0.2 s each, concurrently
    assert s.per_reward["a"] == [1.0] and s.per_reward["b"] == [2.0]
    assert math.isnan(s.per_reward["late"][0])
    assert s.total == [4.0]

    async def inside_a_loop() -> list[float]:
        return (await e.ascore([GOOD])).total

    assert asyncio.run(inside_a_loop()) == [4.0]


def test_observers_see_every_scored_batch() -> None:
    seen = []
    observer = types.ModuleType("observer")

    @hookimpl
    def erv_rewards_computed(step, rewards, total, info):  # noqa: ANN001, ANN202
        seen.append((step, dict(rewards), list(total), info["format/mean"]))

    observer.erv_rewards_computed = erv_rewards_computed  # type: ignore[attr-defined]
    plugins = get_plugins()
    plugins.add(observer, "observer")
    e = RewardEngine({"format": FormatReward()}, plugins=plugins)
    e.score([GOOD, BAD], step=7)
    assert seen == [(7, {"format": [1.0, 0.0]}, [1.0, 0.0], 0.5)]


# -- recipes ----------------------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text('name = "t"\nstages = []\n' + text)
    return path


def test_from_recipe_builds_the_rewards_with_the_recipe_verifier(tmp_path: Path) -> None:
    plugins = get_plugins()
    plugins.add(reward_testing, "keywords")
    recipe = load_recipe(write(tmp_path, """
[verifier]
plugin = "keywords"
[rewards.format]
weight = 0.5
[rewards.answer]
options = { mode = "release" }
[rewards.explanation]
weight = 2.0
schedule = { kind = "linear", end = 0.0, steps = 10 }
options = { tau = 0.1 }
"""), plugins)
    e = RewardEngine.from_recipe(recipe, plugins)
    assert e.names == ["format", "answer", "explanation"]
    assert e.reward("explanation").options.tau == 0.1
    assert TRLRewards(e).reward_weights(5) == [0.5, 1.0, 1.0]
    s = e.score([GOOD], {"label": ["happiness"], "dataset": ["mafw"]}, step=5)
    assert s.total == [0.5 * 1.0 + 1.0 * 1.0 + 1.0 * 1.0]


def test_a_reward_needing_a_verifier_fails_at_load(tmp_path: Path) -> None:
    plugins = get_plugins()
    path = write(tmp_path, "[rewards.explanation]\n")
    recipe = load_recipe(path, plugins)
    with pytest.raises(RecipeError, match=r"recipe.toml: \$\.rewards\.explanation: .*needs a "
                                          r"verifier"):
        RewardEngine.from_recipe(recipe, plugins)
    # An injected verifier satisfies it.
    e = RewardEngine.from_recipe(recipe, plugins, verifier=KeywordVerifier())
    assert e.score([GOOD], {"label": ["happiness"]}).total == [1.0]


def test_a_reward_needing_a_missing_column_fails_at_load(tmp_path: Path) -> None:
    plugins = get_plugins()
    recipe = load_recipe(write(tmp_path, "[rewards.answer]\n"), plugins)
    with pytest.raises(RecipeError, match=r"\$\.rewards\.answer: .*column\(s\) label"):
        RewardEngine.from_recipe(recipe, plugins, columns={"prompt"})


def test_a_bad_schedule_in_a_recipe_names_its_place(tmp_path: Path) -> None:
    plugins = get_plugins()
    # Refused when the recipe is loaded (erv validate), before any engine is built.
    with pytest.raises(RecipeError, match=r"\$\.rewards\.format\.schedule: a step schedule"):
        load_recipe(write(tmp_path, '[rewards.format]\nschedule = { kind = "step" }\n'),
                    plugins)


# -- TRL's calling convention ----------------------------------------------------------------
def test_trl_functions_follow_trls_convention_and_score_once_per_batch() -> None:
    verifier = KeywordVerifier()
    e = RewardEngine({"format": FormatReward(),
                      "explanation": ExplanationReward(verifier=verifier),
                      "none": lambda b: [None] * len(b)})
    funcs = TRLRewards(e).reward_functions()
    assert [f.__name__ for f in funcs] == ["format", "explanation", "none"]
    state = types.SimpleNamespace(global_step=3)
    metrics: dict[str, float] = {}
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant",
                                                                "content": BAD}]]
    kwargs = dict(prompts=[[{"role": "user", "content": "?"}]] * 2, completions=completions,
                  completion_ids=[[1], [2]], label=["happiness", "sadness"],
                  dataset=["mafw", "mafw"], trainer_state=state,
                  log_metric=metrics.__setitem__, log_extra=lambda *a: None)
    outs = [f(**kwargs) for f in funcs]
    assert outs == [[1.0, 0.0], [1.0, 0.0], [None, None]]
    assert len(verifier.calls) == 1  # one engine.score for all three functions
    assert metrics["erv/explanation/neutral_share"] == 0.5


def test_engine_modules_do_not_import_torch() -> None:
    import subprocess

    code = ("import sys, erv_plugins.rewards.engine, erv_plugins.rewards.builtin, "
            "erv_plugins.cli.reward; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_repeated_timeouts_do_not_starve_later_calls() -> None:
    def slow(batch: RewardBatch) -> list[float]:
        time.sleep(0.3)
        return [1.0] * len(batch)

    e = RewardEngine([RewardTerm("slow", slow, timeout_s=0.05),
                      RewardTerm("quick", lambda b: [2.0] * len(b), timeout_s=0.5)])
    for _ in range(3):  # stuck threads from earlier batches must not hold the pool
        s = e.score([GOOD])
        assert math.isnan(s.per_reward["slow"][0]) and s.per_reward["quick"] == [2.0]
    assert e.failures == {"slow": 3, "quick": 0}
    e.close()


def test_a_plain_callable_returning_a_coroutine_is_awaited() -> None:
    async def later(n: int) -> list[float]:
        return [0.25] * n

    e = RewardEngine({"wrapped": lambda b: later(len(b))})
    assert e.score([GOOD, BAD]).per_reward["wrapped"] == [0.25, 0.25]


def test_verifier_cache_is_bounded_and_keyed_by_verifier() -> None:
    verifier = KeywordVerifier()
    reward = ExplanationReward(ExplanationOptions(cache_size=2), verifier=verifier)
    e = RewardEngine({"explanation": reward})
    texts = ["<think>A. B. C.</think>"]
    e.score(texts, {"label": ["happiness"]})
    assert list(reward._cache) == ["B.", "C."]  # the oldest entry is forgotten
    e.score(texts, {"label": ["happiness"]})
    assert verifier.calls[-1] == ["A."]
    # Another verifier's outputs never mix with these.
    reward.verifier = KeywordVerifier(reward_testing.KeywordVerifierOptions(hit=0.7))
    e.score(texts, {"label": ["happiness"]})
    assert reward.verifier.calls == [["A.", "B.", "C."]]

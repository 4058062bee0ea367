"""``[grpo] multi_objective_aggregation``: both of TRL 1.16's values, and a failed reward.

erv's convention for a failed reward is NaN, handed to TRL as None (rewards/engine.py). Here
TRL's own advantage code (``GRPOTrainer._generate_and_score_completions``) runs on one group
of G = 4 completions of a tiny Qwen2 policy with two scripted rewards, and the advantages are
compared with the ones computed by hand from TRL's formulas (paper eq. 4; GDPO for
"normalize_then_sum"): no advantage is NaN, a completion no reward could score gets 0.
"""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path
from typing import Any

import pytest

# One group: "format" scored every completion but the 4th, "explanation" failed on the 2nd
# and the 4th (NaN). The 4th is unscorable (every reward failed).
NAN = math.nan
FORMAT = [1.0, 1.0, 0.0, NAN]
EXPLANATION = [1.0, NAN, 0.5, NAN]


def _scripted(name: str, values: list[float]) -> Any:
    def reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float | None]:
        return [None if math.isnan(v) else v for v in values]

    reward.__name__ = name
    return reward


def _std(xs: list[float]) -> float:
    """torch's unbiased std (TRL's ``nanstd``) of the non-NaN values."""
    xs = [x for x in xs if not math.isnan(x)]
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _normalised(xs: list[float]) -> list[float]:
    """(x - mean) / (std + 1e-4) over the non-NaN values; NaN stays NaN."""
    ok = [x for x in xs if not math.isnan(x)]
    m, s = sum(ok) / len(ok), _std(xs)
    return [(x - m) / (s + 1e-4) for x in xs]


def _by_hand(aggregation: str) -> list[float]:
    if aggregation == "sum_then_normalize":
        # R = nansum of the weighted rewards (eq. 5); the unscorable one is NaN, then 0.
        total = [2.0, 1.0, 0.5, NAN]
        return [0.0 if math.isnan(a) else a for a in _normalised(total)]
    # GDPO: each reward normalised within the group, the NaNs left out of the sum.
    f, e = _normalised(FORMAT), _normalised(EXPLANATION)
    total = [sum(v for v in (a, b) if not math.isnan(v)) for a, b in zip(f[:3], e[:3])] + [NAN]
    return [0.0 if math.isnan(a) else a for a in _normalised(total)]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from erv_plugins.training.tiny import build_tiny_text_policy

    return build_tiny_text_policy(tmp_path_factory.mktemp("policy"), ["joy", "anger"],
                                  hidden=16, layers=1)


def _advantages(policy: Path, tmp_path: Path, aggregation: str) -> list[float]:
    import warnings

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    warnings.simplefilter("ignore")
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=4, use_cpu=True,
                      report_to="none", multi_objective_aggregation=aggregation,
                      scale_rewards="group", logging_steps=1)
    trainer = GRPOTrainer(model=str(policy), args=args,
                          reward_funcs=[_scripted("format", FORMAT),
                                        _scripted("explanation", EXPLANATION)],
                          train_dataset=Dataset.from_list([{"prompt": "Clip:"}] * 4))
    out = trainer._generate_and_score_completions([{"prompt": "Clip:"}] * 4)
    return out["advantages"].tolist()


@pytest.mark.parametrize("aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_a_failed_reward_never_makes_an_advantage_nan(policy: Path, tmp_path: Path,
                                                      aggregation: str) -> None:
    got = _advantages(policy, tmp_path, aggregation)
    assert not any(math.isnan(a) for a in got)
    assert got == pytest.approx(_by_hand(aggregation), rel=1e-5, abs=1e-6)
    assert got[3] == 0.0  # the unscorable completion moves nothing


def test_the_hand_computed_values() -> None:
    """The two aggregations differ on this group (the figures the test above checks)."""
    s = math.sqrt(7 / 12)  # std of R = (2, 1, 0.5)
    assert _by_hand("sum_then_normalize") == pytest.approx(
        [(2 - 7 / 6) / (s + 1e-4), (1 - 7 / 6) / (s + 1e-4), (0.5 - 7 / 6) / (s + 1e-4), 0.0])
    assert _by_hand("normalize_then_sum") != pytest.approx(_by_hand("sum_then_normalize"))


def test_the_recipe_values_are_trls_and_reach_grpo_config(tmp_path: Path) -> None:
    from trl import GRPOConfig

    from erv_plugins.recipe import Aggregation, DataSpec, GRPOTable, Recipe
    from erv_plugins.training.grpo import trl_settings

    help_text = GRPOConfig.__dataclass_fields__["multi_objective_aggregation"].metadata["help"]
    assert set(typing.get_args(Aggregation)) == set(re.findall(r"`'(\w+)'`", help_text))
    cfg = GRPOTable(dataset=DataSpec(plugin="mafw"), multi_objective_aggregation="normalize_then_sum")
    s = trl_settings(cfg, Recipe(name="p", stages=["grpo"], grpo=cfg), tmp_path)
    assert s["multi_objective_aggregation"] == "normalize_then_sum"
    assert GRPOTable().multi_objective_aggregation == "sum_then_normalize"  # the paper's eq. 5

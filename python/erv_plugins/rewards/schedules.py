"""Reward weights over training steps: w_j(step) in R = sum_j w_j(step) * R_j (paper eq. 5).

A ``[rewards.<name>.schedule]`` table (``recipe.WeightSchedule``) moves a reward's weight
from ``weight`` to ``end``; the recipe checks it when loaded, the engine evaluates it each step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from erv_plugins.recipe import WeightSchedule


def check_schedule(weight: float, schedule: WeightSchedule | None) -> None:
    """Raise ValueError when ``schedule`` cannot be evaluated."""
    if schedule is None or schedule.kind == "constant":
        return
    if schedule.kind in ("linear", "cosine"):
        if schedule.end is None or schedule.steps is None or schedule.steps <= 0:
            raise ValueError(f"a {schedule.kind} schedule needs 'end' and 'steps' > 0")
    elif schedule.kind == "step":
        if not schedule.milestones or len(schedule.milestones) != len(schedule.values):
            raise ValueError("a step schedule needs as many 'values' as 'milestones' (at least one)")
        if sorted(schedule.milestones) != list(schedule.milestones):
            raise ValueError("step schedule 'milestones' must be increasing")


def scheduled_weight(weight: float, schedule: WeightSchedule | None, step: int) -> float:
    """The weight at ``step``: from ``weight`` to ``schedule.end`` over ``schedule.steps``
    (linear or half-cosine, then held), or ``values[i]`` from ``milestones[i]`` on."""
    if schedule is None or schedule.kind == "constant":
        return weight
    if schedule.kind == "step":
        w = weight
        for milestone, value in zip(schedule.milestones, schedule.values):
            if step >= milestone:
                w = value
        return w
    assert schedule.end is not None and schedule.steps
    t = min(max(step, 0) / schedule.steps, 1.0)
    if schedule.kind == "linear":
        return weight + (schedule.end - weight) * t
    return schedule.end + (weight - schedule.end) * 0.5 * (1.0 + math.cos(math.pi * t))

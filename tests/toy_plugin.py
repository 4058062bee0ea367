"""A plugin defined inside the tests: one reward and one dataset with their own options."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from erv_plugins import hookimpl
from erv_plugins.labels import MAFW
from erv_plugins.rewards.base import RewardBatch


class ToyOptions(msgspec.Struct, forbid_unknown_fields=True):
    scale: float = 1.0
    word: str = "happy"


class ToyReward:
    """Scores completions that mention a word."""

    name = "toy"
    Options = ToyOptions
    requires = frozenset()

    def __init__(self, options: ToyOptions) -> None:
        self.options = options

    def __call__(self, batch: RewardBatch) -> Sequence[float | None]:
        return [self.options.scale * (self.options.word in c) for c in batch.completions]


class ToyDataset:
    """Two samples in the MAFW label space."""

    name = "toyset"
    label_space = MAFW

    def __init__(self, options: None = None, **_: object) -> None:
        pass

    def samples(self):
        return []


@hookimpl
def erv_register_rewards(register):
    register(ToyReward)


@hookimpl
def erv_register_datasets(register):
    register(ToyDataset, options=None)


class CountStage:
    """Appends a line to <run dir>/count/calls.txt each time it runs."""

    name = "count"

    def __call__(self, ctx):
        with open(ctx.out / "calls.txt", "a") as f:
            f.write(f"{ctx.recipe.name}\n")
        return {"calls": (ctx.out / "calls.txt").read_text().count("\n")}


@hookimpl
def erv_register_stages(register):
    register(CountStage)

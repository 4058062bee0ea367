"""The reward contract (paper eq. 5: R = R_E + R_format + R_answer).

A reward scores the whole batch of completions at once (all G generations of all
prompts), so that it can share work across them (the explanation reward verifies each
distinct sentence once). It returns one value per completion: a float, or None where it
does not apply; or a ``RewardResult`` that adds batch statistics for logging. It may be a
coroutine function; the engine awaits those concurrently.

What a reward ``requires`` decides what the engine hands it when it is built from a
recipe: ``"verifier"`` -> keyword ``verifier=`` (a ``erv_plugins.verifiers.base.Verifier``),
``"label_space"`` -> keyword ``label_spaces=`` (a ``Mapping[str, LabelSpace]`` keyed by
dataset name); any other name is a dataset column the batch must carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import msgspec

from erv_plugins.text import Parsed


@dataclass
class RewardBatch:
    """One batch of completions with what rewards may need.

    ``columns`` holds dataset columns, one value per completion (e.g. ``label``,
    ``dataset``); ``parsed`` is computed once per batch by the engine (native parser).
    """

    completions: list[str]
    parsed: list[Parsed]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    prompts: list[Any] | None = None
    step: int = 0

    def __len__(self) -> int:
        return len(self.completions)


@dataclass
class RewardResult:
    """Values (one per completion, None = not applicable) plus statistics for logging.

    ``info`` keys are plain statistic names (``"sentences_per_explanation"``); the engine
    prefixes them with the reward's name.
    """

    values: Sequence[float | None]
    info: dict[str, float] = field(default_factory=dict)


class Reward(Protocol):
    name: ClassVar[str]
    Options: ClassVar[type[msgspec.Struct]]
    # What the reward needs: dataset columns ("label"), "verifier", "label_space".
    requires: ClassVar[frozenset[str]]

    def __call__(self, batch: RewardBatch) -> Sequence[float | None] | RewardResult: ...

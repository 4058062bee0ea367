"""The reward contract (paper eq. 5: R = R_E + R_format + R_answer).

A reward scores the whole batch of completions at once (all G generations of all
prompts), so that it can share work across them (the explanation reward verifies each
distinct sentence once). It returns one value per completion: a float, or None where it
does not apply; or a ``RewardResult`` that adds batch statistics for logging. It may be a
coroutine function; the engine awaits those concurrently.

A reward is built as every component, ``factory(options, context=BuildContext(...))``:
``context.verifier()`` is the recipe's verifier (a ``erv_plugins.verifiers.base.Verifier``,
built once for all rewards), ``context.label_spaces`` the label spaces by dataset name.
``requires`` lists only the dataset columns the batch must carry (``"label"``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import msgspec
import numpy as np

from erv_plugins.text import Parsed


@dataclass
class RewardBatch:
    """One batch of completions with what rewards may need.

    ``columns`` holds dataset columns, one value per completion (e.g. ``label``,
    ``dataset``); ``parsed`` is computed once per batch by the engine (native parser).
    ``memo`` holds what several rewards derive from the same columns (computed once).
    ``sentences`` maps a segmentation mode to the distinct sentences of the explanations
    (``text.split_sentences_unique`` of the ``think`` texts): the engine fills it in the
    same native pass as ``parsed`` when a reward asks for it (``sentence_mode``), and
    rewards fill it on first use otherwise, so that a batch is split once.
    """

    completions: list[str]
    parsed: list[Parsed]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    prompts: list[Any] | None = None
    step: int = 0
    sentences: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False)
    # Work rewards share within this batch (e.g. ``spaces.label_groups``), by name.
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

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
    # The dataset columns the reward reads ("label", "dataset"...).
    requires: ClassVar[frozenset[str]]

    def __call__(self, batch: RewardBatch) -> Sequence[float | None] | RewardResult: ...

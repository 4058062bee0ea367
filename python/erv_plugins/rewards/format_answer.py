"""R_format and R_answer (paper eq. 5), the two rule-based terms beside R_E."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

import msgspec
import numpy as np

from erv_plugins.labels import BUILTIN_LABEL_SPACES, LabelSpace, release_dfew, release_mafw
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.rewards.spaces import (
    dataset_column,
    distinct_pairs,
    label_groups,
    row_spaces,
    space_of,
)

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext


class FormatReward:
    """1.0 iff the whole completion is ``<think>...</think> <answer>...</answer>``."""

    name: ClassVar[str] = "format"
    Options: ClassVar[type[msgspec.Struct] | None] = None
    requires: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, batch: RewardBatch) -> list[float]:
        # The release's full match, across lines: <think>.*?</think>\s*<answer>.*?</answer>
        return [1.0 if p.format_ok else 0.0 for p in batch.parsed]


class AnswerOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # "paper": only the text inside <answer> counts (across lines); no tags -> 0.
    # "release": the first single-line <answer>, else the whole completion, as released.
    mode: Literal["paper", "release"] = "paper"
    # Label space of rows without a "dataset" column.
    label_space: str = "mafw"


_ANSWER_DOTALL = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_RELEASE_GT = re.compile(r"<answer>(.*?)</answer>")


# The release lower-cases the answer and drops newlines, but strips no tags and leaves the
# ground truth as it is (only its <answer> tags and outer whitespace go).
_RELEASE_NORMALISERS = {"dfew": release_dfew, "mafw": release_mafw}


class AnswerReward:
    """1.0 iff the answer, normalised to the dataset's label words, equals the ground truth."""

    name: ClassVar[str] = "answer"
    Options: ClassVar[type[msgspec.Struct]] = AnswerOptions
    requires: ClassVar[frozenset[str]] = frozenset({"label"})

    def __init__(self, options: AnswerOptions | None = None, *,
                 context: BuildContext | None = None,
                 label_spaces: Mapping[str, LabelSpace] | None = None) -> None:
        self.options = options or AnswerOptions()
        if label_spaces is None:  # given: a reward built in code
            label_spaces = context.label_spaces if context is not None else BUILTIN_LABEL_SPACES
        self.label_spaces = dict(label_spaces)

    def __call__(self, batch: RewardBatch) -> list[float]:
        labels = batch.columns.get("label")
        if labels is None:
            raise ValueError("answer reward: the batch has no 'label' column (ground truth)")
        if self.options.mode == "release":
            fast = self._release_by_group(batch, labels)
            if fast is not None:
                return fast
        spaces = row_spaces(batch.columns, len(batch), self.label_spaces,
                            self.options.label_space, reward=self.name)
        if self.options.mode == "release":
            return self._release(batch, labels, spaces)
        verdicts: dict[tuple[str, str, str], float] = {}  # a batch repeats its answers
        out = []
        for text, parsed, gt, space in zip(batch.completions, batch.parsed, labels, spaces):
            answer = parsed.answer
            if answer is None and "<answer>" in text:  # the paper counts a multi-line answer too
                m = _ANSWER_DOTALL.search(text)
                answer = m.group(1).strip() if m else None
            if answer is None:
                out.append(0.0)
                continue
            key = (space.name, answer, gt if isinstance(gt, str) else str(gt))
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = verdicts[key] = \
                    1.0 if space.normalize(answer) == space.normalize(str(gt)) else 0.0
            out.append(verdict)
        return out

    def _release_by_group(self, batch: RewardBatch, labels: list) -> list[float] | None:
        """``_release`` judged once per distinct (dataset, answer, label) of the batch (the
        same comparisons; kept in step by tests/test_reward_cases.py)."""
        # No single-line <answer>: the release compares the whole text, stripped. Rows are
        # grouped by the unstripped text (a completion equal to another row's answer has no
        # outer whitespace, so both strip to the same word); each group strips once.
        answers = [p.answer for p in batch.parsed]
        whole = None in answers
        if whole:
            answers = [a if a is not None else text for a, text in zip(answers, batch.completions)]
        names = dataset_column(batch.columns, len(batch))
        by_label = label_groups(batch)
        groups = None if by_label is None else distinct_pairs(by_label[1], answers)
        if groups is None:
            return None
        first, inverse = groups
        # Per dataset name (a batch has a handful): its label space's release normaliser.
        normaliser_of = {
            name: _RELEASE_NORMALISERS.get(
                space_of(name, self.label_spaces, self.options.label_space, self.name).name)
            for name in dict.fromkeys(names)}
        truth_of: dict[str, str] = {}
        verdicts = []
        for i in first.tolist():
            raw = labels[i] if isinstance(labels[i], str) else str(labels[i])
            truth = truth_of.get(raw)
            if truth is None:
                m = _RELEASE_GT.search(raw)
                truth = truth_of[raw] = m.group(1).strip() if m else raw.strip()
            answer = answers[i]
            if whole and batch.parsed[i].answer is None:
                answer = answer.strip()
            normalise = normaliser_of[names[i]]
            word = normalise(answer) if normalise else answer
            verdicts.append(1.0 if word == truth else 0.0)
        return np.array(verdicts)[inverse].tolist()

    @staticmethod
    def _release(batch: RewardBatch, labels: list, spaces: list[LabelSpace]) -> list[float]:
        truths: dict[str, str] = {}
        verdicts: dict[tuple[str, str, str], float] = {}  # a batch repeats its answers
        out = []
        for text, parsed, gt, space in zip(batch.completions, batch.parsed, labels, spaces):
            raw = gt if isinstance(gt, str) else str(gt)
            truth = truths.get(raw)
            if truth is None:
                m = _RELEASE_GT.search(raw)
                truth = truths[raw] = m.group(1).strip() if m else raw.strip()
            answer = parsed.answer if parsed.answer is not None else text.strip()
            key = (space.name, answer, truth)
            verdict = verdicts.get(key)
            if verdict is None:
                normalise = _RELEASE_NORMALISERS.get(space.name)
                # The release normalises MAFW and DFEW answers only, and compares exactly.
                word = normalise(answer) if normalise else answer
                verdict = verdicts[key] = 1.0 if word == truth else 0.0
            out.append(verdict)
        return out

"""Which label space a row of a batch belongs to (column ``dataset``, else a default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from erv_plugins.labels import LabelSpace

if TYPE_CHECKING:
    from erv_plugins.rewards.base import RewardBatch


def row_spaces(columns: Mapping[str, Sequence[Any]], n: int, spaces: Mapping[str, LabelSpace],
               default: str, *, reward: str) -> list[LabelSpace]:
    """The label space of each of ``n`` rows: the ``dataset`` column names it."""
    names = columns.get("dataset")
    if names is None:
        return [_space_of(None, spaces, default, reward)] * n
    try:  # each distinct name once: a batch holds a handful
        distinct = dict.fromkeys(names)
    except TypeError:  # an unhashable value: let _space_of name it
        distinct = None
    if distinct is None:
        return [_space_of(value, spaces, default, reward) for value in names]
    for value in distinct:
        distinct[value] = _space_of(value, spaces, default, reward)
    return list(map(distinct.__getitem__, names))


def _space_of(value: Any, spaces: Mapping[str, LabelSpace], default: str, reward: str
              ) -> LabelSpace:
    key = (value or default).lower() if isinstance(value, str) or value is None else value
    space = spaces.get(key) if isinstance(key, str) else None
    if space is None:
        raise ValueError(
            f"reward {reward!r}: dataset {value or default!r} has no label space; "
            f"known: {', '.join(sorted(spaces))}"
        )
    return space


def distinct_rows(*columns: Sequence[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows grouped by their values in ``columns`` (equal columns' lengths): ``(first,
    inverse)`` with ``first[j]`` a row of group j and ``inverse[i]`` the group of row i; or None
    when a value is unhashable. A GRPO batch repeats its labels, datasets and answers (G
    generations per prompt), so rewards judge each group once instead of each row, with no
    Python work per row beyond two dict lookups per column."""
    n = len(columns[0]) if columns else 0
    combined = np.zeros(n, dtype=np.int64)
    groups = 1
    try:
        for values in columns:
            index = {v: i for i, v in enumerate(dict.fromkeys(values))}
            codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=n)
            if groups * len(index) >= 2**62:  # compact the codes so far before they overflow
                combined = np.unique(combined, return_inverse=True)[1].astype(np.int64)
                groups = int(combined.max()) + 1 if n else 1
            combined = combined * len(index) + codes
            groups *= max(len(index), 1)
    except TypeError:
        return None
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return first, inverse.reshape(n)


def label_groups(batch: RewardBatch) -> tuple[np.ndarray, np.ndarray] | None:
    """``distinct_rows`` of (dataset, str(label)) of a batch, computed once per batch: the
    answer and explanation rewards both judge per (dataset, label) group."""
    if "label_groups" not in batch.memo:
        labels = batch.columns.get("label")
        batch.memo["label_groups"] = None if labels is None else distinct_rows(
            dataset_column(batch.columns, len(batch)), list(map(str, labels)))
    return batch.memo["label_groups"]


def distinct_pairs(groups: np.ndarray, values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows grouped by (their group in ``groups``, their value in ``values``), as
    ``distinct_rows``; None when a value is unhashable."""
    n = len(values)
    try:
        index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    except TypeError:
        return None
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=n)
    _, first, inverse = np.unique(groups * max(len(index), 1) + codes, return_index=True,
                                  return_inverse=True)
    return first, inverse.reshape(n)


def dataset_column(columns: Mapping[str, Sequence[Any]], n: int) -> Sequence[Any]:
    """The ``dataset`` column, or ``n`` Nones (every row in the default label space)."""
    names = columns.get("dataset")
    return [None] * n if names is None else names


def space_of(value: Any, spaces: Mapping[str, LabelSpace], default: str, reward: str
             ) -> LabelSpace:
    """The label space a ``dataset`` value names (None or "": ``default``)."""
    return _space_of(value, spaces, default, reward)

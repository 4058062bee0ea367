"""The dataset contract: samples with a clip, a label in the dataset's label space, and
optionally an explanation (EMER, MERR) for SFT and verifier training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from erv_plugins.labels import LabelSpace


@dataclass(frozen=True)
class Sample:
    id: str
    label: str
    video: Path | None = None
    explanation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Dataset(Protocol):
    label_space: LabelSpace

    def samples(self) -> Sequence[Sample]:
        """All samples of the configured split, in a stable order."""
        ...


def build_dataset(spec: Any, plugins: Any = None) -> Dataset:
    """The dataset a recipe's ``DataSpec`` names (plugin, root, split, limit, options).

    Plugin factories are called as ``factory(options, root=..., split=..., limit=...)``.
    """
    if plugins is None:
        from erv_plugins.plugins import get_plugins

        plugins = get_plugins()
    return plugins.get("dataset", spec.plugin).build(spec.options, root=spec.root,
                                                      split=spec.split, limit=spec.limit)

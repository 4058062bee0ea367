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


def build_dataset(spec: Any, plugins: Any = None, **extra: Any) -> Dataset:
    """The dataset a recipe's ``DataSpec`` names (plugin, root, split, limit, options).

    Plugin factories are called as ``factory(options, root=..., split=..., limit=...,
    **extra)``, given only the keywords their signature accepts (a third-party factory
    may take fewer). Options given as a plain dict (a ``DataSpec`` built in code rather
    than decoded by ``load_recipe``) are decoded with the plugin's struct.
    """
    import inspect

    import msgspec

    from erv_plugins.errors import ErvError

    if plugins is None:
        from erv_plugins.plugins import get_plugins

        plugins = get_plugins()
    reg = plugins.get("dataset", spec.plugin)
    context = {"root": spec.root, "split": spec.split, "limit": spec.limit, **extra}
    try:
        params = inspect.signature(reg.factory).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            context = {k: v for k, v in context.items() if k in params}
    except (TypeError, ValueError):  # builtins and C callables have no signature
        pass
    options = spec.options
    if reg.options is not None and not isinstance(options, reg.options):
        try:
            options = msgspec.convert(options or {}, reg.options)
        except msgspec.ValidationError as exc:
            raise ErvError(f"dataset {spec.plugin!r} options: {exc}") from None
    return reg.build(options, **context)

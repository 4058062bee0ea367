"""The dataset contract: samples with a clip, a label in the dataset's label space, and
optionally an explanation (EMER, MERR) for SFT and verifier training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from erv_plugins.labels import LabelSpace

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext


@dataclass(frozen=True)
class Sample:
    id: str
    label: str
    video: Path | None = None
    explanation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequiredPath:
    """A file or directory a dataset reads (see ``Dataset.required_paths``)."""

    path: Path
    what: str = "root"  # how the preflight names it: "split file", "clips directory" ...
    kind: Literal["file", "dir", "any"] = "any"


@runtime_checkable
class Dataset(Protocol):
    """What every dataset plugin builds. Building one must not read its data (the
    preflight builds each recipe dataset to ask what it needs); ``samples`` reads it.

    Optional: ``required_paths() -> Sequence[RequiredPath]``, the files and directories
    ``samples`` will read, which ``erv run`` checks before anything starts (all missing
    ones listed at once). Without it, the recipe's ``root`` is checked (see
    ``required_paths`` below).
    """

    label_space: LabelSpace

    def samples(self) -> Sequence[Sample]:
        """All samples of the configured split, in a stable order."""
        ...


def required_paths(dataset: Any, spec: Any) -> list[RequiredPath]:
    """The paths ``dataset`` (built from the recipe's ``spec``) needs: its own
    ``required_paths()`` when it has one, else the spec's ``root`` when set."""
    own = getattr(dataset, "required_paths", None)
    if callable(own):
        return list(own())
    root = getattr(spec, "root", None)
    return [RequiredPath(Path(root))] if root else []


def where_to_read(spec: Any) -> tuple[str | None, str, int | None]:
    """(root, split, limit) of a recipe's dataset table (``BuildContext.spec``)."""
    return getattr(spec, "root", None), getattr(spec, "split", "train"), getattr(spec, "limit", None)


def build_dataset(spec: Any, plugins: Any = None, *, context: BuildContext | None = None,
                  run_dir: Path | None = None) -> Dataset:
    """The dataset a recipe's ``DataSpec`` names (plugin, root, split, limit, options).

    Built as every component is, ``factory(options, context=context)`` with
    ``context.spec`` = ``spec`` (where the dataset reads: ``root``, ``split``, ``limit``).
    Options given as a plain dict (a ``DataSpec`` built in code rather than decoded by
    ``load_recipe``) are decoded with the plugin's struct.
    """
    import msgspec

    from erv_plugins.context import BuildContext
    from erv_plugins.errors import ErvError

    if context is None:
        if plugins is None:
            from erv_plugins.plugins import get_plugins

            plugins = get_plugins()
        context = BuildContext.create(plugins, run_dir=run_dir)
    context = context.with_(spec=spec)
    reg = context.plugins.get("dataset", spec.plugin)
    options = spec.options
    if reg.options is not None and not isinstance(options, reg.options):
        try:
            options = msgspec.convert(options or {}, reg.options)
        except msgspec.ValidationError as exc:
            raise ErvError(f"dataset {spec.plugin!r} options: {exc}") from None
    return reg.build(options, context=context)

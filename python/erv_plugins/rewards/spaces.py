"""Which label space a row of a batch belongs to (column ``dataset``, else a default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from erv_plugins.labels import BUILTIN_LABEL_SPACES, LabelSpace

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins


def label_spaces_from_plugins(plugins: Plugins | None) -> dict[str, LabelSpace]:
    """The built-in label spaces plus those dataset plugins declare as a class attribute
    ``label_space`` (keyed by the dataset's registered name)."""
    spaces = dict(BUILTIN_LABEL_SPACES)
    if plugins is None:
        return spaces
    for name, reg in plugins.registries["dataset"].items():
        space = getattr(reg.factory, "label_space", None)
        if isinstance(space, LabelSpace):
            spaces.setdefault(name.lower(), space)
            spaces.setdefault(space.name.lower(), space)
    return spaces


def row_spaces(columns: Mapping[str, Sequence[Any]], n: int, spaces: Mapping[str, LabelSpace],
               default: str, *, reward: str) -> list[LabelSpace]:
    """The label space of each of ``n`` rows: the ``dataset`` column names it."""
    names = columns.get("dataset")
    if names is None:
        names = [None] * n
    out: list[LabelSpace] = []
    memo: dict[Any, LabelSpace] = {}
    for value in names:
        space = memo.get(value)
        if space is None:
            key = (value or default).lower() if isinstance(value, str) or value is None else value
            space = spaces.get(key) if isinstance(key, str) else None
            if space is None:
                raise ValueError(
                    f"reward {reward!r}: dataset {value or default!r} has no label space; "
                    f"known: {', '.join(sorted(spaces))}"
                )
            memo[value] = space
        out.append(space)
    return out

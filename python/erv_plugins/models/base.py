"""The policy-model contract (paper eq. 1: an omni MLLM over video, audio and prompt).

A model plugin's factory is called as every component's, ``factory(options,
context=BuildContext(...))``: ``context.spec`` is the recipe's ``[model]`` table (its
``path``), ``context.run_dir`` where a model built from options may be written. It returns
a ``PolicyModel``: something that loads a transformers causal LM and the processor that
prepares its inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext


def model_location(context: BuildContext | None) -> tuple[str | None, Path]:
    """(checkpoint path of the ``[model]`` table or None, run directory or ".")."""
    if context is None:
        return None, Path(".")
    path = getattr(context.spec, "path", None)
    return path, Path(context.run_dir) if context.run_dir is not None else Path(".")


@runtime_checkable
class PolicyModel(Protocol):
    name: str

    def load(self, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
        """(model, processor): a ``PreTrainedModel`` and its processor, ready to use."""
        ...

    def model_path(self) -> str:
        """A local directory that ``from_pretrained`` can read (TRL's reference model)."""
        ...

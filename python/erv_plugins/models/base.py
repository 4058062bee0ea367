"""The policy-model contract (paper eq. 1: an omni MLLM over video, audio and prompt).

A model plugin's factory is called with its decoded options (and, from a recipe's
``[model]`` table, ``path=``) and returns a ``PolicyModel``: something that loads a
transformers causal LM and the processor that prepares its inputs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class PolicyModel(Protocol):
    name: str

    def load(self, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
        """(model, processor): a ``PreTrainedModel`` and its processor, ready to use."""
        ...

    def model_path(self) -> str:
        """A local directory that ``from_pretrained`` can read (TRL's reference model)."""
        ...

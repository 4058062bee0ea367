"""The policy-model contract (paper eq. 1: an omni MLLM over video, audio and prompt).

A model plugin's factory is called as every component's, ``factory(options,
context=BuildContext(...))``: ``context.spec`` is the recipe's ``[model]`` table (its
``path``), ``context.run_dir`` where a model built from options may be written. It returns
a ``PolicyModel``: something that loads a transformers causal LM and the processor that
prepares its inputs.

The core (SFT, GRPO, generation, ``erv data check``) never names a model family. It meets
a saved directory (``<run>/sft/model``, ``erv eval --policy PATH``, TRL's reference model
by path) and asks each registered model plugin's factory, in registration order, whether
the directory is its own (``owns``); the first that says yes opens it (``open``) into a
``MediaPolicy``: the object whose methods build each sample's prompt and media inputs.
A directory no plugin owns is a text-only causal LM (``training.policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    import torch

    from erv_plugins.context import BuildContext
    from erv_plugins.datasets.base import Sample
    from erv_plugins.plugins import Plugins, Registration


def model_location(context: BuildContext | None) -> tuple[str | None, Path]:
    """(checkpoint path of the ``[model]`` table or None, run directory or ".")."""
    if context is None:
        return None, Path(".")
    path = getattr(context.spec, "path", None)
    return path, Path(context.run_dir) if context.run_dir is not None else Path(".")


def checkpoint_or_tiny(path: str | None, *, tiny: bool, tiny_dir: Path,
                       build: Callable[[Path], Any], missing: str) -> str:
    """A model plugin's ``model_path``: the ``[model]`` table's checkpoint directory, else
    (``options.tiny``) the tiny random model in ``tiny_dir``, built there by ``build``
    unless it holds a config.json already; neither: ``missing`` is the error.

    A hub id was resolved to its cached snapshot where the recipe's model is built
    (training.common), for every model plugin alike: ``path`` is a directory here.
    """
    if path:
        if not Path(path).is_dir():
            raise ErvError(f"model path {path} is not a directory")
        return str(path)
    if not tiny:
        raise ErvError(missing)
    if not (tiny_dir / "config.json").is_file():
        build(tiny_dir)
    return str(tiny_dir)


def model_directory(path: str | Path) -> Path:
    """``path`` as a model directory: one that holds a config.json, else an error."""
    root = Path(path)
    if not (root / "config.json").is_file():
        raise ErvError(f"{root}: not a model directory (no config.json)")
    return root


def checkpoint_and_dtype(path: str | Path, dtype: Any = None) -> tuple[Path, Any]:
    """What a model plugin's loader starts with: ``path`` as a model directory
    (``model_directory``) and the dtype to load it in (None and "auto" as given: the
    checkpoint's; a torch dtype's name, "bfloat16", as that dtype)."""
    root = model_directory(path)
    if isinstance(dtype, str) and dtype != "auto":
        import torch

        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ErvError(f"dtype {dtype!r} is not a torch dtype (float32, bfloat16, ...)")
        dtype = getattr(torch, dtype)
    return root, dtype


@runtime_checkable
class PolicyModel(Protocol):
    """What a model plugin's factory builds from the recipe's ``[model]`` table.

    The factory class (what ``register`` is given) also answers for saved directories,
    without a recipe: ``owns(path)`` and ``open(path, ...)`` (classmethods, see
    ``MediaPolicy``), and ``media_settings(options, path)``: the ``decode_clip`` settings
    ``erv data check`` decodes the recipe's clips with.
    """

    name: str

    def load(self, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
        """(model, processor): a ``PreTrainedModel`` and its processor, ready to use."""
        ...

    def model_path(self) -> str:
        """A local directory that ``from_pretrained`` can read (TRL's reference model)."""
        ...


@runtime_checkable
class MediaPolicy(Protocol):
    """A saved policy directory opened for training or generation (``Factory.open``).

    Media travel between the core and the model as a dict of tensors whose first
    dimension is the row (``media_keys``): TRL splits and shuffles a generation batch by
    rows, and the GRPO log-prob pass slices rows; ``model_inputs`` turns such a slice into
    the model's own ``forward``/``generate`` keyword arguments.
    """

    model: Any
    tokenizer: Any
    processor: Any
    path: Path
    multimodal: ClassVar[bool]
    media_keys: tuple[str, ...]
    # Whether the model takes the GRPO fast path's arguments (``clip_ids``,
    # ``logprob_targets``..., a shared ``media_cache``; training/trainer.py).
    fast_path: bool
    # Token ids generation must never sample (a model's media placeholders).
    suppressed_ids: tuple[int, ...]

    def prompt(self, sample: Sample | None = None, template: str = "policy") -> str:
        """The chat prompt (generation prompt included) of a sample, media markers in it."""
        ...

    def prompt_length(self, prompt: str) -> int:
        """Its length as ``[grpo] max_prompt_length`` counts it (one id per clip's media)."""
        ...

    def encode(self, samples: Sequence[Sample], prompts: Sequence[str] | None = None,
               questions: Sequence[str] | None = None
               ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
        """Prompt ids (media placeholders expanded, no padding) and the rows' media."""
        ...

    def sft_example(self, sample: Sample, question: str, target: str, template: str = "policy"
                    ) -> tuple[list[int], list[int], str | None]:
        """(ids, labels with -100 on the prompt, the text gate's input or None)."""
        ...

    def model_inputs(self, media: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The ``forward``/``generate`` keyword arguments of a slice of rows' media."""
        ...

    def media_cache(self) -> Any | None:
        """A fresh encoder-output cache that the policy and reference model share for one
        generation batch (the fast path), or None."""
        ...

    def generation_question(self, protocol: str) -> tuple[str, bool]:
        """(the question an eval protocol asks, whether decoding skips special tokens);
        sets the protocol's frame processing on the processor."""
        ...

    def generation_inputs(self, samples: Sequence[Sample], question: str) -> Any:
        """A left-padded batch (``BatchFeature``) for ``model.generate``."""
        ...

    def end_ids(self) -> set[int]:
        """Token ids that end a completion."""
        ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        ...

    def save(self, out_dir: str | Path) -> None:
        """Write the tokenizer and processor next to a saved model."""
        ...


def policy_owner(path: str | Path, plugins: Plugins | None = None) -> Registration | None:
    """The model plugin whose factory owns the saved directory ``path``, or None (a
    text-only causal LM). Asked in registration order (built-ins first)."""
    from erv_plugins.plugins import get_plugins

    plugins = plugins or get_plugins()
    for reg in plugins.registries["model"].values():
        owns = getattr(reg.factory, "owns", None)
        if callable(owns) and owns(Path(path)):
            return reg
    return None

"""The plugin contract: every hook erv calls, typed and documented where it is declared.

A plugin is a module (or object) with functions marked ``@erv_plugins.hookimpl`` whose
names are the hook names below. Built-in components register through these very hooks
(see ``erv_plugins.plugins.DEFAULT_PLUGINS``), so the core has no private path.

Each ``erv_register_*`` hook is handed a ``register`` callback::

    @hookimpl
    def erv_register_rewards(register):
        register(MyReward)                        # name from MyReward.name
        register(other_factory, name="other", options=OtherOptions)

``register(factory, *, name=None, options=None, description=None)``: ``factory`` is
called by the core to build the component, the same way for every kind but stages:
``factory(options, context=context)`` with the decoded options struct and a
``erv_plugins.context.BuildContext`` (plugins, recipe, run directory, device, label
spaces, the verifier on demand, ``spec``: the recipe table it is built from);
``factory(context=context)`` without options; a factory that takes nothing besides its
options is called without the context. ``options`` is the ``msgspec.Struct`` type that
decodes the component's option table in a recipe (defaults to ``factory.Options`` when
present). Two plugins registering one name is an error naming both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import click
    import msgspec

PROJECT = "erv_plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback handed to every ``erv_register_*`` hook."""

    def __call__(
        self,
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        options: type[msgspec.Struct] | None = None,
        description: str | None = None,
    ) -> None: ...


@hookspec
def erv_register_rewards(register: Register) -> None:
    """Register reward functions (paper eq. 5: R = R_E + R_format + R_answer).

    A reward is built from its options struct and scores a whole batch of completions
    at once; see ``erv_plugins.rewards.base.Reward`` for the calling convention.
    """


@hookspec
def erv_register_verifiers(register: Register) -> None:
    """Register emotion verifiers: text -> per-label probabilities (paper section 3.2).

    See ``erv_plugins.verifiers.base.Verifier``.
    """


@hookspec
def erv_register_judges(register: Register) -> None:
    """Register explanation judges: explanation -> one emotion word (paper section 4.2).

    See ``erv_plugins.judges.base.Judge``.
    """


@hookspec
def erv_register_datasets(register: Register) -> None:
    """Register datasets: samples (clip, label, optional explanation) and a label space.

    See ``erv_plugins.datasets.base.Dataset``.
    """


@hookspec
def erv_register_models(register: Register) -> None:
    """Register policy models (paper eq. 1: an omni MLLM over video, audio and prompt).

    See ``erv_plugins.models.base.PolicyModel``.
    """


@hookspec
def erv_register_stages(register: Register) -> None:
    """Register pipeline stages that ``erv run`` may name in a recipe's ``stages``.

    A stage is called with the resolved recipe and the run directory and writes its
    outputs there; see ``erv_plugins.stages.Stage``. The ``options`` struct a stage
    registers is its recipe table ``[<stage name>]``: the recipe decodes it (path-precise
    errors), refuses a recipe that names the stage without it, and the factory is built
    with it. A subclass of ``erv_plugins.training.launching.LaunchedStage`` runs in each
    of the ``[launch] num_processes`` processes, found there by its name.
    """


@hookspec
def erv_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``erv`` command line (``cli.add_command(...)``)."""


@hookspec
def erv_rewards_computed(
    step: int,
    rewards: Mapping[str, Sequence[float]],
    total: Sequence[float],
    info: Mapping[str, Any],
) -> None:
    """Observe the rewards of one scored batch, for logging and plots.

    ``rewards`` maps each reward name to its unweighted values (NaN marks a failure),
    ``total`` is the weighted sum per completion, ``info`` holds extra per-reward
    statistics (e.g. sentences per explanation). Called after every batch the reward
    engine scores; implementations must not modify the arguments.
    """

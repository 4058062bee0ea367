"""What the core hands every component factory: one typed ``BuildContext``.

Rewards, verifiers, judges, datasets and models are all built the same way,
``factory(options, context=BuildContext(...))`` (``factory(context=...)`` for a component
without options; see ``plugins.Registration.build``). The context says where the
component is built (plugins, recipe, run directory, device), gives the label spaces by
name, and builds the recipe's verifier on demand, once, for whoever asks first (the
explanation reward, the verifier judge).

``spec`` is the recipe table the component is built from, for what is not an option:
a dataset's ``DataSpec`` (``root``, ``split``, ``limit``), the ``[model]`` table's
``ModelSpec`` (``path``). It is None for components built in code.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erv_plugins.errors import ErvError, RecipeError

if TYPE_CHECKING:
    from erv_plugins.labels import LabelSpace
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import PluginSpec, Recipe
    from erv_plugins.verifiers.base import Verifier


class NoVerifier(ErvError):
    """A component asked for the verifier and the recipe has no ``[verifier]``."""


class VerifierBuildError(RecipeError):
    """The recipe's ``[verifier]`` could not be built (the message names ``$.verifier``)."""


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """Where a component is built and what it may ask for."""

    plugins: Plugins
    recipe: Recipe | None = None
    run_dir: Path | None = None
    # The device the stage computes on ("cpu", "cuda", ...); None: the component's choice.
    device: str | None = None
    # Where a component may keep a cache when its options name none (the judges' replies).
    cache_dir: Path | None = None
    # The recipe table this component is built from (DataSpec, ModelSpec...), else None.
    spec: Any = None
    # The verifier to build on demand: default the recipe's [verifier] table.
    verifier_spec: PluginSpec | None = None
    _label_spaces: Mapping[str, LabelSpace] | None = field(default=None, repr=False)
    # A verifier already built (given, or built on first ask); shared by copies (``with_``).
    _verifier: list[Verifier] = field(default_factory=list, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def create(cls, plugins: Plugins, *, verifier: Verifier | None = None,
               label_spaces: Mapping[str, LabelSpace] | None = None,
               **fields: Any) -> BuildContext:
        """A context; ``verifier`` (already built) and ``label_spaces`` override what the
        plugins and the recipe would give."""
        return cls(plugins=plugins, _label_spaces=label_spaces,
                   _verifier=[verifier] if verifier is not None else [], **fields)

    def with_(self, **changes: Any) -> BuildContext:
        """This context with some fields changed (e.g. ``spec`` per dataset); the verifier
        built on demand stays shared."""
        return replace(self, **changes)

    # -- label spaces ---------------------------------------------------------------------
    @property
    def label_spaces(self) -> Mapping[str, LabelSpace]:
        """Every label space by name (``Plugins.label_spaces``), unless given."""
        if self._label_spaces is not None:
            return self._label_spaces
        return self.plugins.label_spaces()

    def label_space(self, name: str) -> LabelSpace:
        if self._label_spaces is not None:
            space = self._label_spaces.get(name.lower())
            if space is None:
                raise ErvError(f"unknown label space {name!r}; known: "
                               f"{', '.join(sorted(self._label_spaces))}")
            return space
        return self.plugins.label_space(name)

    # -- the verifier on demand --------------------------------------------------------------
    @property
    def has_verifier(self) -> bool:
        """Whether ``verifier()`` has something to build (or was given one)."""
        return bool(self._verifier) or self.verifier_table() is not None

    def verifier_table(self) -> PluginSpec | None:
        """The verifier table ``verifier()`` builds: ``verifier_spec``, else the recipe's."""
        if self.verifier_spec is not None:
            return self.verifier_spec
        return self.recipe.verifier if self.recipe is not None else None

    def verifier(self) -> Verifier:
        """The verifier (``verifier_spec``, else the recipe's ``[verifier]``), built on the
        first call and shared by every component of this context."""
        with self._lock:
            if self._verifier:
                return self._verifier[0]
            spec = self.verifier_table()
            source = (self.recipe.source if self.recipe is not None else None) or "recipe"
            if spec is None:
                raise NoVerifier("needs a verifier; add a [verifier] table (e.g. plugin = "
                                 "\"hf\", options.path = \"...\")")
            try:
                reg = self.plugins.get("verifier", spec.plugin)
                options = spec.options
                if reg.options is not None and not isinstance(options, reg.options):
                    import msgspec

                    options = msgspec.convert(options or {}, type=reg.options)
                verifier = reg.build(options, context=self)
            except ErvError as exc:
                raise VerifierBuildError(f"{source}: $.verifier: {exc}") from None
            except Exception as exc:  # a verifier that cannot load: say which and why
                raise VerifierBuildError(
                    f"{source}: $.verifier: verifier {spec.plugin!r} could not be "
                    f"built: {type(exc).__name__}: {exc}") from exc
            self._verifier.append(verifier)
            return verifier

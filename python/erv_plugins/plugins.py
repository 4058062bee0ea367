"""The plugin manager facade: the only module that touches ``pm.hook``.

Loading order: the built-in plugins in ``DEFAULT_PLUGINS`` (registered through the same
hooks as anyone else's), then the setuptools entry points of group ``erv_plugins``,
restricted by ``ERV_LOAD_PLUGINS`` (a comma list of entry-point names; empty = none).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from erv_plugins import hookspecs
from erv_plugins.hookspecs import Register  # re-exported: plugins import it from here
from erv_plugins.errors import ErvError, PluginError

if TYPE_CHECKING:
    import click
    import msgspec

    from erv_plugins.context import BuildContext
    from erv_plugins.labels import LabelSpace

ENTRY_POINT_GROUP = "erv_plugins"
LOAD_ENV = "ERV_LOAD_PLUGINS"
TRACE_ENV = "ERV_TRACE_HOOKS"

Kind = Literal["reward", "verifier", "judge", "dataset", "model", "stage"]
KINDS: tuple[Kind, ...] = ("reward", "verifier", "judge", "dataset", "model", "stage")
_HOOK_OF_KIND: dict[Kind, str] = {
    "reward": "erv_register_rewards",
    "verifier": "erv_register_verifiers",
    "judge": "erv_register_judges",
    "dataset": "erv_register_datasets",
    "model": "erv_register_models",
    "stage": "erv_register_stages",
}

# Built-in components are plugins too: the core has no private registration path.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "erv_plugins.cli.commands",
    "erv_plugins.rewards.builtin",
    "erv_plugins.verifiers.builtin",
    "erv_plugins.judges.builtin",
    "erv_plugins.datasets.builtin",
    "erv_plugins.models.builtin",
    "erv_plugins.models.qwen_omni",  # its own erv_register_models, as a third party
    "erv_plugins.stages",
)


@dataclass(frozen=True)
class Registration:
    """One component a plugin registered."""

    kind: Kind
    name: str
    factory: Callable[..., Any]
    options: type[msgspec.Struct] | None
    plugin: str
    description: str

    def build(self, options: Any = None, /, *, context: BuildContext | None = None) -> Any:
        """Instantiate the component with its decoded options (default options if None):
        ``factory(options, context=context)``, or ``factory(context=context)`` for a
        component without options (``erv_plugins.context``). Without a context, one with
        the process-wide plugins only."""
        from erv_plugins.context import BuildContext

        if options is None and self.options is not None:
            options = self.options()
        args = () if self.options is None else (options,)
        params = _parameters(self.factory)
        if self.kind == "stage" or (params is not None and len(params) == len(args)):
            # A stage is built from its recipe table alone; a factory that takes nothing
            # besides its options needs nothing from the context.
            return self.factory(*args)
        if context is None:
            context = BuildContext(plugins=get_plugins())
        legacy = self._legacy_keywords(context, params)
        if legacy is not None:
            return self.factory(*args, **legacy)
        if self.options is None:
            return self.factory(context=context)
        return self.factory(options, context=context)

    def _legacy_keywords(self, context: BuildContext,
                         params: Mapping[str, inspect.Parameter] | None) -> dict[str, Any] | None:
        """The keywords of the calling convention before ``BuildContext`` when the factory
        is written to it (with a DeprecationWarning naming the plugin), else None.

        Old rewards list "verifier"/"label_space" in ``requires`` and take ``verifier=``/
        ``label_spaces=``; old datasets take ``root=``/``split=``/``limit=`` and old models
        ``path=``/``run_dir=`` without a ``context`` parameter.
        """
        takes_context = params is None or "context" in params
        var_kw = params is not None and any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        keywords: dict[str, Any] = {}
        if self.kind == "reward":
            requires = frozenset(getattr(self.factory, "requires", ()))
            if not requires & {"verifier", "label_space"} and (takes_context or var_kw):
                return None
            if "verifier" in requires:
                keywords["verifier"] = context.verifier()
            if "label_space" in requires:
                keywords["label_spaces"] = context.label_spaces
        elif self.kind in ("dataset", "model"):
            if takes_context:
                return None
            spec = context.spec
            if self.kind == "dataset":
                keywords = {"root": getattr(spec, "root", None),
                            "split": getattr(spec, "split", "train"),
                            "limit": getattr(spec, "limit", None)}
            else:
                keywords = {"path": getattr(spec, "path", None)}
            if context.run_dir is not None:
                keywords["run_dir"] = context.run_dir
            if not var_kw:
                assert params is not None
                keywords = {k: v for k, v in keywords.items() if k in params}
        else:
            return None
        fix = ("list only dataset columns in `requires` and read the verifier and label "
               "spaces from `context`" if self.kind == "reward" else
               "read the recipe table from `context.spec`")
        warnings.warn(
            f"plugin {self.plugin!r}: {self.kind} {self.name!r} is written to the calling "
            f"convention before erv_plugins.context.BuildContext; take a keyword `context` "
            f"({fix}); the old keywords go in a later release",
            DeprecationWarning, stacklevel=3)
        return keywords


def _parameters(factory: Callable[..., Any]) -> Mapping[str, inspect.Parameter] | None:
    """The factory's parameters, or None when it has no signature (C callables)."""
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None


@dataclass
class PluginInfo:
    name: str
    source: Literal["builtin", "entrypoint", "manual"]
    version: str | None
    hooks: list[str]
    registered: dict[str, list[str]] = field(default_factory=dict)


def _first_doc_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Plugins:
    """Loads plugins and collects what they register, one registry per kind."""

    def __init__(
        self,
        *,
        defaults: Sequence[str] = DEFAULT_PLUGINS,
        entry_points: bool = True,
        extra: Iterable[object] = (),
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        if os.environ.get(TRACE_ENV):
            # stderr, so that traced `erv plugins --json` still prints clean JSON
            self._pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
            self._pm.enable_tracing()
        self._sources: dict[str, tuple[Literal["builtin", "entrypoint", "manual"], str | None]] = {}
        for modname in defaults:
            self._add(importlib.import_module(modname), modname, "builtin", None)
        if entry_points:
            self._load_entry_points()
        for obj in extra:
            self._add(obj, getattr(obj, "__name__", repr(obj)), "manual", None)
        self._registries: dict[Kind, dict[str, Registration]] | None = None
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------
    def _add(self, obj: object, name: str, source: Literal["builtin", "entrypoint", "manual"],
             version: str | None) -> None:
        try:
            self._pm.register(obj, name=name)
            self._check(name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from None
        except ValueError as exc:  # pluggy: name already registered
            raise PluginError(f"plugin {name!r} could not be registered: {exc}") from None
        self._sources[name] = (source, version)

    def _check(self, name: str) -> None:
        """A hook implementation with a misspelled name is an error, not a silent no-op."""
        plugin = self._pm.get_plugin(name)
        known = [n for n in dir(hookspecs) if n.startswith("erv_")]
        for attr in dir(plugin):
            if not attr.startswith("erv_") or attr in known:
                continue
            value = getattr(plugin, attr, None)
            marked = getattr(value, f"{hookspecs.PROJECT}_impl", None) is not None
            own = getattr(value, "__module__", None) == getattr(plugin, "__name__", "")
            if not callable(value) or not (marked or own):
                continue
            close = difflib.get_close_matches(attr, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self._pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} implements unknown hook {attr!r}{hint}")

    def _load_entry_points(self) -> None:
        wanted = os.environ.get(LOAD_ENV)
        allowed = None if wanted is None else {p.strip() for p in wanted.split(",") if p.strip()}
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        unknown = sorted((allowed or set()) - {ep.name for ep in found})
        if unknown:  # a typo would silently run without the plugin
            names = ", ".join(sorted({ep.name for ep in found})) or "none"
            raise PluginError(f"{LOAD_ENV} names {', '.join(map(repr, unknown))}, which no "
                              f"installed package provides (installed plugins: {names})")
        for ep in found:
            if allowed is not None and ep.name not in allowed:
                continue
            if self._pm.get_plugin(ep.name) is not None:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party plugin must say who it is
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            version = ep.dist.version if ep.dist is not None else None
            self._add(obj, ep.name, "entrypoint", version)

    # -- registries ----------------------------------------------------------------------
    def _collect(self) -> dict[Kind, dict[str, Registration]]:
        registries: dict[Kind, dict[str, Registration]] = {k: {} for k in KINDS}
        for kind, hookname in _HOOK_OF_KIND.items():
            caller = getattr(self._pm.hook, hookname)
            # Call each implementation on its own so every registration knows its plugin.
            for impl in caller.get_hookimpls():  # in load order: built-ins first
                plugin_name = impl.plugin_name
                impl.function(register=self._registrar(kind, plugin_name, registries[kind]))
        return registries

    @staticmethod
    def _registrar(kind: Kind, plugin: str, into: dict[str, Registration]) -> Register:
        def register(
            factory: Callable[..., Any],
            *,
            name: str | None = None,
            options: type[msgspec.Struct] | None = None,
            description: str | None = None,
        ) -> None:
            name = name or getattr(factory, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"plugin {plugin!r} registered a {kind} without a name "
                    f"(pass name=... or give {factory!r} a 'name' attribute)"
                )
            if name in into:
                raise PluginError(
                    f"{kind} {name!r} is registered by both plugin {into[name].plugin!r} "
                    f"and plugin {plugin!r}"
                )
            into[name] = Registration(
                kind=kind,
                name=name,
                factory=factory,
                options=options if options is not None else getattr(factory, "Options", None),
                plugin=plugin,
                description=description or _first_doc_line(factory),
            )

        return register

    @property
    def registries(self) -> Mapping[Kind, Mapping[str, Registration]]:
        with self._lock:
            if self._registries is None:
                self._registries = self._collect()
            return self._registries

    def names(self, kind: Kind) -> list[str]:
        return sorted(self.registries[kind])

    def get(self, kind: Kind, name: str) -> Registration:
        """The registration of ``name``, or an error listing what is available."""
        reg = self.registries[kind].get(name)
        if reg is None:
            available = ", ".join(self.names(kind)) or "none"
            close = difflib.get_close_matches(name, self.names(kind), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PluginError(f"unknown {kind} {name!r}{hint}; available: {available}")
        return reg

    # -- label spaces --------------------------------------------------------------------
    def label_spaces(self) -> dict[str, LabelSpace]:
        """Every label space by name: the built-in ones (mafw, dfew, emer, goemotions...)
        plus those dataset plugins declare as a class attribute ``label_space``, under the
        dataset's registered name and the space's own name (built-in names win)."""
        from erv_plugins.labels import BUILTIN_LABEL_SPACES, LabelSpace

        spaces = dict(BUILTIN_LABEL_SPACES)
        for name, reg in self.registries["dataset"].items():
            space = getattr(reg.factory, "label_space", None)
            if isinstance(space, LabelSpace):
                spaces.setdefault(name.lower(), space)
                spaces.setdefault(space.name.lower(), space)
        return spaces

    def label_space(self, name: str) -> LabelSpace:
        """The label space ``name`` (a space's or a dataset plugin's name, any case): the
        one lookup every command and stage uses."""
        spaces = self.label_spaces()
        space = spaces.get(name.lower())
        if space is None:
            raise ErvError(f"unknown label space {name!r}; known: {', '.join(sorted(spaces))}")
        return space

    # -- other hooks ---------------------------------------------------------------------
    def register_commands(self, cli: click.Group) -> None:
        self._pm.hook.erv_register_commands(cli=cli)

    def rewards_computed(self, step: int, rewards: Mapping[str, Sequence[float]],
                         total: Sequence[float], info: Mapping[str, Any]) -> None:
        self._pm.hook.erv_rewards_computed(step=step, rewards=rewards, total=total, info=info)

    def add(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object at run time (tests, notebooks)."""
        self._add(plugin, name or getattr(plugin, "__name__", repr(plugin)), "manual", None)
        with self._lock:
            self._registries = None

    # -- introspection -------------------------------------------------------------------
    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin, its hooks and the components it registered."""
        infos: dict[str, PluginInfo] = {}
        for name, plugin in self._pm.list_name_plugin():
            source, version = self._sources.get(name, ("manual", None))
            hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or [])
            infos[name] = PluginInfo(name=name, source=source, version=version, hooks=hooks)
        for kind, registry in self.registries.items():
            for reg in registry.values():
                infos[reg.plugin].registered.setdefault(kind, []).append(reg.name)
        for info in infos.values():
            for names in info.registered.values():
                names.sort()
        return sorted(infos.values(), key=lambda i: (i.source != "builtin", i.name))


_plugins: Plugins | None = None
_plugins_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugin manager, loaded on first use."""
    global _plugins
    with _plugins_lock:
        if _plugins is None:
            _plugins = Plugins()
        return _plugins


def reset_plugins() -> None:
    """Forget the loaded plugins (tests that install a plugin package call this)."""
    global _plugins
    with _plugins_lock:
        _plugins = None

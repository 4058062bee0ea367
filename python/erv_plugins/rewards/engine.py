"""The reward engine: R = sum_j w_j(step) * R_j over the recipe's rewards (paper eq. 5).

One engine serves the GRPO stage (through TRL) and ``erv reward``. Per batch it parses
every completion once, hands the whole batch to each reward (so the explanation reward can
verify each distinct sentence once), enforces each reward's timeout and retries, and turns
a failure into NaN that is logged and counted, never a silent 0.0. Async rewards run
concurrently. Weights are constant or scheduled over training steps.

TRL sees the engine through ``erv_plugins.training.rewards_adapter.TRLRewards``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import math
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from erv_plugins.errors import ErvError, PluginError, RecipeError
from erv_plugins.labels import LabelSpace
from erv_plugins.rewards.base import RewardBatch, RewardResult
from erv_plugins.rewards.schedules import check_schedule, scheduled_weight
from erv_plugins.text import parse_and_split_unique, parse_completions

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import Recipe, WeightSchedule
    from erv_plugins.verifiers.base import Verifier

logger = logging.getLogger("erv.rewards")

# Columns a GRPO batch carries for every sample (erv_plugins.datasets.base.Sample).
DEFAULT_COLUMNS: frozenset[str] = frozenset({"label", "dataset", "id", "video", "prompt"})


@dataclass
class RewardTerm:
    """One reward of the engine with its weight, schedule, timeout and retries."""

    name: str
    reward: Callable[[RewardBatch], Any]
    weight: float = 1.0
    schedule: WeightSchedule | None = None
    timeout_s: float | None = None
    retries: int = 0

    def __post_init__(self) -> None:
        check_schedule(self.weight, self.schedule)
        if self.retries < 0:
            raise ValueError(f"reward {self.name!r}: retries must be >= 0")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError(f"reward {self.name!r}: timeout_s must be > 0")

    @property
    def is_async(self) -> bool:
        call = getattr(self.reward, "__call__", None)
        return inspect.iscoroutinefunction(self.reward) or inspect.iscoroutinefunction(call)

    def weight_at(self, step: int) -> float:
        return scheduled_weight(self.weight, self.schedule, step)


@dataclass
class RewardScores:
    """The rewards of one batch: total R, each reward's unweighted values (NaN = failed or
    not applicable), and statistics (flat keys ``<reward>/<statistic>``)."""

    total: list[float]
    per_reward: dict[str, list[float]]
    info: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


class _Failed(Exception):
    pass


def completion_text(completion: Any) -> str:
    """A TRL completion as text: a string, or chat messages ``[{"role", "content"}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, Sequence):
        parts: list[str] = []
        for message in completion:
            content = message.get("content", "") if isinstance(message, Mapping) else message
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, Sequence):  # content blocks [{"type": "text", "text": ...}]
                parts.extend(b.get("text", "") for b in content
                             if isinstance(b, Mapping) and b.get("type", "text") == "text")
        return "".join(parts)
    raise TypeError(f"a completion must be a string or a list of chat messages, got {completion!r}")


class RewardEngine:
    """Scores batches of completions with weighted rewards (paper eq. 5)."""

    def __init__(self, rewards: Mapping[str, Callable[[RewardBatch], Any]] | Sequence[RewardTerm],
                 *, weights: Mapping[str, float] | None = None,
                 plugins: Plugins | None = None) -> None:
        if isinstance(rewards, Mapping):
            weights = weights or {}
            unknown = set(weights) - set(rewards)
            if unknown:
                raise ValueError(f"weights for unknown rewards: {', '.join(sorted(unknown))}")
            terms = [RewardTerm(name, r, weights.get(name, 1.0)) for name, r in rewards.items()]
        else:
            terms = list(rewards)
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"reward names must be unique, got {names}")
        if not terms:
            raise ValueError("a reward engine needs at least one reward")
        self.terms: list[RewardTerm] = terms
        self.plugins = plugins
        self.failures: dict[str, int] = {t.name: 0 for t in terms}  # failed calls so far
        self.last_errors: dict[str, str] = {}  # reward -> the error of its last failed call
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- construction from a recipe ---------------------------------------------------------
    @classmethod
    def from_recipe(cls, recipe: Recipe, plugins: Plugins, *, verifier: Verifier | None = None,
                    label_spaces: Mapping[str, LabelSpace] | None = None,
                    columns: Collection[str] = DEFAULT_COLUMNS) -> RewardEngine:
        """Build every ``[rewards.<name>]`` of the recipe through the plugin registry.

        Each reward is built with one ``BuildContext`` (``verifier``, else the recipe's
        ``[verifier]`` built on demand; ``label_spaces``, else the plugins'). Checks the
        dataset columns each reward ``requires`` against ``columns`` the batches will carry;
        fails here, naming ``<recipe file>: $.rewards.<name>``, not mid-training.
        """
        from erv_plugins.context import BuildContext, NoVerifier, VerifierBuildError

        source = recipe.source or "recipe"
        if not recipe.rewards:
            raise RecipeError(f"{source}: $.rewards: the recipe defines no rewards")
        # One context for every reward: the verifier is built once, by the first that asks.
        context = BuildContext.create(plugins, recipe=recipe, verifier=verifier,
                                      label_spaces=label_spaces)
        regs = {}
        for name, spec in recipe.rewards.items():
            plugin = spec.plugin or name
            try:
                regs[name] = plugins.get("reward", plugin)
            except PluginError as exc:
                raise RecipeError(f"{source}: $.rewards.{name}.plugin: {exc}") from None
        for name, reg in regs.items():
            # ``requires`` lists dataset columns ("verifier"/"label_space": the old convention).
            requires = frozenset(getattr(reg.factory, "requires", ()))
            missing = sorted(requires - {"verifier", "label_space"} - set(columns))
            if missing:
                raise RecipeError(
                    f"{source}: $.rewards.{name}: reward {reg.name!r} needs the dataset "
                    f"column(s) {', '.join(missing)}, which the batches do not carry "
                    f"(they carry {', '.join(sorted(columns))})"
                )
        terms = []
        for name, spec in recipe.rewards.items():
            reg = regs[name]
            try:
                reward = reg.build(spec.options, context=context.with_(spec=spec))
            except VerifierBuildError:
                raise
            except NoVerifier:
                raise RecipeError(
                    f"{source}: $.rewards.{name}: reward {reg.name!r} needs a verifier; add a "
                    f"[verifier] table (e.g. plugin = \"hf\", options.path = \"...\")"
                ) from None
            except ErvError as exc:
                raise RecipeError(f"{source}: $.rewards.{name}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise RecipeError(f"{source}: $.rewards.{name}: reward {reg.name!r} could not "
                                  f"be built: {exc}") from exc
            try:
                terms.append(RewardTerm(name, reward, spec.weight, spec.schedule,
                                        spec.timeout_s, spec.retries))
            except ValueError as exc:
                raise RecipeError(f"{source}: $.rewards.{name}.schedule: {exc}") from None
        return cls(terms, plugins=plugins)

    # -- introspection -----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [t.name for t in self.terms]

    def reward(self, name: str) -> Any:
        for t in self.terms:
            if t.name == name:
                return t.reward
        raise KeyError(f"no reward {name!r}; the engine has {', '.join(self.names)}")

    def weights(self, step: int = 0) -> dict[str, float]:
        return {t.name: t.weight_at(step) for t in self.terms}

    # -- scoring -----------------------------------------------------------------------------
    def make_batch(self, completions: Sequence[Any], columns: Mapping[str, Sequence[Any]] | None,
                   *, prompts: Sequence[Any] | None = None, step: int = 0) -> RewardBatch:
        texts = [c if type(c) is str else completion_text(c) for c in completions]
        cols = {k: list(v) for k, v in (columns or {}).items()}
        for key, values in cols.items():
            if len(values) != len(texts):
                raise ValueError(f"column {key!r} has {len(values)} values for "
                                 f"{len(texts)} completions")
        # A reward that splits explanations (``sentence_mode``) gets them split in the
        # parsing pass: each completion is read once.
        modes = {getattr(t.reward, "sentence_mode", None) for t in self.terms} - {None}
        if len(modes) == 1:
            mode = modes.pop()
            parsed, *unique = parse_and_split_unique(texts, mode)
            return RewardBatch(texts, parsed, cols, list(prompts) if prompts is not None else None,
                               step, sentences={mode: tuple(unique)})
        return RewardBatch(texts, parse_completions(texts), cols,
                           list(prompts) if prompts is not None else None, step)

    def score(self, completions: Sequence[Any], columns: Mapping[str, Sequence[Any]] | None = None,
              *, prompts: Sequence[Any] | None = None, step: int = 0) -> RewardScores:
        """Score a whole batch; calls the ``erv_rewards_computed`` observers."""
        batch = self.make_batch(completions, columns, prompts=prompts, step=step)
        return self.score_batch(batch)

    def score_batch(self, batch: RewardBatch) -> RewardScores:
        results: dict[str, tuple[list[float], dict[str, float], bool]] = {}
        async_terms = [t for t in self.terms if t.is_async]
        for term in self.terms:
            if not term.is_async:
                results[term.name] = self._run_sync(term, batch)
        if async_terms:
            results.update(_run_coroutine(self._run_async_all(async_terms, batch)))
        return self._finish(batch, results)

    async def ascore(self, completions: Sequence[Any],
                     columns: Mapping[str, Sequence[Any]] | None = None, *,
                     prompts: Sequence[Any] | None = None, step: int = 0) -> RewardScores:
        """``score`` for callers inside an event loop (sync rewards run in threads)."""
        batch = self.make_batch(completions, columns, prompts=prompts, step=step)
        loop = asyncio.get_running_loop()
        sync = [t for t in self.terms if not t.is_async]
        outs = await asyncio.gather(
            *[loop.run_in_executor(None, self._run_sync, t, batch) for t in sync],
            self._run_async_all([t for t in self.terms if t.is_async], batch),
        )
        results = dict(zip([t.name for t in sync], outs[:-1]))
        results.update(outs[-1])
        return self._finish(batch, results)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(2, len(self.terms)), thread_name_prefix="erv-reward")
        return self._executor

    def _drop_pool(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _run_sync(self, term: RewardTerm, batch: RewardBatch) -> tuple[list[float], dict, bool]:
        error: str = ""
        for attempt in range(term.retries + 1):
            try:
                if term.timeout_s is None:
                    out = _resolve(term.reward(batch))
                else:
                    future = self._pool().submit(lambda: _resolve(term.reward(batch)))
                    try:
                        out = future.result(timeout=term.timeout_s)
                    except concurrent.futures.TimeoutError:
                        # The stuck thread cannot be stopped; later calls get fresh threads.
                        self._drop_pool()
                        raise _Failed(f"timed out after {term.timeout_s:g} s") from None
                return (*_check_output(term.name, out, len(batch)), False)
            except Exception as exc:  # a reward failure must not stop training: NaN + log
                error = str(exc) if isinstance(exc, _Failed) else f"{type(exc).__name__}: {exc}"
                self._log_failure(term, attempt, error)
        return [math.nan] * len(batch), {}, True

    async def _run_async(self, term: RewardTerm, batch: RewardBatch) -> tuple[list[float], dict, bool]:
        for attempt in range(term.retries + 1):
            try:
                coro = term.reward(batch)
                out = await (asyncio.wait_for(coro, term.timeout_s) if term.timeout_s else coro)
                return (*_check_output(term.name, out, len(batch)), False)
            except (asyncio.TimeoutError, TimeoutError):
                self._log_failure(term, attempt, f"timed out after {term.timeout_s:g} s")
            except Exception as exc:
                self._log_failure(term, attempt, f"{type(exc).__name__}: {exc}")
        return [math.nan] * len(batch), {}, True

    async def _run_async_all(self, terms: list[RewardTerm], batch: RewardBatch
                             ) -> dict[str, tuple[list[float], dict, bool]]:
        outs = await asyncio.gather(*[self._run_async(t, batch) for t in terms])
        return {t.name: o for t, o in zip(terms, outs)}

    def _log_failure(self, term: RewardTerm, attempt: int, error: str) -> None:
        last = attempt == term.retries
        if last:
            with self._lock:
                self.last_errors[term.name] = error
        logger.warning("reward %r failed (attempt %d of %d)%s: %s", term.name, attempt + 1,
                       term.retries + 1, "; its values are NaN for this batch" if last else
                       ", retrying", error)

    def _finish(self, batch: RewardBatch,
                results: Mapping[str, tuple[list[float], dict, bool]]) -> RewardScores:
        size = len(batch)
        weights = self.weights(batch.step)
        per_reward: dict[str, list[float]] = {}
        info: dict[str, float] = {}
        # All terms at once (one row each): a handful of numpy calls per batch, not per term.
        values_of = [results[t.name][0] for t in self.terms]
        table = np.array(values_of, dtype=np.float64).reshape(len(self.terms), size)
        ok = ~np.isnan(table)
        all_ok = size > 0 and bool(ok.all())
        if all_ok:
            means, stds = table.mean(axis=1).tolist(), table.std(axis=1).tolist()
            nan_shares = [0.0] * len(self.terms)
        else:
            means = [float(r[k].mean()) if k.any() else math.nan for r, k in zip(table, ok)]
            stds = [float(r[k].std()) if k.any() else math.nan for r, k in zip(table, ok)]
            nan_shares = (~ok).mean(axis=1).tolist() if size else [0.0] * len(self.terms)
        total = np.zeros(size, dtype=np.float64)
        for row, term in enumerate(self.terms):
            values, extra, failed = results[term.name]
            if failed:
                with self._lock:
                    self.failures[term.name] += 1
            per_reward[term.name] = values
            # As TRL: NaN terms are left out of the weighted sum.
            weighted = table[row] * weights[term.name]
            total += weighted if all_ok else np.where(ok[row], weighted, 0.0)
            info[f"{term.name}/mean"] = means[row]
            info[f"{term.name}/std"] = stds[row]
            info[f"{term.name}/failure_rate"] = 1.0 if failed else 0.0
            info[f"{term.name}/nan_share"] = nan_shares[row]
            info[f"{term.name}/failures"] = float(self.failures[term.name])
            info[f"{term.name}/weight"] = weights[term.name]
            for key, value in extra.items():
                info[f"{term.name}/{key}"] = float(value)
        seen = ok.any(axis=0)
        total_arr = np.where(seen, total, math.nan)
        info["total/mean"] = float(total_arr[seen].mean()) if seen.any() else math.nan
        info["total/std"] = float(total_arr[seen].std()) if seen.any() else math.nan
        total_list = total_arr.tolist()
        scores = RewardScores(total_list, per_reward, info, weights)
        if self.plugins is not None:
            self.plugins.rewards_computed(batch.step, per_reward, total_list, info)
        return scores

    def close(self) -> None:
        """Release the worker threads used for timeouts."""
        self._drop_pool()


def _check_output(name: str, out: Any, size: int) -> tuple[list[float], dict[str, float]]:
    """One float per completion (None -> NaN), or an error naming the reward."""
    info: dict[str, float] = {}
    if isinstance(out, RewardResult):
        info = dict(out.info)
        out = out.values
    if isinstance(out, (str, bytes)) or not hasattr(out, "__len__"):
        raise TypeError(f"reward {name!r} returned {type(out).__name__}, expected a list "
                        "of floats")
    if len(out) != size:
        raise ValueError(f"reward {name!r} returned {len(out)} values for {size} completions")
    try:
        # One conversion for the whole batch; None becomes NaN (not applicable).
        arr = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next((v for v in out if v is not None and not isinstance(v, (int, float))), None)
        raise TypeError(f"reward {name!r} returned {bad!r}; expected a float or None") from None
    if arr.shape != (size,) or any(isinstance(v, str) for v in out[:1]):
        raise TypeError(f"reward {name!r} must return one float (or None) per completion")
    return arr.tolist(), info


def _resolve(out: Any) -> Any:
    """A plain callable may still hand back an awaitable: run it to completion."""
    if not inspect.isawaitable(out):
        return out

    async def wait() -> Any:
        return await out

    return _run_coroutine(wait())


def _run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()

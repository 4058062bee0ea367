"""The preflight: everything a recipe's stages will read, checked before any stage starts.

``erv run`` (through ``run_recipe``) and ``erv validate --paths`` call ``check_paths``:
in the parent process, in seconds, before a model is loaded or a process is launched. It
lists every missing path at once (data roots, split and label files, clip directories,
checkpoints, the DeepSpeed config, a predictions file) and the environment variable of an
API judge, with the place in the recipe that asks for it.

What a stage of the same run produces is not missing: the synthetic clips a training
stage writes at its start, the SFT model GRPO starts from, the verifier the verifier stage
trains (used by GRPO's explanation reward and by the eval judge), the policy eval
generates with. When the stage that produces it is not run this time (``--stage``, or
already done), the product must be on disk.

Relative paths resolve against the working directory, as everywhere in a recipe
(``extends`` and ``launch.deepspeed`` are already resolved against their recipe file).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erv_plugins.errors import ErvError

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import DataSpec, Recipe


class PreflightError(ErvError):
    """Paths (or settings) a recipe's stages need are missing; nothing was started."""


@dataclass
class Missing:
    """One missing thing and every place in the recipe that needs it."""

    subject: str  # the path (or "$NAME" for an environment variable)
    problem: str  # "no such directory", "no config.json in the directory" ...
    wheres: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.subject}: {self.problem} ({'; '.join(self.wheres)})"


@dataclass(frozen=True)
class _Need:
    where: str  # "$.grpo.dataset (mafw split file)"
    path: Path
    kind: str  # "file", "dir", "any", "checkpoint", "verifier"
    stage: str


def _norm(path: Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def _under(path: Path, prefix: Path) -> bool:
    p, q = _norm(path), _norm(prefix)
    return p == q or p.startswith(q.rstrip(os.sep) + os.sep)


def check_paths(recipe: Recipe, plugins: Plugins, *, run_dir: Path | None = None,
                stages: Sequence[str] | None = None) -> list[Missing]:
    """Everything missing for ``stages`` (default: all of the recipe's) to run."""
    run_dir = run_dir if run_dir is not None else recipe.resolved_run_dir()
    running = list(stages) if stages is not None else list(recipe.stages)
    needs: list[_Need] = []
    problems: dict[str, Missing] = {}

    def problem(subject: str, text: str, where: str) -> None:
        entry = problems.setdefault(subject, Missing(subject, text))
        if where not in entry.wheres:
            entry.wheres.append(where)

    items = [item for stage in running
             for item in _stage_needs(recipe, plugins, stage, run_dir, running)]
    # Synthetic clips are written at the start of the stage that declares them.
    produced: list[tuple[int, Path]] = []
    for table in ("sft", "grpo"):
        cfg = getattr(recipe, table, None)
        if cfg is not None and cfg.synthetic is not None and table in running:
            produced.append((recipe.stages.index(table), Path(cfg.synthetic.out)))
    missing_dirs: list[Path] = []
    for item in items:
        if not isinstance(item, _Need):
            problem(*item)
            continue
        need = item
        at = recipe.stages.index(need.stage) if need.stage in recipe.stages else len(running)
        if any(i <= at and _under(need.path, out) for i, out in produced):
            continue
        text = _missing(need)
        if text is None:
            continue
        parent = next((d for d in missing_dirs
                       if _under(need.path, d) and _norm(d) != _norm(need.path)), None)
        if parent is not None:  # its directory is reported missing: name who needs it there
            entry = problems[os.fspath(parent)]
            spec = need.where.split(":")[0]
            if not any(w.split(":")[0] == spec for w in entry.wheres):
                entry.wheres.append(f"{need.where} {os.path.relpath(need.path, parent)}")
            continue
        if text.startswith("no such"):
            missing_dirs.append(need.path)
        problem(os.fspath(need.path), text, need.where)
    # A path below one reported missing later says nothing more.
    return [m for m in problems.values()
            if not any(_under(Path(m.subject), d) and _norm(d) != _norm(Path(m.subject))
                       for d in missing_dirs)]


def _missing(need: _Need) -> str | None:
    """Why ``need`` is not there, or None when it is."""
    p = need.path
    if need.kind == "verifier":
        if p.is_dir():
            return None if (p / "config.json").is_file() else "no config.json in the directory"
        from erv_plugins.hub import is_hub_id, split_ref

        text = os.fspath(p)
        if is_hub_id(text) and _in_hub_cache(*split_ref(text)):
            return None
        return "no such directory (nor a model in the local Hugging Face cache)"
    if need.kind == "checkpoint":
        if p.is_dir():
            return None if (p / "config.json").is_file() else "no config.json in the directory"
        from erv_plugins.hub import is_hub_id, split_ref

        if is_hub_id(os.fspath(p)):  # owner/name[@rev], read from the local cache
            repo, revision = split_ref(os.fspath(p))
            return None if _in_hub_cache(repo, revision) else (
                "no such directory (nor a model in the local Hugging Face cache)")
        return "not a directory" if p.exists() else "no such directory"
    if need.kind == "dir":
        return None if p.is_dir() else ("not a directory" if p.exists() else "no such directory")
    if need.kind == "file":
        return None if p.is_file() else ("not a file" if p.exists() else "no such file")
    return None if p.exists() else "no such file or directory"


def _in_hub_cache(repo: str, revision: str | None = None) -> bool:
    # Look for the repo's folder first: importing huggingface_hub takes a second.
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache",
                                                     "huggingface")
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")
    if not os.path.isdir(os.path.join(cache, f"models--{repo.replace('/', '--')}")):
        return False
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, revision=revision, local_files_only=True,
                          cache_dir=os.environ.get("HF_HUB_CACHE"))
        return True
    except Exception:  # noqa: BLE001 - not cached (or no hub client): missing
        return False


def _dataset_needs(spec: DataSpec, where: str, stage: str, plugins: Plugins,
                   run_dir: Path) -> Iterator[_Need | tuple[str, str, str]]:
    from erv_plugins.datasets import base

    try:
        dataset = base.build_dataset(spec, plugins, run_dir=run_dir)
    except ErvError as exc:
        yield where, str(exc), f"stage {stage}"
        return
    except Exception as exc:  # noqa: BLE001 - a third-party dataset that cannot be built
        yield where, f"dataset {spec.plugin!r} cannot be built: {type(exc).__name__}: {exc}", \
            f"stage {stage}"
        return
    try:
        paths = base.required_paths(dataset, spec)
    except Exception as exc:  # noqa: BLE001
        yield where, f"dataset {spec.plugin!r}: required_paths() failed: {exc}", f"stage {stage}"
        return
    for rp in paths:
        yield _Need(f"{where}: {spec.plugin} {rp.what}", Path(rp.path), rp.kind, stage)


def _product(run_dir: Path, producer: str, consumer: str, what: str, running: Sequence[str],
             recipe: Recipe) -> Iterator[_Need]:
    """A product of stage ``producer`` of this run, needed by ``consumer``: nothing to check
    when the producer runs first this time, else it must be on disk."""
    if producer in running and recipe.stages.index(producer) < recipe.stages.index(consumer):
        return
    yield _Need(f"stage {consumer}: {what} from stage {producer} of this run (run it: "
                f"--stage {producer})", run_dir / producer / "model", "checkpoint", consumer)


def _verifier_path(options: Any) -> str | None:
    path = getattr(options, "path", None)
    if path is None and isinstance(options, dict):
        path = options.get("path")
    return path if isinstance(path, str) and path else None


def _stage_needs(recipe: Recipe, plugins: Plugins, stage: str, run_dir: Path,
                 running: Sequence[str]) -> Iterator[_Need | tuple[str, str, str]]:
    launch = recipe.launch
    if stage in ("sft", "grpo") and launch.num_processes > 1 and launch.deepspeed:
        yield _Need("$.launch.deepspeed", Path(launch.deepspeed), "file", stage)
    if stage == "sft" and recipe.sft is not None:
        yield from _dataset_needs(recipe.sft.dataset, "$.sft.dataset", stage, plugins, run_dir)
        if recipe.model is not None and recipe.model.path:
            yield _Need("$.model.path", Path(recipe.model.path), "checkpoint", stage)
    elif stage == "train_verifier" and recipe.train_verifier is not None:
        cfg = recipe.train_verifier
        if cfg.base != "tiny":  # verifiers.training.TINY_BASE (that module loads numpy)
            yield _Need("$.train_verifier.base", Path(cfg.base), "verifier", stage)
        for i, spec in enumerate(cfg.train):
            yield from _dataset_needs(spec, f"$.train_verifier.train[{i}]", stage, plugins,
                                      run_dir)
        if cfg.eval is not None:
            yield from _dataset_needs(cfg.eval, "$.train_verifier.eval", stage, plugins, run_dir)
    elif stage == "grpo" and recipe.grpo is not None:
        from erv_plugins.recipe import format_path

        for path, spec in recipe.grpo.data_specs():
            yield from _dataset_needs(spec, format_path(path), stage, plugins, run_dir)
        if "sft" in recipe.stages:
            yield from _product(run_dir, "sft", stage, "the SFT model", running, recipe)
        elif recipe.model is not None and recipe.model.path:
            yield _Need("$.model.path", Path(recipe.model.path), "checkpoint", stage)
        # Rewards ask for the verifier on demand (BuildContext.verifier), so the GRPO stage
        # may build the recipe's [verifier] whenever there is one.
        if recipe.verifier is not None:
            if "train_verifier" in recipe.stages:
                yield from _product(run_dir, "train_verifier", stage, "the trained verifier", running,
                                    recipe)
            elif (path := _verifier_path(recipe.verifier.options)) is not None:
                yield _Need("$.verifier.options.path", Path(path), "verifier", stage)
    elif stage == "eval" and recipe.eval is not None:
        yield from _eval_needs(recipe, plugins, run_dir, running)


def _eval_needs(recipe: Recipe, plugins: Plugins, run_dir: Path, running: Sequence[str]
                ) -> Iterator[_Need | tuple[str, str, str]]:
    cfg = recipe.eval
    assert cfg is not None
    if cfg.predictions is not None:
        yield _Need("$.eval.predictions", Path(cfg.predictions), "file", "eval")
    else:
        if cfg.dataset is not None:
            yield from _dataset_needs(cfg.dataset, "$.eval.dataset", "eval", plugins, run_dir)
        for i, spec in enumerate(cfg.datasets):
            yield from _dataset_needs(spec, f"$.eval.datasets[{i}]", "eval", plugins, run_dir)
        trained = [s for s in ("grpo", "sft") if s in recipe.stages]
        if trained:
            yield from _product(run_dir, trained[0], "eval", "the trained policy", running,
                                recipe)
        elif recipe.model is not None and recipe.model.path:
            yield _Need("$.model.path", Path(recipe.model.path), "checkpoint", "eval")
        else:
            yield ("$.eval", "no policy to generate with: set model.path, add an sft or grpo "
                   "stage, or give predictions", "stage eval")
    judge = cfg.judge
    if judge.plugin == "verifier":
        own = getattr(judge.options, "plugin", None)
        if own is not None:
            path = _verifier_path(getattr(judge.options, "options", None))
            if path is not None:
                yield _Need("$.eval.judge.options.options.path", Path(path), "verifier", "eval")
        elif "train_verifier" in recipe.stages and recipe.verifier is not None:
            yield from _product(run_dir, "train_verifier", "eval", "the trained verifier", running,
                                recipe)
        elif recipe.verifier is not None:
            path = _verifier_path(recipe.verifier.options)
            if path is not None:
                yield _Need("$.verifier.options.path", Path(path), "verifier", "eval")
    env = getattr(judge.options, "api_key_env", None)
    if isinstance(env, str) and env and not os.environ.get(env):
        yield (f"${env}", "environment variable not set (the API key; a local server that "
               "needs none: set it to any value, e.g. EMPTY)",
               f"$.eval.judge: judge {judge.plugin!r}")


def require_paths(recipe: Recipe, plugins: Plugins, *, run_dir: Path | None = None,
                  stages: Sequence[str] | None = None) -> None:
    """``check_paths``, raising one ``PreflightError`` that lists everything missing."""
    missing = check_paths(recipe, plugins, run_dir=run_dir, stages=stages)
    if missing:
        n = len(missing)
        lines = "\n".join(f"  {m.line()}" for m in missing)
        raise PreflightError(
            f"{recipe.source or recipe.name}: {n} thing{'s' if n > 1 else ''} the stages need "
            f"{'are' if n > 1 else 'is'} missing; nothing was started:\n{lines}")

"""pytest plugin with fixtures for erv plugin authors (loaded through the pytest11 entry point).

The test doubles live beside the fixtures, in this package and nowhere in the product:
``erv_plugins.testing.rewards`` (the keyword verifier, a tiny random RoBERTa, GRPO-shaped
batches) and ``erv_plugins.testing.judges`` (a scripted OpenAI-compatible HTTP server).
erv's own tests use the same fixtures and doubles.

Installing erv makes these fixtures available to every test suite, with no conftest::

    def test_my_reward(erv_score, erv_samples):
        scores = erv_score("my_reward", erv_samples, options={"strict": True})
        assert scores.per_reward["my_reward"] == [1.0, 0.0, ...]

Fixtures:

``erv_samples``
    Eight completions with their ground truth (``label``, ``dataset``) and the values the
    paper's ``format`` and ``answer`` rewards give them (``SampleCompletion``).
``erv_verifier``
    A tiny deterministic verifier (``erv_plugins.testing.rewards.KeywordVerifier``):
    GoEmotions labels, probability 0.9 for every label whose keyword occurs in the text
    ("tears" -> sadness, "smiling" -> joy, ...), neutral 0.8 when none does, 0.01
    elsewhere, so explanation rewards can be computed by hand. No model, no torch.
``erv_hf_verifier``
    A real tiny Hugging Face RoBERTa verifier saved to a temporary directory (random
    weights; needs torch; built once per session).
``erv_score``
    Runs rewards through the real reward engine: writes a recipe with your reward (and,
    if asked, the paper's), loads it as ``erv run`` does (your options struct decodes the
    options, errors carry the recipe path) and scores a batch. Returns ``RewardScores``.
``erv_grpo``
    Runs a few GRPO steps of a tiny recipe with your plugin's reward switched on (erv's
    text stand-in task and a tiny Qwen2 policy built offline, ``TINY_GRPO_RECIPE``, or a
    recipe file you name; under a minute on CPU); returns the run's step log.
``erv_registry``
    A fresh plugin manager (built-ins plus installed entry points), optionally with
    extra plugin modules: ``erv_registry(my_module)``.
``erv_cli``
    Runs the ``erv`` command in-process: ``erv_cli("plugins", "--json")`` returns its
    exit code and output.

This module is imported by every pytest run in an environment where erv is installed,
so it imports nothing heavy at module level (no torch, no numpy).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins
    from erv_plugins.rewards.engine import RewardScores

__all__ = [
    "CliResult",
    "GRPORun",
    "SampleCompletion",
    "SAMPLE_COMPLETIONS",
    "TINY_GRPO_RECIPE",
    "run_cli",
    "run_grpo",
    "score_rewards",
]


# -- sample completions with ground truth -------------------------------------------------
@dataclass(frozen=True)
class SampleCompletion:
    """A completion, its ground truth and what the paper's format and answer rewards give it."""

    id: str
    completion: str
    label: str
    dataset: str
    format: float  # R_format: think-then-answer, the release's regex (full match)
    answer: float  # R_answer: the answer normalised to the dataset's words equals the label
    note: str = ""

    @property
    def columns(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "dataset": self.dataset}


SAMPLE_COMPLETIONS: tuple[SampleCompletion, ...] = (
    SampleCompletion(
        "tears", "<think>Her voice trembles and tears run down her face. She looks sad."
        "</think>\n<answer>sad</answer>", "sad", "dfew", 1.0, 1.0, "grounded in face and voice"),
    SampleCompletion(
        "laughing", "<think>He is smiling and laughing loudly.</think><answer>happiness</answer>",
        "happy", "dfew", 1.0, 1.0, "DFEW synonym: happiness -> happy"),
    SampleCompletion(
        "frown", "<think>The man frowns.</think> <answer>angry</answer>", "anger", "mafw",
        1.0, 1.0, "MAFW synonym: angry -> anger"),
    SampleCompletion(
        "no-think", "The woman is afraid. <answer>fear</answer>", "fear", "mafw", 0.0, 1.0,
        "no think block: right answer, wrong format"),
    SampleCompletion(
        "wrong", "<think>She stares at the wall without expression.</think>"
        "<answer>neutral</answer>", "sadness", "mafw", 1.0, 0.0, "wrong answer"),
    SampleCompletion(
        "unclosed", "<think>He shouts at the driver.", "anger", "mafw", 0.0, 0.0,
        "unclosed think, no answer"),
    SampleCompletion(
        "empty-think", "<think>\n</think>\n<answer>surprise</answer>", "surprise", "dfew",
        1.0, 1.0, "empty explanation"),
    SampleCompletion(
        "neutral", "<think>Her voice is calm and steady. Nothing in her face shows an emotion."
        "</think><answer>neutral</answer>", "neutral", "mafw", 1.0, 1.0, "neutral ground truth"),
)


def _batch(samples: Sequence[SampleCompletion | str],
           columns: Mapping[str, Sequence[Any]] | None) -> tuple[list[str], dict[str, list[Any]]]:
    completions: list[str] = []
    derived: dict[str, list[Any]] = {"id": [], "label": [], "dataset": []}
    for s in samples:
        if isinstance(s, SampleCompletion):
            completions.append(s.completion)
            for key, value in s.columns.items():
                derived[key].append(value)
        else:
            completions.append(s)
    cols = {k: v for k, v in derived.items() if len(v) == len(completions) and v}
    if any(derived.values()) and not cols:
        raise ValueError("mix of SampleCompletion and plain strings: pass one kind")
    cols.update({k: list(v) for k, v in (columns or {}).items()})
    return completions, cols


# -- running rewards through the real engine ---------------------------------------------------
def _registry(extra: Iterable[object] = ()) -> Plugins:
    from erv_plugins.plugins import Plugins

    return Plugins(extra=extra)


def _reward_shim(factory: Callable[..., Any]) -> object:
    """A plugin object that registers one reward factory (a reward not yet installed)."""
    from erv_plugins.hookspecs import hookimpl

    class _OneReward:
        __name__ = f"erv_plugins.testing:{getattr(factory, 'name', factory)}"

        @hookimpl
        def erv_register_rewards(self, register: Any) -> None:
            register(factory)

    return _OneReward()


def score_rewards(
    reward: str | Callable[..., Any],
    samples: Sequence[SampleCompletion | str] = SAMPLE_COMPLETIONS,
    columns: Mapping[str, Sequence[Any]] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    weight: float = 1.0,
    paper_rewards: bool = False,
    verifier: Any = None,
    plugins: Iterable[object] = (),
    step: int = 0,
    workdir: str | os.PathLike[str],
) -> RewardScores:
    """Score ``samples`` with ``reward`` through a recipe and the real ``RewardEngine``.

    ``reward`` is a registered name, or a reward class not installed yet (it is then
    registered for this call). ``options`` is the reward's recipe ``options`` table;
    ``paper_rewards`` adds the paper's ``format`` and ``answer`` (and ``explanation``
    when a ``verifier`` is given) at weight 1.0, as in eq. 5. ``plugins`` are extra plugin
    modules to load. The recipe is written to ``workdir/recipe.toml``; loading errors are
    the ``RecipeError`` a user would see.
    """
    import tomli_w

    from erv_plugins.recipe import load_recipe
    from erv_plugins.rewards.engine import DEFAULT_COLUMNS, RewardEngine

    extra = list(plugins)
    name = reward if isinstance(reward, str) else getattr(reward, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"{reward!r} is neither a reward name nor a class with a 'name'")
    if not isinstance(reward, str):
        installed = _registry(extra).registries["reward"].get(name)
        if installed is None or installed.factory is not reward:
            extra.append(_reward_shim(reward))
    registry = _registry(extra)
    table: dict[str, Any] = {"plugin": name, "weight": weight}
    if options:
        table["options"] = dict(options)
    rewards: dict[str, Any] = {}
    if paper_rewards:
        rewards["format"] = {"weight": 1.0}
        rewards["answer"] = {"weight": 1.0}
        if verifier is not None:
            rewards["explanation"] = {"weight": 1.0}
    rewards[name] = table
    path = Path(workdir) / "recipe.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps({"name": "erv-testing", "stages": [], "rewards": rewards}))
    recipe = load_recipe(path, registry)
    completions, cols = _batch(samples, columns)
    engine = RewardEngine.from_recipe(recipe, registry, verifier=verifier,
                                      columns=set(cols) | DEFAULT_COLUMNS)
    try:
        return engine.score(completions, cols, step=step)
    finally:
        engine.close()


# -- a few GRPO steps of the tiny recipe -------------------------------------------------------
@dataclass
class GRPORun:
    """What ``erv_grpo`` ran: the run directory and one dict per logged GRPO step."""

    run_dir: Path
    steps: list[dict[str, Any]] = field(default_factory=list)

    def rewards(self, name: str) -> list[float]:
        """The mean of reward ``name`` at each logged step."""
        key = f"rewards/{name}/mean"
        return [float(s[key]) for s in self.steps if key in s]


# The tiny GRPO task: erv's text stand-in for clips (erv_plugins.training.demo: dataset
# "cue-text", a tiny Qwen2 policy "tiny-text" built offline) with the deterministic keyword
# verifier, the paper's three rewards, and G = 4 completions of up to 32 tokens.
TINY_GRPO_RECIPE = """\
name = "erv-testing-grpo"
stages = ["grpo"]

[model]
plugin = "tiny-text"

[verifier]
plugin = "keywords"

[rewards.format]
[rewards.answer]
options = { label_space = "cue-text" }
[rewards.explanation]
options = { tau = 0.5 }

[grpo]
dataset = { plugin = "cue-text", options = { n_per_label = 2 } }
num_generations = 4
batch_size = 4
grad_accum = 1
epochs = 1
max_steps = 2
max_completion_length = 32
save_steps = 1000
"""


def run_grpo(
    reward: str,
    *,
    options: Mapping[str, Any] | None = None,
    weight: float = 1.0,
    steps: int = 2,
    workdir: str | os.PathLike[str],
    plugins: Iterable[object] = (),
    recipe: str | os.PathLike[str] | None = None,
) -> GRPORun:
    """Run ``steps`` GRPO steps of the tiny recipe with ``reward`` added to its rewards.

    The tiny recipe is ``TINY_GRPO_RECIPE`` (built in, needs no checkout of erv), or the
    recipe file ``recipe`` (e.g. an erv clone's ``recipes/tiny_cpu.toml``), extended with
    ``[rewards.<reward>]`` and ``grpo.max_steps = steps``. Returns the run directory and
    the step log (``grpo/metrics.jsonl``).
    """
    import tomli_w

    import erv_plugins.testing.rewards
    import erv_plugins.training.demo
    from erv_plugins.recipe import load_recipe
    from erv_plugins.stages import run_recipe

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    if recipe is None:
        base = work / "tiny_grpo.toml"
        base.write_text(TINY_GRPO_RECIPE)
    else:
        base = Path(recipe).resolve()
    table: dict[str, Any] = {"plugin": reward, "weight": weight}
    if options:
        table["options"] = dict(options)
    recipe_path = work / "with_plugin.toml"
    recipe_path.write_text(tomli_w.dumps({
        "extends": os.path.relpath(base, work),
        "name": "tiny-with-plugin",
        "run_dir": str(work / "run"),
        "rewards": {reward: table},
        "grpo": {"max_steps": steps},
    }))
    registry = _registry([erv_plugins.training.demo, erv_plugins.testing.rewards, *plugins])
    loaded = load_recipe(recipe_path, registry)
    if recipe is None:
        loaded.stages = ["grpo"]
    run_dir = run_recipe(loaded, registry, echo=lambda _msg: None)
    return GRPORun(run_dir, _read_steps(run_dir / "grpo"))


def _read_steps(stage_dir: Path) -> list[dict[str, Any]]:
    import json

    path = stage_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"the GRPO stage wrote no step log {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the erv command line in-process -------------------------------------------------------------
@dataclass(frozen=True)
class CliResult:
    exit_code: int
    output: str  # stdout
    stderr: str


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
    """Run ``erv ARGS`` in this process, as the console script would (errors exit 2)."""
    from erv_plugins.cli import main
    from erv_plugins.plugins import reset_plugins

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    reset_plugins()  # the command sees the plugins installed now (and env), not a stale set
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_plugins()
    return CliResult(code, out.getvalue(), err.getvalue())


# -- fixtures ---------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    # Plugin test suites can mark erv_grpo tests as slow without declaring the marker.
    config.addinivalue_line("markers", "slow: trains or generates with a tiny model (seconds)")


@pytest.fixture
def erv_samples() -> list[SampleCompletion]:
    """Eight completions with ground truth and their expected format and answer rewards."""
    return list(SAMPLE_COMPLETIONS)


@pytest.fixture
def erv_verifier() -> Any:
    """A deterministic keyword verifier over the 28 GoEmotions labels (no model)."""
    from erv_plugins.testing.rewards import KeywordVerifier

    return KeywordVerifier()


@pytest.fixture(scope="session")
def erv_hf_verifier(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny random-weight Hugging Face RoBERTa verifier (GoEmotions labels) on CPU."""
    pytest.importorskip("torch")
    from erv_plugins.verifiers.hf import HFVerifier
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    return HFVerifier(build_tiny_verifier(tmp_path_factory.mktemp("erv-tiny-verifier")))


@pytest.fixture
def erv_score(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., RewardScores]:
    """``erv_score(reward, samples=SAMPLE_COMPLETIONS, columns=None, *, options=None,
    weight=1.0, paper_rewards=False, verifier=None, plugins=(), step=0)``: see
    ``score_rewards``."""

    def score(reward: str | Callable[..., Any], *args: Any, **kwargs: Any) -> RewardScores:
        return score_rewards(reward, *args, workdir=tmp_path_factory.mktemp("erv-score"), **kwargs)

    return score


@pytest.fixture
def erv_grpo(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., GRPORun]:
    """``erv_grpo(reward, *, options=None, weight=1.0, steps=2, plugins=(), recipe=None)``:
    a few GRPO steps of the tiny recipe with ``reward`` switched on; see ``run_grpo``."""
    pytest.importorskip("torch")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    def grpo(reward: str, **kwargs: Any) -> GRPORun:
        return run_grpo(reward, workdir=tmp_path_factory.mktemp("erv-grpo"), **kwargs)

    return grpo


@pytest.fixture
def erv_registry() -> Callable[..., Plugins]:
    """``erv_registry(*modules)``: a fresh plugin manager with built-ins, installed entry
    points and ``modules`` (plugins not installed yet)."""
    return lambda *modules: _registry(modules)


@pytest.fixture
def erv_cli() -> Callable[..., CliResult]:
    """``erv_cli(*args, env=None)``: run the ``erv`` command in-process."""
    return run_cli

"""One way in for every component: ``factory(options, context=BuildContext(...))``; the
FIFO index shared by the verifier cache and the judge's in-memory replies."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from erv_plugins.context import BuildContext
from erv_plugins.datasets.base import build_dataset
from erv_plugins.errors import RecipeError
from erv_plugins.fifo import FifoSlots
from erv_plugins.hookspecs import hookimpl
from erv_plugins.judges.cache import ReplyCache
from erv_plugins.plugins import Plugins
from erv_plugins.recipe import DataSpec, load_recipe
from erv_plugins.rewards.base import RewardBatch
from erv_plugins.rewards.engine import RewardEngine
from erv_plugins.testing import rewards as reward_testing
from erv_plugins.testing.rewards import KeywordVerifier

GOOD = "<think>She smiles. The room is bright.</think><answer>happy</answer>"


class _Seen(msgspec.Struct):
    word: str = "x"


class ContextReward:
    """Records the context it was built with; scores how often the verifier was built."""

    name: ClassVar[str] = "seen"
    Options: ClassVar[type[msgspec.Struct]] = _Seen
    requires: ClassVar[frozenset[str]] = frozenset({"label"})
    contexts: ClassVar[list[BuildContext]] = []

    def __init__(self, options: _Seen, *, context: BuildContext) -> None:
        self.verifier = context.verifier()
        ContextReward.contexts.append(context)

    def __call__(self, batch: RewardBatch) -> list[float]:
        return [1.0] * len(batch)


class OldReward:
    """A reward written to the convention before BuildContext."""

    name: ClassVar[str] = "old"
    Options = None
    requires: ClassVar[frozenset[str]] = frozenset({"label", "verifier", "label_space"})

    def __init__(self, *, verifier: Any, label_spaces: Any) -> None:
        self.verifier, self.spaces = verifier, label_spaces

    def __call__(self, batch: RewardBatch) -> list[float]:
        return [float(len(self.verifier.labels))] * len(batch)


class OldDataset:
    """A dataset written to the convention before BuildContext (root=, split=)."""

    name: ClassVar[str] = "old-data"
    label_space = None

    def __init__(self, options: None = None, *, root: str | None = None,
                 split: str = "train") -> None:
        self.where = (root, split)

    def samples(self) -> list[Any]:
        return []


class NewDataset:
    name: ClassVar[str] = "new-data"
    label_space = None

    def __init__(self, options: None = None, *, context: BuildContext) -> None:
        self.context = context

    def samples(self) -> list[Any]:
        return []


class _Plugin:
    @hookimpl
    def erv_register_rewards(self, register: Any) -> None:
        register(ContextReward)
        register(OldReward)

    @hookimpl
    def erv_register_datasets(self, register: Any) -> None:
        register(OldDataset, options=None)
        register(NewDataset, options=None)


@pytest.fixture
def plugins() -> Plugins:
    ContextReward.contexts.clear()
    return Plugins(entry_points=False, extra=[_Plugin(), reward_testing])


def _recipe(tmp_path: Path, text: str, plugins: Plugins) -> Any:
    path = tmp_path / "recipe.toml"
    path.write_text('name = "t"\nstages = []\n' + text)
    return load_recipe(path, plugins)


def test_every_reward_gets_one_context_and_one_verifier(tmp_path: Path, plugins: Plugins) -> None:
    recipe = _recipe(tmp_path, '[verifier]\nplugin = "keywords"\n[rewards.seen]\n'
                     '[rewards.again]\nplugin = "seen"\n[rewards.explanation]\n', plugins)
    engine = RewardEngine.from_recipe(recipe, plugins)
    first, second = ContextReward.contexts
    assert first.recipe is recipe and first.plugins is plugins
    assert first.spec is recipe.rewards["seen"] and second.spec is recipe.rewards["again"]
    # Built once, on demand, for all three rewards.
    assert engine.reward("seen").verifier is engine.reward("again").verifier
    assert engine.reward("explanation").verifier is engine.reward("seen").verifier
    assert first.label_space("MAFW").name == "mafw"


def test_a_reward_asking_for_a_missing_verifier_fails_at_load(tmp_path: Path,
                                                            plugins: Plugins) -> None:
    recipe = _recipe(tmp_path, "[rewards.seen]\n", plugins)
    with pytest.raises(RecipeError, match=r"recipe\.toml: \$\.rewards\.seen: reward 'seen' "
                                          r"needs a verifier; add a \[verifier\] table"):
        RewardEngine.from_recipe(recipe, plugins)


def test_a_reward_of_the_old_convention_still_works_with_a_warning(
        tmp_path: Path, plugins: Plugins) -> None:
    recipe = _recipe(tmp_path, '[verifier]\nplugin = "keywords"\n[rewards.old]\n', plugins)
    with pytest.warns(DeprecationWarning, match=r"plugin '<test_build_context\._Plugin "
                      r"object .*reward 'old' is written to the calling convention before"):
        engine = RewardEngine.from_recipe(recipe, plugins)
    assert engine.score([GOOD], {"label": ["happiness"]}).total == [28.0]  # GoEmotions
    assert "mafw" in engine.reward("old").spaces


def test_datasets_read_their_table_from_the_context(tmp_path: Path, plugins: Plugins) -> None:
    spec = DataSpec(plugin="new-data", root="data/x", split="test")
    new = build_dataset(spec, plugins, run_dir=tmp_path)
    assert new.context.spec is spec and new.context.run_dir == tmp_path
    with pytest.warns(DeprecationWarning, match=r"dataset 'old-data' .*\(read the recipe "
                                                r"table from `context\.spec`\)"):
        old = build_dataset(DataSpec(plugin="old-data", root="data/x", split="test"), plugins)
    assert old.where == ("data/x", "test")


def test_a_factory_that_takes_only_options_is_built_without_a_context(
        plugins: Plugins) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verifier = plugins.get("verifier", "keywords").build()
        fmt = plugins.get("reward", "format").build()
    assert isinstance(verifier, KeywordVerifier) and fmt.name == "format"


def test_fifo_slots_reuse_the_oldest_slot() -> None:
    fifo: FifoSlots[str] = FifoSlots(3)
    assert fifo.add(["a", "b"]) == [0, 1]
    assert fifo.add(["c", "d"]) == [2, 0]  # "a" leaves, "d" takes its slot
    assert list(fifo) == ["b", "c", "d"] and fifo.lookup(["a", "d"]) == [None, 0]
    assert fifo.add(["e", "f", "g", "h"]) == [1, 2, 0]  # only the last 3 fit
    assert dict(fifo.items()) == {"f": 1, "g": 2, "h": 0} and len(fifo) == 3
    assert FifoSlots(0).add(["a"]) == []


def test_reply_cache_keeps_recent_replies_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "judge-cache.sqlite"
    cache = ReplyCache(path, memory_size=2)
    for key in ("k1", "k2", "k3"):
        cache.put(key, f"reply {key}")
    # On disk as before: one table (key, reply).
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT key, reply FROM replies ORDER BY key").fetchall() == [
            ("k1", "reply k1"), ("k2", "reply k2"), ("k3", "reply k3")]
        db.execute("DELETE FROM replies")
    # k2 and k3 are still held in memory; k1 was the oldest and is forgotten.
    assert [cache.get(k) for k in ("k1", "k2", "k3")] == [None, "reply k2", "reply k3"]
    assert len(cache) == 0
    cache.close()

"""``[logging] report_to``: a tiny GRPO run reports to TensorBoard (read back offline from
its event files) and to W&B in offline mode; the recipe refuses unknown or missing trackers."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from erv_plugins.testing import TINY_GRPO_RECIPE, run_grpo

REWARDS = ("format", "answer", "explanation")


def _tiny_with(tmp_path: Path, logging: str) -> Path:
    base = tmp_path / "tiny_logged.toml"
    base.write_text(TINY_GRPO_RECIPE + "\n[logging]\n" + logging + "\n")
    return base


def _events(directory: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(directory.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {directory}"
    acc = EventAccumulator(str(files[0].parent), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_holds_every_reward_curve_and_the_completion_table(tmp_path: Path) -> None:
    run = run_grpo("format", workdir=tmp_path, steps=2,
                   recipe=_tiny_with(tmp_path, 'report_to = ["tensorboard"]'))
    acc = _events(run.run_dir / "grpo" / "tensorboard")
    scalars = set(acc.Tags()["scalars"])
    for name in REWARDS:  # each reward's curve, one point per step
        for stat in ("mean", "std"):
            assert [e.step for e in acc.Scalars(f"train/rewards/{name}/{stat}")] == [1, 2]
    # R_E's sentence statistics from the reward engine.
    assert {"train/erv/explanation/sentences_per_explanation",
            "train/erv/explanation/neutral_share"} <= scalars
    table = acc.Tensors("completions/text_summary")
    assert [e.step for e in table] == [1, 2]
    text = table[-1].tensor_proto.string_val[0].decode()
    header = text.splitlines()[0]
    assert header == ("| id | completion | format | answer | explanation | advantage "
                      "| explanation_label_sets |")
    assert len(text.split("\n")) == 2 + 4  # header, rule, G = 4 completions of one prompt


def test_wandb_offline_writes_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = run_grpo("format", workdir=tmp_path, steps=1,
                   recipe=_tiny_with(tmp_path, 'report_to = ["wandb"]'))
    runs = list((run.run_dir / "grpo" / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb"))  # the run's records, for `wandb sync`


def test_trackers_are_transformers_and_a_missing_package_is_a_recipe_error(
        tmp_path: Path, erv_registry) -> None:
    import erv_plugins.testing.rewards
    import erv_plugins.training.demo
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from erv_plugins.errors import ErvError
    from erv_plugins.recipe import TRACKER_PACKAGES, Tracker, load_recipe

    assert set(typing.get_args(Tracker)) == set(INTEGRATION_TO_CALLBACK) == set(TRACKER_PACKAGES)
    registry = erv_registry(erv_plugins.training.demo, erv_plugins.testing.rewards)
    path = _tiny_with(tmp_path, 'report_to = ["tensorboard", "neptune"]')
    with pytest.raises(ErvError, match=r"\$\.logging\.report_to\[1\]: 'neptune' needs the "
                                       r"'neptune' package, which is not installed"):
        load_recipe(path, registry)
    path = _tiny_with(tmp_path, 'report_to = ["tensorbored"]')
    with pytest.raises(ErvError, match=r"\$\.logging\.report_to\[0\]"):
        load_recipe(path, registry)

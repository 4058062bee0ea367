"""``[launch] num_machines / machine_rank / main_process_ip / main_process_port``.

Two "machines" are two ``erv run`` launches on 127.0.0.1, one process each, joined over gloo
(CPU) by accelerate's multi-node launch; both ranks must train the same GRPO steps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_training import DRIVER, write_recipe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_machine_recipe(tmp_path: Path, port: int) -> Path:
    from erv_plugins.training.demo import TinyTextOptions, tiny_text_model

    policy = tiny_text_model(TinyTextOptions(), out_dir=tmp_path / "policy")
    recipe = write_recipe(tmp_path, procs=2, batch=4, steps=3, stages='["grpo"]')
    text = recipe.read_text().replace('plugin = "tiny-text"',
                                      f'plugin = "tiny-text"\npath = "{policy}"')
    text = text.replace("num_processes = 2", "num_processes = 2\nnum_machines = 2\n"
                        f'main_process_ip = "127.0.0.1"\nmain_process_port = {port}')
    recipe.write_text(text)
    return recipe


def test_launch_command_names_the_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    import erv_plugins.testing.rewards
    import erv_plugins.training.demo
    from erv_plugins.errors import ErvError
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import load_recipe
    from erv_plugins.training.launching import launch_command

    plugins = Plugins(extra=[erv_plugins.training.demo, erv_plugins.testing.rewards])
    recipe = load_recipe(_two_machine_recipe(tmp_path, 29611), plugins)
    monkeypatch.setenv("ERV_MACHINE_RANK", "1")
    cmd = launch_command(recipe, tmp_path / "run", "grpo")
    assert cmd[3:17] == ["--num_processes", "2", "--num_machines", "2", "--mixed_precision",
                         "no", "--dynamo_backend", "no", "--machine_rank", "1",
                         "--main_process_ip", "127.0.0.1", "--main_process_port", "29611"]
    monkeypatch.setenv("ERV_MACHINE_RANK", "2")
    with pytest.raises(ErvError, match=r"ERV_MACHINE_RANK='2': must be a machine rank from 0 "
                                       r"to 1 \(\$\.launch\.num_machines in "):
        launch_command(recipe, tmp_path / "run", "grpo")


@pytest.mark.parametrize(("launch", "where", "message"), [
    ({"num_machines": 2, "machine_rank": 2, "main_process_ip": "h"}, "machine_rank",
     "must be below num_machines = 2, got 2"),
    ({"num_machines": 2, "num_processes": 3, "main_process_ip": "h"}, "num_processes",
     "3 processes in all do not split evenly over num_machines = 2"),
    ({"num_machines": 2, "num_processes": 2}, "main_process_ip",
     "is needed with num_machines > 1: the address of machine_rank 0"),
    ({"main_process_port": 70000}, "main_process_port", "must be <= 65535, got 70000"),
])
def test_machine_settings_are_checked(tmp_path: Path, launch: dict, where: str,
                                      message: str) -> None:
    import tomli_w

    from erv_plugins.errors import ErvError
    from erv_plugins.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text(tomli_w.dumps({"name": "m", "stages": ["grpo"], "launch": launch,
                                   "grpo": {"dataset": {"plugin": "mafw"}}}))
    with pytest.raises(ErvError, match=rf"\$\.launch\.{where}: {message}"):
        load_recipe(path)


def test_two_machines_on_127_0_0_1_train_the_same_steps_over_gloo(tmp_path: Path) -> None:
    recipe = _two_machine_recipe(tmp_path, _free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    machines = [subprocess.Popen([sys.executable, "-c", DRIVER, str(recipe),
                                  str(tmp_path / f"run{rank}")],
                                 env={**env, "ERV_MACHINE_RANK": str(rank)}, cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for rank in (0, 1)]
    outs = [m.communicate(timeout=600)[0] for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    first = json.loads((tmp_path / "run0" / "grpo" / "launch_summary.json").read_text())
    second = json.loads((tmp_path / "run1" / "grpo" / "launch_summary.machine1.json")
                        .read_text())
    assert (first["world_size"], first["process_index"], first["global_step"]) == (2, 0, 3)
    assert (second["world_size"], second["process_index"], second["global_step"]) == (2, 1, 3)
    assert first["steps"] == 3  # rank 0 logged every step

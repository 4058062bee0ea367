"""The default demo, `erv run recipes/tiny_cpu.toml`, end to end on CPU: synthetic clips, a
tiny omni policy, SFT -> train_verifier -> GRPO -> eval -> compare (the answer-only baseline
from the same SFT model, then both evaluations side by side), and GRPO raises the total
reward. The size of the effect is measured over seeds by benchmarks/demo_effect.py, not
asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from erv_plugins.training.runlog import MetricsLog, fifth_means

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny_cpu.toml"


@pytest.mark.slow
def test_tiny_cpu_recipe_runs_every_stage_and_grpo_learns(tmp_path):
    erv = Path(sys.executable).with_name("erv")
    start = time.perf_counter()
    out = subprocess.run([str(erv), "run", str(RECIPE)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "runs" / "tiny_cpu"
    assert "erv: run directory runs/tiny_cpu" in out.stdout
    for stage in ("sft", "train_verifier", "grpo", "eval", "compare"):
        assert (run / stage / ".done").is_file(), stage
    for stage in ("grpo", "eval"):
        assert (run / "baseline" / stage / ".done").is_file(), stage
    assert (tmp_path / "data" / "tiny_cpu" / "manifest.jsonl").is_file()  # written on demand

    for grpo_dir in (run / "grpo", run / "baseline" / "grpo"):
        rows = MetricsLog(grpo_dir / "metrics.jsonl").read()
        assert [r["step"] for r in rows] == list(range(1, 121))
        first, last = fifth_means([r["reward"] for r in rows])
        assert last > first, (grpo_dir, first, last)
    grpo = json.loads((run / "grpo" / ".done").read_text())
    assert grpo["reward_last_fifth"] > grpo["reward_first_fifth"]
    for name in ("total", "format", "answer", "explanation"):
        assert (run / "grpo" / f"reward_{name}.png").is_file()
    report = (run / "grpo" / "report.md").read_text()
    assert report.startswith("# GRPO: tiny_cpu") and "| total |" in report
    table = (run / "compare" / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:5]] == [
        "| R1-Omni (R_format + R_answer)", "| ERV (R_E + R_format + R_answer)",
        "| ours - baseline (paired)"]
    assert (run / "compare" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The acceptance budget is 10 minutes on 2 CPU cores, both runs and the comparison.
    assert seconds < 600, seconds

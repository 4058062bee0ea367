"""Generation mode of ``erv eval``: a tiny omni policy writes completions for synthetic MAFW
test clips, then the local judge scores them. Sampling settings come from the paper."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from erv_plugins.cli import build_cli
from erv_plugins.judges.testing import ScriptedChatServer

pytestmark = pytest.mark.slow


def test_generate_then_judge_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from erv_plugins.datasets.synthetic import write_synthetic
    from erv_plugins.models.omni import build_tiny_omni

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", "k")
    monkeypatch.setenv("ERV_CACHE_DIR", str(tmp_path / "cache"))
    data = write_synthetic(tmp_path / "data", n_per_label=2,
                           labels=("anger", "happiness", "sadness"), layouts=("mafw",))
    policy = build_tiny_omni(tmp_path / "policy")
    out = tmp_path / "out"
    with ScriptedChatServer() as server:
        args = ["eval", "--policy", str(policy), "--dataset", "mafw",
                "--dataset-root", str(data.root / "mafw"), "--split", "test",
                "--max-new-tokens", "6", "--batch-size", "2", "--device", "cpu",
                "--base-url", server.base_url, "--model", "m", "--api-key-env",
                "ERV_TEST_JUDGE_KEY", "--out", str(out), "--bootstrap", "0", "--no-progress"]
        result = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        test_clips = sorted((c.id, c.label) for c in data.clips if c.split == "test")
        assert sorted((p["id"], p["label"]) for p in preds) == test_clips
        assert all(isinstance(p["completion"], str) for p in preds)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["judged"] == 3 and metrics["samples"] == 3
        assert server.attempts() == 3
        before = (out / "predictions.jsonl").stat().st_mtime_ns
        again = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
        assert again.exit_code == 0, again.output
        assert (out / "predictions.jsonl").stat().st_mtime_ns == before  # nothing regenerated
        assert server.attempts() == 3  # nothing asked again
    assert os.path.getsize(out / "confusion.png") > 0

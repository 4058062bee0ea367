"""``erv eval`` on tests/data/predictions_mafw.jsonl with a local OpenAI-compatible judge.

The scripted server answers with the first MAFW word of each explanation, so the expected
judge labels, and every metric, are known by hand (see the comments per sample below).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from erv_plugins.cli import build_cli
from erv_plugins.testing.judges import Reply, ScriptedChatServer

DATA = Path(__file__).parent / "data" / "predictions_mafw.jsonl"
KEY = "sk-cli-test-SECRET-0042"
# Sample 17's explanation names no emotion; the judge replies a word outside the list.
SCRIPTS = {"The eyes widen suddenly.": [Reply("astonished")]}

# 20 samples, erv protocol (tests/test_eval_protocols.py has the release's). p = g on all but 5, 7, 10 (calm: outside), 15 (no <answer>: outside), 17.
# j = g on 1 2 4 6 8 11 12 13 15 16 18 20; p = j on 1 2 4 5 6 7 8 11 12 13 16 18 20.
EXPECTED = {"n": 20, "EEA": 60.0, "FCR": 55.0, "EPC": 65.0, "WAR": 75.0,
            "UAR": 78.3333, "FCR/WAR": 73.3333}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", KEY)
    monkeypatch.setenv("ERV_CACHE_DIR", str(tmp_path / "cache"))
    with ScriptedChatServer(SCRIPTS) as s:
        yield s


def run_eval(server: ScriptedChatServer, out: Path, *extra: str):
    args = ["eval", "--predictions", str(DATA), "--dataset", "mafw", "--judge", "openai",
            "--base-url", server.base_url, "--model", "local-judge", "--out", str(out),
            "--api-key-env", "ERV_TEST_JUDGE_KEY", "--bootstrap", "200", "--no-progress",
            "--judge-option", "timeout_s=5", "--protocol", "erv", *extra]
    return CliRunner().invoke(build_cli(), args, catch_exceptions=False)


def test_erv_eval_prints_table_1_and_writes_json_jsonl_png(server: ScriptedChatServer,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "r1omni"
    result = run_eval(server, out, "--name", "R1-Omni", "--paper")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ("| Method | MAFW EEA | MAFW FCR | MAFW EPC | MAFW WAR | MAFW UAR | "
                        "DFEW EEA | DFEW FCR | DFEW EPC | DFEW WAR | DFEW UAR |")
    assert "| R1-Omni | 60.00 | 55.00 | 65.00 | 75.00 | 78.33 | - | - | - | - | - |" in lines
    assert ("| ERV 0.5B (paper) | 48.93 | 43.57 | 68.58 | 57.49 | 39.12 | 45.82 | 40.21 | "
            "58.63 | 67.28 | 56.25 |") in lines
    assert any(line.startswith("| anger | 3 | 66.67 | 66.67 | 66.67 | 100.00 | 66.67 |")
               for line in lines)
    assert ("protocol erv: judged 20 of 20 samples (N = 20); judge replies outside the label "
            "list (counted as neutral): 1; answers outside the label list: 2") in result.output
    # Beside the paper's rows, a run of another protocol is flagged (on stderr).
    assert result.stderr.startswith(
        "erv eval --paper: R1-Omni on MAFW was evaluated with the 'erv' protocol; the "
        "paper's rows come from the authors' scripts (--protocol release)")

    metrics = json.loads((out / "metrics.json").read_text())
    assert {k: metrics[k] for k in EXPECTED} == pytest.approx(EXPECTED, abs=1e-4)
    assert (metrics["judged"], metrics["failed"], metrics["judge_out_of_list"],
            metrics["answer_out_of_list"]) == (20, 0, 1, 2)
    assert metrics["per_class"]["anxiety"]["n"] == 0
    assert metrics["ci"]["EEA"][0] <= 60.0 <= metrics["ci"]["EEA"][1]
    rows = [json.loads(line) for line in (out / "judgements.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == [f"mafw_{i:04d}" for i in range(1, 21)]
    odd = next(r for r in rows if r["id"] == "mafw_0017")
    assert (odd["judge_label"], odd["judge_reply"], odd["judge_in_list"]) == \
        ("neutral", "astonished", False)
    table = json.loads((out / "table.json").read_text())
    assert table["rows"][0]["method"] == "R1-Omni"
    assert table["rows"][0]["MAFW"]["FCR"] == 55.0
    assert (out / "table.md").read_text().startswith("| Method | MAFW EEA")
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert server.attempts() == 20
    # The key reached the server but no file and no output.
    assert KEY not in result.output
    for path in [*out.iterdir(), *(tmp_path / "cache").iterdir()]:
        assert KEY.encode() not in path.read_bytes(), path


def test_rerun_asks_nothing_and_compare_puts_runs_side_by_side(server: ScriptedChatServer,
                                                                tmp_path: Path) -> None:
    first = run_eval(server, tmp_path / "a", "--name", "A")
    assert first.exit_code == 0 and server.attempts() == 20
    # Same out dir: resumed from judgements.jsonl. New out dir: answered from the cache.
    again = run_eval(server, tmp_path / "a", "--name", "A")
    other = run_eval(server, tmp_path / "b", "--name", "B")
    assert again.exit_code == 0 and other.exit_code == 0
    assert server.attempts() == 20
    assert "cache_hits 20" in other.output and "requests 0" in other.output
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert {k: a[k] for k in EXPECTED} == {k: b[k] for k in EXPECTED}
    both = CliRunner().invoke(build_cli(), ["eval", "--compare", str(tmp_path / "a"),
                                            "--compare", str(tmp_path / "b")])
    assert both.exit_code == 0, both.output
    interval = ("on mafw: EEA 60.00 [40.00, 80.00], FCR 55.00 [34.88, 75.12], EPC 65.00 "
                "[40.00, 85.00], WAR 75.00 [55.00, 95.00], UAR 78.33 [56.66, 96.31], FCR/WAR "
                "73.33 [49.90, 91.68] (95% bootstrap intervals)")
    assert both.output.splitlines()[2:] == [
        "| A | 60.00 | 55.00 | 65.00 | 75.00 | 78.33 |",
        "| B | 60.00 | 55.00 | 65.00 | 75.00 | 78.33 |",
        # each run's bootstrap intervals under the table
        f"A {interval}", f"B {interval}"]


def test_bad_predictions_line_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", KEY)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "completion": "x", "label": "anger"}\n{"id": "b", "label": 1}\n')
    result = CliRunner().invoke(build_cli(), [
        "eval", "--predictions", str(bad), "--dataset", "mafw", "--out", str(tmp_path / "o"),
        "--api-key-env", "ERV_TEST_JUDGE_KEY", "--judge-option", "use_cache=false"])
    assert result.exit_code != 0
    assert str(result.exception) == f"{bad}:2: missing field 'completion' (each line needs " \
        "id, completion, label)"

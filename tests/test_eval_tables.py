"""Table 1 layout: methods as rows, EEA FCR EPC WAR UAR under each dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erv_plugins.errors import ErvError
from erv_plugins.evaluation.tables import (
    PAPER_TABLE1,
    RunEntry,
    load_run,
    per_class_markdown,
    summary_line,
    table1_json,
    table1_markdown,
)
from erv_plugins.judges.chat import _without_credentials

M1 = {"EEA": 50.0, "FCR": 40.0, "EPC": 60.0, "WAR": 70.0, "UAR": 55.5, "FCR/WAR": 57.1429,
      "n": 10, "ci": {"EEA": [40.0, 60.0], "FCR": None, "EPC": None, "WAR": None,
                      "UAR": None, "FCR/WAR": None}, "ci_level": 0.95}


def test_one_method_on_two_datasets_shares_a_row_and_mafw_comes_first() -> None:
    entries = [RunEntry("ours", "dfew", {**M1, "EEA": 45.0}), RunEntry("ours", "mafw", M1),
               RunEntry("base", "mafw", M1)]
    assert table1_markdown(entries).splitlines()[2:] == [
        "| ours | 50.00 | 40.00 | 60.00 | 70.00 | 55.50 | 45.00 | 40.00 | 60.00 | 70.00 | 55.50 |",
        "| base | 50.00 | 40.00 | 60.00 | 70.00 | 55.50 | - | - | - | - | - |"]
    data = table1_json(entries)
    assert data["datasets"] == ["MAFW", "DFEW"] and data["metrics"] == [
        "EEA", "FCR", "EPC", "WAR", "UAR"]
    assert data["rows"][0]["MAFW"]["FCR/WAR"] == 57.1429
    assert data["rows"][0]["MAFW"]["ci"]["EEA"] == [40.0, 60.0]
    assert "DFEW" not in data["rows"][1]


def test_paper_rows_reproduce_table_1() -> None:
    ours = {e.dataset: e.metrics for e in PAPER_TABLE1 if e.name.startswith("ERV")}
    assert round(100 * ours["mafw"]["FCR"] / ours["mafw"]["WAR"], 1) == 75.8


def test_summary_and_per_class_lines() -> None:
    assert summary_line(M1).startswith("EEA 50.00 [40.00, 60.00], FCR 40.00, EPC 60.00")
    assert summary_line(M1).endswith("(95% bootstrap intervals)")
    pc = {"per_class": {"sad": {"n": 2, "EEA": 50.0, "FCR": 50.0, "EPC": 100.0, "WAR": 50.0,
                                "UAR": 50.0, "FCR/WAR": 100.0}}}
    assert per_class_markdown(pc).splitlines()[2] == "| sad | 2 | 50.00 | 50.00 | 100.00 | " \
        "50.00 | 100.00 |"


def test_load_run_names_bad_files(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({**M1, "dataset": "mafw", "run": "x"}))
    assert load_run(tmp_path) == RunEntry("x", "mafw", {**M1, "dataset": "mafw", "run": "x"})
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(ErvError, match=r"metrics.json: not JSON"):
        load_run(tmp_path)
    with pytest.raises(ErvError, match=r"cannot read metrics"):
        load_run(tmp_path / "nope.json")


def test_recorded_base_url_has_no_credentials() -> None:
    assert _without_credentials("http://me:secret@host:8000/v1") == "http://host:8000/v1"
    assert _without_credentials(None) == "https://api.openai.com/v1"

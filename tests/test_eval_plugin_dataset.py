"""``erv eval`` scores the predictions of a third-party dataset in that dataset's own
label space (``Plugins.label_space``), judged by a local OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import erv_plugins.plugins as plugins_mod
from erv_plugins.cli import build_cli
from erv_plugins.errors import ErvError
from erv_plugins.testing.judges import ScriptedChatServer
from erv_plugins.plugins import Plugins

# (gold g, answer p, explanation): the server's judge label j is the first label word of
# the explanation. j = g on 1 4 5; p = g on 1 3 4 5; p = j on 1 2 4 5.
ROWS = [("sunny", "sunny", "A sunny mood."),
        ("sunny", "stormy", "A stormy look."),
        ("stormy", "stormy", "It feels sunny."),
        ("stormy", "stormy", "Stormy eyes."),
        ("stormy", "stormy", "A stormy voice.")]
# EEA 3/5, FCR 3/5, EPC 4/5, WAR 4/5; UAR = mean(1/2 sunny, 3/3 stormy); FCR/WAR = 60/80.
EXPECTED = {"n": 5, "EEA": 60.0, "FCR": 60.0, "EPC": 80.0, "WAR": 80.0, "UAR": 75.0,
            "FCR/WAR": 75.0}


@pytest.fixture
def weather_plugins() -> Plugins:
    import weather_plugin

    plugins = Plugins(extra=[weather_plugin])
    plugins_mod._plugins = plugins
    return plugins


def test_label_space_of_a_dataset_plugin(weather_plugins):
    import weather_plugin

    assert weather_plugins.label_space("weather") is weather_plugin.WEATHER
    assert weather_plugins.label_space("MAFW").name == "mafw"
    with pytest.raises(ErvError, match=r"^unknown label space 'rain'; known: .*\bweather\b"):
        weather_plugins.label_space("rain")


def test_erv_eval_scores_a_third_party_dataset(weather_plugins, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ERV_TEST_JUDGE_KEY", "sk-test")
    monkeypatch.setenv("ERV_CACHE_DIR", str(tmp_path / "cache"))
    predictions = tmp_path / "weather.jsonl"
    predictions.write_text("".join(
        json.dumps({"id": f"w{i}", "label": g,
                    "completion": f"<think>{why}</think>\n<answer>{p}</answer>"}) + "\n"
        for i, (g, p, why) in enumerate(ROWS, 1)))
    out = tmp_path / "out"
    with ScriptedChatServer() as server:
        result = CliRunner().invoke(build_cli(), [
            "eval", "--predictions", str(predictions), "--dataset", "weather",
            "--judge", "openai", "--base-url", server.base_url, "--model", "local-judge",
            "--api-key-env", "ERV_TEST_JUDGE_KEY", "--out", str(out), "--bootstrap", "0",
            "--no-progress", "--protocol", "erv"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "weather"
    assert {k: metrics[k] for k in EXPECTED} == pytest.approx(EXPECTED, abs=1e-4)
    assert (metrics["judged"], metrics["failed"]) == (5, 0)

"""``erv reward``: the sample file in tests/data, scored and explained by hand."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from erv_plugins.cli import main
from erv_plugins.errors import PluginError
from erv_plugins.plugins import get_plugins
from erv_plugins.testing import rewards as reward_testing

DATA = Path(__file__).parent / "data"
SAMPLES = str(DATA / "reward_samples.jsonl")
RECIPE = str(DATA / "reward_keywords.toml")


def erv(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    plugins = get_plugins()
    if "keywords" not in plugins.names("verifier"):
        plugins.add(reward_testing, "keywords")  # the deterministic "keywords" verifier
    with pytest.raises(SystemExit) as exit_info:
        main(["reward", *args])
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_explain_prints_the_per_sentence_arithmetic(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = erv(capsys, SAMPLES, "--recipe", RECIPE, "--explain")
    assert code == 0
    first = out.split("line 2:")[0].splitlines()
    assert first == [
        "line 1: total 2.500  format 1.000  answer 1.000  explanation 0.500",
        "  R = 1 x format 1.000 + 1 x answer 1.000 + 1 x explanation 0.500 = 2.500",
        "  ground truth: happiness (mafw) -> verifier label joy",
        "  explanation: 3 sentence(s)",
        '    1. [counted] {joy 0.90}  "She smiles at her friend."',
        '    2. [neutral] {neutral 0.80}  "The room is bright."',
        '    3. [-] {sadness 0.90}  "Then she cries!"',
        "  R_E = c / (N - N_neu) = 1 / (3 - 1) = 0.500",
    ]
    # Neutral ground truth: c / N; quotes keep a sentence whole; all-neutral: denominator 0.
    assert "  R_E = c / N = 2 / 3 = 0.667" in out
    assert '    1. [counted] {sadness 0.90}  "He says \\"I am fine. Really.\\" and cries."' in out
    assert "  explanation: no <think> text or no sentence -> R_E = 0" in out
    assert "  R_E = c / (N - N_neu) = 0 / (2 - 2) -> denominator 0, R_E = 0" in out
    # (2.5 + 2.667 + 2.5 + 1 + 2) / 5, and each reward's mean.
    assert out.splitlines()[-1] == ("mean over 5 completions: total 2.133  format 0.800  "
                                    "answer 1.000  explanation 0.333")


def test_json_has_total_and_each_reward_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = erv(capsys, SAMPLES, "--recipe", RECIPE, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    got = [v for r in rows for v in (r["total"], r["format"], r["answer"], r["explanation"])]
    assert got == pytest.approx([2.5, 1, 1, 0.5, 2 + 2 / 3, 1, 1, 2 / 3, 2.5, 1, 1, 0.5,
                                 1, 0, 1, 0, 2, 1, 1, 0])
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]


def test_ablation_flags_override_the_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = erv(capsys, SAMPLES, "--recipe", RECIPE, "--json", "--no-neutral-filter")
    assert json.loads(out.splitlines()[0])["explanation"] == pytest.approx(1 / 3)  # 1 / 3
    _, out, _ = erv(capsys, SAMPLES, "--recipe", RECIPE, "--json", "--paragraph", "--explain")
    first = json.loads(out.splitlines()[0])
    # One text holding "smiles" and "cries": {joy, sadness} contains joy -> 1 / 1.
    assert first["explanation"] == 1.0 and first["explanation_detail"]["n"] == 1


def test_stdin_without_a_verifier_scores_format_and_answer(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    line = json.dumps({"completion": "<think>x.</think><answer>happy", "label": "happiness"})
    monkeypatch.setattr("sys.stdin", io.StringIO(line + "\n"))
    code, out, _ = erv(capsys, "-", "--answer-mode", "release", "--json")
    assert code == 0
    assert json.loads(out) == {"line": 1, "total": 1.0, "format": 0.0, "answer": 1.0}


@pytest.mark.parametrize(("content", "message"), [
    ('{"completion": "a", "label": "sad"}\nnot json\n', "in.jsonl:2: invalid JSON: Expecting value"),
    ('{"label": "sad"}\n', "in.jsonl:1: 'completion' must be a string"),
    ('{"completion": "a"}\n', "no line has a 'label'"),
    ('{"completion": "a", "label": "sad", "dataset": "nope"}\n',
     "in.jsonl:1: unknown dataset 'nope' (known: "),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     content: str, message: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    code, out, err = erv(capsys, str(path))
    assert code == 2 and message in err and err.startswith("erv: error: ")


def test_verifier_directory_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = erv(capsys, SAMPLES, "--verifier", str(tmp_path / "missing"))
    assert code == 2 and "no such directory" in err
    try:
        get_plugins().get("verifier", "hf")
    except PluginError:
        code, _, err = erv(capsys, SAMPLES, "--verifier", str(tmp_path))
        assert code == 2 and "'hf' is not installed" in err

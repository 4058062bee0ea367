"""Row readers refuse what they cannot use as ``file:line: reason`` (exit code 2, no
traceback): ``erv reward`` input, ``erv eval`` predictions, ``erv augment`` inputs, JSONL
manifests and the text files of the datasets (issue 14). And a DFEW ground truth reaches
a verifier whose labels are MAFW words, as the release maps it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

MAFW = ("anger, disgust, fear, happiness, neutral, sadness, surprise, contempt, anxiety, "
        "helplessness, disappointment")
DFEW = "happy, sad, neutral, angry, surprise, disgust, fear"
GOOD = "<think>Tears run down her face.</think><answer>sadness</answer>"
DEEP = "[" * 200 + "]" * 200
KNOWN = "dfew, emer, goemotions, mafw, merr"


def reward_row(**kw: object) -> str:
    return json.dumps({"completion": GOOD, "label": "sadness", "dataset": "mafw", **kw})


def pred_row(i: int, **kw: object) -> str:
    return json.dumps({"id": f"p{i}", "completion": GOOD, "label": "sadness", **kw})


def text_row(i: int, **kw: object) -> str:
    return json.dumps({"id": f"t{i}", "text": "She weeps.", **kw})


def manifest_row(**kw: object) -> str:
    return json.dumps({"video": "a.mp4", "label": "sadness", **kw})


LATIN1 = '{"completion": "caf\xe9", "label": "sadness"}'.encode("latin-1")
LONG = b'{"completion": "' + b"x" * (17 << 20) + b'"}\n'


def _known() -> str:
    from erv_plugins.plugins import get_plugins

    return ", ".join(sorted(get_plugins().label_spaces()))


# (id, command, input bytes (a list of lines) or a path, expected message after "erv: error: ")
CASES: list[tuple[str, str, list[str | bytes] | bytes | str, str]] = [
    ("reward-unknown-dataset", "reward", [reward_row(), reward_row(dataset="mafww")],
     "{f}:2: unknown dataset 'mafww' (known: {known})"),
    ("reward-label-outside-mafw", "reward", [reward_row(label="joyous")],
     f"{{f}}:1: label 'joyous' is not a MAFW label ({MAFW})"),
    ("reward-label-outside-dfew", "reward", [reward_row(label="contempt", dataset="dfew")],
     f"{{f}}:1: label 'contempt' is not a DFEW label ({DFEW})"),
    ("reward-label-outside-default-space", "reward",
     [json.dumps({"completion": GOOD, "label": "boredom"})],
     f"{{f}}:1: label 'boredom' is not a MAFW label ({MAFW})"),
    ("reward-no-label-on-a-row", "reward",
     [reward_row(), json.dumps({"completion": GOOD, "dataset": "mafw"})],
     "{f}:2: no 'label' (the ground-truth emotion)"),
    ("reward-dataset-not-a-string", "reward", [reward_row(dataset=3)],
     "{f}:1: 'dataset' must be a string"),
    ("reward-too-deep", "reward", [f'{{"completion": "x", "label": "sadness", "v": {DEEP}}}'],
     "{f}:1: nested more than 64 levels deep"),
    ("reward-deep-beyond-recursion", "reward",
     ['{"completion": ' + "[" * 100000 + "]" * 100000 + "}"],
     "{f}:1: nested more than 64 levels deep"),
    ("reward-not-utf8", "reward", [reward_row().encode(), LATIN1],
     "{f}:2: not UTF-8 text (byte 0xe9 at column 20)"),
    ("reward-not-json", "reward", [reward_row(), "{completion: x}"],
     "{f}:2: invalid JSON: Expecting property name enclosed in double quotes"),
    ("reward-not-an-object", "reward", ["[1, 2]"], "{f}:1: expected a JSON object, got list"),
    ("reward-dev-zero", "reward", "/dev/zero", "/dev/zero: cannot read: a device, not a regular file"),
    ("reward-line-too-long", "reward", LONG, "{f}:1: line longer than 16 MiB"),
    ("eval-label-outside", "eval", [pred_row(1), pred_row(2, label="joyous")],
     f"{{f}}:2: label 'joyous' is not a MAFW label ({MAFW})"),
    ("eval-too-deep", "eval", [pred_row(1, extra=json.loads(DEEP))],
     "{f}:1: nested more than 64 levels deep"),
    ("eval-not-utf8", "eval", [pred_row(1).encode(), b'{"id": "p2", "label": "\xff"}'],
     "{f}:2: not UTF-8 text (byte 0xff at column 24)"),
    ("eval-missing-field", "eval", [json.dumps({"id": "p1", "label": "sadness"})],
     "{f}:1: missing field 'completion' (each line needs id, completion, label)"),
    ("eval-duplicate-id", "eval", [pred_row(1), pred_row(1)],
     "{f}:2: id 'p1' already appears on line 1"),
    ("augment-too-deep", "augment", [text_row(1, extra=json.loads(DEEP))],
     "{f}:1: nested more than 64 levels deep"),
    ("augment-not-utf8", "augment", [text_row(1).encode(), b'{"id": "t2", "text": "\xc3("}'],
     "{f}:2: not UTF-8 text (byte 0xc3 at column 23)"),
    ("augment-no-text", "augment", [json.dumps({"id": "t1"})],
     '{f}:1: needs a non-empty "text" (or "explanation", "completion")'),
    ("manifest-label-outside", "manifest", [manifest_row(), manifest_row(label="boredom")],
     f"{{f}}:2: label 'boredom' is not a MAFW label ({MAFW})"),
    ("manifest-not-utf8", "manifest", [b'{"video": "a.mp4", "label": "sad\xe9"}'],
     "{f}:1: not UTF-8 text (byte 0xe9 at column 33)"),
    ("manifest-too-deep", "manifest", [manifest_row(x=json.loads(DEEP))],
     "{f}:1: nested more than 64 levels deep"),
    ("mafw-split-not-utf8", "mafw", [b"a.mp4 anger", b"b.mp4 sadn\xe9ss"],
     "{f}:2: not UTF-8 text (byte 0xe9 at column 11)"),
    ("dfew-csv-not-utf8", "dfew", [b"id,label", b"1,1", b"\xff2,3"],
     "{f}:3: not UTF-8 text (byte 0xff at column 1)"),
    ("emer-csv-not-utf8", "emer", [b"names,emotions,subtitles,reasons", b"a,sad,\xe9,tears"],
     "{f}:2: not UTF-8 text (byte 0xe9 at column 7)"),
    ("merr-json-too-deep", "merr", [f'{{"a": {DEEP}}}'.encode()],
     "{f}: nested more than 64 levels deep"),
    ("text-jsonl-not-utf8", "text_jsonl", [b'{"text": "x", "labels": ["sad\xe9"]}'],
     "{f}:1: not UTF-8 text (byte 0xe9 at column 30)"),
]

DATASET_FILES = {  # command -> (dataset plugin, file under the root)
    "manifest": ("jsonl", "manifest.jsonl"),
    "mafw": ("mafw", "Train & Test Set/single/no_caption/set_5/train.txt"),
    "dfew": ("dfew", "label/single_trainset_5.csv"),
    "emer": ("emer", "emer.csv"),
    "merr": ("merr", "merr_fine.json"),
}


def _write(path: Path, content: list[str | bytes] | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(b"".join((c if isinstance(c, bytes) else c.encode()) + b"\n"
                                  for c in content))


def _args(command: str, f: str, tmp: Path) -> list[str]:
    if command == "reward":
        return ["reward", f]
    if command == "eval":
        return ["eval", "--predictions", f, "--dataset", "mafw", "--judge", "openai",
                "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "ERV_ROWS_KEY",
                "--out", str(tmp / "out"), "--no-progress"]
    if command == "augment":
        return ["augment", "label", f, "--out", str(tmp / "o.jsonl"), "--base-url",
                "http://127.0.0.1:9/v1", "--quiet"]
    plugin, _ = DATASET_FILES[command]
    options = ', options = { label_space = "mafw" }' if plugin == "jsonl" else ""
    recipe = tmp / "r.toml"
    recipe.write_text(f'name = "r"\nstages = ["eval"]\n[eval]\ndataset = {{ plugin = '
                      f'"{plugin}", root = "{tmp / "root"}", split = "train"{options} }}\n')
    return ["data", "check", str(recipe), "--no-cache"]


@pytest.mark.parametrize(("command", "content", "message"),
                         [pytest.param(c, i, m, id=n) for n, c, i, m in CASES])
def test_a_bad_row_is_refused_with_its_file_and_line(tmp_path, capsys, monkeypatch, command,
                                                     content, message):
    monkeypatch.setenv("ERV_ROWS_KEY", "k")
    if command == "text_jsonl":
        from erv_plugins.errors import ErvError
        from erv_plugins.verifiers.data import read_text_jsonl

        f = tmp_path / "pseudo.jsonl"
        _write(f, content)  # type: ignore[arg-type]
        with pytest.raises(ErvError) as info:
            read_text_jsonl(f)
        assert str(info.value) == message.format(f=f)
        return
    if isinstance(content, str):
        f = content
    else:
        path = (tmp_path / "root" / DATASET_FILES[command][1] if command in DATASET_FILES
                else tmp_path / "in.jsonl")
        _write(path, content)
        f = str(path)
    r = run_cli(capsys, _args(command, f, tmp_path))
    expected = message.format(f=f, known=_known() if "{known}" in message else "")
    assert (r.code, r.err) == (2, f"erv: error: {expected}\n")
    assert not (tmp_path / "out" / "judgements.jsonl").exists()
    assert not (tmp_path / "o.jsonl").exists()


def test_the_built_in_label_spaces_are_named(capsys):
    assert _known().startswith(KNOWN)


# -- DFEW words and a verifier trained on MAFW's ------------------------------------------

@pytest.mark.parametrize(("dfew", "mafw"), [
    ("happy", "happiness"), ("sad", "sadness"), ("angry", "anger"), ("neutral", "neutral"),
    ("surprise", "surprise"), ("disgust", "disgust"), ("fear", "fear"),
])
def test_a_dfew_label_reaches_a_mafw_word_verifier(dfew, mafw):
    from erv_plugins.labels import DFEW as DFEW_SPACE
    from erv_plugins.labels import GOEMOTIONS, MAFW_LABELS, TO_GOEMOTIONS

    assert DFEW_SPACE.to_verifier(dfew, MAFW_LABELS) == mafw
    assert DFEW_SPACE.to_verifier(dfew, GOEMOTIONS) == TO_GOEMOTIONS[mafw]  # unchanged


def test_erv_reward_scores_a_dfew_row_with_a_mafw_word_verifier(tmp_path, capsys):
    """The release maps the ground truth through the MAFW normaliser first: DFEW's
    ``happy`` is the verifier's ``happiness``; the explanation reward was "failed"."""
    from erv_plugins.labels import MAFW_LABELS
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    verifier = build_tiny_verifier(tmp_path / "v", labels=MAFW_LABELS)
    completion = "<think>She smiles widely. Her voice is bright.</think><answer>happy</answer>"
    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"completion": completion, "label": "happy", "dataset": "dfew"})
                    + "\n" + json.dumps({"completion": completion, "label": "happiness",
                                         "dataset": "mafw"}) + "\n")
    r = run_cli(capsys, ["reward", str(rows), "--verifier", str(verifier), "--json",
                         "--explain"])
    assert r.code == 0, r.err
    # (an import may print a line of its own; the rows are the JSON lines)
    dfew_row, mafw_row = (json.loads(x) for x in r.out.splitlines() if x.startswith("{"))
    assert dfew_row["explanation_detail"]["ground_truth"] == "happiness"
    assert mafw_row["explanation_detail"]["ground_truth"] == "happiness"
    assert dfew_row["explanation"] is not None
    assert dfew_row["explanation"] == mafw_row["explanation"]
    assert (dfew_row["answer"], mafw_row["answer"]) == (1.0, 1.0)

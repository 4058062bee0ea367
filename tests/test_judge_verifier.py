"""The offline judge: a verifier over the whole explanation, argmax over the dataset's labels.

A small deterministic verifier (probabilities from keywords over the 28 GoEmotions labels)
stands in for the trained one; the judge only relies on the Verifier protocol.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from erv_plugins.errors import ErvError
from erv_plugins.hookspecs import hookimpl
from erv_plugins.context import BuildContext
from erv_plugins.judges.base import JudgeRequest
from erv_plugins.judges.verifier import VerifierJudge, VerifierJudgeOptions
from erv_plugins.labels import DFEW, GOEMOTIONS, MAFW
from erv_plugins.plugins import Plugins
from erv_plugins.recipe import PluginSpec, load_recipe
from erv_plugins.stages import run_recipe
from erv_plugins.verifiers.base import Verifier

DATA = Path(__file__).parent / "data" / "predictions_mafw.jsonl"


class KeywordVerifier:
    """0.9 for each GoEmotions word in the text (0.8 for the second, ...), 0.3 neutral."""

    labels = GOEMOTIONS
    cache_key = "keyword-verifier"
    name = "keyword"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.full((len(texts), len(self.labels)), 0.01, dtype=np.float32)
        out[:, self.labels.index("neutral")] = 0.3
        for i, text in enumerate(texts):
            words = text.lower().replace(".", " ").split()
            hits = [w for w in words if w in self.labels]
            for rank, w in enumerate(hits):
                out[i, self.labels.index(w)] = 0.9 - 0.1 * rank
        return out


def test_argmax_restricted_to_the_dataset_labels_through_the_verifier_map() -> None:
    verifier = KeywordVerifier()
    assert isinstance(verifier, Verifier)
    judge = VerifierJudge(VerifierJudgeOptions(batch_size=2), verifier=verifier)
    requests = [
        JudgeRequest("a", "Pure joy on her face."),              # joy -> happiness
        JudgeRequest("b", "He is lost in grief."),               # grief -> helplessness
        JudgeRequest("c", "Full of admiration."),                # not a MAFW counterpart
        JudgeRequest("d", "Disapproval then some nervousness."),  # contempt beats anxiety
        JudgeRequest("e", ""),                                   # empty explanation
    ]
    got = {v.id: (v.label, v.reply, v.in_list) for v in judge.judge(requests, MAFW)}
    assert got == {
        "a": ("happiness", "joy", True),
        "b": ("helplessness", "grief", True),
        "c": ("neutral", "neutral", True),  # admiration is outside MAFW's labels: ignored
        "d": ("contempt", "disapproval", True),
        "e": ("neutral", "neutral", True),
    }
    assert verifier.calls == [2, 2, 1]  # whole explanations, batched
    dfew = {v.id: v.label for v in judge.judge(requests[:2], DFEW)}
    assert dfew == {"a": "happy", "b": "neutral"}  # grief has no DFEW counterpart


def test_columns_follow_to_verifier() -> None:
    judge = VerifierJudge(verifier=KeywordVerifier())
    assert [GOEMOTIONS[c] for c in judge.columns(DFEW)] == [
        "joy", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


class _VerifierPlugin:
    __name__ = "test_keyword_verifier"

    @staticmethod
    @hookimpl
    def erv_register_verifiers(register) -> None:  # noqa: ANN001
        register(KeywordVerifier)


def test_built_from_the_recipe_verifier_table_or_its_own_options() -> None:
    plugins = Plugins(entry_points=False, extra=[_VerifierPlugin()])
    via_recipe = VerifierJudge(context=BuildContext.create(
        plugins, verifier_spec=PluginSpec(plugin="keyword")))
    assert via_recipe.verifier.cache_key == "keyword-verifier"
    own = VerifierJudge(VerifierJudgeOptions(plugin="keyword"), context=BuildContext.create(plugins))
    assert own.cache_key == via_recipe.cache_key
    with pytest.raises(ErvError, match="judge 'verifier' needs a verifier"):
        VerifierJudge(context=BuildContext.create(plugins))


def test_eval_stage_of_erv_run_with_the_offline_judge(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "offline"
stages = ["eval"]
run_dir = "{tmp_path / 'run'}"
[verifier]
plugin = "keyword"
[eval]
predictions = "{DATA}"
label_space = "mafw"
protocol = "erv"
bootstrap = 50
[eval.judge]
plugin = "verifier"
""")
    plugins = Plugins(entry_points=False, extra=[_VerifierPlugin()])
    lines: list[str] = []
    run_recipe(load_recipe(recipe, plugins), plugins, echo=lines.append)
    out = tmp_path / "run" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    # The keyword verifier knows GoEmotions words only, so it reads anger (1, 2), sadness
    # (3, 13, 15), disgust (4), fear (6), neutral (10, 11), surprise (16), disappointment
    # (19, 20), and neutral where it finds nothing: j = g on 1 2 4 6 11 12 13 15 16 20.
    assert metrics["judged"] == 20 and metrics["judge"] == "verifier"
    assert (metrics["EEA"], metrics["FCR"], metrics["EPC"]) == (50.0, 45.0, 45.0)
    assert metrics["WAR"] == 75.0  # answers do not depend on the judge
    done = json.loads((out / ".done").read_text())
    assert done["WAR"] == 75.0 and done["judged"] == 20
    assert (out / "confusion.png").exists() and (out / "table.md").exists()
    assert "| offline | 50.00 | 45.00 | 45.00 | 75.00 | 78.33 |" in "\n".join(lines)
    # --force judges afresh and keeps the earlier judgements aside.
    before = (out / "judgements.jsonl").read_text()
    run_recipe(load_recipe(recipe, plugins), plugins, force=True, echo=lines.append)
    assert (out / "judgements.1.jsonl").read_text() == before
    assert len((out / "judgements.jsonl").read_text().splitlines()) == 20
    assert "erv: stage eval: --force: earlier judgements.jsonl kept as judgements.1.jsonl" \
        in lines


@pytest.mark.slow
def test_erv_eval_with_a_real_hf_verifier_checkpoint(tmp_path: Path) -> None:
    """The verifier judge on the hf plugin (a tiny untrained RoBERTa saved to disk): every
    verdict is the argmax of the checkpoint's probabilities over MAFW's counterparts."""
    from click.testing import CliRunner

    from erv_plugins.cli import build_cli
    from erv_plugins.evaluation.run import read_predictions
    from erv_plugins.text import parse_completion
    from erv_plugins.verifiers.hf import HFVerifier
    from erv_plugins.verifiers.tiny import build_tiny_verifier

    ckpt = build_tiny_verifier(tmp_path / "verifier", seed=1)
    result = CliRunner().invoke(build_cli(), [
        "eval", "--predictions", str(DATA), "--dataset", "mafw", "--judge", "verifier",
        "--verifier", str(ckpt), "--out", str(tmp_path / "out"), "--bootstrap", "0",
        "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {json.loads(line)["id"]: json.loads(line)
            for line in (tmp_path / "out" / "judgements.jsonl").read_text().splitlines()}
    preds = read_predictions(DATA)
    proba = HFVerifier(ckpt).predict_proba([parse_completion(p.completion).think or ""
                                            for p in preds])
    cols = [GOEMOTIONS.index(MAFW.to_verifier(lab, GOEMOTIONS)) for lab in MAFW.labels]
    expected = [MAFW.labels[int(i)] for i in proba[:, cols].argmax(axis=1)]
    assert [rows[p.id]["judge_label"] for p in preds] == expected
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["WAR"] == 75.0

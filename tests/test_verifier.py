"""The Emotional Rationale Verifier: loading, inference, data, metrics and training."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from erv_plugins.labels import GOEMOTIONS, MAFW_LABELS  # noqa: E402
from erv_plugins.verifiers.data import (  # noqa: E402
    TextRecord,
    VerifierDataError,
    format_counts,
    label_counts,
    map_to_verifier,
    read_emer_csv,
    read_merr_fine_json,
    read_text_jsonl,
    write_jsonl,
)
from erv_plugins.verifiers.hf import (  # noqa: E402
    HFVerifier,
    HFVerifierOptions,
    LabelSpaceMismatch,
    VerifierLoadError,
    label_sets,
)
from erv_plugins.verifiers.tiny import CUES, build_tiny_verifier, generate_emotion_corpus  # noqa: E402
from erv_plugins.verifiers.training import (  # noqa: E402
    TINY_TRAINING,
    average_precision,
    evaluate,
    train_verifier,
)


@pytest.fixture(scope="module")
def random_goemotions_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny RoBERTa over GoEmotions' 28 labels (the paper's head)."""
    return build_tiny_verifier(tmp_path_factory.mktemp("tiny") / "verifier")


# -- the tiny checkpoint and the hf plugin ---------------------------------------------------

def test_tiny_tokenizer_loads_back_through_autotokenizer(random_goemotions_verifier: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(random_goemotions_verifier)
    enc = tok(["The woman looks furious and repulsed."])
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "<s>", "ĠThe", "Ġwoman", "Ġlooks", "Ġfurious", "Ġand", "Ġrepulsed", ".", "</s>"]
    # Every cue word is one token: the signal the tiny model learns from.
    for cue in (c for cues in CUES.values() for c in cues):
        assert len(tok(" " + cue, add_special_tokens=False)["input_ids"]) == 1, cue
    # Byte-level: any text tokenizes, nothing maps to <unk>.
    assert tok.unk_token_id not in tok("Ünïcode 😀 «quoted»")["input_ids"]


def test_hf_plugin_builds_the_verifier_from_recipe_options(random_goemotions_verifier: Path):
    from erv_plugins.plugins import get_plugins

    reg = get_plugins().get("verifier", "hf")
    assert reg.options is HFVerifierOptions
    verifier = reg.build(HFVerifierOptions(path=str(random_goemotions_verifier), batch_size=2))
    assert verifier.labels == GOEMOTIONS
    assert verifier.cache_key.startswith(f"hf:{random_goemotions_verifier.resolve()}:")
    texts = ["He smiles.", "A much longer sentence about a man who looks furious today.",
             "Hi", "She is sad."]
    proba = verifier.predict_proba(texts)
    assert proba.shape == (4, 28) and proba.dtype == np.float32
    assert ((proba > 0) & (proba < 1)).all()
    # Length-bucketed batches (2 per batch here) give the rows back in input order.
    one_by_one = np.vstack([verifier.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(proba, one_by_one, atol=1e-5)
    assert verifier.predict_proba([]).shape == (0, 28)


def test_cache_key_changes_when_the_weights_change(tmp_path: Path):
    a = HFVerifier(build_tiny_verifier(tmp_path / "a", labels=MAFW_LABELS, seed=0))
    b = HFVerifier(build_tiny_verifier(tmp_path / "b", labels=MAFW_LABELS, seed=1))
    assert a.cache_key != b.cache_key
    assert a.labels == b.labels == MAFW_LABELS


def test_label_sets_follow_paper_algorithm_1():
    proba = np.array([[0.9, 0.8, 0.7, 0.1],   # three above tau -> the two most probable
                      [0.2, 0.3, 0.1, 0.05],  # none above tau -> the argmax
                      [0.1, 0.6, 0.1, 0.5],   # 0.5 is not > 0.5 -> one label
                      [0.5, 0.5, 0.5, 0.5]])  # all tied at tau -> argmax (first)
    assert label_sets(proba, tau=0.5) == [(0, 1), (1,), (1,), (0,)]
    assert label_sets(proba, tau=0.1) == [(0, 1), (1, 0), (1, 3), (0, 1)]


def test_label_count_mismatch_with_the_recipe_label_map_is_a_clear_error(
        random_goemotions_verifier: Path):
    with pytest.raises(LabelSpaceMismatch, match=r"checkpoint has 28 labels but the recipe's "
                       r"label map has 11 \(anger, disgust, fear, happiness"):
        HFVerifier(random_goemotions_verifier, labels="mafw")
    with pytest.raises(LabelSpaceMismatch, match="28 labels but the recipe's label map has 11"):
        train_verifier([{"text": "He looks furious.", "labels": ["anger"]}],
                       base=random_goemotions_verifier, out=random_goemotions_verifier / "x",
                       labels=MAFW_LABELS)
    assert HFVerifier(random_goemotions_verifier, labels="goemotions").labels == GOEMOTIONS


def test_a_checkpoint_with_generic_label_names_gets_them_from_the_id2label_option(
        tmp_path: Path):
    """A published verifier may say LABEL_0 .. LABEL_27 in its config.json; the recipe's
    ``id2label = "goemotions"`` names them (in the release's GoEmotions order)."""
    from erv_plugins.plugins import get_plugins

    path = build_tiny_verifier(tmp_path / "generic")
    config = json.loads((path / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(28)}
    config["label2id"] = {f"LABEL_{i}": i for i in range(28)}
    (path / "config.json").write_text(json.dumps(config))
    assert HFVerifier(path).labels == tuple(f"LABEL_{i}" for i in range(28))
    reg = get_plugins().get("verifier", "hf")
    named = reg.build(HFVerifierOptions(path=str(path), id2label="goemotions",
                                        labels="goemotions"))
    assert named.labels == GOEMOTIONS and named.labels[17] == "joy" and named.labels[27] == "neutral"
    assert named.model.config.id2label[2] == "anger"
    assert named.cache_key != HFVerifier(path).cache_key
    with pytest.raises(LabelSpaceMismatch, match="checkpoint has 28 labels but id2label names 11"):
        HFVerifier(path, id2label="mafw")
    # Real names are kept, and must be the ones id2label gives.
    real = build_tiny_verifier(tmp_path / "real", labels=MAFW_LABELS)
    assert HFVerifier(real, id2label=list(MAFW_LABELS)).labels == MAFW_LABELS
    with pytest.raises(LabelSpaceMismatch, match="differ from the recipe's label map at 0"):
        HFVerifier(real, id2label=["x", *MAFW_LABELS[1:]])


def test_a_missing_checkpoint_names_the_path_and_never_downloads(tmp_path: Path):
    with pytest.raises(VerifierLoadError, match=r"no-such-org/no-such-model: no such directory "
                       r"\(and not in the local Hugging Face cache; erv never downloads"):
        HFVerifier("no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerifierLoadError, match="no config.json"):
        HFVerifier(tmp_path / "empty")


# -- training data ---------------------------------------------------------------------------

def test_emer_csv_and_merr_fine_json_become_text_records(tmp_path: Path):
    emer = tmp_path / "emer.csv"
    emer.write_text("names,emotions,subtitles,reasons\n"
                    "sample_1,worried,\"I don't know.\",She bites her lip and glances away.\n"
                    "sample_2,happy,Great!,He laughs loudly.\n")
    assert read_emer_csv(emer) == [
        TextRecord("She bites her lip and glances away.", ("worried",), "emer", "sample_1",
                   {"subtitle": "I don't know."}),
        TextRecord("He laughs loudly.", ("happy",), "emer", "sample_2", {"subtitle": "Great!"}),
    ]
    merr = tmp_path / "merr.json"
    merr.write_text(json.dumps({
        "00001": {"pseu_emotion": "angry", "smp_reason_caption": "He shouts at the clerk."},
        "00002": {"pseu_emotion": "sad", "smp_reason_caption": "Tears run down her face."}}))
    assert [(r.text, r.labels, r.id) for r in read_merr_fine_json(merr)] == [
        ("He shouts at the clerk.", ("anger",), "00001"),
        ("Tears run down her face.", ("sadness",), "00002")]
    bad = tmp_path / "bad.csv"
    bad.write_text("names,emotion,reasons\nx,happy,y\n")
    with pytest.raises(VerifierDataError, match=r"bad.csv: EMER CSV lacks column\(s\) emotions"):
        read_emer_csv(bad)


def test_jsonl_errors_name_file_and_line(tmp_path: Path):
    p = tmp_path / "pseudo.jsonl"
    p.write_text('{"text": "He frowns.", "labels": ["anger"]}\n\n'
                 '{"text": "She sighs.", "labels": ["sadness", "helplessness", "fear"]}\n')
    with pytest.raises(VerifierDataError, match=r"pseudo.jsonl:3: 3 labels, at most 2 allowed"):
        read_text_jsonl(p, max_labels=2)
    p.write_text('{"text": "He frowns.", "label": "anger"}\n{"text": "x", "labels": []}\n')
    with pytest.raises(VerifierDataError, match=r"pseudo.jsonl:2: \"labels\" must be a non-empty"):
        read_text_jsonl(p)
    p.write_text('{"text": "He frowns.", "label": "anger"}\nnot json\n')
    with pytest.raises(VerifierDataError, match=r"pseudo.jsonl:2: invalid JSON"):
        read_text_jsonl(p)


def test_dataset_words_map_to_goemotions_and_counts_read_like_table_5():
    records = [TextRecord("a", ("happiness", "contempt"), "mafw"),
               TextRecord("b", ("worried",), "emer"),
               TextRecord("c", ("angry", "anger"), "emer"),
               TextRecord("d", ("helplessness",), "complemented")]
    mapped, used = map_to_verifier(records, GOEMOTIONS)
    assert [r.labels for r in mapped] == [("joy", "disapproval"), ("nervousness",), ("anger",),
                                          ("grief",)]
    assert used == {"anger": "anger", "angry": "anger", "contempt": "disapproval",
                    "happiness": "joy", "helplessness": "grief", "worried": "nervousness"}
    in_mafw, _ = map_to_verifier(records, MAFW_LABELS)
    assert [r.labels for r in in_mafw] == [("happiness", "contempt"), ("anxiety",), ("anger",),
                                           ("helplessness",)]
    with pytest.raises(VerifierDataError, match=r"emer: x: label 'bored' has no counterpart"):
        map_to_verifier([TextRecord("e", ("bored",), "emer", "x")], GOEMOTIONS)
    assert format_counts(label_counts(in_mafw)) == (
        "Dataset        anger  happiness  contempt  anxiety  helplessness\n"
        "mafw               -          1         1        -             -\n"
        "emer               1          -         -        1             -\n"
        "complemented       -          -         -        -             1")


def test_generated_corpus_is_balanced_and_deterministic():
    corpus = generate_emotion_corpus(2200, seed=0)
    assert corpus == generate_emotion_corpus(2200, seed=0)
    counts = label_counts(corpus)["generated"]
    assert sorted(counts) == sorted(MAFW_LABELS)
    assert min(counts.values()) >= 200  # 200 first labels each, plus second labels
    assert sum(len(r.labels) == 2 for r in corpus) > 200


# -- metrics ---------------------------------------------------------------------------------

def test_metrics_on_a_hand_checked_example():
    gold = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]], dtype=bool)
    proba = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.1], [0.8, 0.1, 0.35], [0.1, 0.4, 0.2]])
    m = evaluate(proba, gold, ("joy", "anger", "fear"), taus=(0.3, 0.5))
    # tau 0.5 -> sets {0}, {0,1}, {0}, {1} (last by argmax): label 0 tp=2 fp=1 fn=0,
    # label 1 tp=2 fp=0 fn=1; fear has no gold support and stays out of the macro average.
    # At tau 0.3 row 3 also gets fear (0.35): one more false positive, micro-F1 8/11.
    assert m["per_label_f1"] == {"joy": 0.8, "anger": 0.8}
    assert m["macro_f1"] == 0.8 and m["micro_f1"] == 0.8
    assert m["support"] == {"joy": 2, "anger": 3}
    # AP: joy ranks both positives first (1.0); anger's positives sit at ranks 1, 2, 4.
    assert m["map"] == round((1.0 + (1 + 1 + 3 / 4) / 3) / 2, 4)
    assert m["tau_sweep"] == [{"tau": 0.3, "micro_f1": 0.7273, "macro_f1": 0.8},
                              {"tau": 0.5, "micro_f1": 0.8, "macro_f1": 0.8}]
    assert m["best_tau"] == 0.5
    assert average_precision(np.array([0, 1, 1]), np.array([0.9, 0.8, 0.1])) == pytest.approx(
        (1 / 2 + 2 / 3) / 2)


# -- training --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    """A tiny RoBERTa from scratch, [CLS] pooling as in the paper, 2,200 sentences, CPU.

    Why it learns (where the issue saw collapse to label frequencies): the label is carried
    only by cue words that are single tokens, and the head's biases start at the prior of
    a rare label (p = 1/11) instead of 0.5, so the first steps are not spent pushing every
    logit down regardless of the input; lr 3e-3 with 10 % warmup and no dropout then
    separate the cues. With zero biases (initializer_range 0.02, 4 epochs) the same data
    gave macro-F1 0.07; see erv_plugins.verifiers.tiny.
    """
    tmp = tmp_path_factory.mktemp("trained")
    start = time.perf_counter()
    base = build_tiny_verifier(tmp / "base", labels=MAFW_LABELS)
    train = write_jsonl(generate_emotion_corpus(2200, seed=0), tmp / "train.jsonl")
    metrics = train_verifier(read_text_jsonl(train), base=base, out=tmp / "erv",
                             **{**TINY_TRAINING, "epochs": 6}, progress=False)
    return tmp / "erv", metrics, time.perf_counter() - start


@pytest.mark.slow
def test_tiny_verifier_learns_the_generated_corpus(trained: tuple[Path, dict, float]):
    out, metrics, seconds = trained
    assert seconds < 120
    # Chance: predicting every label for every sentence gives F1 = 2p/(1+p) with p about
    # 0.1 per label (about 0.19); a frequency-collapsed model scores about 0.07 (see above).
    assert metrics["macro_f1"] > 0.9 and metrics["micro_f1"] > 0.9 and metrics["map"] > 0.9
    assert metrics["train_size"] == 1980 and metrics["eval_size"] == 220
    assert metrics["loss_last"] < metrics["loss_first"] / 5
    for name in ("model.safetensors", "config.json", "tokenizer.json", "label_map.json",
                 "metrics.json", "metrics.png", "counts.txt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["macro_f1"] == metrics["macro_f1"]

    # The trained checkpoint loads back through the hf plugin and reads new sentences.
    from erv_plugins.plugins import get_plugins

    verifier = get_plugins().get("verifier", "hf").build(
        HFVerifierOptions(path=str(out), labels="mafw"))
    predicted = verifier.predict(["The driver looks terrified.",  # new subject-cue pairs
                                  "He sounds scornful and livid.",
                                  "The background is a busy street at night."])
    assert [sorted(p) for p in predicted] == [["fear"], ["anger", "contempt"], ["neutral"]]


@pytest.mark.slow
def test_a_trained_tiny_goemotions_verifier_for_demos(tmp_path: Path):
    """``build_tiny_verifier(..., train=True)``: the paper's 28-label head, fitted on the
    generated corpus mapped through the release's label map (happiness -> joy, ...)."""
    verifier = HFVerifier(build_tiny_verifier(tmp_path / "v", train=True, epochs=6))
    assert verifier.labels == GOEMOTIONS
    assert verifier.predict(["The boy looks delighted.", "The old man seems furious.",
                             "She sounds powerless.", "He wears a dark jacket in a small room."]
                            ) == [("joy",), ("anger",), ("grief",), ("neutral",)]
    metrics = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert metrics["macro_f1"] > 0.9


@pytest.mark.slow
def test_erv_reward_scores_explanations_with_the_trained_verifier(
        trained: tuple[Path, dict, float], tmp_path: Path):
    """The saved verifier drives the explanation reward R_E of ``erv reward`` (Algorithm 1)."""
    from click.testing import CliRunner

    from erv_plugins.cli import build_cli

    out, _, _ = trained
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in [
        # One anger sentence and one neutral (background) sentence: R_E = 1 / (2 - 1).
        {"completion": "<think>The man looks furious. The background is a busy street at "
                       "night.</think> <answer>anger</answer>", "label": "anger",
         "dataset": "mafw"},
        # One of two emotional sentences shows the ground truth: R_E = 1 / 2.
        {"completion": "<think>She looks joyful. She seems sad as she listens.</think> "
                       "<answer>sadness</answer>", "label": "sadness", "dataset": "mafw"},
        # No <think>: R_E = 0, format 0; the answer still counts.
        {"completion": "<answer>fear</answer>", "label": "fear", "dataset": "mafw"},
    ]))
    result = CliRunner().invoke(build_cli(), ["reward", str(samples), "--verifier", str(out),
                                              "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["explanation"], r["format"], r["answer"], r["total"]) for r in rows] == [
        (1.0, 1.0, 1.0, 3.0), (0.5, 1.0, 1.0, 2.5), (0.0, 0.0, 1.0, 1.0)]


@pytest.mark.slow
def test_verifier_stage_writes_the_checkpoint_where_later_stages_look(tmp_path: Path,
                                                                       monkeypatch):
    from click.testing import CliRunner

    from erv_plugins.cli import build_cli
    from erv_plugins.verifiers.stage import trained_verifier_path

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(f"""
name = "tiny-verifier"
stages = ["train_verifier"]
run_dir = "{tmp_path / 'run'}"

[train_verifier]
base = "tiny"
label_space = "mafw"
epochs = 2
batch_size = 32
lr = 3e-3
warmup_ratio = 0.1
max_length = 64
device = "cpu"

[[train_verifier.train]]
plugin = "text_generated"
options = {{ n = 330, seed = 3 }}
""")
    result = CliRunner().invoke(build_cli(), ["train-verifier", "--recipe", str(recipe)])
    assert result.exit_code == 0, result.output
    model = trained_verifier_path(tmp_path / "run")
    assert model == tmp_path / "run" / "train_verifier" / "model"
    assert HFVerifier(model).labels == MAFW_LABELS
    metrics = json.loads((tmp_path / "run" / "train_verifier" / "metrics.json").read_text())
    assert metrics["train_size"] == 297 and metrics["eval_size"] == 33
    assert (tmp_path / "run" / "train_verifier" / "metrics.png").is_file()


def test_a_hub_id_loads_from_the_local_hf_cache(random_goemotions_verifier: Path,
                                                tmp_path: Path, monkeypatch):
    """``SamLowe/roberta-base-go_emotions`` style ids resolve in the local cache only."""
    import shutil

    snapshot = tmp_path / "hub" / "models--acme--tiny-erv" / "snapshots" / ("0" * 40)
    shutil.copytree(random_goemotions_verifier, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    verifier = HFVerifier("acme/tiny-erv")
    assert verifier.path == snapshot.resolve()
    assert verifier.labels == GOEMOTIONS


def test_text_dataset_plugins_read_table_5_sources(tmp_path: Path):
    """What a recipe's [[train_verifier.train]] entries build (root = the file)."""
    from erv_plugins.plugins import get_plugins
    from erv_plugins.recipe import DataSpec
    from erv_plugins.verifiers.text_datasets import MerrOptions, TextJsonlOptions
    from erv_plugins.datasets.base import build_dataset
    from erv_plugins.verifiers.training import records_from_dataset

    merr = tmp_path / "merr.json"
    merr.write_text(json.dumps({"a": {"pseu_emotion": "fear", "caption": "He trembles."}}))
    pseudo = tmp_path / "pseudo_dfew.jsonl"
    pseudo.write_text('{"text": "She scowls.", "labels": ["anger", "disgust"]}\n')
    plugins = get_plugins()
    ds = build_dataset(DataSpec(plugin="text_merr_fine", root=str(merr),
                       options=MerrOptions(text_field="caption")), plugins)
    assert records_from_dataset(ds, "merr") == [TextRecord("He trembles.", ("fear",),
                                                           "merr_fine", "a")]
    ds = build_dataset(DataSpec(plugin="text_jsonl", root=str(pseudo),
                       options=TextJsonlOptions()), plugins)
    assert [(r.text, r.labels, r.source) for r in ds.records()] == [
        ("She scowls.", ("anger", "disgust"), "pseudo_dfew")]
    sample = ds.samples()[0]  # the Dataset protocol view
    assert (sample.label, sample.explanation, sample.extra["labels"]) == (
        "anger", "She scowls.", ["anger", "disgust"])
    with pytest.raises(VerifierDataError, match="text_emer: give the file as root"):
        build_dataset(DataSpec(plugin="text_emer"), plugins)

"""EEA, FCR, EPC, WAR, UAR (paper section 4.2) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from erv_plugins.evaluation.metrics import (
    OUTSIDE,
    Outcomes,
    coherent_among_correct,
    compute_metrics,
    confusion,
    uar,
)

LABELS = ("happy", "sad", "neutral")
# Six samples; "joyful" is an answer outside the label list.
G = ["happy", "happy", "happy", "sad", "sad", "neutral"]
P = ["happy", "happy", "sad", "sad", "joyful", "neutral"]
J = ["happy", "sad", "sad", "sad", "sad", "happy"]


def test_overall_metrics_by_hand() -> None:
    m = compute_metrics(Outcomes.from_words(LABELS, G, P, J), bootstrap=0)
    assert m["n"] == 6
    assert m["EEA"] == pytest.approx(100 * 3 / 6)   # j = g: samples 1, 4, 5
    assert m["FCR"] == pytest.approx(100 * 2 / 6, abs=1e-4)  # p = g and j = g: 1, 4
    assert m["EPC"] == pytest.approx(100 * 3 / 6)   # p = j: 1, 3, 4
    assert m["WAR"] == pytest.approx(100 * 4 / 6, abs=1e-4)  # p = g: 1, 2, 4, 6
    assert m["UAR"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1) / 3, abs=1e-4)
    assert m["FCR/WAR"] == pytest.approx(50.0)
    assert "ci" not in m


def test_per_class_metrics_by_hand() -> None:
    pc = compute_metrics(Outcomes.from_words(LABELS, G, P, J), bootstrap=0)["per_class"]
    assert pc["happy"] == pytest.approx(
        {"n": 3, "EEA": 33.3333, "FCR": 33.3333, "EPC": 66.6667, "WAR": 66.6667,
         "UAR": 66.6667, "FCR/WAR": 50.0}, abs=1e-4)
    assert pc["sad"] == pytest.approx(
        {"n": 2, "EEA": 100.0, "FCR": 50.0, "EPC": 50.0, "WAR": 50.0, "UAR": 50.0,
         "FCR/WAR": 100.0})
    assert pc["neutral"] == pytest.approx(
        {"n": 1, "EEA": 0.0, "FCR": 0.0, "EPC": 0.0, "WAR": 100.0, "UAR": 100.0,
         "FCR/WAR": 0.0})


def test_paper_fcr_over_war_arithmetic() -> None:
    """Table 1, ours on MAFW: FCR 43.57 and WAR 57.49 -> 75.8 % of correct answers are
    coherent with their explanation."""
    n, right, both = 10_000, 5_749, 4_357
    g = ["anger"] * n
    p = ["anger"] * right + ["fear"] * (n - right)
    j = ["anger"] * both + ["fear"] * (n - both)
    m = compute_metrics(Outcomes.from_words(("anger", "fear"), g, p, j), bootstrap=0)
    assert (m["FCR"], m["WAR"], m["EEA"]) == (43.57, 57.49, 43.57)
    assert m["EPC"] == 86.08  # 4357 agree on anger + 4251 agree on fear
    assert round(m["FCR/WAR"], 1) == 75.8
    assert round(100 * coherent_among_correct(0.4357, 0.5749), 1) == 75.8


def test_answer_outside_the_list_is_wrong_and_incoherent() -> None:
    o = Outcomes.from_words(LABELS, ["neutral"], ["calm"], ["neutral"])
    assert o.p.tolist() == [OUTSIDE]
    m = compute_metrics(o, bootstrap=0)
    assert (m["WAR"], m["EPC"], m["FCR"], m["EEA"]) == (0.0, 0.0, 0.0, 100.0)
    assert m["FCR/WAR"] is None  # undefined when nothing is correct


def test_uar_ignores_classes_absent_from_the_ground_truth() -> None:
    g = np.array([0, 0, 1])
    p = np.array([0, 1, 1])
    assert uar(g, p, num_classes=5) == pytest.approx((0.5 + 1.0) / 2)


def test_words_outside_the_labels_for_truth_or_judge_are_refused() -> None:
    with pytest.raises(ValueError, match="ground truth 'calm' is not one of the labels"):
        Outcomes.from_words(LABELS, ["calm"], ["sad"], ["sad"])
    with pytest.raises(ValueError, match="judge label 'joy'"):
        Outcomes.from_words(LABELS, ["sad"], ["sad"], ["joy"])


def test_bootstrap_matches_a_plain_loop_and_brackets_the_estimate() -> None:
    o = Outcomes.from_words(LABELS, G * 5, P * 5, J * 5)
    m = compute_metrics(o, bootstrap=150, seed=7, confidence=0.9)
    idx = np.random.default_rng(7).integers(0, len(o), size=(150, len(o)))
    eeas = [np.mean(o.j[i] == o.g[i]) for i in idx]
    uars = [uar(o.g[i], o.p[i], 3) for i in idx]
    assert m["ci"]["EEA"] == pytest.approx(list(100 * np.quantile(eeas, [0.05, 0.95])), abs=1e-4)
    assert m["ci"]["UAR"] == pytest.approx(list(100 * np.quantile(uars, [0.05, 0.95])), abs=1e-4)
    sad = [np.mean(o.j[i][o.g[i] == 1] == 1) for i in idx if np.any(o.g[i] == 1)]
    assert m["per_class"]["sad"]["ci"]["EEA"] == pytest.approx(
        list(100 * np.quantile(sad, [0.05, 0.95])), abs=1e-4)
    for key in ("EEA", "FCR", "EPC", "WAR", "UAR", "FCR/WAR"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi, key
    assert m["bootstrap"] == 150 and m["ci_level"] == 0.9
    assert compute_metrics(o, bootstrap=150, seed=7) == compute_metrics(o, bootstrap=150, seed=7)


def test_confusion_counts_with_an_outside_column() -> None:
    o = Outcomes.from_words(LABELS, G, P, J)
    assert confusion(o.g, o.p, 3).tolist() == [[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]]
    assert confusion(o.g, o.j, 3).sum() == 6
    assert not math.isnan(compute_metrics(o, bootstrap=10)["ci"]["EEA"][0])

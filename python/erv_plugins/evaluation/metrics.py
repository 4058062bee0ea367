"""The metrics of paper section 4.2, per class and overall, with bootstrap intervals.

Over N test samples, with judge label j (what the explanation argues for), predicted
answer p and ground truth g:

    EEA = P(j = g)              explanation emotion accuracy
    FCR = P(p = g and j = g)    faithful-and-correct rate
    EPC = P(p = j)              explanation-prediction consistency
    WAR = P(p = g)              weighted average recall (overall accuracy)
    UAR = mean over classes c of P(p = c | g = c)   (classes present in g)
    FCR/WAR                     coherent among correct, e.g. 43.57 / 57.49 = 75.8 %

Labels are coded as indices into the dataset's label list; an answer outside the list is
coded -1, so it is wrong and incoherent with every judge label. All functions take the
coded arrays and return fractions; ``compute_metrics`` reports percentages. How a
prediction becomes (g, p, j) is the evaluation protocol's business (``protocols.py``):
the release's scripts, for one, read the answer differently for WAR/UAR and for
FCR/EPC, and average UAR over every class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

METRICS: tuple[str, ...] = ("EEA", "FCR", "EPC", "WAR", "UAR")
RATIO = "FCR/WAR"
OUTSIDE = -1  # code of an answer that is not one of the dataset's labels
UNJUDGED = -2  # code of a judge label that counts as wrong whatever g is (release protocol)

# How UAR averages per-class recalls (docs/fidelity.md):
#   present:      classes that occur in g; an unknown answer is a miss (the usual UAR);
#   all:          every class of the label list (a class without samples adds 0), unknown
#                 answers are misses: the release's DFEW path (eval_score.py);
#   all_known:    every class, and an unknown answer leaves its class's denominator: the
#                 release's MAFW path (count_emotion_MAFW counts a sample only once its
#                 answer has normalised).
UarRule = Literal["present", "all", "all_known"]


def eea(g: np.ndarray, j: np.ndarray) -> float:
    return float(np.mean(j == g))


def fcr(g: np.ndarray, p: np.ndarray, j: np.ndarray) -> float:
    return float(np.mean((p == g) & (j == g)))


def epc(p: np.ndarray, j: np.ndarray) -> float:
    return float(np.mean(p == j))


def war(g: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p == g))


def uar(g: np.ndarray, p: np.ndarray, num_classes: int, rule: UarRule = "present") -> float:
    """Mean per-class recall (``rule``: which classes and which samples count)."""
    recalls = []
    for c in range(num_classes):
        m = g == c
        if rule == "all_known":
            m = m & (p != OUTSIDE)
        if np.any(m):
            recalls.append(float(np.mean(p[m] == c)))
        elif rule != "present":
            recalls.append(0.0)
    return float(np.mean(recalls)) if recalls else float("nan")


def coherent_among_correct(fcr_value: float, war_value: float) -> float:
    """FCR / WAR: the share of correct answers whose explanation agrees (NaN if WAR = 0)."""
    return fcr_value / war_value if war_value else float("nan")


@dataclass(frozen=True)
class Outcomes:
    """Coded (g, p, j) of the samples of one evaluation.

    ``p`` is the answer WAR and UAR read; ``pj`` the answer FCR and EPC read (the release's
    scripts parse it twice, differently; None = ``p``); ``j`` the judge label, coded
    ``UNJUDGED`` where the protocol counts the explanation as wrong whatever it says.
    """

    labels: tuple[str, ...]
    g: np.ndarray
    p: np.ndarray
    j: np.ndarray
    pj: np.ndarray | None = None
    uar_rule: UarRule = "present"

    @classmethod
    def from_words(cls, labels: Sequence[str], g: Sequence[str], p: Sequence[str | None],
                   j: Sequence[str | None], pj: Sequence[str | None] | None = None,
                   uar_rule: UarRule = "present") -> Outcomes:
        """Code words by their position in ``labels``. ``g`` must be labels, ``j`` labels
        or None (``UNJUDGED``); an answer ``p`` / ``pj`` outside them (or None) is coded
        ``OUTSIDE``."""
        index = {lab: i for i, lab in enumerate(labels)}
        for name, words in (("ground truth", g), ("judge label", [w for w in j if w is not None])):
            bad = sorted({w for w in words if w not in index})
            if bad:
                raise ValueError(f"{name} {bad[0]!r} is not one of the labels {list(labels)}")
        if not len(g) == len(p) == len(j) or (pj is not None and len(pj) != len(g)):
            raise ValueError(f"g, p and j differ in length ({len(g)}, {len(p)}, {len(j)})")
        code = np.int16

        def answers(words: Sequence[str | None]) -> np.ndarray:
            return np.array([index.get(w, OUTSIDE) if w is not None else OUTSIDE
                             for w in words], dtype=code)

        return cls(tuple(labels),
                   np.array([index[w] for w in g], dtype=code),
                   answers(p),
                   np.array([index[w] if w is not None else UNJUDGED for w in j], dtype=code),
                   None if pj is None else answers(pj), uar_rule)

    @property
    def p_judged(self) -> np.ndarray:
        return self.p if self.pj is None else self.pj

    def __len__(self) -> int:
        return len(self.g)


def _point(o: Outcomes) -> dict[str, float]:
    g, p, j, pj = o.g, o.p, o.j, o.p_judged
    values = {"EEA": eea(g, j), "FCR": fcr(g, pj, j), "EPC": epc(pj, j), "WAR": war(g, p),
              "UAR": uar(g, p, len(o.labels), o.uar_rule)}
    values[RATIO] = coherent_among_correct(values["FCR"], values["WAR"])
    return values


def _class_point(o: Outcomes, c: int) -> dict[str, float]:
    """The metrics conditioned on g = c (WAR and UAR both become the recall of c)."""
    m = o.g == c
    n = int(m.sum())
    if n == 0:
        return {k: float("nan") for k in (*METRICS, RATIO)}
    gc, pc, jc, pjc = o.g[m], o.p[m], o.j[m], o.p_judged[m]
    recall = war(gc, pc)
    if o.uar_rule == "all_known":
        known = pc != OUTSIDE
        recall = war(gc[known], pc[known]) if known.any() else 0.0
    values = {"EEA": eea(gc, jc), "FCR": fcr(gc, pjc, jc), "EPC": epc(pjc, jc),
              "WAR": recall, "UAR": recall}
    values[RATIO] = coherent_among_correct(values["FCR"], recall)
    return values


def _bootstrap(o: Outcomes, resamples: int, seed: int, block: int = 200
               ) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Per-resample overall and per-class values (fractions; NaN where undefined)."""
    rng = np.random.default_rng(seed)
    n, num_classes = len(o), len(o.labels)
    overall: dict[str, list[np.ndarray]] = {k: [] for k in (*METRICS, RATIO)}
    per_class: list[dict[str, list[np.ndarray]]] = [
        {k: [] for k in (*METRICS, RATIO)} for _ in range(num_classes)]
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, resamples, block):
            b = min(block, resamples - start)
            idx = rng.integers(0, n, size=(b, n))
            g, p, j, pj = o.g[idx], o.p[idx], o.j[idx], o.p_judged[idx]
            right, agree, coherent = p == g, j == g, pj == j
            both = (pj == g) & agree
            f_war, f_fcr = right.mean(1), both.mean(1)
            overall["EEA"].append(agree.mean(1))
            overall["FCR"].append(f_fcr)
            overall["EPC"].append(coherent.mean(1))
            overall["WAR"].append(f_war)
            overall[RATIO].append(f_fcr / np.where(f_war > 0, f_war, np.nan))
            known = p != OUTSIDE
            recalls = []
            for c in range(num_classes):
                m = g == c
                support = m.sum(1).astype(float)
                support[support == 0] = np.nan
                counted = m & known if o.uar_rule == "all_known" else m
                counted_support = counted.sum(1).astype(float)
                counted_support[counted_support == 0] = np.nan
                rc = (right & counted).sum(1) / counted_support
                fc = (both & m).sum(1) / support
                recalls.append(rc if o.uar_rule == "present" else np.nan_to_num(rc, nan=0.0))
                pc = per_class[c]
                pc["EEA"].append((agree & m).sum(1) / support)
                pc["FCR"].append(fc)
                pc["EPC"].append((coherent & m).sum(1) / support)
                pc["WAR"].append(rc)
                pc["UAR"].append(rc)
                pc[RATIO].append(fc / np.where(rc > 0, rc, np.nan))
            overall["UAR"].append(np.nanmean(np.stack(recalls), axis=0))
    cat = {k: np.concatenate(v) for k, v in overall.items()}
    return cat, [{k: np.concatenate(v) for k, v in pc.items()} for pc in per_class]


def _interval(values: np.ndarray, confidence: float) -> list[float] | None:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return [_pct(lo), _pct(hi)]


def _pct(x: float) -> float | None:
    x = float(x)
    return None if np.isnan(x) else round(100.0 * x, 4)


def compute_metrics(o: Outcomes, *, bootstrap: int = 1000, seed: int = 0,
                    confidence: float = 0.95) -> dict[str, Any]:
    """EEA, FCR, EPC, WAR, UAR and FCR/WAR in percent, overall and per class, with
    percentile bootstrap intervals (``bootstrap`` resamples of the samples; 0 = none)."""
    if len(o) == 0:
        raise ValueError("no judged samples to compute metrics on")
    point = _point(o)
    result: dict[str, Any] = {"n": len(o)}
    result.update({k: _pct(v) for k, v in point.items()})
    boot = _bootstrap(o, bootstrap, seed) if bootstrap > 0 else None
    if boot is not None:
        result["ci"] = {k: _interval(v, confidence) for k, v in boot[0].items()}
        result["ci_level"] = confidence
        result["bootstrap"] = bootstrap
    per_class: dict[str, Any] = {}
    for c, label in enumerate(o.labels):
        entry: dict[str, Any] = {"n": int(np.sum(o.g == c))}
        entry.update({k: _pct(v) for k, v in _class_point(o, c).items()})
        if boot is not None and entry["n"]:
            entry["ci"] = {k: _interval(v, confidence) for k, v in boot[1][c].items()}
        per_class[label] = entry
    result["per_class"] = per_class
    return result


def confusion(truth: np.ndarray, other: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = truth classes, columns = classes of ``other`` plus one last column
    for codes outside the list."""
    other = np.where(other < 0, num_classes, other)
    m = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    np.add.at(m, (truth.astype(np.int64), other.astype(np.int64)), 1)
    return m

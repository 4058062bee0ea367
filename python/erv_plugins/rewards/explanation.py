"""The explanation reward R_E of the Emotional Rationale Verifier (paper eq. 4, Algorithm 1).

For each completion o_i: the explanation E_i (first ``<think>`` block) is split into
sentences S_i; the verifier scores every sentence; each sentence gets a label set EL
(probabilities > tau; none -> the top-1 label; more than k -> the top-k); c_i counts the
sentences whose set holds the ground truth and N_i,neu the neutral ones;

    R_i,E = c_i / N_i                 if the ground truth is neutral
    R_i,E = c_i / (N_i - N_i,neu)     otherwise   (0 when the denominator is 0)

and R_i,E = 0 when there is no explanation or no sentence.

The work is shared across the batch (all G generations of all prompts): each distinct
sentence is verified once, verifier outputs are cached under (verifier.cache_key,
sentence), and uncached sentences go to the verifier in batches of similar length.

Neutral rule: "release" (the authors' code) calls a sentence neutral iff its label set is
exactly {neutral}; "paper" follows Algorithm 1 line 15 literally ("neutral" in EL), under
which a sentence labelled {joy, neutral} counts both towards c and N_neu, so R_E may exceed
1. The recipes use "release".
"""

from __future__ import annotations

from operator import itemgetter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import msgspec
import numpy as np

from erv_plugins.fifo import FifoSlots
from erv_plugins.labels import BUILTIN_LABEL_SPACES, NEUTRAL, LabelSpace
from erv_plugins.rewards.base import RewardBatch, RewardResult
from erv_plugins.rewards.spaces import (
    dataset_column,
    distinct_rows,
    label_groups,
    row_spaces,
    space_of,
)
from erv_plugins.text import split_sentences_unique
from erv_plugins.verifiers.base import Verifier

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext

try:  # the native label sets (same results as the numpy code below, ~10x faster)
    from erv_plugins._native import label_sets as _native_label_sets
except ImportError:  # pragma: no cover - no native build
    _native_label_sets = None


class ExplanationOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the explanation reward (paper Algorithm 1 parameters and Table 4 ablations)."""

    # Probability threshold: the paper says 0.5; the released sentence-level reward uses 0.1.
    tau: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    # At most this many labels per sentence (Algorithm 1: k = 2).
    top_k: Annotated[int, msgspec.Meta(ge=1)] = 2
    # Off = the "w/o neutral filtering" ablation: always c / N.
    neutral_filter: bool = True
    neutral_rule: Literal["release", "paper"] = "release"
    # Off = the "w/o sentence-level" ablation: the whole explanation is classified once.
    sentence_level: bool = True
    segmentation: Literal["paper", "pragmatic"] = "paper"
    # Label space of rows without a "dataset" column (the release maps ground truths
    # through the MAFW normaliser).
    label_space: str = "mafw"
    # Dataset label -> verifier label, overriding the label space's own mapping.
    label_map: dict[str, str] = msgspec.field(default_factory=dict)
    # The verifier label that marks an emotionally neutral sentence.
    neutral_label: str = NEUTRAL
    # Most sentences per verifier call (sorted by length; the verifier may batch further).
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 256
    cache_size: Annotated[int, msgspec.Meta(ge=0)] = 200_000


@dataclass(frozen=True)
class SentenceVerdict:
    """One sentence s_i,k of Algorithm 1 and what the verifier made of it."""

    text: str
    labels: tuple[tuple[str, float], ...]  # the label set EL_k with probabilities, most probable first
    counted: bool  # ground truth in EL_k (adds to c_i)
    neutral: bool  # adds to N_i,neu


@dataclass(frozen=True)
class ExplanationDetail:
    """The arithmetic of R_i,E for one completion (what ``erv reward --explain`` prints)."""

    ground_truth: str | None  # the verifier label standing for the ground truth
    sentences: tuple[SentenceVerdict, ...]
    c: int
    n: int
    n_neutral: int
    denominator: int
    formula: str  # "c / N" or "c / (N - N_neu)"
    value: float


@dataclass
class _Computation:
    values: np.ndarray  # (B,) float64
    sid: np.ndarray  # (S,) index of each sentence occurrence into the unique sentences
    owner: np.ndarray  # (S,) completion of each sentence occurrence
    unique: list[str]
    probs: np.ndarray  # (U, L)
    sets: np.ndarray  # (U, L) bool: label set per unique sentence
    neutral: np.ndarray  # (U,) bool
    gt_idx: np.ndarray  # (B,) int, -1 where there is nothing to score
    gt_neutral: np.ndarray  # (B,) bool
    c: np.ndarray
    n: np.ndarray
    n_neutral: np.ndarray
    denominator: np.ndarray
    verified: int  # sentences sent to the verifier this batch (cache misses)


class ExplanationReward:
    """R_E: share of non-neutral explanation sentences whose verified emotions include the
    ground truth (paper eq. 4, Algorithm 1)."""

    name: ClassVar[str] = "explanation"
    Options: ClassVar[type[msgspec.Struct]] = ExplanationOptions
    requires: ClassVar[frozenset[str]] = frozenset({"label"})

    def __init__(self, options: ExplanationOptions | None = None, *,
                 context: BuildContext | None = None, verifier: Verifier | None = None,
                 label_spaces: Mapping[str, LabelSpace] | None = None) -> None:
        """Built by erv with ``context`` (the recipe's verifier, the label spaces); in code,
        with ``verifier`` (and ``label_spaces``) directly."""
        self.options = options or ExplanationOptions()
        if verifier is None:
            if context is None:
                raise TypeError("explanation reward: give a verifier (or a BuildContext)")
            verifier = context.verifier()
        if label_spaces is None:
            label_spaces = context.label_spaces if context is not None else BUILTIN_LABEL_SPACES
        if not isinstance(verifier, Verifier):
            raise TypeError(
                f"explanation reward: {verifier!r} is not a Verifier "
                "(needs labels, cache_key and predict_proba)"
            )
        self.verifier = verifier
        self.label_spaces = dict(label_spaces)
        self._labels = tuple(verifier.labels)
        self._label_index = {label: i for i, label in enumerate(self._labels)}
        self._neutral_idx = self._label_index.get(self.options.neutral_label)
        # The verifier cache: sentence -> row of _store, the oldest forgotten first.
        self._cache: FifoSlots[str] = FifoSlots(self.options.cache_size)
        self._store = np.empty((0, len(self._labels)), dtype=np.float32)
        self._cache_key: str | None = None
        self._gt_memo: dict[tuple[str, str], int] = {}

    @property
    def sentence_mode(self) -> str | None:
        """The segmentation this reward needs (the engine splits in its parsing pass)."""
        return self.options.segmentation if self.options.sentence_level else None

    # -- the verifier, deduplicated and cached ---------------------------------------------
    def probabilities(self, sentences: Sequence[str]) -> tuple[np.ndarray, int]:
        """Verifier probabilities of distinct ``sentences`` (U, L) and how many were computed."""
        key = self.verifier.cache_key
        if key != self._cache_key:  # outputs of another verifier never mix with these
            self._cache.clear()
            self._cache_key = key
        width = len(self._labels)
        out = np.empty((len(sentences), width), dtype=np.float32)
        missing: list[int] | None = None  # None: all of them
        if len(self._cache):
            rows = self._cache.lookup(sentences)
            missing = [i for i, r in enumerate(rows) if r is None]
            if len(missing) < len(sentences):
                hits = [i for i, r in enumerate(rows) if r is not None]
                out[hits] = self._store[[rows[i] for i in hits]]
        todo = list(sentences) if missing is None else [sentences[i] for i in missing]
        if not todo:
            return out, 0
        # Similar lengths together: each verifier batch pads to its longest sentence.
        order = np.argsort(np.fromiter(map(len, todo), dtype=np.int64, count=len(todo)),
                           kind="stable")
        if len(todo) > 1:
            todo = list(itemgetter(*order.tolist())(todo))
        new = np.empty((len(todo), width), dtype=np.float32)
        size = self.options.batch_size
        for start in range(0, len(todo), size):
            chunk = todo[start:start + size]
            probs = np.asarray(self.verifier.predict_proba(chunk), dtype=np.float32)
            if probs.shape != (len(chunk), width):
                raise ValueError(
                    f"explanation reward: verifier {key!r} returned shape {probs.shape} for "
                    f"{len(chunk)} sentences; expected ({len(chunk)}, {width})"
                )
            new[start:start + len(chunk)] = probs
        out[order if missing is None else np.asarray(missing, dtype=np.int64)[order]] = new
        if self.options.cache_size:
            self._remember(todo, new)
        return out, len(todo)

    def _remember(self, sentences: list[str], probs: np.ndarray) -> None:
        """Cache new (not cached) ``sentences``; past ``cache_size`` the oldest are forgotten."""
        slots = self._cache.add(sentences)
        if len(self._cache) > len(self._store):  # still filling: the store grows
            grown = np.empty((min(self._cache.capacity, max(2 * len(self._store),
                                                            len(self._cache), 1024)),
                              probs.shape[1]), dtype=np.float32)
            grown[:len(self._store)] = self._store
            self._store = grown
        self._store[slots] = probs[len(probs) - len(slots):]

    # -- Algorithm 1, lines 7-17, for all distinct sentences at once ------------------------
    def label_sets(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label set EL per row of ``probs`` (bool mask) and whether the row is neutral."""
        tau, k = self.options.tau, self.options.top_k
        if (_native_label_sets is not None and probs.dtype == np.float32 and probs.ndim == 2
                and not np.isnan(probs).any()):
            sets_bytes, neutral_bytes = _native_label_sets(
                np.ascontiguousarray(probs), tau, k, self._neutral_idx,
                self.options.neutral_rule == "release")
            return (np.frombuffer(sets_bytes, dtype=bool).reshape(probs.shape),
                    np.frombuffer(neutral_bytes, dtype=bool))
        return self._label_sets_numpy(probs)

    def _label_sets_numpy(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``label_sets`` in numpy (no native build, NaN or float64 probabilities)."""
        tau, k = self.options.tau, self.options.top_k
        above = probs > tau  # strictly, as released
        count = np.count_nonzero(above, axis=1)
        sets = above
        none = count == 0
        if none.any():  # nothing above tau: the top-1 label
            sets[np.flatnonzero(none), probs[none].argmax(axis=1)] = True
        many = count > k
        if many.any():  # more than k above tau: the k most probable (ties: lower index)
            everywhere = bool(many.all())
            sub = probs.copy() if everywhere else probs[many]
            if k <= 4 and not np.isnan(sub).any():
                # k rounds of argmax (the first, i.e. lowest-index, maximum of each row):
                # the same set as the partition below, at a fraction of its cost.
                top = np.zeros(sub.shape, dtype=bool)
                rows = np.arange(len(sub))
                for _ in range(k):
                    best = sub.argmax(axis=1)
                    top[rows, best] = True
                    sub[rows, best] = -np.inf
            else:
                kth = np.partition(sub, sub.shape[1] - k, axis=1)[:, sub.shape[1] - k, None]
                higher = sub > kth
                tied = sub == kth
                room = k - higher.sum(axis=1, keepdims=True)
                top = higher | (tied & (np.cumsum(tied, axis=1) <= room))
            if everywhere:
                sets = top
            else:
                sets[many] = top
        if self._neutral_idx is None:
            neutral = np.zeros(len(probs), dtype=bool)
        elif self.options.neutral_rule == "release":
            neutral = sets[:, self._neutral_idx] & (np.count_nonzero(sets, axis=1) == 1)
        else:
            neutral = sets[:, self._neutral_idx].copy()
        return sets, neutral

    def ground_truth_index(self, label: str, space: LabelSpace) -> int:
        """The verifier's output index standing for dataset label ``label``."""
        memo_key = (space.name, label)
        idx = self._gt_memo.get(memo_key)
        if idx is None:
            word = label.strip()
            mapped = self.options.label_map.get(word) or self.options.label_map.get(
                space.normalize(word))
            if mapped is None:
                try:
                    mapped = space.to_verifier(space.normalize(word), self._labels)
                except KeyError as exc:
                    raise ValueError(f"explanation reward: {exc.args[0]}") from None
            if mapped not in self._label_index:
                raise ValueError(
                    f"explanation reward: label_map sends {label!r} to {mapped!r}, which is not "
                    f"a verifier label ({', '.join(self._labels)})"
                )
            idx = self._gt_memo[memo_key] = self._label_index[mapped]
        return idx

    def _ground_truth_indices(self, labels: Sequence[object],
                              columns: Mapping[str, Sequence[object]],
                              groups: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """``ground_truth_index`` of every row, computed once per distinct (dataset, label)."""
        size = len(labels)
        if None in labels:
            i = next(i for i, label in enumerate(labels) if label is None)
            raise ValueError(f"explanation reward: completion {i} has no ground-truth label")
        words = list(map(str, labels))
        names = dataset_column(columns, size)
        if groups is None:
            groups = distinct_rows(names, words)
        if groups is None:  # an unhashable dataset value: row by row
            spaces = row_spaces(columns, size, self.label_spaces, self.options.label_space,
                                reward=self.name)
            return np.array([self.ground_truth_index(w, sp) for w, sp in zip(words, spaces)],
                            dtype=np.int64)
        first, inverse = groups
        idx = np.array([self.ground_truth_index(words[i], space_of(
            names[i], self.label_spaces, self.options.label_space, self.name))
            for i in first.tolist()], dtype=np.int64)
        return idx[inverse]

    def _compute(self, batch: RewardBatch) -> _Computation:
        opts = self.options
        size = len(batch)
        labels = batch.columns.get("label")
        if labels is None:
            raise ValueError("explanation reward: the batch has no 'label' column (ground truth)")
        # E_i: the first <think> block, stripped; no block -> empty explanation -> R_E = 0.
        # Each distinct sentence of the whole batch once (all G generations of all prompts).
        if opts.sentence_level:
            split = batch.sentences.get(opts.segmentation)
            if split is None:
                split = batch.sentences[opts.segmentation] = split_sentences_unique(
                    [p.think or "" for p in batch.parsed], opts.segmentation)
            unique, sid, n = split
        else:
            texts = [p.think or "" for p in batch.parsed]
            index: dict[str, int] = {}
            sid = np.array([index.setdefault(t, len(index)) for t in texts if t], dtype=np.int64)
            n = np.array([1 if t else 0 for t in texts], dtype=np.int64)
            unique = list(index)
        owner = np.repeat(np.arange(size, dtype=np.int64), n)
        gt_idx = self._ground_truth_indices(labels, batch.columns, label_groups(batch))
        gt_neutral = (gt_idx == self._neutral_idx) if self._neutral_idx is not None else \
            np.zeros(size, dtype=bool)

        probs, verified = self.probabilities(unique)
        sets, neutral = self.label_sets(probs)
        contains = sets[sid, gt_idx[owner]] if len(sid) else np.zeros(0, dtype=bool)
        c = np.bincount(owner, weights=contains, minlength=size).astype(np.int64)
        n_neu = np.bincount(owner, weights=neutral[sid] if len(sid) else None,
                            minlength=size).astype(np.int64)
        whole = gt_neutral | (not opts.neutral_filter)
        denominator = np.where(whole, n, n - n_neu)
        values = np.divide(c, denominator, out=np.zeros(size, dtype=np.float64),
                           where=denominator > 0)
        return _Computation(values, sid, owner, unique, probs, sets, neutral, gt_idx,
                            gt_neutral, c, n, n_neu, denominator, verified)

    def __call__(self, batch: RewardBatch) -> RewardResult:
        comp = self._compute(batch)
        total_n = int(comp.n.sum())
        info = {
            "sentences_per_explanation": float(comp.n.mean()) if len(comp.n) else 0.0,
            "neutral_share": float(comp.n_neutral.sum() / total_n) if total_n else 0.0,
            "gt_match_share": float(comp.c.sum() / total_n) if total_n else 0.0,
            "unique_sentences": float(len(comp.unique)),
            "verified_sentences": float(comp.verified),
        }
        return RewardResult(comp.values.tolist(), info)

    def explain(self, batch: RewardBatch) -> list[ExplanationDetail]:
        """Per completion: each sentence's label set, whether it counted, and R_E's arithmetic."""
        comp = self._compute(batch)
        details: list[ExplanationDetail] = []
        pos = 0
        for i in range(len(comp.values)):
            verdicts = []
            for _ in range(int(comp.n[i])):
                u = comp.sid[pos]
                s = comp.unique[u]
                idxs = np.flatnonzero(comp.sets[u])
                idxs = idxs[np.argsort(-comp.probs[u, idxs], kind="stable")]
                verdicts.append(SentenceVerdict(
                    text=s,
                    labels=tuple((self._labels[j], float(comp.probs[u, j])) for j in idxs),
                    counted=bool(comp.sets[u, comp.gt_idx[i]]),
                    neutral=bool(comp.neutral[u]),
                ))
                pos += 1
            whole = bool(comp.gt_neutral[i]) or not self.options.neutral_filter
            details.append(ExplanationDetail(
                ground_truth=self._labels[comp.gt_idx[i]] if comp.gt_idx[i] >= 0 else None,
                sentences=tuple(verdicts),
                c=int(comp.c[i]),
                n=int(comp.n[i]),
                n_neutral=int(comp.n_neutral[i]),
                denominator=int(comp.denominator[i]),
                formula="c / N" if whole else "c / (N - N_neu)",
                value=float(comp.values[i]),
            ))
        return details

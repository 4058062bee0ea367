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

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import msgspec
import numpy as np

from erv_plugins.labels import BUILTIN_LABEL_SPACES, NEUTRAL, LabelSpace
from erv_plugins.rewards.base import RewardBatch, RewardResult
from erv_plugins.rewards.spaces import row_spaces
from erv_plugins.text import split_sentences_batch
from erv_plugins.verifiers.base import Verifier


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
    sentences: list[list[str]]
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
    requires: ClassVar[frozenset[str]] = frozenset({"label", "verifier", "label_space"})

    def __init__(self, options: ExplanationOptions | None = None, *, verifier: Verifier,
                 label_spaces: Mapping[str, LabelSpace] | None = None) -> None:
        self.options = options or ExplanationOptions()
        if not isinstance(verifier, Verifier):
            raise TypeError(
                f"explanation reward: {verifier!r} is not a Verifier "
                "(needs labels, cache_key and predict_proba)"
            )
        self.verifier = verifier
        self.label_spaces = dict(label_spaces if label_spaces is not None else BUILTIN_LABEL_SPACES)
        self._labels = tuple(verifier.labels)
        self._label_index = {label: i for i, label in enumerate(self._labels)}
        self._neutral_idx = self._label_index.get(self.options.neutral_label)
        self._cache: dict[str, np.ndarray] = {}  # sentence -> probabilities, oldest first
        self._cache_key: str | None = None
        self._gt_memo: dict[tuple[str, str], int] = {}

    # -- the verifier, deduplicated and cached ---------------------------------------------
    def probabilities(self, sentences: Sequence[str]) -> tuple[np.ndarray, int]:
        """Verifier probabilities of distinct ``sentences`` (U, L) and how many were computed."""
        key = self.verifier.cache_key
        if key != self._cache_key:  # outputs of another verifier never mix with these
            self._cache.clear()
            self._cache_key = key
        cache = self._cache
        width = len(self._labels)
        out = np.empty((len(sentences), width), dtype=np.float32)
        rows = list(map(cache.get, sentences)) if cache else [None] * len(sentences)
        missing = [i for i, r in enumerate(rows) if r is None]
        if len(missing) < len(sentences):
            hits = [i for i, r in enumerate(rows) if r is not None]
            out[hits] = np.stack([rows[i] for i in hits])  # type: ignore[misc]
        # Similar lengths together: each verifier batch pads to its longest sentence.
        if len(missing) > 1:
            lengths = list(map(len, sentences))
            missing.sort(key=lengths.__getitem__)
        size = self.options.batch_size
        for start in range(0, len(missing), size):
            chunk = missing[start:start + size]
            probs = np.asarray(self.verifier.predict_proba([sentences[i] for i in chunk]),
                               dtype=np.float32)
            if probs.shape != (len(chunk), width):
                raise ValueError(
                    f"explanation reward: verifier {key!r} returned shape {probs.shape} for "
                    f"{len(chunk)} sentences; expected ({len(chunk)}, {width})"
                )
            out[chunk] = probs
        if missing and self.options.cache_size:
            cache.update(zip([sentences[i] for i in missing], out[missing]))
            excess = len(cache) - self.options.cache_size
            if excess > 0:  # forget the oldest entries
                for old in list(itertools.islice(cache, excess)):
                    del cache[old]
        return out, len(missing)

    # -- Algorithm 1, lines 7-17, for all distinct sentences at once ------------------------
    def label_sets(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label set EL per row of ``probs`` (bool mask) and whether the row is neutral."""
        tau, k = self.options.tau, self.options.top_k
        above = probs > tau  # strictly, as released
        count = above.sum(axis=1)
        sets = above.copy()
        none = count == 0
        if none.any():  # nothing above tau: the top-1 label
            sets[np.flatnonzero(none), probs[none].argmax(axis=1)] = True
        many = count > k
        if many.any():  # more than k above tau: the k most probable (ties: lower index)
            sub = probs[many]
            kth = np.partition(sub, sub.shape[1] - k, axis=1)[:, sub.shape[1] - k, None]
            higher = sub > kth
            tied = sub == kth
            room = k - higher.sum(axis=1, keepdims=True)
            sets[many] = higher | (tied & (np.cumsum(tied, axis=1) <= room))
        if self._neutral_idx is None:
            neutral = np.zeros(len(probs), dtype=bool)
        elif self.options.neutral_rule == "release":
            neutral = sets[:, self._neutral_idx] & (sets.sum(axis=1) == 1)
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

    def _compute(self, batch: RewardBatch) -> _Computation:
        opts = self.options
        size = len(batch)
        labels = batch.columns.get("label")
        if labels is None:
            raise ValueError("explanation reward: the batch has no 'label' column (ground truth)")
        spaces = row_spaces(batch.columns, size, self.label_spaces, opts.label_space,
                            reward=self.name)
        # E_i: the first <think> block, stripped; no block -> empty explanation -> R_E = 0.
        texts = [p.think or "" for p in batch.parsed]
        if opts.sentence_level:
            sentences = split_sentences_batch(texts, opts.segmentation)
        else:
            sentences = [[t] if t else [] for t in texts]

        # Each distinct sentence of the whole batch once (all G generations of all prompts).
        flat = list(itertools.chain.from_iterable(sentences))
        unique = list(dict.fromkeys(flat))
        index = {s: i for i, s in enumerate(unique)}
        sid = np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat))
        owner = np.repeat(np.arange(size, dtype=np.int64), list(map(len, sentences)))

        gt_idx = np.full(size, -1, dtype=np.int64)
        for i in range(size):
            if labels[i] is None:
                raise ValueError(f"explanation reward: completion {i} has no ground-truth label")
            gt_idx[i] = self.ground_truth_index(str(labels[i]), spaces[i])
        gt_neutral = (gt_idx == self._neutral_idx) if self._neutral_idx is not None else \
            np.zeros(size, dtype=bool)

        probs, verified = self.probabilities(unique)
        sets, neutral = self.label_sets(probs)
        contains = sets[sid, gt_idx[owner]] if len(sid) else np.zeros(0, dtype=bool)
        c = np.bincount(owner, weights=contains, minlength=size).astype(np.int64)
        n = np.bincount(owner, minlength=size).astype(np.int64)
        n_neu = np.bincount(owner, weights=neutral[sid] if len(sid) else None,
                            minlength=size).astype(np.int64)
        whole = gt_neutral | (not opts.neutral_filter)
        denominator = np.where(whole, n, n - n_neu)
        values = np.divide(c, denominator, out=np.zeros(size, dtype=np.float64),
                           where=denominator > 0)
        return _Computation(values, sentences, sid, owner, unique, probs, sets, neutral, gt_idx,
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
        for i, sents in enumerate(comp.sentences):
            verdicts = []
            for s in sents:
                u = comp.sid[pos]
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

"""EPC of each GRPO rollout under an evaluation judge: a monitor, given weight 0.

The paper's claim is about explanation coherence as a judge sees it (EPC = P(p = j),
section 4.2), measured after training. To see it move *during* GRPO, this reward asks
the recipe's evaluation judge (never the reward's verifier: that would measure reward
hacking) about every rollout's ``<think>`` and scores 1.0 when the judge's emotion j
equals the rollout's answer p, exactly as ``erv eval`` reads both under its protocol
(``evaluation.protocols``). With ``weight = 0`` it changes nothing in R (eq. 5); TRL
logs it per step as ``rewards/epc/mean``, and EEA (j = g) as ``epc/EEA``.

    [rewards.epc]
    weight = 0.0                       # logged, not optimised
    options = { judge = { plugin = "verifier", options = { plugin = "lexicon", ... } } }
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import msgspec

from erv_plugins.labels import BUILTIN_LABEL_SPACES, LabelSpace
from erv_plugins.recipe import EvalProtocol, PluginSpec
from erv_plugins.rewards.base import RewardBatch, RewardResult
from erv_plugins.rewards.spaces import row_spaces

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext


class CoherenceOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # The judge, as in [eval.judge]; it must not be the reward's verifier.
    judge: PluginSpec
    protocol: EvalProtocol = "release"  # how p and the judge's reply are read (as erv eval)
    label_space: str = "mafw"  # rows without a "dataset" column


class CoherenceMonitor:
    """1.0 iff the judge's emotion of the explanation equals the answer (per rollout EPC)."""

    name: ClassVar[str] = "epc"
    Options: ClassVar[type[msgspec.Struct]] = CoherenceOptions
    requires: ClassVar[frozenset[str]] = frozenset({"label"})

    def __init__(self, options: CoherenceOptions, *, context: BuildContext | None = None,
                 label_spaces: Mapping[str, LabelSpace] | None = None) -> None:
        """Built by erv with ``context`` (its plugins and label spaces); in code, with
        ``label_spaces`` or none (the built-in spaces)."""
        from erv_plugins.evaluation.stage import build_judge
        from erv_plugins.plugins import get_plugins

        self.options = options
        if label_spaces is None:  # given: a reward built in code
            label_spaces = context.label_spaces if context is not None else BUILTIN_LABEL_SPACES
        self.label_spaces = dict(label_spaces)
        plugins = context.plugins if context is not None else get_plugins()
        self.judge = build_judge(plugins, options.judge.plugin, options.judge.options,
                                 where="reward 'epc': judge")

    def __call__(self, batch: RewardBatch) -> RewardResult:
        from erv_plugins.evaluation import protocols
        from erv_plugins.evaluation.metrics import UNJUDGED, Outcomes
        from erv_plugins.evaluation.run import Prediction, score_rows
        from erv_plugins.judges.base import JudgeRequest

        labels = batch.columns.get("label")
        if labels is None:
            raise ValueError("reward 'epc': the batch has no 'label' column (ground truth)")
        spaces = row_spaces(batch.columns, len(batch), self.label_spaces,
                            self.options.label_space, reward=self.name)
        protocol = self.options.protocol
        epc = [0.0] * len(batch)
        agree = 0
        by_space: dict[str, list[int]] = {}
        for i, space in enumerate(spaces):
            by_space.setdefault(space.name, []).append(i)
        for rows_of in by_space.values():
            space = spaces[rows_of[0]]
            preds = [Prediction(str(i), batch.completions[i], str(labels[i])) for i in rows_of]
            rows = score_rows(preds, space, protocol=protocol)
            order = protocols.judge_order(protocol, space)
            verdicts = {v.id: v for v in self.judge.judge(
                [JudgeRequest(r["id"], r["explanation"], order) for r in rows], space)}
            judged = []
            for r in rows:
                v = verdicts.get(r["id"])
                r.update(judge_ok=bool(v and v.ok), judge_label=v.label if v else None,
                         judge_reply=v.reply if v else None)
                j = protocols.judge_label(protocol, r, space)
                judged.append(j if r.get("judged", True) else None)
            o = Outcomes.from_words(space.labels, [r["label"] for r in rows],
                                    [r["pred"] for r in rows], judged,
                                    [r.get("pred_judged", r["pred"]) for r in rows])
            for k, i in enumerate(rows_of):
                ok = o.j[k] != UNJUDGED
                epc[i] = 1.0 if ok and o.p_judged[k] == o.j[k] else 0.0
                agree += int(ok and o.g[k] == o.j[k])
        return RewardResult(epc, {"EEA": agree / max(len(batch), 1)})


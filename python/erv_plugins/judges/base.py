"""The judge contract: an explanation in, one emotion word of the dataset out (paper 4.2).

A judge reads only the explanation (the ``<think>`` block) of a completion and names the
emotion it argues for; comparing that judge label j with the predicted answer p and the
ground truth g gives EEA, FCR and EPC (``erv_plugins.evaluation.metrics``).

A judge plugin registers a factory through ``erv_register_judges``; the core calls it as
every component's, ``factory(options, context=BuildContext(...))`` (``erv_plugins.context``:
``context.cache_dir`` for a cache, ``context.verifier_spec`` the recipe's ``[verifier]``),
and uses the result as a ``Judge``::

    class MyJudge:
        name = "mine"
        cache_key = "mine-v1"

        def __init__(self, options, *, context=None): ...

        def judge(self, requests, label_space):
            for r in requests:
                yield Verdict(r.id, label_space.labels[0], reply="...", in_list=True)

The reply rule of the paper (Figure 3) is shared: ``match_reply`` maps a reply outside the
label list to neutral and says so (``in_list=False``), so the metrics can report it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from erv_plugins.labels import NEUTRAL, LabelSpace

if TYPE_CHECKING:
    from erv_plugins.context import BuildContext
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import PluginSpec

# Figure 3 of the paper; the release joins the labels with ", ".
JUDGE_INSTRUCTION = (
    "Read the reasoning content and respond with the appropriate emotion in {labels}. "
    "Reply with only the emotion word."
)
JUDGE_PROMPT = JUDGE_INSTRUCTION + "\nReason: {reason}\nAnswer Emotion:"


@dataclass(frozen=True)
class JudgeRequest:
    """One explanation to judge. ``id`` is the sample's id (unique in one evaluation).

    ``labels``: the order in which a judge that shows the label list must show it (the
    release protocol fixes the dataset's own order); None = the judge's own seeded
    permutation per sample (the paper's Figure 3).
    """

    id: str
    explanation: str
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one request.

    ``label``: a word of the label space (a reply outside it is already mapped to neutral);
    ``reply``: what the judge said, verbatim; ``in_list``: whether the reply was a label;
    ``error``: set (and ``label`` None) when the judge could not answer this request after
    its retries. A failed verdict is never counted in the metrics.
    """

    id: str
    label: str | None
    reply: str = ""
    in_list: bool = True
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def JudgeContext(plugins: Plugins | None = None, verifier: PluginSpec | None = None,
                 cache_dir: Path | None = None) -> BuildContext:  # noqa: N802 - was a class
    """Deprecated: judges get a ``erv_plugins.context.BuildContext`` (``verifier_spec``,
    ``cache_dir``) like every component."""
    import warnings

    from erv_plugins.context import BuildContext
    from erv_plugins.plugins import get_plugins

    warnings.warn("erv_plugins.judges.base.JudgeContext is deprecated: build a "
                  "erv_plugins.context.BuildContext (verifier_spec=..., cache_dir=...)",
                  DeprecationWarning, stacklevel=2)
    return BuildContext.create(plugins or get_plugins(), verifier_spec=verifier,
                               cache_dir=cache_dir)


@runtime_checkable
class Judge(Protocol):
    """Names the emotion each explanation argues for.

    ``cache_key`` identifies the judge's behaviour (model, prompt, decoding): rows of an
    interrupted evaluation are resumed only with a judge of the same key.
    ``judge`` yields exactly one ``Verdict`` per request, in any order, as each arrives.
    """

    name: str
    cache_key: str

    def judge(self, requests: Sequence[JudgeRequest], label_space: LabelSpace
              ) -> Iterator[Verdict]: ...


def permuted_labels(labels: Sequence[str], seed: int, sample_id: str) -> list[str]:
    """The label list in a fresh order for one sample (paper: permuted per sample).

    Seeded by (seed, sample id), not by position, so a resumed or reordered evaluation
    builds the same prompt for the same sample and hits the cache.
    """
    order = list(labels)
    random.Random(f"{seed}\x00{sample_id}").shuffle(order)
    return order


def judge_prompt(explanation: str, labels: Sequence[str]) -> str:
    """The Figure-3 prompt for one explanation and one order of the labels."""
    return JUDGE_PROMPT.format(labels=", ".join(labels), reason=explanation)


_EDGE = re.compile(r"^[\s\"'`*.,;:!?()\[\]]+|[\s\"'`*.,;:!?()\[\]]+$")


def match_reply(reply: str, label_space: LabelSpace) -> tuple[str, bool]:
    """(label, in_list): the label the reply names, or neutral when it names none.

    Only case, surrounding whitespace, quotes and punctuation are forgiven ("Happy." is
    happy); anything else ("joyful", "I think happy") is outside the list, as in the
    release, which compares the reply with the list verbatim.
    """
    word = _EDGE.sub("", reply).lower()
    if word in label_space.labels:
        return word, True
    return NEUTRAL, False


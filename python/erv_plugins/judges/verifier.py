"""The offline judge: a trained Emotional Rationale Verifier reads the whole explanation.

Free and repeatable (no API, no sampling): the verifier classifies the explanation once,
as a whole, and the judge label is the most probable of the dataset's own labels, each
looked up in the verifier's label space through ``LabelSpace.to_verifier`` (so MAFW's
helplessness is read off GoEmotions' grief, as the release maps it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from erv_plugins.errors import ErvError
from erv_plugins.judges.base import JudgeRequest, Verdict
from erv_plugins.judges.cache import cache_key
from erv_plugins.labels import LabelSpace
from erv_plugins.recipe import Positive

if TYPE_CHECKING:  # numpy loads when the judge runs, not when `erv --help` lists plugins
    import numpy as np

    from erv_plugins.context import BuildContext
    from erv_plugins.verifiers.base import Verifier


class VerifierJudgeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Options of the ``verifier`` judge. Without ``plugin`` it uses the recipe's
    ``[verifier]`` table."""

    plugin: str | None = None
    options: Any = msgspec.field(default_factory=dict)
    batch_size: Positive = 64


class VerifierJudge:
    """Judge label = argmax of the verifier's probabilities over the dataset's labels."""

    name: ClassVar[str] = "verifier"
    Options: ClassVar[type[VerifierJudgeOptions]] = VerifierJudgeOptions

    def __init__(self, options: VerifierJudgeOptions | None = None, *,
                 context: BuildContext | None = None,
                 verifier: Verifier | None = None) -> None:
        self.options = o = options or VerifierJudgeOptions()
        if o.batch_size < 1:
            raise ErvError(f"judge 'verifier': batch_size must be >= 1, got {o.batch_size}")
        self.verifier = verifier if verifier is not None else _build_verifier(o, context)
        self.cache_key = cache_key("verifier", self.verifier.cache_key)
        self.info = {"verifier": self.verifier.cache_key}

    def columns(self, label_space: LabelSpace) -> np.ndarray:
        """For each dataset label, the index of its counterpart in the verifier's output."""
        import numpy as np

        verifier_labels = tuple(self.verifier.labels)
        try:
            return np.array([verifier_labels.index(label_space.to_verifier(lab, verifier_labels))
                             for lab in label_space.labels])
        except KeyError as exc:
            raise ErvError(f"judge 'verifier': {exc.args[0]}") from None

    def judge(self, requests: Sequence[JudgeRequest], label_space: LabelSpace
              ) -> Iterator[Verdict]:
        import numpy as np

        cols = self.columns(label_space)
        verifier_labels = tuple(self.verifier.labels)
        bs = self.options.batch_size
        for start in range(0, len(requests), bs):
            batch = requests[start:start + bs]
            probs = np.asarray(self.verifier.predict_proba([r.explanation for r in batch]))
            if probs.shape != (len(batch), len(verifier_labels)):
                raise ErvError(
                    f"judge 'verifier': verifier {self.verifier.cache_key!r} returned shape "
                    f"{probs.shape} for {len(batch)} texts and {len(verifier_labels)} labels")
            best = probs[:, cols].argmax(axis=1)  # first of equal maxima: stable
            for request, b in zip(batch, best, strict=True):
                label = label_space.labels[int(b)]
                yield Verdict(request.id, label, reply=verifier_labels[cols[b]], in_list=True)


def _build_verifier(o: VerifierJudgeOptions, context: BuildContext | None) -> Verifier:
    from erv_plugins.context import BuildContext

    if context is None:
        from erv_plugins.plugins import get_plugins

        context = BuildContext.create(get_plugins())
    plugins = context.plugins
    table = context.verifier_table()
    if o.plugin is not None:
        name, raw = o.plugin, o.options
    elif table is not None:
        name, raw = table.plugin, table.options
    else:
        raise ErvError("judge 'verifier' needs a verifier: set [eval.judge.options] plugin "
                       "(e.g. \"hf\") or give the recipe a [verifier] table")
    reg = plugins.get("verifier", name)
    options = raw
    if reg.options is not None and not isinstance(raw, reg.options):
        try:
            options = msgspec.convert(raw or {}, type=reg.options)
        except msgspec.ValidationError as exc:
            raise ErvError(f"judge 'verifier': options of verifier {name!r}: {exc}") from None
    return reg.build(options, context=context)

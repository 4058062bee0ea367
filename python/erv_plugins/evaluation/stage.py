"""The ``eval`` stage of ``erv run``: generate or read predictions, judge, score, report.

Reads the recipe's ``[eval]`` table (``EvalConfig``): ``predictions`` scores an existing
JSONL (with ``label_space`` or ``dataset`` naming the labels); otherwise the stage
generates with the recipe's model on ``dataset`` (temperature 0.3, top_p 0.9, up to 2048
new tokens, as the paper evaluates). The judge is ``[eval.judge]``; the ``verifier`` judge
uses the recipe's ``[verifier]`` table unless its options name another verifier.
Everything lands in the stage directory; an interrupted stage resumes its judgements.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from erv_plugins.errors import ErvError
from erv_plugins.judges.base import Judge, JudgeContext
from erv_plugins.labels import BUILTIN_LABEL_SPACES, LabelSpace

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import PluginSpec
    from erv_plugins.stages import StageContext


def label_space_named(name: str, plugins: Plugins | None = None) -> LabelSpace:
    """A dataset's label space by name (mafw, dfew, emer, goemotions)."""
    space = BUILTIN_LABEL_SPACES.get(name.lower())
    if space is None:
        raise ErvError(f"unknown label space {name!r}; known: "
                       f"{', '.join(sorted(BUILTIN_LABEL_SPACES))}")
    return space


def build_judge(plugins: Plugins, name: str, options: Any = None, *, where: str = "judge",
                verifier: PluginSpec | None = None, cache_dir: Path | None = None) -> Judge:
    """The judge plugin ``name`` built from raw (dict) or decoded options."""
    reg = plugins.get("judge", name)
    if reg.options is not None and not isinstance(options, reg.options):
        try:
            # strict=False: values typed on a command line ("16") become the field's type.
            options = msgspec.convert(options or {}, type=reg.options, strict=False)
        except msgspec.ValidationError as exc:
            raise ErvError(f"{where}: judge {name!r}: {exc}") from None
    context = JudgeContext(plugins=plugins, verifier=verifier, cache_dir=cache_dir)
    judge = reg.build(options, context=context)
    if not isinstance(judge, Judge):
        raise ErvError(f"judge plugin {name!r} ({reg.plugin}) built a {type(judge).__name__}, "
                       "which lacks the Judge interface (name, cache_key, judge())")
    return judge


class EvalStage:
    """Judge explanations; EEA, FCR, EPC, WAR, UAR (paper section 4.2)."""

    name: ClassVar[str] = "eval"

    def __call__(self, ctx: StageContext) -> dict[str, Any] | None:
        from erv_plugins.cli.eval import report
        from erv_plugins.evaluation.run import evaluate, read_predictions

        cfg = ctx.recipe.eval
        if cfg is None:
            raise ErvError(f"{ctx.recipe.source}: stage 'eval' needs an [eval] table")
        if ctx.force:
            _set_aside(ctx)
        from erv_plugins.stages import trained_verifier_spec

        # The verifier judge reads this run's trained verifier when the recipe trains one.
        judge = build_judge(ctx.plugins, cfg.judge.plugin, cfg.judge.options,
                            where=f"{ctx.recipe.source}: $.eval.judge",
                            verifier=trained_verifier_spec(ctx.recipe, ctx.run_dir))
        if cfg.predictions is not None:
            if cfg.label_space is not None:
                space = label_space_named(cfg.label_space)
            elif cfg.dataset is not None:
                space = label_space_named(cfg.dataset.plugin)
            else:
                raise ErvError(f"{ctx.recipe.source}: $.eval: with predictions, name the "
                               "labels with label_space (mafw, dfew) or dataset")
            path = Path(cfg.predictions)
        else:
            from erv_plugins.evaluation.generate import generate_from_recipe

            path, space = generate_from_recipe(ctx)
        result = evaluate(read_predictions(path), space, judge, ctx.out,
                          run_name=ctx.recipe.name, bootstrap=cfg.bootstrap, seed=cfg.seed,
                          echo=ctx.echo)
        report(result.metrics, [], paper=False, echo=ctx.echo)
        if result.failed:
            # Not marked done: the next `erv run` resumes and asks only for these.
            raise ErvError(f"stage eval: {len(result.failed)} samples could not be judged; "
                           "rerun to ask for them again")
        m = result.metrics
        return {k: m[k] for k in ("EEA", "FCR", "EPC", "WAR", "UAR", "FCR/WAR", "judged")}


def _set_aside(ctx: StageContext) -> None:
    """``erv run --force``: generate and judge afresh (the policy or the judge may have
    changed), keeping the earlier files under a numbered name rather than deleting them."""
    from erv_plugins.evaluation.generate import PREDICTIONS
    from erv_plugins.evaluation.run import JUDGEMENTS

    for name in (PREDICTIONS, JUDGEMENTS):
        path = ctx.out / name
        if not path.exists():
            continue
        n = 1
        while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
            n += 1
        path.rename(kept)
        ctx.echo(f"erv: stage eval: --force: earlier {name} kept as {kept.name}")

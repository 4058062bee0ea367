"""The ``eval`` stage of ``erv run``: generate or read predictions, judge, score, report.

Reads the recipe's ``[eval]`` table (``recipe.EvalTable``): ``predictions`` scores an existing
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
from erv_plugins.context import BuildContext
from erv_plugins.judges.base import Judge

if TYPE_CHECKING:
    from erv_plugins.plugins import Plugins
    from erv_plugins.recipe import PluginSpec
    from erv_plugins.stages import StageContext


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
    context = BuildContext.create(plugins, verifier_spec=verifier, cache_dir=cache_dir)
    judge = reg.build(options, context=context)
    if not isinstance(judge, Judge):
        raise ErvError(f"judge plugin {name!r} ({reg.plugin}) built a {type(judge).__name__}, "
                       "which lacks the Judge interface (name, cache_key, judge())")
    return judge


class EvalStage:
    """Judge explanations; EEA, FCR, EPC, WAR, UAR (paper section 4.2)."""

    name: ClassVar[str] = "eval"

    def __call__(self, ctx: StageContext) -> dict[str, Any] | None:
        from erv_plugins.evaluation import tables
        from erv_plugins.evaluation.run import evaluate, read_predictions

        cfg = ctx.recipe.eval
        if cfg is None:
            raise ErvError(f"{ctx.recipe.source}: stage 'eval' needs an [eval] table")
        from erv_plugins.stages import trained_verifier_spec

        # The verifier judge reads this run's trained verifier when the recipe trains one.
        from erv_plugins.evaluation.protocols import judge_request_defaults

        options = judge_request_defaults(cfg.protocol, cfg.judge.plugin, cfg.judge.options)
        judge = build_judge(ctx.plugins, cfg.judge.plugin, options,
                            where=f"{ctx.recipe.source}: $.eval.judge",
                            verifier=trained_verifier_spec(ctx.recipe, ctx.run_dir))
        specs = [cfg.dataset] if cfg.dataset is not None else list(cfg.datasets)
        if cfg.predictions is not None:
            if cfg.label_space is not None:
                space = ctx.plugins.label_space(cfg.label_space)
            elif specs:
                space = ctx.plugins.label_space(specs[0].plugin)
            else:
                raise ErvError(f"{ctx.recipe.source}: $.eval: with predictions, name the "
                               "labels with label_space (mafw, dfew) or dataset")
            parts: list[tuple[Path, Any]] = [(ctx.out, None)]
        elif not specs:
            raise ErvError(f"{ctx.recipe.source}: $.eval: give predictions or a dataset")
        else:
            # One test set: its files in eval/; several: each in eval/<dataset plugin>/.
            parts = [(ctx.out if len(specs) == 1 else ctx.out / spec.plugin, spec)
                     for spec in specs]
        entries = []
        failed = 0
        summary: dict[str, Any] = {}
        for out, spec in parts:
            if ctx.force:
                _set_aside(out, ctx.echo)
            if spec is None:
                path = Path(cfg.predictions)
            else:
                from erv_plugins.evaluation.generate import generate_from_recipe

                path, space = generate_from_recipe(ctx, spec, out)
            result = evaluate(read_predictions(path), space, judge, out,
                              run_name=ctx.recipe.name, protocol=cfg.protocol,
                              bootstrap=cfg.bootstrap, seed=cfg.seed, echo=ctx.echo)
            tables.report(result.metrics, [], paper=False, echo=ctx.echo)
            failed += len(result.failed)
            m = result.metrics
            entries.append(tables.RunEntry(ctx.recipe.name, space.name, m))
            values = {k: m[k] for k in ("EEA", "FCR", "EPC", "WAR", "UAR", "FCR/WAR", "judged")}
            summary.update(values if len(parts) == 1 else
                           {f"{space.name}/{k}": v for k, v in values.items()})
        if len(parts) > 1:
            (ctx.out / "table.md").write_text(tables.table1_markdown(entries) + "\n",
                                              encoding="utf-8")
            ctx.echo(tables.table1_markdown(entries))
        if failed:
            # Not marked done: the next `erv run` resumes and asks only for these.
            raise ErvError(f"stage eval: {failed} samples could not be judged; "
                           "rerun to ask for them again")
        return summary


def _set_aside(out: Path, echo: Any) -> None:
    """``erv run --force``: generate and judge afresh (the policy or the judge may have
    changed), keeping the earlier files under a numbered name rather than deleting them."""
    from erv_plugins.evaluation.generate import PREDICTIONS
    from erv_plugins.evaluation.run import JUDGEMENTS

    for name in (PREDICTIONS, JUDGEMENTS):
        path = out / name
        if not path.exists():
            continue
        n = 1
        while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
            n += 1
        path.rename(kept)
        echo(f"erv: stage eval: --force: earlier {name} kept as {kept.name}")

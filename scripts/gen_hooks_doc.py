#!/usr/bin/env python3
"""Write docs/hooks.md, the hook reference, from the docstrings in erv_plugins/hookspecs.py.

    python scripts/gen_hooks_doc.py           # rewrite docs/hooks.md
    python scripts/gen_hooks_doc.py --check   # exit 1 if docs/hooks.md is out of date

tests/test_hooks_doc.py runs the check, so a changed hook fails CI until the doc is
regenerated.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"

# What each kind of component must look like, shown from the source that defines it.
CONTRACTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("reward", "erv_plugins.rewards.base", ("Reward", "RewardBatch", "RewardResult")),
    ("reward", "erv_plugins._text_pure", ("Parsed",)),
    ("verifier", "erv_plugins.verifiers.base", ("Verifier",)),
    ("every kind", "erv_plugins.context", ("BuildContext",)),
    ("judge", "erv_plugins.judges.base", ("Judge", "JudgeRequest", "Verdict")),
    ("dataset", "erv_plugins.datasets.base", ("Dataset", "Sample")),
    ("stage", "erv_plugins.stages", ("Stage", "StageContext")),
)


def _inline(line: str) -> str:
    return re.sub(r"``([^`]+)``", r"`\1`", line)


def _md(text: str) -> str:
    """Docstring (reStructuredText-ish) to Markdown: ``code`` -> `code`, ``::`` blocks fenced."""
    lines = inspect.cleandoc(text).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(_inline(line.rstrip()[:-1]))
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[0].strip():
                block.pop(0)
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```python", *block, "```", ""]
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out).strip() + "\n"


def render() -> str:
    from erv_plugins import hookspecs
    from erv_plugins.plugins import _HOOK_OF_KIND

    kind_of = {hook: kind for kind, hook in _HOOK_OF_KIND.items()}
    hooks = [
        obj for name, obj in vars(hookspecs).items()
        if name.startswith("erv_") and callable(obj)
        and getattr(obj, f"{hookspecs.PROJECT}_spec", None) is not None
    ]
    hooks.sort(key=lambda f: f.__code__.co_firstlineno)  # the order they are declared in
    parts = [
        "# Hook reference\n",
        "<!-- Generated from python/erv_plugins/hookspecs.py by scripts/gen_hooks_doc.py. "
        "Do not edit by hand: change the docstrings and run the script. -->\n",
        _md(hookspecs.__doc__ or ""),
        "| hook | what it adds |\n|---|---|\n" + "".join(
            f"| [`{f.__name__}`](#{f.__name__}) | "
            f"{(inspect.getdoc(f) or '').splitlines()[0].replace('``', '`')} |\n" for f in hooks),
    ]
    for f in hooks:
        spec = getattr(f, f"{hookspecs.PROJECT}_spec")
        signature = str(inspect.signature(f)).replace("'", "")
        parts.append(f"## {f.__name__}\n")
        parts.append(f"```python\n@hookimpl\ndef {f.__name__}{signature}: ...\n```\n")
        notes = []
        if f.__name__ in kind_of:
            kind = kind_of[f.__name__]
            named = ("in its `stages` list" if kind == "stage"
                     else "with `plugin = \"<name>\"` and configures them in `options`")
            notes.append(f"Registers components of kind `{kind}`: `erv plugins` lists them under "
                         f"\"{kind}s\"; a recipe names them {named}.")
        if spec.get("firstresult"):
            notes.append("`firstresult`: the first implementation that returns a value wins.")
        if spec.get("historic"):
            notes.append("`historic`: plugins registered later are called too.")
        parts.append(_md(inspect.getdoc(f) or "(undocumented)"))
        if notes:
            parts.append("\n".join(notes) + "\n")
    parts.append("## Contracts\n")
    parts.append("What erv expects of each kind of component, as declared in the code "
                 "(the objects a factory returns, and what erv hands them).\n")
    for kind, module_name, names in CONTRACTS:
        module = importlib.import_module(module_name)
        for name in names:
            source = inspect.getsource(getattr(module, name)).rstrip()
            parts.append(f"### {name} ({kind}, `{module_name}`)\n")
            parts.append(f"```python\n{source}\n```\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC} is out of date: run python scripts/gen_hooks_doc.py", file=sys.stderr)
            return 1
        print(f"{DOC}: up to date")
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

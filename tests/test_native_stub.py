"""The stub ``_native.pyi`` against the built module: the same public names, and for every
function the same parameters (names, kinds, defaults) as the module's ``__text_signature__``
(PyO3 writes it from each ``#[pyo3(signature = ...)]`` in rust/src/lib.rs and bench.rs)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from erv_plugins import text

pytestmark = pytest.mark.skipif(not text.NATIVE, reason="erv_plugins._native is not built")
STUB = Path(text.__file__).with_name("_native.pyi")
# Exported only by a build with the cargo feature `bench` (rust/src/bench.rs).
BENCH_ONLY = {"memchr_scan", "tag_scan"}

Param = tuple[str, str, object]


def stub_functions() -> dict[str, list[Param]]:
    """Each function the stub declares, with (name, kind, default) per parameter; of a set of
    overloads, the implementation signature (the last one)."""
    out: dict[str, list[Param]] = {}
    for node in ast.parse(STUB.read_text("utf-8")).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        a = node.args
        positional = a.posonlyargs + a.args
        defaults = [inspect.Parameter.empty] * (len(positional) - len(a.defaults)) + \
            [ast.literal_eval(d) for d in a.defaults]
        params = [(p.arg, "POSITIONAL_ONLY" if p in a.posonlyargs else "POSITIONAL_OR_KEYWORD", d)
                  for p, d in zip(positional, defaults)]
        params += [(p.arg, "KEYWORD_ONLY", inspect.Parameter.empty if d is None else ast.literal_eval(d))
                   for p, d in zip(a.kwonlyargs, a.kw_defaults)]
        out[node.name] = params
    return out


def module_params(fn: object) -> list[Param]:
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(fn).parameters.values()]


def test_the_stub_declares_every_public_name_of_the_module():
    native = text._native
    exported = {n for n in dir(native) if not n.startswith("_")}
    declared = set(stub_functions())
    assert BENCH_ONLY <= declared
    # A product build lacks the bench-only functions; a dev build (scripts/setup) has both.
    assert exported & BENCH_ONLY in (set(), BENCH_ONLY)
    assert exported | BENCH_ONLY == declared
    stub_globals = {t.target.id for t in ast.parse(STUB.read_text("utf-8")).body
                    if isinstance(t, ast.AnnAssign)}
    assert stub_globals == {"__version__"} and isinstance(native.__version__, str)


def test_the_stub_has_each_functions_parameters():
    native = text._native
    stub = stub_functions()
    for name in sorted(stub.keys() & set(dir(native))):
        assert module_params(getattr(native, name)) == stub[name], name


def test_the_hot_path_signatures():
    # What erv_plugins.text and rewards/explanation.py call, spelled out.
    native = text._native
    assert str(inspect.signature(native.split_unique)) == "(texts, mode='paper', *, parallel=None)"
    assert str(inspect.signature(native.parse_and_split_unique)) == \
        "(texts, mode='paper', *, parallel=None, cls=None)"
    assert str(inspect.signature(native.label_sets)) == \
        "(probs, tau, k, neutral_idx=None, release_rule=True)"

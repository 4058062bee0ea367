"""Built-in verifiers, registered through ``erv_register_verifiers`` like any third-party plugin.

This module also registers the verifier's *text* datasets (explanation-label pairs for
``erv train-verifier``) through a second hook implementation, ``erv_register_datasets``.
Heavy imports (torch, transformers) happen only when a component is built.
"""

from __future__ import annotations

from typing import Any

from erv_plugins.hookspecs import hookimpl
from erv_plugins.plugins import Register
from erv_plugins.verifiers.hf import HFVerifierOptions


def _hf(options: HFVerifierOptions, *, context: Any = None) -> Any:
    """Hugging Face multi-label sequence classifier from a local directory (paper section 3.2)."""
    from erv_plugins.verifiers.hf import HFVerifier

    return HFVerifier.from_options(options)


@hookimpl
def erv_register_verifiers(register: Register) -> None:
    register(_hf, name="hf", options=HFVerifierOptions)


@hookimpl
def erv_register_datasets(register: Register) -> None:
    """The verifier's text datasets (explanation-label pairs; paper Table 5)."""
    from erv_plugins.verifiers.text_datasets import TEXT_DATASETS

    for name, factory, options in TEXT_DATASETS:
        register(factory, name=name, options=options)

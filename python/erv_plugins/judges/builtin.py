"""Built-in judges, registered through ``erv_register_judges`` like any third-party plugin."""

from __future__ import annotations

from erv_plugins.hookspecs import hookimpl
from erv_plugins.judges.chat import OpenAIJudge
from erv_plugins.judges.verifier import VerifierJudge
from erv_plugins.plugins import Register


@hookimpl
def erv_register_judges(register: Register) -> None:
    register(OpenAIJudge, description="An OpenAI-compatible chat model reads each "
             "explanation with the paper's Figure-3 prompt (GPT-4.1-mini in the paper).")
    register(VerifierJudge, description="A trained verifier classifies the whole "
             "explanation; offline, free and repeatable.")

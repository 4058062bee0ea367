"""Built-in rewards, registered through ``erv_register_rewards`` like any third-party plugin."""

from __future__ import annotations

from erv_plugins.hookspecs import hookimpl
from erv_plugins.plugins import Register
from erv_plugins.rewards.coherence import CoherenceMonitor
from erv_plugins.rewards.explanation import ExplanationReward
from erv_plugins.rewards.format_answer import AnswerReward, FormatReward


@hookimpl
def erv_register_rewards(register: Register) -> None:
    register(FormatReward, description="R_format: 1.0 iff <think>...</think> <answer>...</answer>.")
    register(AnswerReward, description="R_answer: 1.0 iff the normalised answer is the ground truth.")
    register(ExplanationReward,
             description="R_E: verified share of emotional explanation sentences (Algorithm 1).")
    register(CoherenceMonitor,
             description="EPC of each rollout under an eval judge (a monitor: give it weight 0).")

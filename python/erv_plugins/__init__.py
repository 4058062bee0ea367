"""erv: emotion-coherent reasoning for multimodal LLMs via the Emotional Rationale Verifier.

Reproduces Rha, Yeo, Kim, Ro (AAAI 2026) as a plugin toolkit: rewards, verifiers, judges,
datasets, models and pipeline stages register through the pluggy hooks in
``erv_plugins.hookspecs``.
"""

from erv_plugins.errors import ErvError, PluginError, RecipeError
from erv_plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["ErvError", "PluginError", "RecipeError", "__version__", "hookimpl"]

"""The verifier contract: sentences in, per-label probabilities out (paper section 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Verifier(Protocol):
    """A multi-label emotion classifier over explanation text.

    ``labels`` is its label space in output order (GoEmotions' 28 by default);
    ``cache_key`` identifies the weights, so cached outputs of two verifiers never mix.
    """

    labels: tuple[str, ...]
    cache_key: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Sigmoid probabilities, shape (len(texts), len(labels)), float32."""
        ...

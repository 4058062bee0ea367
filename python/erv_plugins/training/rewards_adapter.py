"""The reward engine (paper eq. 5) in TRL's conventions: reward functions and a callback.

::

    rewards = TRLRewards(RewardEngine.from_recipe(recipe, plugins))
    trainer = GRPOTrainer(..., reward_funcs=rewards.reward_functions(),
                          args=GRPOConfig(..., reward_weights=rewards.reward_weights(0)))
    trainer.add_callback(rewards.callback(trainer))   # scheduled weights, each step

TRL calls one function per reward; the first call of a batch scores all rewards (one
``RewardEngine.score``), the others read that result. TRL logs ``rewards/<name>/mean``;
the engine's extra statistics (``explanation/neutral_share``...) go to TRL's ``log_metric``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from erv_plugins.rewards.engine import RewardEngine, RewardScores, completion_text


class TRLRewards:
    """One ``RewardEngine`` seen by TRL: a function per reward, the weights, a callback."""

    def __init__(self, engine: RewardEngine) -> None:
        self.engine = engine
        self._last: tuple[Any, RewardScores] | None = None  # the batch scored last
        self._lock = threading.Lock()

    def reward_functions(self) -> list[Callable[..., list[float | None]]]:
        """One function per reward, TRL's calling convention, ``__name__`` = reward name.

        ``f(prompts=..., completions=..., completion_ids=..., trainer_state=..., **columns)``
        returns one float per completion (None where the reward failed or does not apply).
        """
        return [self._function(name) for name in self.engine.names]

    def _function(self, name: str) -> Callable[..., list[float | None]]:
        adapter = self

        def reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                   completion_ids: Any = None, trainer_state: Any = None, **kwargs: Any
                   ) -> list[float | None]:
            scores = adapter._scores(prompts, completions or [], trainer_state, kwargs)
            return [None if math.isnan(v) else float(v) for v in scores.per_reward[name]]

        reward.__name__ = reward.__qualname__ = name
        reward.__doc__ = f"erv reward {name!r} in TRL's reward-function convention."
        return reward

    def _scores(self, prompts: Sequence[Any] | None, completions: Sequence[Any],
                trainer_state: Any, kwargs: dict[str, Any]) -> RewardScores:
        log_metric = kwargs.pop("log_metric", None)
        for key in ("log_extra", "environments"):
            kwargs.pop(key, None)
        step = int(getattr(trainer_state, "global_step", 0) or 0)
        texts = tuple(completion_text(c) for c in completions)
        key = (step, texts, tuple((k, tuple(map(repr, v))) for k, v in sorted(kwargs.items())
                                  if k in ("label", "dataset")))
        with self._lock:
            last = self._last
        if last is not None and last[0] == key:
            return last[1]
        scores = self.engine.score(list(texts), kwargs, prompts=prompts, step=step)
        with self._lock:
            self._last = (key, scores)
        if log_metric is not None:
            for stat, value in scores.info.items():
                if not stat.endswith(("/mean", "/std")) and not math.isnan(value):
                    log_metric(f"erv/{stat}", value)
        return scores

    def reward_weights(self, step: int = 0) -> list[float]:
        """The weights at ``step`` in the order of ``reward_functions()``."""
        return [t.weight_at(step) for t in self.engine.terms]

    def callback(self, trainer: Any = None) -> Any:
        """A ``transformers.TrainerCallback`` that sets ``trainer.reward_weights`` to the
        scheduled weights before every optimisation step: ``trainer.add_callback(
        rewards.callback(trainer))``."""
        from transformers import TrainerCallback

        adapter = self

        class RewardWeightsCallback(TrainerCallback):
            def __init__(self) -> None:
                self.trainer = trainer

            def bind(self, bound: Any) -> RewardWeightsCallback:
                self.trainer = bound
                return self

            def _apply(self, step: int) -> None:
                if self.trainer is None:
                    raise RuntimeError("the erv reward-weights callback is not bound to a "
                                       "trainer: use TRLRewards(engine).callback(trainer)")
                import torch

                current = getattr(self.trainer, "reward_weights", None)
                device = current.device if isinstance(current, torch.Tensor) else None
                self.trainer.reward_weights = torch.tensor(
                    adapter.reward_weights(step), dtype=torch.float32, device=device)

            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self._apply(state.global_step)

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self._apply(state.global_step)

        return RewardWeightsCallback()

"""What the loop does about train steps with a NaN / inf loss or gradient.

The jitted step never applies such a step (see `bonjax.training.step.make_train_step`) and
reports it in its `nonfinite` metric. The guard keeps those per-step device scalars without
reading them, and reads them all at once where the loop synchronises anyway (a metrics write
or a checkpoint), before anything is saved: under `train.on_nonfinite = "stop"` the run ends
there with `NonFiniteError`; under "skip" the steps are counted and training goes on.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import jax
import numpy as np

ON_NONFINITE_CHOICES = ("stop", "skip")


class NonFiniteError(RuntimeError):
  """A train step produced a NaN / inf loss or gradient under `train.on_nonfinite="stop"`."""


class NonFiniteGuard:
  """Collects the `nonfinite` flags of the steps since the last check.

  Args:
    policy: "stop" or "skip" (`train.on_nonfinite`).
    skipped: steps skipped before this run resumed (from the checkpoint's meta).
  """

  def __init__(self, policy: str, skipped: int = 0):
    if policy not in ON_NONFINITE_CHOICES:
      raise ValueError(f"train.on_nonfinite={policy!r}: must be one of {ON_NONFINITE_CHOICES}")
    self.policy = policy
    self.skipped = skipped
    self._pending: list[tuple[int, Any]] = []

  def record(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Keeps the flag, loss and gradient norm of the step that made `step` steps done (device
    scalars; nothing is read)."""
    self._pending.append((step, (metrics["nonfinite"], metrics["loss"], metrics["grad_norm"])))

  def check(self, last_checkpoint: int | None) -> int:
    """Reads the pending flags.

    Args:
      last_checkpoint: step of the newest checkpoint on disk (for the error message).

    Returns:
      The number of steps skipped so far in the run (resumed runs included).

    Raises:
      NonFiniteError: under "stop", naming the first bad step, its loss and gradient norm.
    """
    pending, self._pending = self._pending, []
    if not pending:
      return self.skipped
    values = np.asarray(jax.device_get([v for _, v in pending]), np.float64)
    bad = [(step, loss, grad_norm) for (step, _), (flag, loss, grad_norm)
           in zip(pending, values) if flag]
    if not bad:
      return self.skipped
    step, loss, grad_norm = bad[0]
    if self.policy == "stop":
      resume = (f"the newest checkpoint is step {last_checkpoint}" if last_checkpoint is not None
                else "no checkpoint was saved")
      raise NonFiniteError(
          f"step {step}: loss={loss} grad_norm={grad_norm} (not finite; {len(bad)} such "
          f"step(s) since the last check); the run stopped without saving them ({resume}). "
          f"Lower train.learning_rate or set train.on_nonfinite='skip' to skip such steps")
    self.skipped += len(bad)
    logging.warning("Skipped %d step(s) with a non-finite loss or gradient (first: step %d, "
                    "loss=%s grad_norm=%s); %d skipped in total", len(bad), int(step), loss,
                    grad_norm, self.skipped)
    return self.skipped

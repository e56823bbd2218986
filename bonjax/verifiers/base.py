"""The Verifier protocol and the structured result every verifier returns."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol, Sequence, runtime_checkable


class Status(str, enum.Enum):
  """Why a completion got its score. Anything but OK is a scored failure, never an exception."""

  OK = "ok"
  UNPARSEABLE = "unparseable"
  TIMEOUT = "timeout"
  ERROR = "error"
  UNSCORED = "unscored"  # A user reward function returned None: counted, never correct.


@dataclasses.dataclass(frozen=True)
class VerifierResult:
  """The verdict on one completion.

  Attributes:
    score: selection score r (higher is better); for exact verifiers equal to `correct`.
    correct: environment reward R as a boolean (the answer is right / all tests pass).
    status: how the check ended.
    answer: the extracted final answer (used by majority vote), or None.
    seconds: wall time the check took.
    detail: short human-readable note (error message, failing test), may be empty.
    reward: continuous environment reward in [0, 1] (fraction of tests passed, a user reward
      function's value), or None when it is `correct` as 0/1 (see `env_reward`).
  """

  score: float
  correct: bool
  status: Status = Status.OK
  answer: str | None = None
  seconds: float = 0.0
  detail: str = ""
  reward: float | None = None

  @property
  def env_reward(self) -> float:
    """The environment reward R the `-S` objectives train on: `reward` when continuous,
    else `correct` as 0/1."""
    return float(self.correct) if self.reward is None else float(self.reward)


@runtime_checkable
class Verifier(Protocol):
  """Scores a batch of completions; must never raise on model output."""

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             **columns: Sequence[Any]) -> list[VerifierResult]:
    """Returns one VerifierResult per completion.

    Args:
      prompts: the prompt text of each completion.
      completions: the generated text.
      **columns: per-completion task data (e.g. `answers`, `tests`), each as long as
        `completions`.
    """
    ...

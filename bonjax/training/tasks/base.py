"""The Task record every task builder returns."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from bonjax.data.example import TaskExample
from bonjax.verifiers.base import Verifier, VerifierResult


@dataclasses.dataclass(frozen=True)
class Task:
  """What a run trains and evaluates on.

  Attributes:
    name: registry name.
    train: training examples (gold answers serve as SFT targets).
    test: held-out examples for BoN evaluation.
    verifier: scores completions; `verify_examples` passes it the task's columns.
  """

  name: str
  train: Sequence[TaskExample]
  test: Sequence[TaskExample]
  verifier: Verifier

  def verify_examples(self, examples: Sequence[TaskExample],
                      completions: Sequence[str]) -> list[VerifierResult]:
    """Scores `completions[i]` as an answer to `examples[i]`.

    The verifier gets the raw prompts (before any template) and the columns `answers`,
    `tests`, `entry_points` and `rows` (each example's source fields, for user reward
    functions).
    """
    columns: dict[str, Any] = {
        "answers": [e.answer for e in examples],
        "tests": [e.tests for e in examples],
        "entry_points": [e.entry_point for e in examples],
        "rows": [e.metadata for e in examples],
    }
    return self.verifier.verify([e.prompt for e in examples], completions, **columns)

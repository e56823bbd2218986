"""`task.name="arithmetic"`: the built-in synthetic task (bonjax.data.arithmetic)."""

from __future__ import annotations

import ml_collections

from bonjax.data import arithmetic
from bonjax.training.tasks.base import Task
from bonjax.verifiers.arithmetic import ArithmeticVerifier


def build_arithmetic_task(task: ml_collections.ConfigDict) -> Task:
  """Generated train / test problems of the configured difficulty, scored exactly."""
  spec = arithmetic.ArithmeticSpec(num_digits=task.num_digits, operators=task.operators,
                                   num_operands=task.num_operands,
                                   multiply_digits=task.multiply_digits)
  return Task(name="arithmetic",
              train=arithmetic.make_split(spec, "train", task.num_train, task.seed),
              test=arithmetic.make_split(spec, "test", task.num_test, task.seed),
              verifier=ArithmeticVerifier(strict=task.get("strict_answers", True)))

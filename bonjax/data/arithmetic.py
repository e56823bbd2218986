"""The built-in `arithmetic` task: seeded problems of tunable difficulty with exact answers.

A problem is an integer expression such as `(37+85)*4`; its answer is the exact integer value.
The held-out split is defined by a stable hash of the expression text, so train and test are
disjoint by construction whatever the sizes requested, and the test set of a given difficulty
is the same in every run.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Iterator

import numpy as np

from bonjax.data.example import TaskExample

_OPERATOR_FUNCTIONS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


@dataclasses.dataclass(frozen=True)
class ArithmeticSpec:
  """Difficulty of the arithmetic task.

  Attributes:
    num_digits: operands have 1..num_digits digits (uniform over the number of digits, then
      uniform over values, so short numbers are not swamped by long ones).
    operators: the operators problems draw from, a subset of "+-*".
    num_operands: operands per problem; 3 or more gives multi-step expressions whose
      intermediate results are parenthesised and evaluated left to right.
    multiply_digits: digit cap for operands of "*" (multiplication of long numbers is much
      harder than addition at the same length).
    test_fraction: share of the problem space hashed into the held-out split.
  """

  num_digits: int = 2
  operators: str = "+-"
  num_operands: int = 2
  multiply_digits: int = 1
  test_fraction: float = 0.1

  def validate(self) -> None:
    if self.num_digits < 1:
      raise ValueError(f"task.num_digits={self.num_digits}: must be >= 1")
    if not self.operators or set(self.operators) - set(_OPERATOR_FUNCTIONS):
      raise ValueError(f"task.operators={self.operators!r}: must be a non-empty subset of "
                       f"{''.join(_OPERATOR_FUNCTIONS)!r}")
    if self.num_operands < 2:
      raise ValueError(f"task.num_operands={self.num_operands}: must be >= 2")
    if "*" in self.operators and self.multiply_digits < 1:
      raise ValueError(f"task.multiply_digits={self.multiply_digits}: must be >= 1")
    if not 0.0 < self.test_fraction < 1.0:
      raise ValueError(f"task.test_fraction={self.test_fraction}: must be in (0, 1)")


def _random_operand(rng: np.random.Generator, max_digits: int) -> int:
  digits = int(rng.integers(1, max_digits + 1))
  low = 0 if digits == 1 else 10 ** (digits - 1)
  return int(rng.integers(low, 10 ** digits))


def random_problem(rng: np.random.Generator, spec: ArithmeticSpec) -> tuple[str, int]:
  """Draws one expression and its value.

  Args:
    rng: numpy generator (consumed).
    spec: difficulty.

  Returns:
    (expression text, integer value).
  """
  text = None
  value = 0
  for i in range(spec.num_operands):
    op = spec.operators[int(rng.integers(len(spec.operators)))] if i else None
    digits = spec.multiply_digits if op == "*" else spec.num_digits
    operand = _random_operand(rng, digits)
    if op is None:
      text, value = str(operand), operand
      continue
    left = f"({text})" if i >= 2 else text
    text = f"{left}{op}{operand}"
    value = _OPERATOR_FUNCTIONS[op](value, operand)
  return text, value


def is_test_problem(expression: str, test_fraction: float) -> bool:
  """Whether `expression` belongs to the held-out split (stable across runs and machines)."""
  bucket = zlib.crc32(expression.encode("ascii")) % 1_000_000
  return bucket < test_fraction * 1_000_000


# Problem spaces up to this many expressions are enumerated to count a split exactly.
_ENUMERATION_LIMIT = 1_000_000


def _operand_texts(max_digits: int) -> range:
  return range(10 ** max_digits)  # Every value below 10^d has exactly one decimal text.


def problem_space_size(spec: ArithmeticSpec) -> int:
  """Number of distinct expressions `random_problem` can write (each text is one problem)."""
  per_step = sum(10 ** (spec.multiply_digits if op == "*" else spec.num_digits)
                 for op in spec.operators)
  return 10 ** spec.num_digits * per_step ** (spec.num_operands - 1)


def _all_expressions(spec: ArithmeticSpec) -> Iterator[str]:
  texts = [str(v) for v in _operand_texts(spec.num_digits)]
  for i in range(1, spec.num_operands):
    texts = [f"{f'({left})' if i >= 2 else left}{op}{operand}" for left in texts
             for op in spec.operators
             for operand in _operand_texts(spec.multiply_digits if op == "*" else spec.num_digits)]
  return iter(texts)


def split_capacity(spec: ArithmeticSpec, split: str) -> tuple[int, bool]:
  """How many distinct problems `split` has: (count, exact).

  Exact (by enumeration) for problem spaces up to `_ENUMERATION_LIMIT` expressions; above, the
  hashed share of the space (exact to well under 1% at that size).
  """
  total = problem_space_size(spec)
  if total > _ENUMERATION_LIMIT:
    share = spec.test_fraction if split == "test" else 1.0 - spec.test_fraction
    return int(total * share), False
  in_test = sum(is_test_problem(e, spec.test_fraction) for e in _all_expressions(spec))
  return (in_test if split == "test" else total - in_test), True


def format_prompt(expression: str) -> str:
  """The prompt text the model sees; the completion is the answer followed by EOS."""
  return f"{expression}="


def make_split(spec: ArithmeticSpec, split: str, num_examples: int, seed: int,
               max_draws_per_example: int = 1000) -> list[TaskExample]:
  """Generates `num_examples` distinct problems of `split`.

  Args:
    spec: difficulty.
    split: "train" or "test".
    num_examples: how many distinct problems to return.
    seed: generator seed (the test split uses its own stream so it does not depend on the
      training-set size).
    max_draws_per_example: guard against a problem space too small for the request.

  Returns:
    TaskExamples with ids "arithmetic/<split>/<i>", gold answers as decimal strings.

  Raises:
    ValueError: unknown split, or the problem space has too few distinct problems (checked
      before drawing when the request exceeds half the split, so it fails at once).
  """
  spec.validate()
  if split not in ("train", "test"):
    raise ValueError(f"split={split!r}: must be 'train' or 'test'")
  share = spec.test_fraction if split == "test" else 1.0 - spec.test_fraction
  if num_examples > share * problem_space_size(spec) / 2:
    capacity, exact = split_capacity(spec, split)
    if num_examples > capacity * (1 if exact else 1.01):
      raise ValueError(
          f"task.num_{split}={num_examples}: the arithmetic task has {'' if exact else 'about '}"
          f"{capacity} distinct {split} problems for num_digits={spec.num_digits}, operators="
          f"{spec.operators!r}, num_operands={spec.num_operands}, multiply_digits="
          f"{spec.multiply_digits}; ask for fewer or raise task.num_digits / task.num_operands")
  want_test = split == "test"
  rng = np.random.default_rng([seed, int(want_test)])
  seen: set[str] = set()
  out: list[TaskExample] = []
  for _ in range(max_draws_per_example * max(num_examples, 1)):
    if len(out) == num_examples:
      break
    expression, value = random_problem(rng, spec)
    if expression in seen or is_test_problem(expression, spec.test_fraction) != want_test:
      continue
    seen.add(expression)
    out.append(TaskExample(id=f"arithmetic/{split}/{len(out)}", prompt=format_prompt(expression),
                           answer=str(value), metadata={"expression": expression}))
  if len(out) < num_examples:
    raise ValueError(
        f"task: only {len(out)} distinct {split} problems found for {spec}; ask for fewer "
        f"examples (task.num_{split}) or raise task.num_digits / task.num_operands")
  return out

"""A user's reward function as a verifier (`task.reward="python:<module>:<function>"`).

The function follows TRL's reward-function convention:

    def my_reward(prompts: list[str], completions: list[str], **columns) -> list[float | None]

`columns` are the dataset's other fields, each a list as long as `completions` (a field a row
lacks is None). Each value is that completion's environment reward R (any finite number;
`correct` is R >= the task's `correct_threshold`). None means the function could not score
the completion: it is counted (status "unscored") and never treated as correct (R = 0).

User code must not end a training run: a function that raises, or returns the wrong number or
type of values, makes the affected completions scored failures (status "error", R = 0) whose
detail names the function and the problem, and the problem is logged once per batch.
"""

from __future__ import annotations

import importlib
import logging
import math
import numbers
import sys
import time
from typing import Any, Callable, Mapping, Sequence

from bonjax.verifiers.base import Status, VerifierResult

PREFIX = "python:"
RewardFn = Callable[..., Sequence[Any]]


def load_reward_function(spec: str) -> RewardFn:
  """Imports the function named by `spec` = "python:<module>:<function>".

  The current directory is importable, so a `my_reward.py` next to the command works.

  Raises:
    ValueError: a malformed spec, a module that does not import, or a missing / non-callable
      attribute, each naming `task.reward`.
  """
  body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
  module_name, _, function_name = body.rpartition(":")
  if not module_name or not function_name:
    raise ValueError(f"task.reward={spec!r}: must be python:<module>:<function>")
  if "" not in sys.path:
    sys.path.append("")
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # User code: whatever its import raises is a config error.
    raise ValueError(f"task.reward={spec!r}: module {module_name!r} does not import "
                     f"({type(e).__name__}: {e})") from None
  fn = getattr(module, function_name, None)
  if not callable(fn):
    raise ValueError(f"task.reward={spec!r}: {module_name} has no function {function_name!r}")
  return fn


def row_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
  """TRL-style columns of a batch of dataset rows: field -> one value per row (None where a
  row lacks the field); the prompt is passed separately, so a `prompt` field is left out."""
  names = sorted({key for row in rows for key in row} - {"prompt"})
  return {name: [row.get(name) for row in rows] for name in names}


def _value_problem(value: Any) -> str | None:
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return f"returned {type(value).__name__} {value!r}, not a number or None"
  if not math.isfinite(float(value)):
    return f"returned {value!r}, not a finite number"
  return None


class UserRewardVerifier:
  """Scores completions with a user reward function; score = R, correct = R >= threshold.

  Columns: `rows`, the dataset row of each completion (its fields become the function's
  keyword arguments); other columns are ignored.

  Args:
    fn: the reward function.
    name: how messages name it (the `task.reward` value).
    correct_threshold: R at or above which a completion counts as correct.
  """

  def __init__(self, fn: RewardFn, name: str, correct_threshold: float = 1.0):
    self.fn, self.name, self.correct_threshold = fn, name, correct_threshold

  def _failure(self, detail: str, seconds: float) -> VerifierResult:
    return VerifierResult(0.0, False, Status.ERROR, seconds=seconds, detail=detail, reward=0.0)

  def _result(self, value: Any, seconds: float) -> VerifierResult:
    problem = _value_problem(value)
    if problem is not None:
      return self._failure(f"{self.name} {problem}", seconds)
    if value is None:
      return VerifierResult(0.0, False, Status.UNSCORED, seconds=seconds, reward=0.0,
                            detail=f"{self.name} returned None (could not score)")
    value = float(value)
    return VerifierResult(value, value >= self.correct_threshold, Status.OK, seconds=seconds,
                          reward=value)

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             rows: Sequence[Mapping[str, Any]] | None = None,
             **columns: Sequence[Any]) -> list[VerifierResult]:
    """Calls the function once for the whole batch and turns its values into results."""
    del columns  # The function sees the dataset's own fields (`rows`), as in TRL.
    n = len(completions)
    kwargs = row_columns(rows if rows is not None else [{}] * n)
    start = time.perf_counter()
    try:
      values = self.fn(list(prompts), list(completions), **kwargs)
      values = list(values)
    except Exception as e:  # User code: a failure is the batch's grade, never a crash.
      detail = f"{self.name} raised {type(e).__name__}: {e}"
      logging.warning("reward function failed on a batch of %d completions: %s", n, detail)
      return [self._failure(detail[:300], (time.perf_counter() - start) / max(n, 1))] * n
    seconds = (time.perf_counter() - start) / max(n, 1)
    if len(values) != n:
      detail = f"{self.name} returned {len(values)} values for {n} completions"
      logging.warning("reward function failed: %s", detail)
      return [self._failure(detail, seconds)] * n
    results = [self._result(v, seconds) for v in values]
    bad = [r.detail for r in results if r.status == Status.ERROR]
    if bad:
      logging.warning("reward function: %d of %d values unusable, e.g. %s", len(bad), n, bad[0])
    return results

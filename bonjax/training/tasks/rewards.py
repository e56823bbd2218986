"""Reward registry: config `task.reward` -> the exact verifier of a task read from data.

  math    math-verify equivalence of the final (boxed) answer with the gold answer
  exact   normalised string equality with the gold answer
  code    the sandboxed code-execution verifier; R = fraction of tests passed (continuous),
          correct = all pass
  python:<module>:<function>
          a user reward function with TRL's convention (see bonjax.verifiers.user_reward)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import ml_collections

from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Verifier, VerifierResult
from bonjax.verifiers.code_execution import CodeVerifier
from bonjax.verifiers.exact_match import ExactMatchVerifier
from bonjax.verifiers.math_answers import MathVerifier
from bonjax.verifiers.user_reward import PREFIX as PYTHON_PREFIX
from bonjax.verifiers.user_reward import UserRewardVerifier, load_reward_function


class FractionAsReward:
  """Makes a code verifier's fraction of passed tests the continuous environment reward R
  (its `correct` stays "every test passed")."""

  def __init__(self, base: Verifier):
    self.base = base

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             **columns: Sequence[Any]) -> list[VerifierResult]:
    return [dataclasses.replace(r, reward=r.score)
            for r in self.base.verify(prompts, completions, **columns)]


def code_verifier(task: ml_collections.ConfigDict, include_prompt: bool) -> Verifier:
  """The sandboxed test runner with partial credit.

  Args:
    task: the task config (`code_seconds`: wall clock of one program's run; `verifier_workers`:
      sandboxes run at once).
    include_prompt: the program is prompt + completion (HumanEval-style continuation) rather
      than the completion alone.
  """
  limits = sandbox.SandboxLimits(wall_seconds=float(task.get("code_seconds", 10.0)))
  return FractionAsReward(CodeVerifier(reward="fraction", limits=limits,
                                       include_prompt=include_prompt,
                                       num_workers=int(task.get("verifier_workers", 2))))


def _math(task: ml_collections.ConfigDict) -> Verifier:
  return MathVerifier(num_workers=int(task.get("verifier_workers", 2)))


def _exact(task: ml_collections.ConfigDict) -> Verifier:
  del task
  return ExactMatchVerifier()


def _code(task: ml_collections.ConfigDict) -> Verifier:
  return code_verifier(task, include_prompt=bool(task.get("code_includes_prompt", False)))


REWARDS: dict[str, Callable[[ml_collections.ConfigDict], Verifier]] = {
    "math": _math,
    "exact": _exact,
    "code": _code,
}

# Rewards that compare with the gold answer (the answer field is required), and those that
# run tests (the tests field is required).
NEEDS_ANSWER = ("math", "exact")
NEEDS_TESTS = ("code",)


def check_reward_name(name: str) -> None:
  """Raises ValueError naming `task.reward` unless it is a registered or python: reward."""
  if name not in REWARDS and not name.startswith(PYTHON_PREFIX):
    raise ValueError(f"task.reward={name!r}: unknown reward; known: {sorted(REWARDS)} or "
                     f"'python:<module>:<function>'")


def build_reward(task: ml_collections.ConfigDict) -> Verifier:
  """The verifier of `task.reward`.

  Raises:
    ValueError: an unknown reward, or a user function that cannot be loaded.
  """
  name = task.reward
  check_reward_name(name)
  if name.startswith(PYTHON_PREFIX):
    return UserRewardVerifier(load_reward_function(name), name,
                              float(task.get("correct_threshold", 1.0)))
  return REWARDS[name](task)

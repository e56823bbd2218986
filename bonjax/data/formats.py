"""Row parsers for the public dataset formats: one JSON object -> one TaskExample.

Each parser checks the fields its format requires and raises `RowRejected` (with a reason and
the offending field) for anything it cannot use; the loader adds the file and line number.

Conventions shared by all formats:
  * `TaskExample.tests`, when set, is Python source that raises when executed after the
    candidate program if the candidate is wrong (so HumanEval's `check(candidate)` definition
    gets a `check(<entry_point>)` call appended).
  * Reference solutions go to `metadata`, not `answer`: `answer` is the gold final answer that
    an answer checker compares against (None for code tasks).
  * `metadata["dataset"]` is the format name and `metadata["source"]` is `file:line`.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence

from bonjax.data.answers import gsm8k_final_answer, gsm8k_rationale, last_boxed_answer
from bonjax.data.example import TaskExample
from bonjax.data.row_errors import Reason, RowRejected

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOP_LEVEL_DEF = re.compile(r"^def\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class RowContext:
  """Where a row came from, for ids and metadata.

  Attributes:
    dataset: format name (registry key).
    default_id: id to use when the row carries none of its own.
    source: "file:line" of the row.
  """

  dataset: str
  default_id: str
  source: str


RowParser = Callable[[Mapping[str, Any], RowContext], TaskExample]


def _type_name(value: Any) -> str:
  return "null" if value is None else type(value).__name__


def _present(row: Mapping[str, Any], *keys: str) -> str | None:
  """First of `keys` present with a non-null value in `row`."""
  for key in keys:
    if row.get(key) is not None:
      return key
  return None


def _required_key(row: Mapping[str, Any], *keys: str) -> str:
  key = _present(row, *keys)
  if key is None:
    raise RowRejected(Reason.MISSING_FIELD,
                      f"required field {' or '.join(repr(k) for k in keys)} is absent")
  return key


def required_text(row: Mapping[str, Any], *keys: str, allow_empty: bool = False) -> str:
  """The string value of the first present of `keys`.

  Raises:
    RowRejected: MISSING_FIELD, WRONG_TYPE (not a string), EMPTY_FIELD (blank, unless allowed).
  """
  key = _required_key(row, *keys)
  value = row[key]
  if not isinstance(value, str):
    raise RowRejected(Reason.WRONG_TYPE, f"field {key!r} must be a string, got "
                      f"{_type_name(value)}")
  if not allow_empty and not value.strip():
    raise RowRejected(Reason.EMPTY_FIELD, f"field {key!r} is empty")
  return value


def optional_text(row: Mapping[str, Any], key: str, default: str = "") -> str:
  """A string field that may be absent or null (then `default`)."""
  if row.get(key) is None:
    return default
  return required_text(row, key, allow_empty=True)


def text_list(row: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
  """A list-of-strings field; a required one must be present and non-empty."""
  if row.get(key) is None:
    if required:
      raise RowRejected(Reason.MISSING_FIELD, f"required field {key!r} is absent")
    return []
  value = row[key]
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise RowRejected(Reason.WRONG_TYPE, f"field {key!r} must be a list of strings, got "
                      f"{_type_name(value)}")
  if required and not value:
    raise RowRejected(Reason.EMPTY_FIELD, f"field {key!r} is an empty list")
  return list(value)


def _label(row: Mapping[str, Any], *keys: str) -> str | int:
  """A categorical label that the public releases store as either text or an integer."""
  key = _required_key(row, *keys)
  value = row[key]
  if isinstance(value, bool) or not isinstance(value, (str, int)):
    raise RowRejected(Reason.WRONG_TYPE, f"field {key!r} must be a string or an integer, "
                      f"got {_type_name(value)}")
  return value


def parse_math(row: Mapping[str, Any], ctx: RowContext) -> TaskExample:
  """Hendrycks MATH: {problem, solution, level, type}.

  Also accepts the MATH500 layout ({problem, solution, answer, subject, level (int),
  unique_id}). The gold answer is the row's `answer` field when present, else the argument of
  the last `\\boxed{...}` of the solution.
  """
  problem = required_text(row, "problem")
  solution = required_text(row, "solution")
  level = _label(row, "level")
  subject = required_text(row, "type", "subject")
  if row.get("answer") is not None:
    answer = required_text(row, "answer").strip()
  else:
    answer = last_boxed_answer(solution)
    if answer is None:
      raise RowRejected(Reason.NO_ANSWER, "solution has no \\boxed{...} answer with balanced "
                        "braces")
  example_id = required_text(row, "unique_id") if row.get("unique_id") is not None else None
  return TaskExample(
      id=example_id or ctx.default_id, prompt=problem, answer=answer,
      metadata={"dataset": ctx.dataset, "source": ctx.source, "solution": solution,
                "level": level, "type": subject})


def parse_gsm8k(row: Mapping[str, Any], ctx: RowContext) -> TaskExample:
  """GSM8K: {question, answer} where the answer ends with `#### <final answer>`."""
  question = required_text(row, "question")
  answer_field = required_text(row, "answer")
  final = gsm8k_final_answer(answer_field)
  if final is None:
    raise RowRejected(Reason.NO_ANSWER, "field 'answer' has no '#### <answer>' marker with "
                      "text after it")
  return TaskExample(
      id=ctx.default_id, prompt=question, answer=final,
      metadata={"dataset": ctx.dataset, "source": ctx.source,
                "solution": gsm8k_rationale(answer_field)})


def _mbpp_task_id(row: Mapping[str, Any]) -> str:
  value = row.get("task_id")
  if value is None:
    raise RowRejected(Reason.MISSING_FIELD, "required field 'task_id' is absent")
  if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
    raise RowRejected(Reason.WRONG_TYPE, "field 'task_id' must be an integer or a non-empty "
                      f"string, got {_type_name(value)}")
  return str(value)


def called_function(code: str, tests: Sequence[str]) -> str | None:
  """The first function defined at top level of `code` whose name is called in `tests`."""
  for name in _TOP_LEVEL_DEF.findall(code):
    if any(re.search(rf"\b{re.escape(name)}\s*\(", t) for t in tests):
      return name
  return None


def parse_mbpp(row: Mapping[str, Any], ctx: RowContext) -> TaskExample:
  """MBPP: {task_id, text, code, test_list, test_setup_code?, challenge_test_list?}.

  Also accepts the sanitized layout's `prompt` (for `text`) and `test_imports`. `tests` is the
  imports, the setup code and the `test_list` asserts; the challenge tests stay in metadata.
  The entry point is the reference code's function that the tests call.
  """
  task_id = _mbpp_task_id(row)
  text = required_text(row, "text", "prompt")
  code = required_text(row, "code")
  test_list = text_list(row, "test_list", required=True)
  challenge = text_list(row, "challenge_test_list", required=False)
  imports = text_list(row, "test_imports", required=False)
  setup = optional_text(row, "test_setup_code")
  tests = "\n".join([*imports, setup, *test_list]).strip("\n") + "\n"
  return TaskExample(
      id=f"{ctx.dataset}/{task_id}", prompt=text, answer=None, tests=tests,
      entry_point=called_function(code, test_list),
      metadata={"dataset": ctx.dataset, "source": ctx.source, "task_id": row["task_id"],
                "reference_solution": code, "test_list": test_list,
                "test_setup_code": setup, "test_imports": imports,
                "challenge_test_list": challenge})


def _require_check_function(test: str) -> None:
  """The `test` field must parse and define `check(candidate)` at top level.

  Raises:
    RowRejected: INVALID_CODE, naming the parser's message or the missing function.
  """
  try:
    module = ast.parse(test)
  except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
    raise RowRejected(Reason.INVALID_CODE, f"field 'test' is not Python source: "
                      f"{type(e).__name__}: {e}") from None
  if not any(isinstance(node, ast.FunctionDef) and node.name == "check"
             for node in module.body):
    raise RowRejected(Reason.INVALID_CODE, "field 'test' does not define check(candidate) "
                      "at top level")


def parse_humaneval(row: Mapping[str, Any], ctx: RowContext) -> TaskExample:
  """HumanEval: {task_id, prompt, canonical_solution, test, entry_point}.

  The candidate program is `prompt + completion`; `tests` is the row's `test` source (which
  must parse and define `check(candidate)`) followed by `check(<entry_point>)`.
  """
  task_id = required_text(row, "task_id").strip()
  prompt = required_text(row, "prompt")
  solution = required_text(row, "canonical_solution")
  test = required_text(row, "test")
  entry_point = required_text(row, "entry_point").strip()
  if not _IDENTIFIER.fullmatch(entry_point):
    raise RowRejected(Reason.WRONG_TYPE, f"field 'entry_point' must be a Python identifier, "
                      f"got {entry_point!r}")
  _require_check_function(test)
  tests = f"{test.rstrip()}\n\n\ncheck({entry_point})\n"
  return TaskExample(
      id=task_id, prompt=prompt, answer=None, tests=tests, entry_point=entry_point,
      metadata={"dataset": ctx.dataset, "source": ctx.source, "canonical_solution": solution,
                "test": test})


ROW_PARSERS: dict[str, RowParser] = {
    "math": parse_math,
    "gsm8k": parse_gsm8k,
    "mbpp": parse_mbpp,
    "humaneval": parse_humaneval,
}

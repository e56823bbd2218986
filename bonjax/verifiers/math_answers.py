"""Math final-answer verifier: extract a completion's answer, compare it with the gold one.

Extraction (first that applies): the last `\\boxed{...}` / `\\fbox{...}` (nested braces
allowed), the last GSM8K `#### ...` line, the last "the (final) answer is ..." phrase, the last
number in the text. Comparison: normalised strings (LaTeX spacing, `\\dfrac`, units, thousands
separators, `x = ...`), then exact rational equality, then the `math-verify` package (symbolic
and numeric equivalence, sets, intervals, matrices).

math-verify can take unbounded time on hostile input and its own timeouts use SIGALRM (main
thread only), so they are disabled here and the checks run in a `VerifierPool`, which owns
the deadline: `MathVerifier` never calls math-verify in the training process. Before that, a
size pre-screen (`oversized_answer`: digits, nesting depth, element count, power towers, huge
exponents and factorials) turns answers that would only exhaust the deadline into prompt
UNPARSEABLE results. Everything before math-verify runs in time linear in the text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import logging
import re
import sys
import time
from typing import Any, Callable, Sequence

from bonjax.text.boxed import brace_pairs, last_boxed
from bonjax.verifiers import pool as pool_lib
from bonjax.verifiers.base import Status, VerifierResult

_GSM8K_ANSWER = re.compile(r"####\s*([^\n]+)")
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|=|:)\s*:?\s*(.+?)(?=\n|$|\.\s|\.$|;)",
    re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d])")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox|textnormal|mathbf)\s*{([^{}]*)}")
_UNIT_WORDS = (
    "cm", "mm", "km", "m", "kg", "g", "mg", "l", "ml", "s", "sec", "seconds", "second",
    "minutes", "minute", "min", "hours", "hour", "hrs", "days", "day", "weeks", "years",
    "dollars", "dollar", "cents", "cent", "units", "unit", "inches", "inch", "feet", "foot",
    "ft", "miles", "mile", "mph", "meters", "meter", "degrees", "degree", "sq", "square",
    "pounds", "lbs", "people", "students", "apples", "points", "percent",
)
_TRAILING_UNITS = re.compile(
    r"(?<=[\d}])\s*(?:(?:" + "|".join(_UNIT_WORDS) + r")\b(?:\^?\{?\d\}?)?\s*)+$",
    re.IGNORECASE)
_SIMPLE_ASSIGNMENT = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*(?!.*=)")
_SHORT_FRAC = re.compile(r"\\frac(\d)(\d)")
_SHORT_SQRT = re.compile(r"\\sqrt(\d)")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_LATEX_FRACTION = re.compile(r"(-?)\\frac{(-?\d+)}{(-?\d+)}")
_PLAIN_FRACTION = re.compile(r"(-?\d+)/(-?\d+)")
_DECIMAL_PARTS = re.compile(r"([-+]?)(\d*)(?:\.(\d*))?")

# Size pre-screen of extracted answers (see `oversized_answer`).
MAX_ANSWER_CHARS = 12_000
MAX_DIGITS = 10_000  # Longer than Python's default int-str limit (4,300), which is lifted here.
MAX_NESTING = 32
MAX_ELEMENTS = 256
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000
_DIGIT_RUN = re.compile(r"\d+")
_SEPARATOR = re.compile(r",|;|&|\\\\")
_OPEN, _CLOSE = "([{", ")]}"
# These run on the answer without whitespace (so no pattern can backtrack over a long run).
_POWER = re.compile(r"\^|\*\*")
_NUMERIC_EXPONENT = re.compile(r"(?:\^|\*\*){?\+?(\d+)")
_NUMERIC_POWER_CHAIN = re.compile(r"\d(?:(?:\^|\*\*){?\(?\d+\)?}?){2}")
_FACTORIAL = re.compile(r"(\d+)!")
_WHITESPACE = re.compile(r"\s+")

logging.getLogger("math_verify").setLevel(logging.ERROR)


def _strip_sentence(answer: str) -> str:
  answer = answer.strip().strip("*").strip()
  answer = re.sub(r"^\$+|\$+$", "", answer).strip()
  return answer.rstrip(".").strip()


def extract_final_answer(text: str) -> tuple[str | None, str]:
  """Finds a completion's final answer.

  Args:
    text: the generated solution.

  Returns:
    (answer text or None, how it was found: "boxed" | "gsm8k" | "phrase" | "number" | "none").
  """
  boxed = last_boxed(text)
  if boxed is not None:
    return boxed, "boxed"
  gsm8k = _GSM8K_ANSWER.findall(text)
  if gsm8k and _strip_sentence(gsm8k[-1]):
    return _strip_sentence(gsm8k[-1]), "gsm8k"
  phrases = [_strip_sentence(p) for p in _ANSWER_PHRASE.findall(text)]
  phrases = [p for p in phrases if p]
  if phrases:
    return phrases[-1], "phrase"
  numbers = _NUMBER.findall(text)
  if numbers:
    return numbers[-1].replace(" ", ""), "number"
  return None, "none"


def gold_answer(reference: str) -> str:
  """The gold answer of a reference field: its box or `####` answer, else the text itself."""
  boxed = last_boxed(reference)
  if boxed is not None:
    return boxed
  gsm8k = _GSM8K_ANSWER.findall(reference)
  if gsm8k:
    return _strip_sentence(gsm8k[-1])
  return reference.strip()


def _canonical_decimal(text: str) -> str:
  """Integers without sign clutter or leading zeros (`+007.00` -> `7`), decimals without
  trailing zeros; by the digits, never through `int` (no digit limit, linear time)."""
  if not _DECIMAL.fullmatch(text):
    return text
  sign, whole, fraction = _DECIMAL_PARTS.fullmatch(text).groups()
  if (fraction or "").rstrip("0"):
    return text.lstrip("+").rstrip("0")
  whole = whole.lstrip("0") or "0"
  return f"-{whole}" if sign == "-" and whole != "0" else whole


@contextlib.contextmanager
def _long_integers():
  """Lets int() read numbers up to MAX_DIGITS digits (the pre-screen bounds them)."""
  previous = sys.get_int_max_str_digits()
  sys.set_int_max_str_digits(0 if previous == 0 else max(previous, MAX_DIGITS + 10))
  try:
    yield
  finally:
    sys.set_int_max_str_digits(previous)


def normalize_answer(answer: str) -> str:
  """Canonical string form of an answer, for exact matching and majority voting.

  Removes math delimiters, spacing commands, `\\left`/`\\right`, `\\text{...}` wrappers,
  trailing units, degree signs, dollar and percent signs, thousands separators, a leading
  `x =`, trailing periods and all whitespace; `\\dfrac`/`\\tfrac` become `\\frac`, `\\frac12`
  becomes `\\frac{1}{2}`, and decimals lose trailing zeros (`3.50` -> `3.5`, `2.0` -> `2`).

  Args:
    answer: raw extracted answer.

  Returns:
    the normalised string (possibly empty).
  """
  text = answer.strip()
  for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
    while text.startswith(left) and text.endswith(right) and len(text) >= len(left + right):
      text = text[len(left):len(text) - len(right)].strip()
  text = re.sub(r"\\(?:left|right)(?![A-Za-z])", "", text)
  text = re.sub(r"\\[,;:! ]|\\quad|\\qquad|\\displaystyle", " ", text)
  text = re.sub(r"\\[dt]frac", r"\\frac", text)
  text = _TEXT_COMMAND.sub(r" \1 ", text)
  text = _SHORT_FRAC.sub(r"\\frac{\1}{\2}", text)
  text = _SHORT_SQRT.sub(r"\\sqrt{\1}", text)
  text = re.sub(r"\^\s*(?:{\s*)?\\circ\s*}?|°", "", text)
  text = text.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
  text = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), text)
  text = _TRAILING_UNITS.sub("", text.strip())
  text = _SIMPLE_ASSIGNMENT.sub("", text.strip())
  text = text.strip().rstrip(".").strip()
  text = re.sub(r"\s+", "", text)
  return _canonical_decimal(text)


def _exact_number(text: str) -> fractions.Fraction | None:
  """The rational value of a normalised integer, decimal or simple fraction, else None."""
  with _long_integers():
    return _parse_exact_number(text)


def _parse_exact_number(text: str) -> fractions.Fraction | None:
  if _DECIMAL.fullmatch(text):
    return fractions.Fraction(text)
  for pattern in (_LATEX_FRACTION, _PLAIN_FRACTION):
    match = pattern.fullmatch(text)
    if match:
      groups = match.groups()
      sign = -1 if len(groups) == 3 and groups[0] == "-" else 1
      numerator, denominator = int(groups[-2]), int(groups[-1])
      if denominator != 0:
        return sign * fractions.Fraction(numerator, denominator)
  return None


def _nesting_depth(text: str) -> int:
  depth = deepest = 0
  for char in text:
    if char in _OPEN:
      depth += 1
      deepest = max(deepest, depth)
    elif char in _CLOSE:
      depth = max(depth - 1, 0)
  return deepest


def _power_tower_height(text: str) -> int:
  """How many powers are stacked: 1 for `x^2`, 2 for `10^{10^{10}}`; braced exponents only."""
  pairs = brace_pairs(text)
  ends: list[int] = []  # Closing positions of the exponent groups we are inside.
  height = 0
  for match in _POWER.finditer(text):
    while ends and ends[-1] < match.start():
      ends.pop()
    height = max(height, len(ends) + 1)
    if match.end() in pairs:
      ends.append(pairs[match.end()])
  return height


def oversized_answer(answer: str) -> str | None:
  """Why an extracted answer is too large to compare in bounded time, or None if it is not.

  Only shapes no reference answer has: more than MAX_ANSWER_CHARS characters or MAX_DIGITS
  digits in a number, brackets nested deeper than MAX_NESTING, more than MAX_ELEMENTS
  elements, a stack of three powers or of two numeric ones (`10^{10^{10}}`, `2**2**2`), a
  numeric exponent above MAX_EXPONENT, or a factorial above MAX_FACTORIAL. Linear time.
  """
  if len(answer) > MAX_ANSWER_CHARS:
    return f"{len(answer)} characters (limit {MAX_ANSWER_CHARS})"
  longest = max((m.end() - m.start() for m in _DIGIT_RUN.finditer(answer)), default=0)
  if longest > MAX_DIGITS:
    return f"a number of {longest} digits (limit {MAX_DIGITS})"
  depth = _nesting_depth(answer)
  if depth > MAX_NESTING:
    return f"brackets nested {depth} deep (limit {MAX_NESTING})"
  elements = len(_SEPARATOR.findall(answer)) + 1
  if elements > MAX_ELEMENTS:
    return f"{elements} elements (limit {MAX_ELEMENTS})"
  compact = _WHITESPACE.sub("", answer)
  height = _power_tower_height(compact)
  if height >= 3 or (height == 2 and not re.search(r"[A-Za-z]", compact)):
    return f"a tower of {height} powers"
  if _NUMERIC_POWER_CHAIN.search(compact):
    return "a chain of numeric powers"
  for match in _NUMERIC_EXPONENT.finditer(compact):
    if len(match.group(1)) > len(str(MAX_EXPONENT)) or int(match.group(1)) > MAX_EXPONENT:
      return f"an exponent above {MAX_EXPONENT}"
  for match in _FACTORIAL.finditer(compact):
    if len(match.group(1)) > len(str(MAX_FACTORIAL)) or int(match.group(1)) > MAX_FACTORIAL:
      return f"a factorial above {MAX_FACTORIAL}!"
  return None


def _math_verify_equal(gold: str, predicted: str) -> bool:
  """math-verify's judgement with its own (signal-based) timeouts disabled."""
  # Imported lazily: sympy costs about a second, paid once per pool worker.
  import math_verify  # pylint: disable=import-outside-toplevel
  config = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]
  parsed_gold = math_verify.parse(f"${gold}$", config, parsing_timeout=None)
  parsed_pred = math_verify.parse(f"${predicted}$", config, parsing_timeout=None)
  if not parsed_gold or not parsed_pred:
    return False
  return bool(math_verify.verify(parsed_gold, parsed_pred, timeout_seconds=None))


def answers_equivalent(gold: str, predicted: str, use_math_verify: bool = True) -> bool:
  """True when `predicted` denotes the same answer as `gold`.

  Args:
    gold: the reference answer (LaTeX or plain text).
    predicted: the extracted answer of a completion.
    use_math_verify: fall back on math-verify when the cheap checks are inconclusive.

  Returns:
    the verdict; unparseable input is simply not equivalent.
  """
  norm_gold, norm_pred = normalize_answer(gold), normalize_answer(predicted)
  if not norm_pred:
    return False
  if norm_gold == norm_pred:
    return True
  gold_value, pred_value = _exact_number(norm_gold), _exact_number(norm_pred)
  if gold_value is not None and pred_value is not None and gold_value == pred_value:
    return True
  if not use_math_verify:
    return False
  try:
    return _math_verify_equal(gold, predicted) or _math_verify_equal(norm_gold, norm_pred)
  except Exception:  # pylint: disable=broad-except
    return False


@dataclasses.dataclass(frozen=True)
class MathTask:
  """One completion to grade (the pool's picklable item)."""

  completion: str
  gold: str
  use_math_verify: bool = True


def check_math_task(task: MathTask) -> VerifierResult:
  """Pool check function: extract, normalise and compare one answer."""
  start = time.perf_counter()
  answer, _ = extract_final_answer(task.completion)
  oversized = oversized_answer(answer) if answer is not None else None
  if oversized is not None:
    return VerifierResult(0.0, False, Status.UNPARSEABLE, seconds=time.perf_counter() - start,
                          detail=f"answer too large to compare: {oversized}")
  if answer is None or not normalize_answer(answer):
    return VerifierResult(0.0, False, Status.UNPARSEABLE, seconds=time.perf_counter() - start,
                          detail="no final answer found")
  correct = answers_equivalent(gold_answer(task.gold), answer, task.use_math_verify)
  return VerifierResult(float(correct), correct, Status.OK, answer=normalize_answer(answer),
                        seconds=time.perf_counter() - start)


def check_golds(answers: Sequence[Any]) -> None:
  """Gold answers must be non-empty strings: a missing one is a data error, not a wrong
  completion (and must never be compared as the text "None").

  Raises:
    ValueError: naming the first bad position and its value.
  """
  for index, answer in enumerate(answers):
    if not isinstance(answer, str) or not answer.strip():
      raise ValueError(f"answers[{index}]={answer!r}: every gold answer must be a non-empty "
                       "string (a task without gold answers cannot use the math verifier)")


class MathVerifier:
  """Exact final-answer verifier for MATH / GSM8K-style tasks (score equals correctness).

  Columns: `answers`, the gold answer of each completion (a bare answer, a `\\boxed{}`
  solution or a GSM8K `####` answer field).

  Args:
    num_workers: pool workers.
    task_timeout_s: deadline of one comparison (math-verify's worst cases are unbounded).
    batch_timeout_s: optional deadline of one `verify` call.
    use_math_verify: False keeps to normalised-string and exact-number comparison.
    pool: an existing VerifierPool running `check_fn` (then the pool options are unused).
    check_fn: the pool's check function (tests substitute a slow one).
  """

  def __init__(self, *, num_workers: int = 2, task_timeout_s: float = 5.0,
               batch_timeout_s: float | None = None, use_math_verify: bool = True,
               pool: pool_lib.VerifierPool | None = None,
               check_fn: Callable[[MathTask], VerifierResult] = check_math_task):
    self.use_math_verify = use_math_verify
    self._owns_pool = pool is None
    self.pool = pool or pool_lib.VerifierPool(
        check_fn, num_workers=num_workers, task_timeout_s=task_timeout_s,
        batch_timeout_s=batch_timeout_s, initializer=warm_up)

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             answers: Sequence[str] = (), **columns: Sequence[Any]) -> list[VerifierResult]:
    """Scores each completion against its gold answer."""
    del prompts, columns
    if len(answers) != len(completions):
      raise ValueError(f"answers has {len(answers)} entries for {len(completions)} completions")
    check_golds(answers)
    tasks = [MathTask(c, a, self.use_math_verify) for c, a in zip(completions, answers)]
    return self.pool.map(tasks)

  @property
  def last_metrics(self) -> dict[str, float]:
    return self.pool.last_metrics

  def close(self) -> None:
    if self._owns_pool:
      self.pool.close()

  def __enter__(self) -> MathVerifier:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def warm_up() -> None:
  """Pool initializer: import math-verify (and sympy) before the first deadline starts."""
  try:
    _math_verify_equal("1", "1")
  except Exception:  # pylint: disable=broad-except
    pass

"""Math final-answer verifier: extract a completion's answer, compare it with the gold one.

Extraction (first that applies): the last `\\boxed{...}` / `\\fbox{...}` (nested braces
allowed), the last GSM8K `#### ...` line, the last "the (final) answer is ..." phrase, the last
number in the text. Comparison: normalised strings (LaTeX spacing, `\\dfrac`, units, thousands
separators, `x = ...`), then exact rational equality, then the `math-verify` package (symbolic
and numeric equivalence, sets, intervals, matrices).

math-verify can take unbounded time on hostile input and its own timeouts use SIGALRM (main
thread only), so they are disabled here and the checks run in a `VerifierPool`, which owns
the deadline: `MathVerifier` never calls math-verify in the training process.
"""

from __future__ import annotations

import dataclasses
import fractions
import logging
import re
import time
from typing import Any, Callable, Sequence

from bonjax.verifiers import pool as pool_lib
from bonjax.verifiers.base import Status, VerifierResult

_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
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

logging.getLogger("math_verify").setLevel(logging.ERROR)


def _braced(text: str, open_pos: int) -> str | None:
  """Content of the brace group opening at `open_pos` (escaped braces do not nest)."""
  depth, pos = 0, open_pos
  while pos < len(text):
    char = text[pos]
    if char == "\\":
      pos += 2
      continue
    if char == "{":
      depth += 1
    elif char == "}":
      depth -= 1
      if depth == 0:
        return text[open_pos + 1:pos]
    pos += 1
  return None


def last_boxed(text: str) -> str | None:
  """The argument of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), or None."""
  matches = list(_BOX_COMMANDS.finditer(text))
  for match in reversed(matches):
    pos = match.end()
    while pos < len(text) and text[pos] == " ":
      pos += 1
    if pos < len(text) and text[pos] == "{":
      content = _braced(text, pos)
    else:
      content = re.match(r"[^\s$]*", text[pos:]).group(0)
    if content is not None and content.strip():
      return content.strip()
  return None


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
  if not _DECIMAL.fullmatch(text):
    return text
  value = fractions.Fraction(text)
  if value.denominator == 1:
    return str(value.numerator)
  return text.lstrip("+").rstrip("0") if "." in text else text


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
  text = re.sub(r"\^\s*{?\s*\\circ\s*}?|°", "", text)
  text = text.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
  text = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), text)
  text = _TRAILING_UNITS.sub("", text.strip())
  text = _SIMPLE_ASSIGNMENT.sub("", text.strip())
  text = text.strip().rstrip(".").strip()
  text = re.sub(r"\s+", "", text)
  return _canonical_decimal(text)


def _exact_number(text: str) -> fractions.Fraction | None:
  """The rational value of a normalised integer, decimal or simple fraction, else None."""
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
  if answer is None or not normalize_answer(answer):
    return VerifierResult(0.0, False, Status.UNPARSEABLE, seconds=time.perf_counter() - start,
                          detail="no final answer found")
  correct = answers_equivalent(gold_answer(task.gold), answer, task.use_math_verify)
  return VerifierResult(float(correct), correct, Status.OK, answer=normalize_answer(answer),
                        seconds=time.perf_counter() - start)


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
    tasks = [MathTask(c, str(a), self.use_math_verify) for c, a in zip(completions, answers)]
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

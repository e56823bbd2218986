"""Exact verifier of the arithmetic task: extract an integer answer, compare with the gold one."""

from __future__ import annotations

import re
import time
from typing import Any, Sequence

from bonjax.verifiers.base import Status, VerifierResult

_WHOLE_INTEGER = re.compile(r"\s*(-?\d+)\s*")
_ANY_INTEGER = re.compile(r"-?\d[\d,]*")


def extract_integer(completion: str, strict: bool = True) -> str | None:
  """Returns the completion's final integer answer in canonical form, or None.

  Args:
    completion: generated text (already cut at EOS).
    strict: the whole completion must be one integer (the tiny model's format); otherwise the
      last integer in the text is taken, tolerating chatty models ("The answer is 1,234.").

  Returns:
    The integer as a canonical decimal string (no leading zeros or thousands separators), or
    None when there is none.
  """
  if strict:
    match = _WHOLE_INTEGER.fullmatch(completion)
    text = match.group(1) if match else None
  else:
    found = _ANY_INTEGER.findall(completion)
    text = found[-1].replace(",", "") if found else None
  if text is None or not text.lstrip("-"):
    return None
  return _canonical(text)


def _canonical(text: str) -> str:
  """"-007" -> "-7", "-0" -> "0", on the string: int() refuses numbers over 4300 digits, and
  a model can write one."""
  digits = text.lstrip("-").lstrip("0") or "0"
  return "-" + digits if text.startswith("-") and digits != "0" else digits


class ArithmeticVerifier:
  """Exact-match verifier; score equals correctness (a perfect verifier).

  Args:
    strict: see `extract_integer`.
  """

  def __init__(self, strict: bool = True):
    self.strict = strict

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             answers: Sequence[str] = (), **columns: Sequence[Any]) -> list[VerifierResult]:
    """Scores each completion against `answers` (gold integers as strings)."""
    del prompts, columns  # The gold answer is all this check needs.
    if len(answers) != len(completions):
      raise ValueError(f"answers has {len(answers)} entries for {len(completions)} completions")
    results = []
    for completion, gold in zip(completions, answers):
      start = time.perf_counter()
      answer = extract_integer(completion, self.strict)
      correct = answer is not None and answer == _canonical(str(gold).strip())
      status = Status.OK if answer is not None else Status.UNPARSEABLE
      results.append(VerifierResult(score=float(correct), correct=correct, status=status,
                                    answer=answer, seconds=time.perf_counter() - start))
    return results

"""Exact-match verifier: a completion is correct when it equals the gold answer after
normalisation (case, surrounding whitespace and quotes, runs of spaces, a final period).

For labels and short free-text answers (`task.reward="exact"`); numbers and LaTeX belong to
the math verifier (`task.reward="math"`), which compares values, not strings.
"""

from __future__ import annotations

import re
import time
import unicodedata
from typing import Any, Sequence

from bonjax.verifiers.base import Status, VerifierResult

_SPACES = re.compile(r"\s+")
_QUOTES = "\"'`"


def normalize_text(text: str) -> str:
  """Canonical form for string comparison.

  Args:
    text: an answer or a completion.

  Returns:
    NFKC-normalised, case-folded text with runs of whitespace collapsed to one space, and
    surrounding whitespace, quotes and one final period removed.
  """
  text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
  text = text.strip(_QUOTES).strip()
  if text.endswith(".") and not text.endswith(".."):
    text = text[:-1].rstrip()
  return text.strip(_QUOTES).strip()


class ExactMatchVerifier:
  """Normalised string equality of the whole completion with the gold answer (score equals
  correctness).

  Columns: `answers`, the gold answer of each completion.
  """

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             answers: Sequence[str] = (), **columns: Sequence[Any]) -> list[VerifierResult]:
    """Scores each completion against its gold answer.

    Raises:
      ValueError: `answers` is not as long as `completions`, or holds a missing gold answer.
    """
    del prompts, columns  # Only the gold answer matters.
    if len(answers) != len(completions):
      raise ValueError(f"answers has {len(answers)} entries for {len(completions)} completions")
    results = []
    for index, (completion, gold) in enumerate(zip(completions, answers)):
      if not isinstance(gold, str):
        raise ValueError(f"answers[{index}]={gold!r}: exact match needs a gold answer string")
      start = time.perf_counter()
      answer = normalize_text(completion)
      correct = bool(answer) and answer == normalize_text(gold)
      status = Status.OK if answer else Status.UNPARSEABLE
      results.append(VerifierResult(score=float(correct), correct=correct, status=status,
                                    answer=answer or None,
                                    seconds=time.perf_counter() - start))
    return results

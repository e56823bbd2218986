"""Gold-answer extraction from reference solutions in the public dataset formats.

These read trusted reference text (dataset rows), not model output. The boxed answer is
extracted as completions' are (`bonjax.text.boxed`); the verifiers' fallbacks for completions
without a box (answer phrases, the last number) are theirs alone.
"""

from __future__ import annotations

import re

from bonjax.text.boxed import last_boxed

_GSM8K_MARKER = "####"
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")


def last_boxed_answer(solution: str) -> str | None:
  """The final answer of a MATH reference solution: its last `\\boxed{...}` argument (the
  extraction completions get too, `bonjax.text.boxed.last_boxed`); None without one."""
  return last_boxed(solution)


def gsm8k_final_answer(answer_field: str) -> str | None:
  """Extracts the final answer after the last `####` of a GSM8K answer field.

  Thousands separators are removed (`#### 1,250` gives `1250`) so the gold answer compares
  equal to a plainly written number.

  Args:
    answer_field: the rationale followed by `#### <answer>`.

  Returns:
    the answer text, or None when there is no marker or nothing follows it.
  """
  if _GSM8K_MARKER not in answer_field:
    return None
  final = answer_field.rsplit(_GSM8K_MARKER, 1)[1].strip()
  final = _THOUSANDS_COMMA.sub("", final)
  return final or None


def gsm8k_rationale(answer_field: str) -> str:
  """The worked solution before the last `####` marker (whole text if there is none)."""
  return answer_field.rsplit(_GSM8K_MARKER, 1)[0].rstrip()

"""Gold-answer extraction from reference solutions in the public dataset formats.

These read trusted reference text (dataset rows), not model output; the verifiers have their
own, more forgiving extraction for completions.
"""

from __future__ import annotations

import re

# Commands whose braced argument is the final answer in Hendrycks MATH solutions.
_BOX_COMMANDS = ("\\boxed", "\\fbox")
_GSM8K_MARKER = "####"
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}\b)")


def _braced_argument(text: str, open_pos: int) -> str | None:
  """Returns the text inside the brace group opening at `open_pos`, or None if unbalanced.

  A backslash escapes the next character, so `\\{` and `\\}` (literal braces, as in set
  notation) do not count towards nesting, while `\\\\{` (a line break then a group) does.
  """
  depth = 0
  pos = open_pos
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


def _last_box_command(text: str) -> tuple[int, int] | None:
  """(start, end) of the last `\\boxed` / `\\fbox` command not followed by a letter."""
  best = None
  for command in _BOX_COMMANDS:
    for match in re.finditer(re.escape(command) + r"(?![A-Za-z])", text):
      if best is None or match.start() > best[0]:
        best = (match.start(), match.end())
  return best


def last_boxed_answer(solution: str) -> str | None:
  """Extracts the argument of the last `\\boxed{...}` (or `\\fbox{...}`) in a solution.

  Handles nested braces (`\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`), escaped braces
  (`\\boxed{\\{1,2\\}}` gives `\\{1,2\\}`) and the brace-less form `\\boxed 5`.

  Args:
    solution: reference solution text in LaTeX.

  Returns:
    the stripped answer text, or None when there is no box, its braces are unbalanced, or it
    is empty.
  """
  found = _last_box_command(solution)
  if found is None:
    return None
  pos = found[1]
  while pos < len(solution) and solution[pos] == " ":
    pos += 1
  if pos < len(solution) and solution[pos] == "{":
    answer = _braced_argument(solution, pos)
  else:
    # `\boxed 5$`: the argument is the next token, up to whitespace or the closing `$`.
    answer = re.match(r"[^\s$]*", solution[pos:]).group(0)
  if answer is None or not answer.strip():
    return None
  return answer.strip()


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

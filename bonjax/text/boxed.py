"""The final answer of a LaTeX solution: the argument of its last `\\boxed{...}`.

One extraction for gold answers (MATH reference solutions, `bonjax.data.answers`) and for
completions (`bonjax.verifiers.math_answers`).
"""

from __future__ import annotations

import re

_BOX_COMMANDS = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_ARGUMENT = re.compile(r"[^\s$]*")
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.DOTALL)  # An escape pair, or a brace.


def brace_pairs(text: str) -> dict[int, int]:
  """Position of each `{` -> position of its matching `}`, in one pass.

  A backslash escapes the next character, so `\\{` and `\\}` (literal braces) do not nest,
  while `\\\\{` (a line break, then a group) does.
  """
  pairs, stack = {}, []
  for token in _BRACE_TOKEN.finditer(text):
    char = token.group()
    if char == "{":
      stack.append(token.start())
    elif char == "}" and stack:
      pairs[stack.pop()] = token.start()
  return pairs


def last_boxed(text: str) -> str | None:
  """The argument of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), or None.

  Nested braces (`\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`) and escaped ones
  (`\\boxed{\\{1,2\\}}` gives `\\{1,2\\}`) are handled; a last box that is empty or never
  closed gives way to the one before it. Linear in the text: braces are matched once, then
  the boxes are tried from the last.

  Args:
    text: LaTeX solution text.

  Returns:
    the stripped argument, or None when no box has a non-empty, closed argument.
  """
  matches = list(_BOX_COMMANDS.finditer(text))
  pairs = brace_pairs(text) if matches else {}
  for match in reversed(matches):
    pos = match.end()
    while pos < len(text) and text[pos] == " ":
      pos += 1
    if pos < len(text) and text[pos] == "{":
      close = pairs.get(pos)
      content = None if close is None else text[pos + 1:close]
    else:
      content = _BARE_ARGUMENT.match(text, pos).group(0)
    if content is not None and content.strip():
      return content.strip()
  return None

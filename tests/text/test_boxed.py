"""One boxed-answer extraction serves gold answers (data) and completions (verifiers)."""

import pytest

from bonjax.data import answers
from bonjax.text.boxed import last_boxed
from bonjax.verifiers import math_answers

CASES = [
    (r"So $x = \boxed{5}$.", "5"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"$\boxed{\frac{a^{2}}{b_{1}}}$ done", r"\frac{a^{2}}{b_{1}}"),
    (r"set $\boxed{\{1, 2\}}$", r"\{1, 2\}"),
    (r"\boxed{a \\{b} c}", r"a \\{b} c"),
    (r"$\boxed 5$.", "5"),
    # A last box that is never closed, or empty, gives way to the one before it (the data
    # reader used to return None here; now gold answers and completions agree).
    (r"\boxed{7} and then \boxed{\frac{1}{2}$", "7"),
    (r"\boxed{7} \boxed{ }", "7"),
    (r"$\boxed{\frac{1}{2}$", None),
    (r"\boxedanswer{3}", None),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_gold_and_completion_extraction_are_the_same_function(text, expected):
  assert last_boxed(text) == expected
  assert answers.last_boxed_answer(text) == expected
  assert math_answers.last_boxed(text) == expected
  assert math_answers.extract_final_answer(text)[0] == expected or expected is None


def test_the_verifier_uses_the_shared_function():
  assert math_answers.last_boxed is last_boxed

"""Gold-answer extraction from MATH solutions and GSM8K answer fields."""

from __future__ import annotations

import pytest

from bonjax.data.answers import gsm8k_final_answer, gsm8k_rationale, last_boxed_answer


@pytest.mark.parametrize("solution, expected", [
    (r"So $x = \boxed{5}$.", "5"),
    (r"The answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"$\boxed{\dfrac{\sqrt{3}}{2}}$", r"\dfrac{\sqrt{3}}{2}"),
    (r"$\boxed{\frac{a^{2}}{b_{1}}}$ done", r"\frac{a^{2}}{b_{1}}"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"set $\boxed{\{1, 2\}}$", r"\{1, 2\}"),
    (r"$\boxed{a \{}$ and more}", r"a \{"),  # an escaped brace does not open a group
    (r"$\boxed{\left\{ x \right\}}$", r"\left\{ x \right\}"),
    (r"$\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}$", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"$\boxed{\text{(A)}}$", r"\text{(A)}"),
    (r"$\fbox{7}$", "7"),
    (r"$\boxed 5$.", "5"),
    (r"$\boxed {  12 }$", "12"),
    (r"\boxed{1} and later $\fbox{\frac{3}{4}}$", r"\frac{3}{4}"),
])
def test_last_boxed_answer_extracts_the_last_box(solution, expected):
  assert last_boxed_answer(solution) == expected


@pytest.mark.parametrize("solution", [
    "no box here",
    r"$\boxed{\frac{1}{2}$",  # unbalanced
    r"$\boxed{}$",  # empty
    r"$\boxed{  }$",
    r"\boxedanswer{3}",  # a different command
    "",
])
def test_last_boxed_answer_none_when_nothing_extractable(solution):
  assert last_boxed_answer(solution) is None


def test_escaped_backslash_before_brace_still_opens_a_group():
  # `\\{` is a LaTeX line break followed by a group: the group's braces must nest.
  assert last_boxed_answer(r"\boxed{a \\{b} c}") == r"a \\{b} c"


@pytest.mark.parametrize("field, expected", [
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("#### 1,250", "1250"),
    ("x\n#### 1,250,000", "1250000"),
    ("#### -3", "-3"),
    ("#### 0.5", "0.5"),
    ("a #### 1\nb #### 2 ", "2"),
])
def test_gsm8k_final_answer(field, expected):
  assert gsm8k_final_answer(field) == expected


@pytest.mark.parametrize("field", ["no marker", "text ####", "####   \n"])
def test_gsm8k_final_answer_none(field):
  assert gsm8k_final_answer(field) is None


def test_gsm8k_rationale():
  assert gsm8k_rationale("step 1\nstep 2\n#### 9") == "step 1\nstep 2"

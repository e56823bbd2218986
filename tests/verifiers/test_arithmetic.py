"""The exact arithmetic verifier."""

import pytest

from bonjax.verifiers.arithmetic import ArithmeticVerifier, extract_integer
from bonjax.verifiers.base import Status


@pytest.mark.parametrize("text, strict, expected", [
    ("42", True, "42"),
    (" -7 ", True, "-7"),
    ("007", True, "7"),
    ("4 2", True, None),
    ("", True, None),
    ("-", True, None),
    ("42abc", True, None),
    ("The answer is 1,234.", False, "1234"),
    ("3 + 4 = 7", False, "7"),
    ("no digits", False, None),
])
def test_extract_integer(text, strict, expected):
  assert extract_integer(text, strict) == expected


def test_verify_scores_and_statuses():
  results = ArithmeticVerifier().verify(["1+1=", "2-5=", "3*3="], ["2", "3", "nine"],
                                        answers=["2", "-3", "9"])
  assert [r.correct for r in results] == [True, False, False]
  assert [r.score for r in results] == [1.0, 0.0, 0.0]
  assert [r.status for r in results] == [Status.OK, Status.OK, Status.UNPARSEABLE]
  assert [r.answer for r in results] == ["2", "3", None]


def test_answers_must_align():
  with pytest.raises(ValueError, match="answers has 1 entries for 2 completions"):
    ArithmeticVerifier().verify(["a", "b"], ["1", "2"], answers=["1"])


def test_numbers_too_long_for_int_are_scored_not_raised():
  """int() refuses strings over 4300 digits; a runaway completion must still get a verdict."""
  huge = "-000" + "9" * 5000
  assert extract_integer(huge) == "-" + "9" * 5000
  result, = ArithmeticVerifier().verify(["1+1="], [huge], answers=["2"])
  assert not result.correct and result.status == Status.OK

"""Math answers: extraction, normalisation, equivalence (math-verify), pool timeouts."""

import time

import pytest

from bonjax.verifiers import math_answers as ma
from bonjax.verifiers.base import Status
from tests.verifiers import pool_check_fns as fns

# (completion, expected answer, how it was found)
EXTRACTION = [
    ("So the result is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "boxed"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}} and that's it", "\\frac{\\sqrt{3}}{2}", "boxed"),
    ("First \\boxed{1}, corrected: \\boxed{2}", "2", "boxed"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed"),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}",
     "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "boxed"),
    ("$\\boxed 5$", "5", "boxed"),
    ("\\fbox{7}", "7", "boxed"),
    ("\\boxed{x^{2}+1}", "x^{2}+1", "boxed"),
    ("unbalanced \\boxed{3 so the answer is 4", "4", "phrase"),
    ("empty \\boxed{} then 9", "9", "number"),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72", "gsm8k"),
    ("#### 1,234", "1,234", "gsm8k"),
    ("#### $18", "18", "gsm8k"),
    ("The answer is 42.", "42", "phrase"),
    ("Thus the final answer is: 3/4", "3/4", "phrase"),
    ("Final Answer: $x = 5$", "x = 5", "phrase"),
    ("answer = -7; done", "-7", "phrase"),
    ("The answer is 12. Then I checked 13.", "12", "phrase"),
    ("I think 3 apples plus 4 apples make 7 apples", "7", "number"),
    ("The total is 1,500 dollars", "1,500", "number"),
    ("It is -0.25 or so", "-0.25", "number"),
    ("roughly .5", ".5", "number"),
    ("we get 22 / 7", "22/7", "number"),
    ("no digits at all", None, "none"),
    ("", None, "none"),
    ("\\boxed{}", None, "none"),
]

# (gold, predicted, equivalent)
EQUIVALENCE = [
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{2}", "1/2", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("\\frac34", "3/4", True),
    ("3/4", "\\frac{6}{8}", True),
    ("1/3", "0.333333", True),
    ("1/3", "0.33", False),
    ("0.5", "\\frac{1}{3}", False),
    ("-\\frac{2}{3}", "-2/3", True),
    ("2", "2.0", True),
    ("2.50", "2.5", True),
    ("1234", "1,234", True),
    ("1000000", "1,000,000", True),
    ("5", "5 cm", True),
    ("5\\text{ cm}", "5", True),
    ("12", "12 \\text{ dollars}", True),
    ("\\$5.00", "5", True),
    ("90^\\circ", "90", True),
    ("10\\%", "10", True),
    ("10\\%", "0.1", True),
    ("x=2", "2", True),
    ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}", True),
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("\\pi", "3.14159", False),
    ("2, 3", "3, 2", True),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("x=2 \\text{ or } x=3", "3, 2", True),
    ("2, 3", "2", False),
    ("[1,2)", "[1,2)", True),
    ("(1,2)", "[1,2]", False),
    ("\\infty", "\\infty", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", False),
    ("\\text{(A)}", "A", True),
    ("3", "4", False),
    ("-3", "3", False),
    ("7", "seven", False),
    ("7", "", False),
    ("7", "}}}{{{\\frac", False),
    ("0", "\\frac{0}{5}", True),
]

NORMALIZATION = [
    ("$\\dfrac{1}{2}$", "\\frac{1}{2}"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("1,234,567", "1234567"),
    ("3.500", "3.5"),
    ("4.0", "4"),
    ("x = 10", "10"),
    ("\\text{5 cm}", "5"),
    ("45^{\\circ}", "45"),
    ("\\$12", "12"),
    ("50\\%", "50"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("7.", "7"),
    ("(1, 2)", "(1,2)"),
]


@pytest.mark.parametrize("text,answer,how", EXTRACTION)
def test_extract_final_answer(text, answer, how):
  assert ma.extract_final_answer(text) == (answer, how)


@pytest.mark.parametrize("gold,predicted,equivalent", EQUIVALENCE)
def test_answers_equivalent(gold, predicted, equivalent):
  assert ma.answers_equivalent(gold, predicted) is equivalent


@pytest.mark.parametrize("raw,normalized", NORMALIZATION)
def test_normalize_answer(raw, normalized):
  assert ma.normalize_answer(raw) == normalized


def test_cheap_path_needs_no_math_verify():
  assert ma.answers_equivalent("\\frac{1}{2}", "2/4", use_math_verify=False)
  assert not ma.answers_equivalent("\\sqrt{8}", "2\\sqrt{2}", use_math_verify=False)
  assert ma.answers_equivalent("\\sqrt{8}", "2\\sqrt{2}", use_math_verify=True)


def test_gold_answer_reads_reference_formats():
  assert ma.gold_answer("... so $\\boxed{\\frac{3}{5}}$.") == "\\frac{3}{5}"
  assert ma.gold_answer("She has 3 + 4 = 7.\n#### 7") == "7"
  assert ma.gold_answer(" 12 ") == "12"


def test_math_verifier_scores_a_batch_through_the_pool():
  rows = [
      ("The answer is $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}", True, Status.OK, "\\frac{1}{2}"),
      ("so 0.5", "$\\boxed{\\frac12}$", True, Status.OK, "0.5"),
      ("work...\n#### 1,234", "Natalia ... \n#### 1234", True, Status.OK, "1234"),
      ("The answer is 41.", "42", False, Status.OK, "41"),
      ("I don't know", "42", False, Status.UNPARSEABLE, None),
      ("\\boxed{x = 3}", "3", True, Status.OK, "3"),
      ("\\boxed{3, 2}", "2, 3", True, Status.OK, "3,2"),
  ]
  with ma.MathVerifier(num_workers=2, task_timeout_s=20.0) as verifier:
    results = verifier.verify([""] * len(rows), [r[0] for r in rows],
                              answers=[r[1] for r in rows])
    metrics = verifier.last_metrics
  for result, (_, _, correct, status, answer) in zip(results, rows):
    assert (result.correct, result.status, result.answer) == (correct, status, answer)
    assert result.score == float(correct)
  assert metrics["ok"] == 6 and metrics["unparseable"] == 1 and metrics["correct"] == 5


def test_injected_timeouts_end_as_timeout_while_the_rest_scores():
  completions = ["\\boxed{2}", "SLEEP \\boxed{2}", "\\boxed{3}", "SLEEP", "The answer is 2"]
  with ma.MathVerifier(num_workers=2, task_timeout_s=1.0,
                       check_fn=fns.sleepy_math_check) as verifier:
    verifier.verify(["", ""], ["1", "1"], answers=["1", "1"])  # Workers warm.
    start = time.monotonic()
    results = verifier.verify([""] * 5, completions, answers=["2"] * 5)
    elapsed = time.monotonic() - start
    metrics = verifier.last_metrics
  assert [r.status for r in results] == [Status.OK, Status.TIMEOUT, Status.OK, Status.TIMEOUT,
                                         Status.OK]
  assert [r.correct for r in results] == [True, False, False, False, True]
  assert [r.score for r in results] == [1.0, 0.0, 0.0, 0.0, 1.0]
  assert metrics["timeout"] == 2 and metrics["worker_restarts"] == 2
  assert elapsed < 8.0  # Two 1 s deadlines, plus replacement workers importing sympy.


def test_answers_column_must_match():
  with ma.MathVerifier(num_workers=1) as verifier:
    with pytest.raises(ValueError, match="answers has 1 entries for 2 completions"):
      verifier.verify(["", ""], ["1", "2"], answers=["1"])


# ----- hostile sizes ------------------------------------------------------------------------


def test_last_boxed_is_linear_in_the_text():
  """Unclosed boxes used to be rescanned to the end, one by one (54 KiB took 18 s, quadratic).

  Linear work here is ~0.05 s of CPU. The bound is on this process's CPU time, not wall time,
  so a loaded CI machine that deschedules the test does not fail it; a quadratic scan would
  still take minutes.
  """
  for text in ("\\boxed{" * 40_000, "\\boxed{}" * 40_000, "{" * 300_000 + "\\boxed{7}",
               "\\boxed " * 40_000):  # 280-320 KiB each.
    start = time.process_time()
    ma.last_boxed(text)
    ma.extract_final_answer(text)
    assert time.process_time() - start < 2.0, text[:20]
  assert ma.last_boxed("\\boxed{" * 1000 + "\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
  assert ma.last_boxed("\\boxed{\\{1\\}} \\boxed{") == "\\{1\\}"


def test_numbers_longer_than_the_int_str_limit_compare_by_their_digits():
  digits = "7" + "0123456789" * 500  # 5001 digits: above Python's 4300-digit default.
  assert ma.normalize_answer("+000" + digits + ".000") == digits
  assert ma.answers_equivalent(digits, digits + ".0", use_math_verify=False)
  assert ma.answers_equivalent(digits, digits)
  assert not ma.answers_equivalent(digits, digits[:-1] + "0")
  result = ma.check_math_task(ma.MathTask(f"so \\boxed{{{digits}}}", digits))
  assert (result.correct, result.status) == (True, Status.OK)
  result = ma.check_math_task(ma.MathTask(f"so \\boxed{{{digits}1}}", digits))
  assert (result.correct, result.status) == (False, Status.OK)


OVERSIZED = [
    ("10^{10^{10}}", "a tower of 2 powers"),
    ("2^{2^{2^{x}}}", "a tower of 3 powers"),
    ("2**2**2**2**2", "a chain of numeric powers"),
    ("2 ^ 2 ^ 2", "a chain of numeric powers"),
    ("10^{100000}", "an exponent above 10000"),
    ("100000!", "a factorial above 1000!"),
    ("\\frac{" * 40 + "1" + "}{2}" * 40, "brackets nested 40 deep (limit 32)"),
    ("\\{" + ",".join(map(str, range(300))) + "\\}", "300 elements (limit 256)"),
    ("9" * 10_001, "a number of 10001 digits (limit 10000)"),
    ("x+" * 6001, "12002 characters (limit 12000)"),
]


@pytest.mark.parametrize("answer, why", OVERSIZED)
def test_oversized_answers_are_named(answer, why):
  assert ma.oversized_answer(answer) == why


@pytest.mark.parametrize("answer", ["e^{x^2}", "2^{10}", "x^2+2x+1", "10!", "\\{1,2,3\\}",
                                    "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "9" * 5000,
                                    "\\frac{\\sqrt{\\frac{1}{2}}}{2}", "(1, 2]"])
def test_reference_shaped_answers_pass_the_screen(answer):
  assert ma.oversized_answer(answer) is None


def test_oversized_answers_fail_fast_instead_of_timing_out():
  completions = [f"\\boxed{{{answer}}}" for answer, _ in OVERSIZED[:8]]
  with ma.MathVerifier(num_workers=2, task_timeout_s=5.0) as verifier:
    start = time.monotonic()
    results = verifier.verify([""] * len(completions), completions,
                              answers=["1"] * len(completions))
    elapsed = time.monotonic() - start
  assert [r.status for r in results] == [Status.UNPARSEABLE] * len(completions)
  assert [r.detail for r in results] == [f"answer too large to compare: {why}"
                                         for _, why in OVERSIZED[:8]]
  assert elapsed < 5.0 and max(r.seconds for r in results) < 0.5


@pytest.mark.parametrize("gold", [None, "", "   ", 7])
def test_missing_gold_answers_are_refused_before_any_check(gold):
  with ma.MathVerifier(num_workers=1) as verifier:
    with pytest.raises(ValueError, match=r"answers\[1\]=.*every gold answer must be a "
                                         "non-empty string"):
      verifier.verify(["", ""], ["1", "2"], answers=["1", gold])

"""The arithmetic task: exact answers, disjoint reproducible splits, difficulty knobs."""

import numpy as np
import pytest

from bonjax.data import arithmetic


def _eval(expression: str) -> int:
  # The generator only writes digits, + - * and parentheses, so Python evaluates it exactly.
  assert set(expression) <= set("0123456789+-*()")
  return eval(expression)  # pylint: disable=eval-used


@pytest.mark.parametrize("spec", [
    arithmetic.ArithmeticSpec(num_digits=2, operators="+-"),
    arithmetic.ArithmeticSpec(num_digits=3, operators="+-*", num_operands=3, multiply_digits=2),
])
def test_answers_are_exact(spec):
  examples = arithmetic.make_split(spec, "train", 300, seed=1)
  for e in examples:
    expression = e.metadata["expression"]
    assert e.prompt == f"{expression}="
    assert int(e.answer) == _eval(expression)


def test_multi_step_expressions_are_parenthesised_left_to_right():
  rng = np.random.default_rng(0)
  spec = arithmetic.ArithmeticSpec(num_digits=1, operators="-", num_operands=4)
  text, value = arithmetic.random_problem(rng, spec)
  assert text.count("(") == 2 and text.startswith("((")
  assert value == _eval(text)


def test_splits_are_disjoint_and_reproducible():
  spec = arithmetic.ArithmeticSpec(num_digits=2)
  train = arithmetic.make_split(spec, "train", 2000, seed=0)
  test = arithmetic.make_split(spec, "test", 200, seed=0)
  assert not {e.prompt for e in train} & {e.prompt for e in test}
  assert len({e.prompt for e in train}) == 2000
  # The test split does not depend on how many training problems were drawn.
  assert [e.prompt for e in test] == [e.prompt for e in arithmetic.make_split(spec, "test", 200, 0)]
  other_train = arithmetic.make_split(spec, "train", 10, seed=0)
  assert [e.prompt for e in other_train] == [e.prompt for e in train[:10]]


def test_test_membership_is_a_stable_hash():
  # crc32 is fixed across Python versions and machines, unlike hash().
  assert arithmetic.is_test_problem("30-15", 0.1)
  assert not arithmetic.is_test_problem("67-3", 0.1)


def test_digit_ranges():
  spec = arithmetic.ArithmeticSpec(num_digits=3, operators="+")
  lengths = {len(s) for e in arithmetic.make_split(spec, "train", 500, 0)
             for s in e.metadata["expression"].split("+")}
  assert lengths == {1, 2, 3}


@pytest.mark.parametrize("kwargs, message", [
    ({"num_digits": 0}, "task.num_digits=0: must be >= 1"),
    ({"operators": "+/"}, "task.operators='+/'"),
    ({"num_operands": 1}, "task.num_operands=1: must be >= 2"),
])
def test_invalid_specs_name_the_field(kwargs, message):
  with pytest.raises(ValueError, match=message.replace("+", r"\+").replace("(", r"\(")):
    arithmetic.make_split(arithmetic.ArithmeticSpec(**kwargs), "train", 1, 0)


def test_too_small_problem_space_is_reported():
  spec = arithmetic.ArithmeticSpec(num_digits=1, operators="+")
  with pytest.raises(ValueError, match="only .* distinct train problems"):
    arithmetic.make_split(spec, "train", 40, 0, max_draws_per_example=1)


def test_problem_space_is_counted_exactly():
  # 10 first operands x 10 second operands x 1 operator; crc32 puts 8 of the 100 in "test".
  spec = arithmetic.ArithmeticSpec(num_digits=1, operators="+")
  assert arithmetic.problem_space_size(spec) == 100
  test = [f"{a}+{b}" for a in range(10) for b in range(10) if arithmetic.is_test_problem(
      f"{a}+{b}", spec.test_fraction)]
  assert arithmetic.split_capacity(spec, "test") == (len(test), True) == (8, True)
  assert arithmetic.split_capacity(spec, "train") == (92, True)
  # Every train problem can be drawn, and one more is refused before drawing anything.
  assert len(arithmetic.make_split(spec, "train", 92, 0)) == 92
  with pytest.raises(ValueError, match="task.num_train=93: the arithmetic task has 92 distinct"):
    arithmetic.make_split(spec, "train", 93, 0)
  # 3 operands of up to 2 digits, "+-*" with 1-digit multiplication: 100 * (100+100+10)^2.
  big = arithmetic.ArithmeticSpec(num_digits=2, operators="+-*", num_operands=3)
  assert arithmetic.problem_space_size(big) == 100 * 210 ** 2
  assert sum(1 for _ in arithmetic._all_expressions(arithmetic.ArithmeticSpec(
      num_digits=1, operators="-*", num_operands=3, multiply_digits=1))) == 10 * 20 ** 2


def test_impossible_task_size_fails_at_once():
  # 10^7 requested of a 4.4-million-expression space: refused by counting, not after drawing.
  spec = arithmetic.ArithmeticSpec(num_digits=2, operators="+-*", num_operands=3)
  with pytest.raises(ValueError, match=r"task.num_train=10000000: .* about 3969000 distinct"):
    arithmetic.make_split(spec, "train", 10_000_000, 0)

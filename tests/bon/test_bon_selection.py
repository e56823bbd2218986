"""Tests for Best-of-N selection and votes (first-index argmax, earliest-first-occurrence ties)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.bon import selection


def test_select_best_returns_first_maximiser():
  assert int(selection.select_best([1.0, 3.0, 3.0, 2.0])) == 1
  assert int(selection.select_best([5, 5, 5])) == 0
  assert int(selection.select_best([0.0, -1.0, 7.5])) == 2


def test_select_best_batched_and_jitted():
  scores = np.array([[0.1, 0.9, 0.9], [2.0, 2.0, 1.0], [-3.0, -2.0, -2.5]])
  expected = [1, 0, 1]
  np.testing.assert_array_equal(selection.select_best(scores), expected)
  np.testing.assert_array_equal(jax.jit(selection.select_best)(jnp.asarray(scores)), expected)


def test_select_best_never_picks_nan():
  assert int(selection.select_best([np.nan, 1.0, 1.0])) == 1
  assert int(selection.select_best([-np.inf, np.nan, -5.0])) == 2
  assert int(selection.select_best([np.nan, np.nan])) == 0


def test_select_best_values_gathers_the_selected_sample():
  correct = np.array([[0, 1, 0], [1, 0, 0]])
  scores = np.array([[0.2, 0.2, 0.1], [0.0, 0.5, 0.5]])
  np.testing.assert_array_equal(selection.select_best_values(correct, scores), [0, 0])


def test_majority_vote_plurality():
  assert selection.majority_vote(["a", "b", "a"]) == "a"
  assert selection.majority_vote(["7", "3", "3", "7", "3"]) == "3"


def test_majority_vote_tie_goes_to_earliest_first_occurrence():
  assert selection.majority_vote(["b", "a", "a", "b"]) == "b"
  assert selection.majority_vote(["c", "a", "b"]) == "c"
  assert selection.majority_vote_index(["x", "b", "a", "a", "b"]) == 1


def test_none_never_wins_unless_all_none():
  assert selection.majority_vote([None, None, None, "x"]) == "x"
  assert selection.majority_vote_index([None, None, None, "x"]) == 3
  assert selection.majority_vote([None, None]) is None
  assert selection.majority_vote_index([None, None]) == 0
  assert selection.weighted_vote([None, "a"], [100.0, 0.1]) == "a"


def test_weighted_vote_sums_scores_per_answer():
  # "b" has more votes, but "a" has the larger total score.
  assert selection.weighted_vote(["a", "b", "b"], [0.9, 0.3, 0.4]) == "a"
  assert selection.weighted_vote(["a", "b", "b"], [0.9, 0.5, 0.5]) == "b"
  # Equal totals: first occurrence.
  assert selection.weighted_vote(["b", "a", "a"], [0.5, 0.25, 0.25]) == "b"
  assert selection.majority_vote(["a", "b", "b"], weights=np.array([3.0, 1.0, 1.0])) == "a"


def test_vote_input_errors():
  with pytest.raises(ValueError, match="answers"):
    selection.majority_vote([])
  with pytest.raises(ValueError, match="weights has length 1"):
    selection.weighted_vote(["a", "b"], [1.0])
  with pytest.raises(ValueError, match="finite"):
    selection.weighted_vote(["a", "b"], [1.0, float("nan")])


def test_first_occurrence_rule_is_uniform_among_tied_answers_in_random_order():
  # Over all orders of the draws each of t tied answers wins 1/t of the time: the property
  # maj_at_k relies on.
  draws = ["a", "a", "b", "b", "c", None]
  wins = {"a": 0, "b": 0}
  orders = list(itertools.permutations(draws))
  for order in orders:
    wins[selection.majority_vote(list(order))] += 1
  assert wins == {"a": len(orders) // 2, "b": len(orders) // 2}
  assert len(orders) == math.factorial(6)

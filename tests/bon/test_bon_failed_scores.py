"""The one NaN rule (bonjax/bon/failed_scores.py) and its bon/ consumers: a failed score never
wins and never counts as correct."""

import jax.numpy as jnp
import numpy as np

from bonjax.bon import failed_scores, metrics, selection


def test_rule_on_numpy_and_jax():
  scores = [np.nan, 0.5, -np.inf]
  np.testing.assert_array_equal(failed_scores.ranking_scores(np.array(scores)),
                                [-np.inf, 0.5, -np.inf])
  got = failed_scores.ranking_scores(jnp.array(scores))
  assert isinstance(got, type(jnp.zeros(1)))
  np.testing.assert_array_equal(got, [-np.inf, 0.5, -np.inf])
  np.testing.assert_array_equal(failed_scores.is_correct(np.array([np.nan, 1.0, 0.0]), 1.0),
                                [False, True, False])
  np.testing.assert_array_equal(failed_scores.is_correct(jnp.array([np.nan, 1.0, 0.0]), 1.0),
                                [False, True, False])
  np.testing.assert_array_equal(failed_scores.correctness(np.array([np.nan, 1.0, 0.0])),
                                [0.0, 1.0, 0.0])
  np.testing.assert_array_equal(failed_scores.correctness(np.array([True, False])), [1.0, 0.0])
  np.testing.assert_array_equal(failed_scores.ranking_scores(np.array([3, 1])), [3, 1])


def test_selection_never_picks_a_failed_score():
  assert int(selection.select_best([np.nan, 0.1, 0.1])) == 1
  assert int(selection.select_best(jnp.array([[1.0, np.nan], [np.nan, np.nan]]))[0]) == 0
  np.testing.assert_array_equal(selection.select_best(jnp.array([[np.nan, -1.0],
                                                                 [np.nan, np.nan]])), [1, 0])


def test_metrics_never_choose_or_count_a_failed_score():
  # Best-of-2 over {NaN, 0.0, -1.0}: the NaN sample is never selected when a real score is in
  # the subset; subsets {0, 1}, {0, 2}, {1, 2} pick samples 1, 2, 1.
  probs = metrics.bon_selection_probs(np.array([np.nan, 0.0, -1.0]), 2)
  np.testing.assert_allclose(probs, [0.0, 2 / 3, 1 / 3])
  # The NaN sample is "correct" by its flag but is never chosen: accuracy = P(pick sample 2).
  np.testing.assert_allclose(metrics.bon_accuracy_at_k([np.nan, 0.0, -1.0], [1, 0, 1], 2), 1 / 3)
  # A NaN correctness flag is incorrect (count_nonzero used to count it as correct).
  np.testing.assert_allclose(metrics.pass_at_k_from_correct(np.array([np.nan, 0.0]), 1), 0.0)
  np.testing.assert_allclose(metrics.pass_at_k_from_correct(np.array([np.nan, 1.0]), 1), 0.5)
  np.testing.assert_allclose(metrics.bon_accuracy_at_k([0.5, 0.2], [np.nan, 1.0], 1), 0.5)

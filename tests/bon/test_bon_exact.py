"""Exact BoN distribution of categorical policies against section 13 values and enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bonjax.bon import exact

PI = np.array([0.1, 0.2, 0.3, 0.4])
R = np.array([1.0, 2.0, 2.0, 3.0])


def _enumerate_bon(pi, rank, N):
  """P(first maximiser of `rank` among N i.i.d. draws is outcome y), by brute force."""
  probs = np.zeros(len(pi))
  for tup in itertools.product(range(len(pi)), repeat=N):
    ranks = [rank[y] for y in tup]
    probs[tup[int(np.argmax(ranks))]] += np.prod([pi[y] for y in tup])
  return probs


def test_t2_index_ties_reference_and_enumeration():
  p = exact.bon_probs_index_ties(PI, R, 3)
  np.testing.assert_allclose(p, [0.001, 0.086, 0.129, 0.784], atol=1e-12)
  np.testing.assert_allclose(p, _enumerate_bon(PI, R, 3), atol=1e-12)
  np.testing.assert_allclose(exact.bon_distribution(PI, R, 3), p, atol=0)


def test_t3_outcome_order_reference_and_enumeration():
  p = exact.bon_probs_outcome_order(PI, R, 3)
  np.testing.assert_allclose(p, [0.001, 0.026, 0.189, 0.784], atol=1e-12)
  # Rank by (r, index): a strict order, so first maximiser = the highest-ranked outcome.
  strict_rank = R * 10 + np.arange(4)
  np.testing.assert_allclose(p, _enumerate_bon(PI, strict_rank, 3), atol=1e-12)
  # A priority preferring the lower index among ties swaps the split.
  q = exact.bon_probs_outcome_order(PI, R, 3, priority=[0, 1, 0, 0])
  np.testing.assert_allclose(q, _enumerate_bon(PI, R * 10 + np.array([0, 1, 0, 0]), 3),
                             atol=1e-12)
  with pytest.raises(ValueError, match="priority"):
    exact.bon_probs_outcome_order(PI, R, 3, priority=[0, 1, 1, 2])


def test_t1_level_masses():
  levels, masses = exact.level_masses(PI, R, 3)
  np.testing.assert_array_equal(levels, [1.0, 2.0, 3.0])
  np.testing.assert_allclose(masses, [0.001, 0.215, 0.784], atol=1e-12)
  assert masses.sum() == pytest.approx(1.0, abs=1e-15)


def test_t4_no_ties_matches_vbon_sum():
  rng = np.random.default_rng(1)
  pi = rng.dirichlet(np.ones(6))
  r = rng.permutation(6).astype(float)
  N = 5
  lower, _ = exact.score_cdfs(pi, r)
  vbon = sum(np.vectorize(math.comb)(N, i) * pi**i * lower**(N - i)
             for i in range(1, N + 1))
  np.testing.assert_allclose(exact.bon_probs_index_ties(pi, r, N), vbon, rtol=1e-12)
  np.testing.assert_allclose(exact.bon_probs_outcome_order(pi, r, N), vbon, rtol=1e-12)


def test_t5_n_equals_one_is_the_policy():
  np.testing.assert_allclose(exact.bon_probs_index_ties(PI, R, 1), PI, atol=1e-15)
  np.testing.assert_allclose(exact.bon_probs_outcome_order(PI, R, 1), PI, atol=1e-15)


def test_zero_probability_outcomes_get_zero():
  pi = np.array([0.0, 0.5, 0.0, 0.5])
  r = np.array([3.0, 1.0, 1.0, 0.0])
  p = exact.bon_probs_index_ties(pi, r, 4)
  np.testing.assert_allclose(p, [0.0, 1 - 0.5**4, 0.0, 0.5**4], atol=1e-15)


def test_t6_kl_and_bound():
  assert exact.bon_kl(PI, R, 3) == pytest.approx(0.341530, abs=5e-7)
  assert exact.bon_kl_bound(3) == pytest.approx(0.431946, abs=5e-7)
  uniform = np.full(4, 0.25)
  p = exact.bon_probs_index_ties(uniform, np.arange(4), 2)
  np.testing.assert_allclose(p * 16, [1, 3, 5, 7], atol=1e-12)
  assert exact.kl_divergence(p, uniform) == pytest.approx(0.173980, abs=5e-7)
  assert exact.bon_kl_bound(2) == pytest.approx(0.193147, abs=5e-7)


@pytest.mark.parametrize("N,expected", [(2, 0.193147), (8, 1.204442), (32, 2.496986)])
def test_t6_kl_equals_formula_in_the_no_atom_limit(N, expected):
  M = 20000
  kl = exact.bon_kl(np.full(M, 1.0 / M), np.arange(M), N)
  assert round(kl, 6) == pytest.approx(expected, abs=1e-12)
  assert round(exact.bon_kl_bound(N), 6) == pytest.approx(expected, abs=1e-12)
  assert kl < exact.bon_kl_bound(N)


def test_t7_half_tie_win_rate():
  uniform = np.full(4, 0.25)
  p = exact.bon_probs_index_ties(uniform, np.arange(4), 2)
  assert exact.half_tie_win_rate(uniform, np.arange(4), p) == pytest.approx(0.65625, abs=1e-15)
  for N in (1, 2, 3, 8):
    win = exact.half_tie_win_rate(PI, R, exact.bon_probs_index_ties(PI, R, N))
    assert win <= N / (N + 1) + 1e-15
  # N = 1 against itself is exactly a coin flip.
  assert exact.half_tie_win_rate(PI, R, PI) == pytest.approx(0.5, abs=1e-15)


def test_t8_expected_max():
  assert exact.expected_max(PI, R, 3) == pytest.approx(2.783, abs=1e-12)
  assert exact.expected_max(PI, R, 3) == pytest.approx(R @ exact.bon_probs_index_ties(PI, R, 3))
  brute = sum(max(R[list(t)]) * np.prod(PI[list(t)])
              for t in itertools.product(range(4), repeat=3))
  assert exact.expected_max(PI, R, 3) == pytest.approx(brute, abs=1e-12)


def test_t19_bon_accuracy_and_pass_at_n():
  pi, v, c = [0.2, 0.3, 0.1, 0.4], [1, 2, 2, 0], [1, 0, 1, 1]
  assert exact.bon_accuracy(pi, v, c, 2) == pytest.approx(0.52, abs=1e-15)
  assert exact.pass_at_n(pi, c, 2) == pytest.approx(1 - 0.3**2, abs=1e-15)
  # With a perfect verifier BoN accuracy is pass@N.
  assert exact.bon_accuracy(pi, c, c, 3) == pytest.approx(exact.pass_at_n(pi, c, 3), abs=1e-15)


def test_invalid_policies_are_rejected():
  with pytest.raises(ValueError, match="probability vector"):
    exact.bon_probs_index_ties([0.5, 0.6], [0, 1], 2)
  with pytest.raises(ValueError, match="shape"):
    exact.bon_probs_index_ties([0.5, 0.5], [0, 1, 2], 2)
  with pytest.raises(ValueError, match="N=0"):
    exact.bon_probs_index_ties([0.5, 0.5], [0, 1], 0)
  with pytest.raises(ValueError, match="tie_rule='lexical'"):
    exact.bon_distribution([0.5, 0.5], [0, 1], 2, tie_rule="lexical")

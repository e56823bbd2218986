"""Unbiased BoN metrics against brute force over k-subsets, closed forms and exact expectations."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from bonjax.bon import exact, metrics, selection


def _subsets(n, k):
  return list(itertools.combinations(range(n), k))


# ----------------------------------------------------------------------------- pass@k


def _chen_reference(n, c, k):
  """Chen et al.'s published product form."""
  if n - c < k:
    return 1.0
  return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def test_pass_at_k_reference_values():
  assert metrics.pass_at_k(10, 3, 5) == pytest.approx(0.9166667, abs=5e-8)
  assert metrics.pass_at_k(200, 1, 100) == pytest.approx(0.5, abs=1e-14)
  assert metrics.pass_at_k(5, 3, 3) == 1.0  # n - c < k
  assert metrics.pass_at_k(5, 0, 3) == 0.0
  assert metrics.pass_at_k(7, 7, 7) == 1.0


def test_pass_at_k_equals_subsets_closed_form_and_chen_product():
  rng = np.random.default_rng(0)
  for _ in range(40):
    n = int(rng.integers(1, 9))
    correct = rng.random(n) < rng.random()
    c = int(correct.sum())
    for k in range(1, n + 1):
      brute = np.mean([correct[list(s)].any() for s in _subsets(n, k)])
      closed = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
      got = metrics.pass_at_k(n, c, k)
      assert got == pytest.approx(brute, abs=1e-12)
      assert got == pytest.approx(float(closed), abs=1e-12)
      assert got == pytest.approx(_chen_reference(n, c, k), abs=1e-12)
      assert metrics.pass_at_k_from_correct(correct, k) == pytest.approx(got, abs=0)


@pytest.mark.parametrize("n,k,q", [(6, 3, 0.3), (10, 1, 0.05), (20, 7, 0.6), (200, 50, 0.01)])
def test_pass_at_k_is_unbiased_over_binomial_counts(n, k, q):
  c = np.arange(n + 1)
  binom = np.array([math.comb(n, i) * q**i * (1 - q)**(n - i) for i in c])
  assert binom @ metrics.pass_at_k(n, c, k) == pytest.approx(1 - (1 - q)**k, abs=1e-12)


def test_pass_at_k_vectorised_and_large_n():
  n = np.array([[400, 400], [300, 250]])
  c = np.array([[3, 0], [150, 1]])
  got = metrics.pass_at_k(n, c, 100)
  for idx in np.ndindex(n.shape):
    expected = 1 - Fraction(math.comb(int(n[idx] - c[idx]), 100), math.comb(int(n[idx]), 100))
    assert got[idx] == pytest.approx(float(expected), rel=1e-12, abs=1e-15)
  correct = np.zeros((2, 3, 500), bool)
  correct[1, 2, :7] = True
  out = metrics.pass_at_k_from_correct(correct, 64)
  assert out.shape == (2, 3)
  assert out[1, 2] == pytest.approx(1 - math.comb(493, 64) / math.comb(500, 64), rel=1e-12)
  assert out[0, 0] == 0.0


def test_pass_at_k_errors():
  with pytest.raises(ValueError, match="k=6"):
    metrics.pass_at_k(5, 1, 6)
  with pytest.raises(ValueError, match="k=0"):
    metrics.pass_at_k(5, 1, 0)
  with pytest.raises(ValueError, match="c=7"):
    metrics.pass_at_k(5, 7, 2)


def test_subset_max_probs_and_cdf_are_binomial_ratios():
  for n, k in [(1, 1), (5, 2), (9, 9), (12, 4)]:
    w = metrics.subset_max_probs(n, k)
    g = metrics.subset_max_cdf(n, k)
    np.testing.assert_allclose(w, [math.comb(a, k - 1) / math.comb(n, k) for a in range(n)],
                               rtol=1e-13, atol=0)
    np.testing.assert_allclose(g, [math.comb(a, k) / math.comb(n, k) for a in range(n + 1)],
                               rtol=1e-13, atol=0)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)


# ----------------------------------------------------------------------------- max@k


def test_max_at_k_reference_and_limits():
  g = np.array([0.2, 0.9, 0.5, 0.1])
  assert metrics.max_at_k(g, 2) == pytest.approx(0.65, abs=1e-15)
  assert metrics.max_at_k(g, 1) == pytest.approx(g.mean(), abs=1e-15)
  assert metrics.max_at_k(g, 4) == pytest.approx(0.9, abs=1e-15)


def test_max_at_k_equals_subsets_and_batches():
  rng = np.random.default_rng(1)
  g = np.round(rng.normal(size=(3, 7)), 1)  # rounding makes ties
  for k in range(1, 8):
    brute = [np.mean([row[list(s)].max() for s in _subsets(7, k)]) for row in g]
    np.testing.assert_allclose(metrics.max_at_k(g, k), brute, atol=1e-12)


def test_mean_reward():
  np.testing.assert_allclose(metrics.mean_reward([[1, 0, 0, 1], [0.5, 0.5, 0.0, 1.0]]),
                             [0.5, 0.5])


# ----------------------------------------------------------------------------- BoN accuracy@k


def _bon_stored_order_brute(scores, correct, k):
  """First-index argmax applied to every k-subset in stored (index) order."""
  return np.mean([correct[list(s)][np.argmax(scores[list(s)])] for s in _subsets(len(scores), k)])


def _bon_all_orders_brute(scores, correct, k):
  """First-index argmax applied to every ordered k-draw without replacement."""
  return np.mean([correct[list(p)][np.argmax(scores[list(p)])]
                  for p in itertools.permutations(range(len(scores)), k)])


def _section10_formula(scores, correct, k):
  n, total = len(scores), Fraction(0)
  for level in set(scores.tolist()):
    members = scores == level
    below, m = int(np.sum(scores < level)), int(members.sum())
    mean_correct = Fraction(int(correct[members].sum()), m)
    total += (math.comb(below + m, k) - math.comb(below, k)) * mean_correct
  return float(total / math.comb(n, k))


def test_bon_accuracy_equals_brute_force_with_ties():
  rng = np.random.default_rng(2)
  for _ in range(30):
    n = int(rng.integers(1, 7))
    scores = rng.integers(0, 3, n).astype(float)
    correct = (rng.random(n) < 0.5).astype(float)
    for k in range(1, n + 1):
      stored = metrics.bon_accuracy_at_k(scores, correct, k, tie_rule="stored_order")
      average = metrics.bon_accuracy_at_k(scores, correct, k)
      assert stored == pytest.approx(_bon_stored_order_brute(scores, correct, k), abs=1e-12)
      assert average == pytest.approx(_bon_all_orders_brute(scores, correct, k), abs=1e-12)
      assert average == pytest.approx(_section10_formula(scores, correct, k), abs=1e-12)


def test_tie_rules_differ_only_on_mixed_tied_levels():
  scores, correct = np.array([1.0, 1.0]), np.array([1.0, 0.0])
  assert metrics.bon_accuracy_at_k(scores, correct, 2, tie_rule="stored_order") == 1.0
  assert metrics.bon_accuracy_at_k(scores, correct, 2) == pytest.approx(0.5, abs=1e-15)
  # No ties: both equal the sorted-order formula sum_i C(i-1, k-1) c_[i] / C(n, k).
  rng = np.random.default_rng(3)
  scores = rng.permutation(9).astype(float)
  correct = (rng.random(9) < 0.5).astype(float)
  sorted_correct = correct[np.argsort(scores)]
  for k in (1, 3, 9):
    expected = sum(math.comb(i - 1, k - 1) * sorted_correct[i - 1]
                   for i in range(k, 10)) / math.comb(9, k)
    for rule in metrics.BON_TIE_RULES:
      assert metrics.bon_accuracy_at_k(scores, correct, k, tie_rule=rule) == pytest.approx(
          expected, abs=1e-12)


@pytest.mark.parametrize("tie_rule", sorted(metrics.BON_TIE_RULES))
def test_t19_bon_accuracy_estimator_is_unbiased(tie_rule):
  pi = np.array([0.2, 0.3, 0.1, 0.4])
  verifier = np.array([1.0, 2.0, 2.0, 0.0])
  correctness = np.array([1.0, 0.0, 1.0, 1.0])
  n = 4
  tuples = np.array(list(itertools.product(range(4), repeat=n)))  # all 4^4 sample tuples
  weights = np.prod(pi[tuples], axis=1)
  assert weights.sum() == pytest.approx(1.0, abs=1e-14)
  for k in range(1, n + 1):
    estimates = metrics.bon_accuracy_at_k(verifier[tuples], correctness[tuples], k,
                                          tie_rule=tie_rule)
    truth = exact.bon_accuracy(pi, verifier, correctness, k)
    assert weights @ estimates == pytest.approx(truth, abs=1e-14)
    if k == 2:
      assert weights @ estimates == pytest.approx(0.52, abs=1e-14)


def test_bon_accuracy_large_n_and_nan_scores():
  rng = np.random.default_rng(4)
  n = 300
  scores = rng.integers(0, 20, n).astype(float)
  correct = (rng.random(n) < 0.3).astype(float)
  got = metrics.bon_accuracy_at_k(scores, correct, 150)
  assert got == pytest.approx(_section10_formula(scores, correct, 150), rel=1e-11)
  probs = metrics.bon_selection_probs(scores, 150)
  assert probs.sum() == pytest.approx(1.0, abs=1e-12)
  # A NaN score ranks below everything: with k = n the best real score is chosen.
  assert metrics.bon_accuracy_at_k([np.nan, 0.0, -1.0], [1, 0, 1], 3) == 0.0
  assert metrics.bon_accuracy_at_k([np.nan, np.nan], [1, 0], 2) == 0.5


def test_bon_accuracy_errors():
  with pytest.raises(ValueError, match="tie_rule='random'"):
    metrics.bon_accuracy_at_k([1, 2], [0, 1], 1, tie_rule="random")
  with pytest.raises(ValueError, match="shape"):
    metrics.bon_accuracy_at_k([1, 2], [0, 1, 1], 1)
  with pytest.raises(ValueError, match="k=3"):
    metrics.bon_accuracy_at_k([1, 2], [0, 1], 3)


# ----------------------------------------------------------------------------- maj@k


def _class_means(answers, correct):
  groups = {}
  for a, c in zip(answers, correct):
    if a is not None:
      groups.setdefault(a, []).append(c)
  return {a: np.mean(cs) for a, cs in groups.items()}


def _maj_subsets_brute(answers, correct, k):
  """Every k-subset; t answers tied for most votes each get 1/t of the win."""
  means, scores = _class_means(answers, correct), []
  for s in _subsets(len(answers), k):
    votes = {}
    for i in s:
      if answers[i] is not None:
        votes[answers[i]] = votes.get(answers[i], 0) + 1
    if not votes:
      scores.append(0.0)
      continue
    top = max(votes.values())
    tied = [a for a in votes if votes[a] == top]
    scores.append(np.mean([means[a] for a in tied]))
  return np.mean(scores)


def _maj_orders_brute(answers, correct, k):
  """`selection.majority_vote` on every ordered k-draw; scored by the winners' subset samples."""
  scores = []
  for p in itertools.permutations(range(len(answers)), k):
    winner = selection.majority_vote([answers[i] for i in p])
    scores.append(0.0 if winner is None else
                  np.mean([correct[i] for i in p if answers[i] == winner]))
  return np.mean(scores)


def test_maj_at_k_equals_enumeration():
  rng = np.random.default_rng(5)
  for _ in range(60):
    n = int(rng.integers(1, 9))
    answers = [None if u == 0 else "abcd"[u - 1] for u in rng.integers(0, 5, n)]
    correct = rng.random(n)  # not a function of the answer: class means are used
    for k in range(1, n + 1):
      assert metrics.maj_at_k(answers, correct, k) == pytest.approx(
          _maj_subsets_brute(answers, correct, k), abs=1e-12)


def test_maj_at_k_uses_the_majority_vote_rule():
  rng = np.random.default_rng(6)
  for _ in range(8):
    n = 6
    answers = [None if u == 0 else "xyz"[u - 1] for u in rng.integers(0, 4, n)]
    correct = (rng.random(n) < 0.5).astype(float)
    for k in (1, 2, 3, 4, 6):
      assert metrics.maj_at_k(answers, correct, k) == pytest.approx(
          _maj_orders_brute(answers, correct, k), abs=1e-12)


def test_maj_at_k_hand_cases():
  answers = ["4", "5", "4", None, "5", "4"]
  correct = [1, 0, 1, 0, 0, 1]
  assert metrics.maj_at_k(answers, correct, 1) == pytest.approx(0.5, abs=1e-15)
  assert metrics.maj_at_k(answers, correct, 6) == pytest.approx(1.0, abs=1e-15)
  assert metrics.maj_at_k(["a", "b"], [1, 0], 2) == pytest.approx(0.5, abs=1e-15)
  assert metrics.maj_at_k([None, None, None], [0, 0, 0], 2) == 0.0
  assert metrics.maj_at_k([None, "a"], [0, 1], 2) == 1.0
  with pytest.raises(ValueError, match="correct has shape"):
    metrics.maj_at_k(["a", "b"], [1], 1)
  with pytest.raises(ValueError, match="k=3"):
    metrics.maj_at_k(["a", "b"], [1, 0], 3)


def _maj_by_vote_counts(class_sizes, class_correct, none_count, k):
  """Exact maj@k by summing over vote-count vectors (hypergeometric counts, exact fractions)."""
  n = sum(class_sizes) + none_count
  total = Fraction(0)
  ranges = [range(min(s, k) + 1) for s in class_sizes]
  for votes in itertools.product(*ranges):
    rest = k - sum(votes)
    if rest < 0 or rest > none_count or max(votes) == 0:
      continue
    ways = math.comb(none_count, rest)
    for s, v in zip(class_sizes, votes):
      ways *= math.comb(s, v)
    tied = [i for i, v in enumerate(votes) if v == max(votes)]
    total += ways * Fraction(sum(class_correct[i] for i in tied), len(tied))
  return float(total / math.comb(n, k))


@pytest.mark.parametrize("k", [1, 7, 30, 59, 60])
def test_maj_at_k_exact_for_large_n(k):
  sizes, corr, none_count = [20, 20, 9, 3], [1, 0, 1, 0], 8
  answers = ([str(a) for a, s in enumerate(sizes) for _ in range(s)] + [None] * none_count)
  correct = [c for c, s in zip(corr, sizes) for _ in range(s)] + [0] * none_count
  order = np.random.default_rng(k).permutation(len(answers))  # the estimator ignores order
  answers = [answers[i] for i in order]
  correct = np.asarray(correct, float)[order]
  assert metrics.maj_at_k(answers, correct, k) == pytest.approx(
      _maj_by_vote_counts(sizes, corr, none_count, k), abs=1e-13)


def test_maj_at_k_is_unbiased_for_iid_samples():
  pi = np.array([0.35, 0.3, 0.2, 0.15])  # outcome 3 is an unparseable completion
  answer_of = ["1", "2", "3", None]
  correct_of = np.array([0.0, 1.0, 0.0, 0.0])
  n, k = 5, 3

  def maj_of_draw(draw):
    return metrics.maj_at_k([answer_of[y] for y in draw], correct_of[list(draw)], len(draw))

  truth = sum(np.prod(pi[list(t)]) * maj_of_draw(t)
              for t in itertools.product(range(4), repeat=k))
  expectation = sum(np.prod(pi[list(t)]) *
                    metrics.maj_at_k([answer_of[y] for y in t], correct_of[list(t)], k)
                    for t in itertools.product(range(4), repeat=n))
  assert expectation == pytest.approx(truth, abs=1e-13)
  assert 0.0 < truth < 1.0


def test_maj_at_k_many_distinct_answers_is_mean_correctness():
  n = 200
  correct = (np.arange(n) % 4 == 0).astype(float)
  answers = [str(i) for i in range(n)]
  for k in (1, 50, 200):
    assert metrics.maj_at_k(answers, correct, k) == pytest.approx(0.25, rel=1e-12)


def test_average_order_estimators_ignore_sample_order():
  rng = np.random.default_rng(7)
  scores = rng.integers(0, 4, 10).astype(float)
  correct = (rng.random(10) < 0.5).astype(float)
  answers = [None if u == 0 else str(u) for u in rng.integers(0, 4, 10)]
  perm = rng.permutation(10)
  for k in (1, 4, 10):
    assert metrics.bon_accuracy_at_k(scores[perm], correct[perm], k) == pytest.approx(
        metrics.bon_accuracy_at_k(scores, correct, k), abs=1e-14)
    assert metrics.maj_at_k([answers[i] for i in perm], correct[perm], k) == pytest.approx(
        metrics.maj_at_k(answers, correct, k), abs=1e-14)

"""Unbiased Best-of-N metrics estimated from n >= k samples per prompt (algorithms.md section 10).

Each metric is the expected outcome of a k-sample procedure (pass@k, verifier Best-of-k
accuracy, max of k rewards, majority of k answers). Averaging the procedure over all k-subsets
of the n samples gives an unbiased estimate with less variance than using one draw of k.
Everything is computed in closed form with factors in [0, 1] (no factorials), so n in the
hundreds neither overflows nor loses precision.

The k-subset of a procedure is an unordered set, but the tie rules of `selection.py` look at
sample order. The default estimators average the rule over every order of the k draws
("average_order"): the result does not depend on how the n samples happen to be stored, and
it is exactly section 10's formula. `bon_accuracy_at_k` can also apply the first-index rule to
each subset in stored order ("stored_order"). Both are unbiased for i.i.d. samples.
"""

from __future__ import annotations

import math
from typing import Callable, Hashable, Sequence

import numpy as np

from bonjax.bon import failed_scores


def _check_k(n: int, k: int) -> None:
  if not 1 <= k <= n:
    raise ValueError(f"k={k}: must satisfy 1 <= k <= n={n}")


def _check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}: "
                     "must be equal")


def subset_max_probs(n: int, k: int) -> np.ndarray:
  """Probability that the sample of ascending rank a is the maximum of a random k-subset.

  Args:
    n: number of samples.
    k: subset size, 1 <= k <= n.

  Returns:
    float64 array w of shape [n], w[a] = C(a, k-1) / C(n, k); sums to 1.
  """
  _check_k(n, k)
  # w[n-1] = k/n and w[a-1] / w[a] = (a-k+1)/a: a running product of factors in [0, 1].
  a = np.arange(1, n, dtype=np.float64)
  ratios = np.clip((a - k + 1) / a, 0.0, None)
  tail = np.cumprod(ratios[::-1])[::-1]
  return (k / n) * np.concatenate([tail, [1.0]])


def subset_max_cdf(n: int, k: int) -> np.ndarray:
  """Probability that a random k-subset lies entirely within the a lowest-ranked samples.

  Args:
    n: number of samples.
    k: subset size, 1 <= k <= n.

  Returns:
    float64 array G of shape [n + 1], G[a] = C(a, k) / C(n, k); G[n] = 1, G[a] = 0 for a < k.
  """
  _check_k(n, k)
  a = np.arange(1, n + 1, dtype=np.float64)
  ratios = np.clip((a - k) / a, 0.0, None)  # G[a-1] / G[a]
  tail = np.cumprod(ratios[::-1])[::-1]
  return np.concatenate([tail, [1.0]])


def pass_at_k(n: np.ndarray | int, c: np.ndarray | int, k: int) -> np.ndarray:
  """Chen et al.'s unbiased pass@k: 1 - C(n-c, k) / C(n, k), elementwise.

  Uses the stable product C(n-c, k)/C(n, k) = prod_{j<k} (n-c-j)/(n-j), which equals the
  reference form prod_{i=n-c+1..n} (1 - k/i); it is 1 exactly when n - c < k.

  Args:
    n: samples per prompt (int or integer array).
    c: correct samples per prompt, broadcastable with n, 0 <= c <= n.
    k: procedure size, 1 <= k <= min(n).

  Returns:
    float64 array of the broadcast shape of n and c.
  """
  n, c = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64))
  if np.any(c < 0) or np.any(c > n):
    bad = int(c[(c < 0) | (c > n)].flat[0])
    raise ValueError(f"c={bad}: must satisfy 0 <= c <= n")
  if n.size:
    _check_k(int(n.min()), k)
  j = np.arange(k, dtype=np.float64)
  n_f = n[..., None].astype(np.float64)
  factors = np.clip(n_f - c[..., None] - j, 0.0, None) / (n_f - j)
  return 1.0 - np.prod(factors, axis=-1)


def pass_at_k_from_correct(correct: np.ndarray, k: int) -> np.ndarray:
  """pass@k per prompt from a correctness array.

  Args:
    correct: [..., n] booleans (or 0/1) per sample; NaN is incorrect (failed_scores).
    k: procedure size, 1 <= k <= n.

  Returns:
    float64 array of shape [...].
  """
  correct = failed_scores.correctness(np.asarray(correct))
  n = correct.shape[-1]
  return pass_at_k(n, np.count_nonzero(correct, axis=-1), k)


def max_at_k(g: np.ndarray, k: int) -> np.ndarray:
  """Unbiased expected maximum of k rewards: (1/C(n,k)) sum_i C(i-1, k-1) g_(i) (PKPO rho^(g)).

  Args:
    g: [..., n] real rewards.
    k: procedure size, 1 <= k <= n.

  Returns:
    float64 array of shape [...]; k = 1 gives the mean, k = n the maximum.
  """
  g = np.asarray(g, dtype=np.float64)
  return np.sort(g, axis=-1) @ subset_max_probs(g.shape[-1], k)


def mean_reward(rewards: np.ndarray) -> np.ndarray:
  """Mean reward of single samples (the k = 1 value of every metric here).

  Args:
    rewards: [..., n] rewards (booleans count as 0/1).

  Returns:
    float64 array of shape [...].
  """
  return np.mean(np.asarray(rewards, dtype=np.float64), axis=-1)


def _score_ranks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per sample: #samples scored strictly lower, #scored equal (self included), #equal later."""
  below = np.sum(scores[..., None, :] < scores[..., :, None], axis=-1)
  equal = scores[..., None, :] == scores[..., :, None]
  n = scores.shape[-1]
  later = np.arange(n)[None, :] > np.arange(n)[:, None]  # [i, j]: j comes after i
  return below, np.sum(equal, axis=-1), np.sum(equal & later, axis=-1)


def _average_order_weights(scores: np.ndarray, k: int) -> np.ndarray:
  """P(sample i is returned): its tie level's winning mass split evenly over the level."""
  below, level_size, _ = _score_ranks(scores)
  cdf = subset_max_cdf(scores.shape[-1], k)
  return (cdf[below + level_size] - cdf[below]) / level_size


def _stored_order_weights(scores: np.ndarray, k: int) -> np.ndarray:
  """P(sample i is returned) when ties go to the earliest stored sample of the subset."""
  below, _, equal_later = _score_ranks(scores)
  # Sample i wins iff the subset holds i and otherwise only samples scored lower or tied
  # samples stored after i: those are the below + equal_later samples "ranked under" i.
  return subset_max_probs(scores.shape[-1], k)[below + equal_later]


BON_TIE_RULES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "average_order": _average_order_weights,
    "stored_order": _stored_order_weights,
}


def bon_selection_probs(scores: np.ndarray, k: int,
                        tie_rule: str = "average_order") -> np.ndarray:
  """Probability that Best-of-k on a random k-subset returns each sample.

  Args:
    scores: [..., n] verifier scores; NaN counts as -inf (never preferred).
    k: procedure size, 1 <= k <= n.
    tie_rule: a key of BON_TIE_RULES.

  Returns:
    float64 array of shape [..., n], summing to 1 over the last axis.
  """
  if tie_rule not in BON_TIE_RULES:
    raise ValueError(f"tie_rule={tie_rule!r}: must be one of {sorted(BON_TIE_RULES)}")
  scores = failed_scores.ranking_scores(np.asarray(scores, dtype=np.float64))
  return BON_TIE_RULES[tie_rule](scores, k)


def bon_accuracy_at_k(scores: np.ndarray, correct: np.ndarray, k: int,
                      tie_rule: str = "average_order") -> np.ndarray:
  """Unbiased accuracy of verifier Best-of-k (first-index argmax) from n >= k samples.

  With the default rule this is section 10's estimator
  (1/C(n,k)) sum_levels [C(L+m, k) - C(L, k)] * mean correctness of the level, where a level
  holds the m samples of equal score and L samples score lower.

  Args:
    scores: [..., n] verifier scores; NaN counts as -inf.
    correct: [..., n] correctness (booleans or rewards in [0, 1]); NaN is incorrect.
    k: procedure size, 1 <= k <= n.
    tie_rule: "average_order" (default) or "stored_order", see the module docstring.

  Returns:
    float64 array of shape [...].
  """
  scores = np.asarray(scores)
  correct = failed_scores.correctness(np.asarray(correct, dtype=np.float64))
  _check_same_shape("scores", scores, "correct", correct)
  probs = bon_selection_probs(scores, k, tie_rule)
  return np.sum(probs * correct, axis=-1)


def _binomial_row(m: int, degree: int) -> np.ndarray:
  """[C(m, 0), ..., C(m, degree)] as floats (zeros past m)."""
  return np.array([float(math.comb(m, d)) for d in range(degree + 1)])


def _poly_mul(a: np.ndarray, b: np.ndarray, degree: int) -> np.ndarray:
  """Row-wise product of polynomials [rows, terms] (coefficients on the last axis), truncated."""
  a, b = a[..., :degree + 1], b[..., :degree + 1]
  out = np.zeros(a.shape[:-1] + (degree + 1,))
  if a.shape[0] < min(a.shape[-1], b.shape[-1]):  # few rows: one C-level convolution per row
    for row in range(a.shape[0]):
      full = np.convolve(a[row], b[row])[:degree + 1]
      out[row, :full.size] = full
    return out
  if a.shape[-1] < b.shape[-1]:
    a, b = b, a
  for j in range(b.shape[-1]):  # few terms: one shifted multiply-add per term
    span = min(a.shape[-1], degree + 1 - j)
    out[..., j:j + span] += a[..., :span] * b[..., j:j + 1]
  return out


def maj_at_k(answers: Sequence[Hashable | None], correct: Sequence[float] | np.ndarray,
             k: int) -> float:
  """Unbiased majority-vote accuracy maj@k of one prompt, exact for any n and k.

  The estimated quantity: draw k samples, vote (`selection.majority_vote`), score the voted
  answer. Averaged over all k-subsets and all orders of their draws, an answer tied with t-1
  others wins 1/t of the time (earliest first occurrence in a random order). An answer scores
  the mean correctness of the n samples that carry it (for a verifier that judges only the
  answer, its correctness); a vote that finds no parseable answer scores 0.

  Method: with class sizes n_a, the number of k-subsets in which answer a appears J times,
  every other answer at most J times and t others exactly J times is a coefficient of the
  generating function prod_b (sum_{j<J} C(n_b, j) x^j + y C(n_b, J) x^J) * (1+x)^free; the 1/(t+1)
  share is its integral over y in [0, 1], done exactly by Gauss-Legendre quadrature in y.

  Args:
    answers: extracted answer per sample (n of them), None where unparseable.
    correct: correctness per sample, shape [n].
    k: procedure size, 1 <= k <= n.

  Returns:
    maj@k as a float.
  """
  correct = np.asarray(correct, dtype=np.float64)
  n = len(answers)
  if correct.shape != (n,):
    raise ValueError(f"correct has shape {correct.shape}: must be ({n},) like answers")
  _check_k(n, k)
  members: dict[Hashable, list[int]] = {}
  for i, answer in enumerate(answers):
    if answer is not None:
      members.setdefault(answer, []).append(i)
  if not members:
    return 0.0
  # Answers of equal class size share one generating factor, so work per distinct size.
  correct_sum_by_size: dict[int, float] = {}
  classes_by_size: dict[int, int] = {}
  for idx in members.values():
    size = len(idx)
    classes_by_size[size] = classes_by_size.get(size, 0) + 1
    correct_sum_by_size[size] = correct_sum_by_size.get(size, 0.0) + float(np.mean(correct[idx]))
  total = 0.0
  for J in range(1, min(k, max(classes_by_size)) + 1):
    total += _maj_count_share(n, k, J, classes_by_size, correct_sum_by_size)
  return total / math.comb(n, k)


def _maj_count_share(n: int, k: int, J: int, classes_by_size: dict[int, int],
                     correct_sum_by_size: dict[int, float]) -> float:
  """Sum over answers a of mean correctness(a) * #(k-subsets won by a with J votes) (tie shares)."""
  degree = k - J
  sizes = sorted(s for s in classes_by_size if s >= J)  # answers that can reach J votes
  num_rivals = sum(classes_by_size[s] for s in sizes) - 1
  free = n - sum(s * classes_by_size[s] for s in sizes)  # None and answers below J votes
  # The integrand is a polynomial of degree num_rivals in y.
  nodes, node_weights = np.polynomial.legendre.leggauss(num_rivals // 2 + 1)
  y, y_weights = (nodes + 1.0) / 2.0, node_weights / 2.0

  def factor(size: int) -> np.ndarray:  # [nodes, J + 1]: one rival of this size
    coeffs = np.tile(_binomial_row(size, J), (y.size, 1))
    coeffs[:, J] *= y
    return coeffs

  # all_but_one[s]: the factors of all but one answer of size s; group[s]: all of them.
  all_but_one, group = {}, {}
  for s in sizes:
    out = np.ones((y.size, 1))
    for _ in range(classes_by_size[s] - 1):
      out = _poly_mul(out, factor(s), degree)
    all_but_one[s], group[s] = out, _poly_mul(out, factor(s), degree)
  # prefix[i] / suffix[i]: product of the size groups before / from group i (suffix includes
  # the unconstrained (1+x)^free), so a leave-one-out product needs no division.
  prefix = [np.ones((y.size, 1))]
  for s in sizes:
    prefix.append(_poly_mul(prefix[-1], group[s], degree))
  suffix = [np.tile(_binomial_row(free, degree), (y.size, 1))]
  for s in reversed(sizes):
    suffix.insert(0, _poly_mul(group[s], suffix[0], degree))
  share = 0.0
  for i, s in enumerate(sizes):
    others = _poly_mul(_poly_mul(prefix[i], all_but_one[s], degree), suffix[i + 1], degree)
    ways = y_weights @ others[:, degree]
    share += correct_sum_by_size[s] * math.comb(s, J) * ways
  return share

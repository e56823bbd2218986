"""The exact Best-of-N distribution of a categorical policy (algorithms.md sections 2 and 13).

A policy here is a probability vector `pi` over K outcomes with a score `r` per outcome (ties
allowed). These functions give the ground truth that sampled estimators and training
objectives are tested against: level masses (T1), P_bon under index ties (T2) or a strict
outcome order (T3/T4), KL(P_bon || pi) and its bound (T6), the half-tie win rate (T7), the
expected maximum (T8), BoN accuracy with an imperfect verifier and pass@N.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _check_policy(pi: np.ndarray, r: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
  pi = np.asarray(pi, dtype=np.float64)
  r = np.asarray(r, dtype=np.float64)
  if pi.ndim != 1 or pi.shape != r.shape:
    raise ValueError(f"pi has shape {pi.shape} and r has shape {r.shape}: must be equal and 1-D")
  if np.any(pi < 0) or abs(pi.sum() - 1.0) > 1e-9:
    raise ValueError(f"pi sums to {pi.sum()} (min {pi.min()}): must be a probability vector")
  if np.any(np.isnan(r)):
    raise ValueError("r contains NaN: scores must be comparable")
  if N < 1:
    raise ValueError(f"N={N}: must be >= 1")
  return pi, r


def _per_outcome_levels(pi: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per outcome: the mass of strictly lower scores, and the mass of its own score level."""
  levels, level_of = np.unique(r, return_inverse=True)
  level_mass = np.bincount(level_of, weights=pi, minlength=levels.size)
  below = np.concatenate([[0.0], np.cumsum(level_mass)[:-1]])
  return below[level_of], level_mass[level_of]


def score_cdfs(pi: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Strict and weak CDF of each outcome's score under pi.

  Args:
    pi: [K] probabilities.
    r: [K] scores.

  Returns:
    (F_lt, F_le), each [K]: P(r(Y) < r_y) and P(r(Y) <= r_y) for Y ~ pi.
  """
  pi, r = _check_policy(pi, r, 1)
  below, mass = _per_outcome_levels(pi, r)
  return below, below + mass


def level_masses(pi: np.ndarray, r: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
  """Distribution of the best score among N samples (T1), whatever the tie rule.

  Args:
    pi: [K] probabilities.
    r: [K] scores.
    N: number of samples.

  Returns:
    (levels, masses): the distinct scores ascending and P(max score = level) = F_le^N - F_lt^N.
  """
  pi, r = _check_policy(pi, r, N)
  levels, level_of = np.unique(r, return_inverse=True)
  level_mass = np.bincount(level_of, weights=pi, minlength=levels.size)
  lower = np.concatenate([[0.0], np.cumsum(level_mass)[:-1]])
  return levels, level_mass * _power_difference_ratio(lower, level_mass, N)


def _power_difference_ratio(lower: np.ndarray, mass: np.ndarray, N: int) -> np.ndarray:
  """(upper^N - lower^N) / mass with upper = lower + mass, i.e. sum_i lower^(i-1) upper^(N-i).

  Computed as -upper^N expm1(N u) / mass with u = log1p(-mass / upper), which keeps full
  relative precision when the mass is tiny next to `lower` (many small atoms); mass = 0 takes
  the limit N upper^(N-1).
  """
  upper = lower + mass
  with np.errstate(divide="ignore", invalid="ignore"):
    ratio = -(upper**N) * np.expm1(N * np.log1p(-mass / upper)) / mass
  return np.where(mass > 0.0, ratio, N * upper ** (N - 1))


def bon_probs_index_ties(pi: np.ndarray, r: np.ndarray, N: int) -> np.ndarray:
  """P_bon under index-based ties (first maximiser among the samples), T2.

  P_bon(y) = pi_y (F_le^N - F_lt^N) / (F_le - F_lt): a tied level's mass is split
  proportionally to pi.

  Args:
    pi: [K] probabilities.
    r: [K] scores.
    N: number of samples.

  Returns:
    [K] probabilities.
  """
  pi, r = _check_policy(pi, r, N)
  below, mass = _per_outcome_levels(pi, r)
  return pi * _power_difference_ratio(below, mass, N)


def bon_probs_outcome_order(pi: np.ndarray, r: np.ndarray, N: int,
                            priority: np.ndarray | None = None) -> np.ndarray:
  """P_bon when ties are broken by a fixed order on outcomes (T3; T4 when r has no ties).

  Outcomes are ranked by (r, priority); a higher rank wins. P_bon(y) = (G_lt + pi_y)^N - G_lt^N
  with G_lt the mass ranked below y.

  Args:
    pi: [K] probabilities.
    r: [K] scores.
    N: number of samples.
    priority: [K] tie-break keys, distinct within each score level; default: the outcome index
      (a tie goes to the higher index).

  Returns:
    [K] probabilities.
  """
  pi, r = _check_policy(pi, r, N)
  if priority is None:
    priority = np.arange(r.size)
  priority = np.asarray(priority)
  order = np.lexsort((priority, r))  # ascending rank
  ranked = np.stack([r[order], priority[order]])
  if np.any(np.all(ranked[:, 1:] == ranked[:, :-1], axis=0)):
    raise ValueError("priority: must be distinct among outcomes with equal score")
  below = np.empty_like(pi)
  below[order] = np.concatenate([[0.0], np.cumsum(pi[order])[:-1]])
  return pi * _power_difference_ratio(below, pi, N)


BON_DISTRIBUTIONS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "index": bon_probs_index_ties,
    "outcome_order": bon_probs_outcome_order,
}


def bon_distribution(pi: np.ndarray, r: np.ndarray, N: int, tie_rule: str = "index") -> np.ndarray:
  """P_bon for a tie rule named in BON_DISTRIBUTIONS ("index" or "outcome_order").

  Args:
    pi: [K] probabilities.
    r: [K] scores.
    N: number of samples.
    tie_rule: key of BON_DISTRIBUTIONS.

  Returns:
    [K] probabilities.
  """
  if tie_rule not in BON_DISTRIBUTIONS:
    raise ValueError(f"tie_rule={tie_rule!r}: must be one of {sorted(BON_DISTRIBUTIONS)}")
  return BON_DISTRIBUTIONS[tie_rule](pi, r, N)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
  """KL(p || q) = sum_y p_y log(p_y / q_y), with 0 log 0 = 0.

  Args:
    p: [K] probabilities.
    q: [K] probabilities, positive wherever p is.

  Returns:
    the divergence in nats (inf if p charges an outcome q does not).
  """
  p = np.asarray(p, dtype=np.float64)
  q = np.asarray(q, dtype=np.float64)
  support = p > 0
  if np.any(q[support] == 0):
    return float("inf")
  return float(np.sum(p[support] * (np.log(p[support]) - np.log(q[support]))))


def bon_kl_bound(N: int) -> float:
  """log N - (N-1)/N: the upper bound on KL(P_bon || pi) (exact in the no-atom limit), T6."""
  if N < 1:
    raise ValueError(f"N={N}: must be >= 1")
  return float(np.log(N) - (N - 1) / N)


def bon_kl(pi: np.ndarray, r: np.ndarray, N: int, tie_rule: str = "index") -> float:
  """Exact KL(P_bon || pi) of a categorical policy.

  Args:
    pi: [K] probabilities.
    r: [K] scores.
    N: number of samples.
    tie_rule: key of BON_DISTRIBUTIONS.

  Returns:
    the divergence in nats.
  """
  return kl_divergence(bon_distribution(pi, r, N, tie_rule), pi)


def half_tie_win_rate(pi: np.ndarray, r: np.ndarray, p: np.ndarray) -> float:
  """P(a draw from p beats a draw from pi), ties counted as half a win (T7).

  Args:
    pi: [K] reference probabilities.
    r: [K] scores.
    p: [K] probabilities of the challenger (e.g. P_bon).

  Returns:
    sum_y p_y [F_lt(y) + (F_le(y) - F_lt(y)) / 2]; at most N/(N+1) when p is P_bon.
  """
  lower, upper = score_cdfs(pi, r)
  return float(np.sum(np.asarray(p, dtype=np.float64) * 0.5 * (lower + upper)))


def expected_max(pi: np.ndarray, r: np.ndarray, N: int) -> float:
  """E[max of N scores] = sum over levels of level * P(max = level) (T8).

  Args:
    pi: [K] probabilities.
    r: [K] scores.
    N: number of samples.

  Returns:
    the expected best score.
  """
  levels, masses = level_masses(pi, r, N)
  return float(levels @ masses)


def bon_accuracy(pi: np.ndarray, verifier: np.ndarray, correct: np.ndarray, N: int,
                 tie_rule: str = "index") -> float:
  """Accuracy of Best-of-N selected by an imperfect verifier: sum_y R_y P_bon,v(y).

  Args:
    pi: [K] probabilities.
    verifier: [K] verifier scores used for selection.
    correct: [K] correctness (or any reward) of each outcome.
    N: number of samples.
    tie_rule: key of BON_DISTRIBUTIONS.

  Returns:
    the expected correctness of the selected sample.
  """
  return float(np.asarray(correct, dtype=np.float64) @ bon_distribution(pi, verifier, N, tie_rule))


def pass_at_n(pi: np.ndarray, correct: np.ndarray, N: int) -> float:
  """P(at least one of N samples is correct) = 1 - (1 - s)^N, s = P_pi(correct).

  Args:
    pi: [K] probabilities.
    correct: [K] booleans.
    N: number of samples.

  Returns:
    pass@N.
  """
  pi, correct = _check_policy(pi, np.asarray(correct, dtype=np.float64), N)
  fail = float(pi @ (correct == 0))
  return 1.0 - fail**N

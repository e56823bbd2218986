"""Choosing one answer out of N samples: verifier argmax, majority vote, verifier-weighted vote.

Tie rules (fixed, so that evaluation measures what deployment does):

* `select_best` returns the FIRST index among samples with the highest score (the index-based
  rule of algorithms.md section 1.1 / T2; `jnp.argmax` semantics). NaN scores never win.
* The votes return, among answers with the highest total, the answer whose first sample comes
  EARLIEST ("earliest first occurrence"). Samples are i.i.d. draws in random order, so under
  an unweighted vote this rule picks each of t tied answers with probability 1/t; `maj_at_k` in
  `metrics.py` uses exactly this consequence. `None` (an unparseable answer) never wins unless
  every answer is `None`.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.bon import failed_scores


def select_best(scores: jax.typing.ArrayLike) -> jax.Array:
  """Returns the index of the best sample along the last axis, first index among ties.

  Usable inside `jax.jit`. NaN scores follow `failed_scores`: they rank as -inf, so a failed
  score is never picked over a real one; if every score is NaN (or -inf) the first sample is
  returned.

  Args:
    scores: verifier scores of shape [..., n].

  Returns:
    int32 array of shape [...] with values in [0, n).
  """
  return jnp.argmax(failed_scores.ranking_scores(jnp.asarray(scores)), axis=-1)


def select_best_values(values: jax.typing.ArrayLike,
                       scores: jax.typing.ArrayLike) -> jax.Array:
  """Returns the entry of `values` at the sample `select_best` picks (e.g. its correctness).

  Args:
    values: per-sample values of shape [..., n].
    scores: verifier scores of the same shape.

  Returns:
    array of shape [...].
  """
  values = jnp.asarray(values)
  index = select_best(scores)
  return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]


def _vote_totals(answers: Sequence[Hashable | None],
                 weights: Sequence[float] | np.ndarray | None) -> dict[Hashable, float]:
  """Sums the weight of every non-None answer; dict order is order of first occurrence."""
  if len(answers) == 0:
    raise ValueError("answers=[]: need at least one answer to vote over")
  if weights is None:
    weights = [1.0] * len(answers)
  if len(weights) != len(answers):
    raise ValueError(f"weights has length {len(weights)}: must equal len(answers)={len(answers)}")
  totals: dict[Hashable, float] = {}
  for answer, weight in zip(answers, weights):
    weight = float(weight)
    if not math.isfinite(weight):
      raise ValueError(f"weight={weight}: vote weights must be finite")
    if answer is not None:
      totals[answer] = totals.get(answer, 0.0) + weight
  return totals


def _winning_answer(totals: dict[Hashable, float]) -> Hashable | None:
  """The answer with the largest total; ties go to the earliest first occurrence."""
  winner, best = None, -math.inf
  for answer, total in totals.items():  # insertion order = first-occurrence order
    if total > best:  # strict: an equal total later in the order does not displace
      winner, best = answer, total
  return winner


def majority_vote_index(answers: Sequence[Hashable | None],
                        weights: Sequence[float] | np.ndarray | None = None) -> int:
  """Returns the index of the first sample that carries the voted answer.

  Args:
    answers: extracted answer per sample, None where unparseable.
    weights: optional per-sample vote weight (default 1 each).

  Returns:
    an index into `answers` (0 when every answer is None).
  """
  winner = _winning_answer(_vote_totals(answers, weights))
  if winner is None:
    return 0
  return next(i for i, answer in enumerate(answers) if answer == winner)


def majority_vote(answers: Sequence[Hashable | None],
                  weights: Sequence[float] | np.ndarray | None = None) -> Hashable | None:
  """Returns the most frequent (or most heavily weighted) non-None answer.

  Answers are compared exactly; normalisation (e.g. "0.50" vs "1/2") belongs to the verifier
  that extracts them. Ties go to the answer that occurs first.

  Args:
    answers: extracted answer per sample, None where unparseable.
    weights: optional per-sample vote weight (default 1 each).

  Returns:
    the voted answer, or None if every answer is None.
  """
  return _winning_answer(_vote_totals(answers, weights))


def weighted_vote(answers: Sequence[Hashable | None],
                  weights: Sequence[float] | np.ndarray) -> Hashable | None:
  """Verifier-weighted vote: the answer with the largest sum of its samples' scores.

  Scores should be non-negative (probabilities of correctness, say): with negative scores an
  answer with more samples can total less than a rarer one. Ties go to the answer that occurs
  first; None never wins unless every answer is None.

  Args:
    answers: extracted answer per sample, None where unparseable.
    weights: verifier score per sample.

  Returns:
    the voted answer, or None if every answer is None.
  """
  return _winning_answer(_vote_totals(answers, weights))

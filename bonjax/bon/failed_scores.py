"""The one rule for failed scores: a NaN verifier score or reward (a verifier that crashed, timed
out or returned garbage) NEVER wins a selection and NEVER counts as correct.

* Ranking (argmax selection, Best-of-k probabilities, empirical CDFs): NaN ranks as -inf, below
  every real score; if every score failed the tie rule picks among them as among equal scores.
* Correctness (pass@k, BoN accuracy, "reward >= threshold"): NaN is incorrect (0).

Every consumer (bon/selection.py, bon/metrics.py, objectives/group_stats.py) calls these
functions instead of handling NaN itself. They accept numpy or jax arrays and return the same
kind, so they work inside `jax.jit`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _xp(x: Any):
  return jnp if isinstance(x, jax.Array) else np


def ranking_scores(scores: Any) -> Any:
  """Scores for ranking: NaN -> -inf (floating inputs; integers and bools are returned as is).

  Args:
    scores: array of verifier scores (numpy or jax).

  Returns:
    array of the same kind, shape and dtype.
  """
  xp = _xp(scores)
  scores = xp.asarray(scores)
  if not xp.issubdtype(scores.dtype, xp.floating):
    return scores
  return xp.where(xp.isnan(scores), -xp.inf, scores)


def is_correct(values: Any, threshold: float) -> Any:
  """Boolean correctness `values >= threshold`; NaN is never correct."""
  xp = _xp(values)
  values = xp.asarray(values)
  return ~xp.isnan(values) & (values >= threshold) if xp.issubdtype(
      values.dtype, xp.floating) else values >= threshold


def correctness(correct: Any) -> Any:
  """A correctness array (booleans or rewards in [0, 1]) as float64/float with NaN -> 0."""
  xp = _xp(correct)
  correct = xp.asarray(correct)
  if xp.issubdtype(correct.dtype, xp.floating):
    return xp.where(xp.isnan(correct), 0.0, correct)
  return correct.astype(xp.float64 if xp is np else jnp.float32)

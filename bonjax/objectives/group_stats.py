"""Masked per-prompt statistics over the sample axis: counts, leave-one-out means, argmax
selection with index tie-breaking, and empirical CDFs against reference samples.

All functions act on [B, N] arrays with a [B, N] boolean mask of valid samples; a prompt's N
samples are one group, so nothing here mixes rows. Failed (NaN) scores follow the one rule of
bonjax/bon/failed_scores.py: they rank as -inf (never picked over a real score, below every
reference in a CDF) and are never correct.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bonjax.bon import failed_scores
from bonjax.objectives.inputs import ObjectiveInputs

Array = jax.Array


def valid_counts(mask: Array) -> Array:
  """Returns [B] int32: number of valid samples per group."""
  return mask.sum(axis=-1).astype(jnp.int32)


def row_valid(mask: Array) -> Array:
  """Returns [B] bool: the row holds at least one valid sample (i.e. it is not padding)."""
  return mask.any(axis=-1)


def select_signal(inputs: ObjectiveInputs, signal: str) -> Array:
  """Returns the environment rewards ("env") or the verifier scores ("verifier")."""
  return {"env": inputs.rewards, "verifier": inputs.scores}[signal]


def is_correct(values: Array, mask: Array, threshold: float) -> Array:
  """Returns [B, N] bool: valid samples whose value is at least `threshold` (NaN: never)."""
  return mask & failed_scores.is_correct(values, threshold)


def loo_mean(values: Array, mask: Array) -> tuple[Array, Array]:
  """Leave-one-out mean: for each sample, the mean value of the other valid samples.

  Args:
    values: [B, N].
    mask: [B, N] bool.

  Returns:
    (mean_of_others [B, N], has_others [B, N] bool). Where a sample has no valid peer the mean
    is 0 and has_others is False.
  """
  values = jnp.where(mask, values, 0)
  total = values.sum(axis=-1, keepdims=True)
  others = valid_counts(mask)[:, None] - mask.astype(jnp.int32)
  has_others = mask & (others > 0)
  mean = (total - values) / jnp.maximum(others, 1).astype(values.dtype)
  return jnp.where(has_others, mean, 0), has_others


def all_equal(values: Array, mask: Array) -> Array:
  """Returns [B] bool: every valid value of the group is the same (True for 0 or 1 samples)."""
  high = jnp.max(jnp.where(mask, values, -jnp.inf), axis=-1)
  low = jnp.min(jnp.where(mask, values, jnp.inf), axis=-1)
  return (valid_counts(mask) <= 1) | (high == low)


def first_argmax_onehot(scores: Array, mask: Array) -> Array:
  """The BoN pick: the first valid sample attaining the maximal score (index tie-breaking).

  Args:
    scores: [B, N] selection scores.
    mask: [B, N] bool.

  Returns:
    [B, N] bool, one True per non-empty row, all False for padding rows.
  """
  scores = failed_scores.ranking_scores(scores)
  best = jnp.max(jnp.where(mask, scores, -jnp.inf), axis=-1, keepdims=True)
  candidates = mask & (scores >= best)
  first = jnp.argmax(candidates, axis=-1)
  onehot = jnp.arange(scores.shape[-1])[None, :] == first[:, None]
  return onehot & candidates.any(axis=-1, keepdims=True)


def _others_mask(mask: Array) -> Array:
  """[B, N, N] bool: entry (b, i, j) is True when j is a valid sample other than i."""
  group = mask.shape[-1]
  return mask[:, None, :] & ~jnp.eye(group, dtype=bool)[None]


def first_argmax_excluding_each(scores: Array, mask: Array) -> tuple[Array, Array]:
  """For every sample i: the BoN pick of the group with sample i removed.

  Args:
    scores: [B, N] selection scores.
    mask: [B, N] bool.

  Returns:
    (index [B, N] int32 of the first maximiser among the other valid samples,
     has_other [B, N] bool; False where sample i is masked or has no valid peer).
  """
  scores = failed_scores.ranking_scores(scores)
  others = _others_mask(mask)
  expanded = jnp.broadcast_to(scores[:, None, :], others.shape)
  best = jnp.max(jnp.where(others, expanded, -jnp.inf), axis=-1, keepdims=True)
  candidates = others & (expanded >= best)
  return jnp.argmax(candidates, axis=-1).astype(jnp.int32), mask & others.any(axis=-1)


def max_excluding_each(values: Array, mask: Array) -> tuple[Array, Array]:
  """For every sample i: the maximum value over the other valid samples.

  Returns:
    (max_of_others [B, N] (0 where undefined), has_other [B, N] bool; False where sample i
    is masked or has no valid peer).
  """
  others = _others_mask(mask)
  expanded = jnp.broadcast_to(values[:, None, :], others.shape)
  best = jnp.max(jnp.where(others, expanded, -jnp.inf), axis=-1)
  has_other = mask & others.any(axis=-1)
  return jnp.where(has_other, best, 0), has_other


def reference_counts(values: Array, ref_values: Array, ref_mask: Array | None,
                     *, strict: bool) -> tuple[Array, Array]:
  """Counts reference scores below each sample's score, by sorting and binary search.

  Args:
    values: [B, N] scores of the policy samples.
    ref_values: [B, M] scores of reference samples.
    ref_mask: [B, M] bool valid references, or None for all valid.
    strict: count #{ref < value} when True, #{ref <= value} otherwise.

  Returns:
    (counts [B, N] int32, num_refs [B] int32).
  """
  if ref_mask is None:
    ref_mask = jnp.ones(ref_values.shape, bool)
  values = failed_scores.ranking_scores(values)
  ref_values = failed_scores.ranking_scores(ref_values)
  # Padding becomes +inf so it sorts last and is never below a finite score.
  ref_sorted = jnp.sort(jnp.where(ref_mask, ref_values, jnp.inf), axis=-1)
  side = "left" if strict else "right"
  counts = jax.vmap(lambda row, v: jnp.searchsorted(row, v, side=side))(
      ref_sorted, values.astype(ref_sorted.dtype))
  num_refs = valid_counts(ref_mask)
  return jnp.minimum(counts, num_refs[:, None]).astype(jnp.int32), num_refs


def empirical_cdf(values: Array, ref_values: Array, ref_mask: Array | None, *,
                  strict: bool = True, cdf: str = "add_one") -> Array:
  """Empirical CDF of the reference scores evaluated at each sample's score.

  "add_one" is the vBoN code's convention, F = (1 + #{ref < r}) / (M + 1), which never reaches
  0 so log F stays finite; "plain" is #{ref < r} / M (the unbiased estimate of F_<).

  Args:
    values: [B, N] scores of the policy samples.
    ref_values: [B, M] reference scores.
    ref_mask: [B, M] bool or None.
    strict: strict (F_<) or weak (F_<=) inequality.
    cdf: "add_one" or "plain".

  Returns:
    [B, N] CDF values in [0, 1], in the dtype of `values`.
  """
  counts, num_refs = reference_counts(values, ref_values, ref_mask, strict=strict)
  counts = counts.astype(values.dtype)
  num_refs = num_refs[:, None].astype(values.dtype)
  if cdf == "add_one":
    return (1 + counts) / (num_refs + 1)
  if cdf == "plain":
    return counts / jnp.maximum(num_refs, 1)
  raise ValueError(f"cdf={cdf!r}: must be one of ('add_one', 'plain')")


def num_references(ref_values: Array, ref_mask: Array | None) -> Array:
  """Returns [B] int32: number of valid reference scores per prompt."""
  if ref_mask is None:
    return jnp.full(ref_values.shape[:1], ref_values.shape[-1], jnp.int32)
  return valid_counts(ref_mask)


def floored_log_cdf(cdf_values: Array, num_refs: Array) -> Array:
  """log F with a floor of half a reference count.

  A score below every reference has F = 0 under the "plain" CDF; the floor turns log 0 into a
  large finite penalty so that neither the loss nor its gradient becomes NaN. Under "add_one"
  F >= 1/(M+1) > 1/(2M) and the floor never binds.

  Args:
    cdf_values: [B, N] CDF values.
    num_refs: [B] number of valid references M.

  Returns:
    [B, N] log max(F, 1 / (2 M)).
  """
  num_refs = jnp.maximum(num_refs, 1)[:, None].astype(cdf_values.dtype)
  return jnp.log(jnp.maximum(cdf_values, 0.5 / num_refs))

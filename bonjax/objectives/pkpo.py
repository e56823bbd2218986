"""PKPO (Walder & Karkhanis, algorithms.md section 6): reward transforms that make plain policy
gradient an unbiased estimator of grad pass@k (binary) or grad max_g@k = grad E[max of k
samples' g] (continuous), for any k <= n samples per prompt.

Transforms of a group g_1..g_n (weights on grad log pi(y_i); no further 1/n factor):
  "binary":          r_i = k/n if f_i = 1 else (k/n) rho(n - 1, c, k - 1), c = #correct,
                     rho(n, c, k) = 1 - C(n - c, k) / C(n, k)  (Chen et al.'s pass@k estimate).
  "s":               s_i = (1 / C(n, k)) sum_{|I| = k, i in I} max_{j in I} g_j.
  "s_loo":           s_i - (k / (n - 1)) rho_k(g_{-i})    (rho_k: unbiased max@k of the others;
                     = s_i - b_i^(k) / (n - 1) of the paper; equals s when n - 1 < k).
  "s_loo_minus_one": s_i - (k / n) rho_{k-1}(g_{-i})
                     = (1 / C(n, k)) sum_{|I| = k, i in I} (max_I g - max_{I \\ i} g)
                     (the paper's PKPO transform; invariant to adding a constant to g). For
                     k = 1 the formula is undefined; we use the leave-one-out mean centring
                     (g_i - mean_{j != i} g_j) / n, as the paper does for k_opt = 1.

Implementation: sort each group once; every coefficient is a ratio of binomials
C(r, k - 1) / C(m, k) or C(u - 1, k - 2) / C(m, k), tabulated on the host in float64 by the
subset-maximum weights of `bonjax.bon.metrics` (running products of ratios in [0, 1]) for
every possible number m of valid samples (the group size N is static), so n = 64 and beyond is
accurate in float32; the sums over larger-ranked samples are cumulative
sums in sorted order (O(n log n) per group).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.bon import metrics as bon_metrics
from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array

TRANSFORMS = ("binary", "s", "s_loo", "s_loo_minus_one")


# ----------------------------------------------------------------------------- host tables


@functools.lru_cache(maxsize=None)
def max_at_k_table(n_max: int, k: int) -> np.ndarray:
  """T[m, r] = C(r, k - 1) / C(m, k) for ranks r < m (0-based, ascending), m >= k; else 0.

  Row m gives the weights of the sorted values in the unbiased max@k estimate of m samples
  (`bonjax.bon.metrics.subset_max_probs(m, k)`).
  """
  table = np.zeros((n_max + 1, n_max))
  for m in range(max(k, 1), n_max + 1):
    table[m, :m] = bon_metrics.subset_max_probs(m, k)
  return table


@functools.lru_cache(maxsize=None)
def _s_offdiag_table(n_max: int, k: int) -> np.ndarray:
  """U[m, u] = C(u - 1, k - 2) / C(m, k) for 1 <= u < m, k >= 2, m >= k; else 0.

  The weight of the sorted value at rank u in s_i for every sample ranked below u: the number
  of k-subsets holding both, whose maximum is at u, over C(m, k). It is
  `(k / m) C(u - 1, k - 2) / C(m - 1, k - 1)`: a max@(k-1) weight among m - 1 samples.
  """
  table = np.zeros((n_max + 1, n_max))
  if k < 2:
    return table
  for m in range(k, n_max + 1):
    table[m, 1:m] = (k / m) * bon_metrics.subset_max_probs(m - 1, k - 1)
  return table


@functools.lru_cache(maxsize=None)
def _binary_negative_table(n_max: int, k: int) -> np.ndarray:
  """V[m, c] = rho(m - 1, c, k - 1) = 1 - C(m - 1 - c, k - 1) / C(m - 1, k - 1), for m >= k.

  rho is Chen et al.'s pass@(k-1) of m - 1 samples (`bonjax.bon.metrics.pass_at_k`); 0 for
  k = 1 (pass@0).
  """
  table = np.zeros((n_max + 1, n_max + 1))
  if k < 2:
    return table
  for m in range(k, n_max + 1):
    table[m, :m] = bon_metrics.pass_at_k(m - 1, np.arange(m), k - 1)
  return table


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
  """Chen et al.'s unbiased pass@k, `1 - C(n - c, k) / C(n, k)` (host-side float64; one group
  of `bonjax.bon.metrics.pass_at_k`)."""
  return float(bon_metrics.pass_at_k(n, c, k))


# ----------------------------------------------------------------------------- group transforms


def _table_rows(table: np.ndarray, rows: Array, dtype) -> Array:
  """Gathers table rows (clamped to the table) as a [B, N] array of `dtype`."""
  table = jnp.asarray(table, dtype)
  return table[jnp.clip(rows, 0, table.shape[0] - 1)]


def _sort_group(values: Array, mask: Array) -> tuple[Array, Array]:
  """Ascending sort with padding last (as zeros); returns (sorted values, inverse permutation)."""
  order = jnp.argsort(jnp.where(mask, values, jnp.inf), axis=-1, stable=True)
  sorted_values = jnp.take_along_axis(jnp.where(mask, values, 0), order, axis=-1)
  return sorted_values, jnp.argsort(order, axis=-1)


def _unsort(sorted_values: Array, inverse: Array) -> Array:
  return jnp.take_along_axis(sorted_values, inverse, axis=-1)


def _suffix_sum_exclusive(x: Array) -> Array:
  """out[t] = sum_{u > t} x[u] along the last axis."""
  return jnp.flip(jnp.cumsum(jnp.flip(x, -1), axis=-1), -1) - x


def max_at_k(values: Array, mask: Array, k: int) -> Array:
  """Unbiased estimate of E[max of k samples' g] per group (rho^(g); PKPO eq. for max_g@k).

  `(1 / C(n, k)) sum_{i=k..n} C(i - 1, k - 1) g_(i)`; k = 1 gives the mean, k = n the maximum.

  Returns:
    [B] estimates (0 for groups with fewer than k valid samples).
  """
  counts = group_stats.valid_counts(mask)
  sorted_values, _ = _sort_group(values, mask)
  coef = _table_rows(max_at_k_table(mask.shape[-1], k), counts, values.dtype)
  return (coef * sorted_values).sum(axis=-1)


def _loo_max_at_k(sorted_values: Array, counts: Array, k: int) -> Array:
  """In sorted order: rho_k of the group without each element (m - 1 samples).

  Elements ranked below t keep their rank, those above move down by one.
  """
  coef = _table_rows(max_at_k_table(sorted_values.shape[-1], k), counts - 1,
                     sorted_values.dtype)
  shifted = jnp.pad(coef[:, :-1], ((0, 0), (1, 0)))  # shifted[r] = coef[r - 1]
  below = jnp.cumsum(coef * sorted_values, axis=-1) - coef * sorted_values
  above = _suffix_sum_exclusive(shifted * sorted_values)
  return jnp.where(counts[:, None] >= 1, below + above, 0)


def pkpo_s(values: Array, mask: Array, k: int) -> Array:
  """s_i = (1 / C(n, k)) sum_{|I| = k, i in I} max_I g; `sum_i s_i = k rho^(g)`.

  Returns:
    [B, N] transformed rewards (0 on masked samples and in groups with n < k).
  """
  counts = group_stats.valid_counts(mask)
  sorted_values, inverse = _sort_group(values, mask)
  group = mask.shape[-1]
  diag = _table_rows(max_at_k_table(group, k), counts, values.dtype)
  offdiag = _table_rows(_s_offdiag_table(group, k), counts, values.dtype)
  s_sorted = diag * sorted_values + _suffix_sum_exclusive(offdiag * sorted_values)
  return jnp.where(mask, _unsort(s_sorted, inverse), 0)


def pkpo_s_loo(values: Array, mask: Array, k: int) -> Array:
  """s_i - (k / (n - 1)) rho_k(g_{-i}) (unbiased; not shift-invariant).

  Returns:
    [B, N] transformed rewards.
  """
  counts = group_stats.valid_counts(mask)
  sorted_values, inverse = _sort_group(values, mask)
  loo = _unsort(_loo_max_at_k(sorted_values, counts, k), inverse)
  scale = k / jnp.maximum(counts - 1, 1).astype(values.dtype)
  return jnp.where(mask, pkpo_s(values, mask, k) - scale[:, None] * loo, 0)


def pkpo_s_loo_minus_one(values: Array, mask: Array, k: int) -> Array:
  """s_i - (k / n) rho_{k-1}(g_{-i}); for k = 1 the LOO-centred (g_i - mean_{-i} g) / n.

  Unbiased and invariant to adding a constant to g; groups whose valid values are all equal
  are exactly 0.

  Returns:
    [B, N] transformed rewards.
  """
  counts = group_stats.valid_counts(mask)
  count_f = jnp.maximum(counts, 1).astype(values.dtype)[:, None]
  if k == 1:
    baseline, has_others = group_stats.loo_mean(values, mask)
    out = jnp.where(has_others, (values - baseline) / count_f, 0)
  else:
    sorted_values, inverse = _sort_group(values, mask)
    loo = _unsort(_loo_max_at_k(sorted_values, counts, k - 1), inverse)
    out = pkpo_s(values, mask, k) - (k / count_f) * loo
  signal = (counts >= max(k, 2)) & ~group_stats.all_equal(values, mask)
  return jnp.where(mask & signal[:, None], out, 0)


def pkpo_binary(correct: Array, mask: Array, k: int, dtype=jnp.float32) -> Array:
  """Binary-reward transform: k/n on correct samples, (k/n) rho(n - 1, c, k - 1) on the others.

  Equals `pkpo_s` applied to the 0/1 correctness; k = 1 gives f_i / n, k = n gives 1{c >= 1}.

  Returns:
    [B, N] transformed rewards (0 in groups with n < k).
  """
  correct = correct & mask
  counts = group_stats.valid_counts(mask)
  num_correct = group_stats.valid_counts(correct)
  table = jnp.asarray(_binary_negative_table(mask.shape[-1], k), dtype)
  negative = table[counts, num_correct]
  scale = k / jnp.maximum(counts, 1).astype(dtype)
  out = jnp.where(correct, scale[:, None], (scale * negative)[:, None])
  return jnp.where(mask & (counts >= k)[:, None], out, 0)


# ----------------------------------------------------------------------------- objective


@dataclasses.dataclass(frozen=True, kw_only=True)
class PKPOConfig:
  """Pass@k / max@k policy optimisation.

  Attributes:
    k: the k of pass@k (1 <= k <= group size); groups with fewer valid samples are masked.
    transform: "binary", "s", "s_loo" or "s_loo_minus_one" (the paper's choice).
    signal: the reward g: "env" (rewards) or "verifier" (scores).
    correct_threshold: for "binary", a sample is correct when g >= this.
    kl_coef, kl_estimator, ppo_clip, length_normalize: as in RLConfig.
  """

  k: int = 4
  transform: str = "s_loo_minus_one"
  signal: str = "env"
  correct_threshold: float = 1.0
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "k", minimum=1, integer=True)
    checks.check_choice(self, "transform", TRANSFORMS)
    checks.check_choice(self, "signal", checks.SIGNALS)
    checks.check_number(self, "correct_threshold")
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


def pkpo_weights(values: Array, mask: Array, k: int, transform: str,
                 correct_threshold: float = 1.0) -> Array:
  """Dispatches to the transform by name (see module docstring)."""
  if transform == "binary":
    correct = group_stats.is_correct(values, mask, correct_threshold)
    return pkpo_binary(correct, mask, k, values.dtype)
  transforms = {"s": pkpo_s, "s_loo": pkpo_s_loo, "s_loo_minus_one": pkpo_s_loo_minus_one}
  if transform not in transforms:
    raise ValueError(f"transform={transform!r}: must be one of {TRANSFORMS}")
  return transforms[transform](values, mask, k)


def pkpo(inputs: ObjectiveInputs, cfg: PKPOConfig) -> tuple[Array, dict]:
  """PKPO loss `-mean_b sum_j r_bj log pi(y_bj)` with the transformed rewards r."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "pkpo")
  if cfg.k > inputs.group_size:
    raise ValueError(f"PKPOConfig.k={cfg.k}: must be <= the group size {inputs.group_size}")
  inputs = sanitize(inputs)
  values = group_stats.select_signal(inputs, cfg.signal)
  weights = pkpo_weights(values, inputs.mask, cfg.k, cfg.transform, cfg.correct_threshold)
  if cfg.transform == "binary":
    values = group_stats.is_correct(values, inputs.mask, cfg.correct_threshold).astype(
        values.dtype)
  metrics = {"max_at_k": loss_terms.mean_over_rows(max_at_k(values, inputs.mask, cfg.k),
                                                   inputs.mask)}
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.kl_coef, cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                             metrics=metrics)

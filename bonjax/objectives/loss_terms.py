"""Building blocks shared by the objectives: the weighted log-likelihood (or PPO-clipped)
surrogate, the KL-to-reference regulariser, the reduction over prompts, and weight metrics.

Convention: every objective computes per-row *gains* (quantities to maximise) and the loss is
`-sum_b gain_b / #valid rows`; a row is valid when it holds at least one valid sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bonjax.objectives import group_stats
from bonjax.objectives.inputs import ObjectiveInputs

Array = jax.Array
Metrics = dict[str, Array]


def policy_surrogate(weights: Array, inputs: ObjectiveInputs, *, ppo_clip: float | None = None,
                     length_normalize: bool = False) -> tuple[Array, Metrics]:
  """Per-row sum of the policy-gradient surrogate of stop-gradient sample weights.

  Without clipping the surrogate is `w * log pi(y)`, whose gradient is `w * grad log pi(y)`.
  With `ppo_clip = eps` it is `min(rho w, clip(rho, 1 - eps, 1 + eps) w)` with
  `rho = exp(log pi - log pi_sampler)` (a sequence-level ratio); on-policy (rho = 1) both have
  the same gradient.

  Args:
    weights: [B, N] per-sample weights (treated as constants).
    inputs: the (sanitized) batch.
    ppo_clip: PPO clip range epsilon, or None for the plain surrogate.
    length_normalize: divide each sample's term by its number of tokens.

  Returns:
    (gain [B], metrics). Metrics hold `ppo_clip_frac` when clipping is on.
  """
  weights = jax.lax.stop_gradient(weights)
  mask = inputs.mask
  metrics = {}
  if ppo_clip is None:
    per_sample = weights * inputs.logprobs
  else:
    ratio = jnp.exp(inputs.logprobs - jax.lax.stop_gradient(inputs.sampler_logprobs))
    clipped = jnp.clip(ratio, 1.0 - ppo_clip, 1.0 + ppo_clip)
    per_sample = jnp.minimum(ratio * weights, clipped * weights)
    is_clipped = mask & (ratio * weights > clipped * weights)
    metrics["ppo_clip_frac"] = (is_clipped.sum() / jnp.maximum(mask.sum(), 1)).astype(
        inputs.logprobs.dtype)
  if length_normalize:
    per_sample = per_sample / jnp.maximum(inputs.num_tokens, 1).astype(per_sample.dtype)
  return jnp.where(mask, per_sample, 0).sum(axis=-1), metrics


def kl_score_weights(logprobs: Array, ref_logprobs: Array, mask: Array) -> Array:
  """Sample weights whose surrogate has expected gradient `-grad KL(pi_theta || pi_ref)`.

  `grad KL(pi || ref) = E_pi[(log pi - log ref) grad log pi]` (the k1 estimate times the score;
  the extra `E[grad log pi]` vanishes), so the weight is `-(k1_j - b_j) / n` with the
  leave-one-out mean `b_j` of the other samples' k1 as baseline (0 in a group of one), which
  keeps the estimate unbiased because `b_j` does not depend on sample j.

  Args:
    logprobs: [B, N] current log-probs (gradients are stopped here).
    ref_logprobs: [B, N] reference log-probs.
    mask: [B, N] bool.

  Returns:
    [B, N] weights (0 on masked samples).
  """
  k1 = jax.lax.stop_gradient(logprobs - ref_logprobs)
  baseline, _ = group_stats.loo_mean(k1, mask)
  count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(k1.dtype)
  return jnp.where(mask, -(k1 - baseline) / count, 0)


def kl_k3_gain(logprobs: Array, ref_logprobs: Array, mask: Array) -> Array:
  """Per-row `-mean_j k3_j` with `k3 = exp(rho) - rho - 1`, `rho = log ref - log pi`.

  This is the differentiable penalty of GRPO-style trainers. Note what its gradient is: with
  samples from pi, `E[grad k3] = -sum_y pi_ref(y) grad log pi(y) = grad KL(pi_ref || pi)`, the
  *forward* KL, not KL(pi || pi_ref) (k3 is an unbiased estimate of the value of the reverse KL,
  not of its gradient). Sequence-level: rho is the whole-sequence log ratio.

  Returns:
    [B] gain (differentiable through `logprobs`).
  """
  rho = ref_logprobs - logprobs
  k3 = jnp.exp(rho) - rho - 1
  count = jnp.maximum(group_stats.valid_counts(mask), 1).astype(k3.dtype)
  return -jnp.where(mask, k3, 0).sum(axis=-1) / count


def kl_regulariser(inputs: ObjectiveInputs, ref_logprobs: Array, coef: float,
                   estimator: str) -> tuple[Array, Array, Metrics]:
  """`-coef * KL(pi || ref)` as extra sample weights (k1) or a differentiable gain (k3).

  Args:
    inputs: the (sanitized) batch.
    ref_logprobs: [B, N] reference log-probs of the group samples.
    coef: KL coefficient (0 disables the term but still reports the KL metric).
    estimator: "k1" (score-function weights; exact gradient of KL(pi || ref)) or "k3"
      (differentiable penalty; see `kl_k3_gain`).

  Returns:
    (extra_weights [B, N], extra_gain [B], metrics with `kl`, the mean k1 per sample).
  """
  mask = inputs.mask
  count = jnp.maximum(mask.sum(), 1).astype(inputs.logprobs.dtype)
  k1 = jax.lax.stop_gradient(inputs.logprobs - ref_logprobs)
  metrics = {"kl": jnp.where(mask, k1, 0).sum() / count}
  zeros_w = jnp.zeros_like(inputs.logprobs)
  zeros_g = jnp.zeros(inputs.logprobs.shape[:1], inputs.logprobs.dtype)
  if coef == 0:
    return zeros_w, zeros_g, metrics
  if estimator == "k1":
    return coef * kl_score_weights(inputs.logprobs, ref_logprobs, mask), zeros_g, metrics
  if estimator == "k3":
    return zeros_w, coef * kl_k3_gain(inputs.logprobs, ref_logprobs, mask), metrics
  raise ValueError(f"kl_estimator={estimator!r}: must be one of ('k1', 'k3')")


def optional_kl(inputs: ObjectiveInputs, kl_coef: float, kl_estimator: str,
                ref_logprobs: Array | None = None
                ) -> tuple[Array | None, Array | None, Metrics]:
  """`kl_regulariser` against `ref_logprobs` (default inputs.ref_logprobs) when available.

  Returns:
    (extra_weights or None, extra_gain or None, metrics); all empty without reference
    log-probs (configs that set kl_coef > 0 require them, so this only skips the metric).
  """
  ref_logprobs = inputs.ref_logprobs if ref_logprobs is None else ref_logprobs
  if ref_logprobs is None:
    return None, None, {}
  return kl_regulariser(inputs, ref_logprobs, kl_coef, kl_estimator)


def group_mean(values: Array, mask: Array) -> Array:
  """Returns [B]: mean of the valid values of each group (0 for padding rows)."""
  count = jnp.maximum(group_stats.valid_counts(mask), 1).astype(values.dtype)
  return jnp.where(mask, values, 0).sum(axis=-1) / count


def mean_over_rows(gain: Array, mask: Array) -> Array:
  """Average of a per-row quantity over valid (non-padding) rows."""
  valid = group_stats.row_valid(mask)
  return jnp.where(valid, gain, 0).sum() / jnp.maximum(valid.sum(), 1).astype(gain.dtype)


def weight_metrics(weights: Array, mask: Array) -> Metrics:
  """`frac_zero_signal_groups`: share of valid rows whose sample weights are all exactly 0;
  `mean_abs_weight`: mean |w| over valid samples; `weight_std`: standard deviation of w over
  valid samples (the estimator's spread, which sets the update's variance)."""
  weights = jax.lax.stop_gradient(weights)
  valid_rows = group_stats.row_valid(mask)
  has_signal = (mask & (weights != 0)).any(axis=-1)
  num_rows = jnp.maximum(valid_rows.sum(), 1).astype(weights.dtype)
  num_valid = jnp.maximum(mask.sum(), 1).astype(weights.dtype)
  mean = jnp.where(mask, weights, 0).sum() / num_valid
  return {
      "frac_zero_signal_groups": (valid_rows & ~has_signal).sum().astype(weights.dtype)
                                 / num_rows,
      "mean_abs_weight": jnp.where(mask, jnp.abs(weights), 0).sum() / num_valid,
      "weight_std": jnp.sqrt(jnp.where(mask, (weights - mean) ** 2, 0).sum() / num_valid),
  }


def clip_weights(weights: Array, mask: Array, clip: float | None) -> tuple[Array, Metrics]:
  """Clips |w| to `clip` and reports what clipping removed.

  Clipping BIASES any estimator whose weights it changes (the removed mass is not
  redistributed); the metrics make the bias visible in the training logs.

  Args:
    weights: [B, N] per-sample weights.
    mask: [B, N] bool valid samples.
    clip: the bound, or None (no clipping, no metrics).

  Returns:
    (clipped weights, {"weight_clip_frac": share of valid samples with |w| > clip,
     "weight_clipped_mass": sum(|w| - clip)_+ / sum |w| over valid samples}).
  """
  if clip is None:
    return weights, {}
  magnitude = jnp.where(mask, jnp.abs(jax.lax.stop_gradient(weights)), 0)
  excess = jnp.maximum(magnitude - clip, 0)
  dtype = weights.dtype
  metrics = {
      "weight_clip_frac": ((excess > 0).sum() / jnp.maximum(mask.sum(), 1)).astype(dtype),
      "weight_clipped_mass": excess.sum() / jnp.maximum(magnitude.sum(), jnp.finfo(dtype).tiny),
  }
  return jnp.clip(weights, -clip, clip), metrics


def assemble(inputs: ObjectiveInputs, signal_weights: Array, *,
             extra_weights: Array | None = None, extra_gain: Array | None = None,
             expert_weight: float | None = None, ppo_clip: float | None = None,
             length_normalize: bool = False, metrics: Metrics | None = None
             ) -> tuple[Array, Metrics]:
  """Turns an objective's weights into (loss, metrics).

  gain_b = sum_j (signal_w + extra_w)_bj log pi(y_bj)  [or the PPO surrogate]
           + expert_weight * log pi(y_expert_b) + extra_gain_b
  loss   = -mean over valid rows of gain_b.

  Args:
    inputs: the (sanitized) batch.
    signal_weights: [B, N] the objective's own weights (reported in the weight metrics).
    extra_weights: [B, N] regulariser weights added to the surrogate (e.g. KL, k1).
    extra_gain: [B] differentiable per-row gain (e.g. KL, k3).
    expert_weight: weight of the expert log-likelihood, or None for no expert term.
    ppo_clip: see `policy_surrogate`.
    length_normalize: see `policy_surrogate`.
    metrics: objective-specific metrics to merge.

  Returns:
    (scalar loss, metrics).
  """
  out = dict(metrics or {})
  out.update(weight_metrics(signal_weights, inputs.mask))
  weights = signal_weights if extra_weights is None else signal_weights + extra_weights
  gain, surrogate_metrics = policy_surrogate(weights, inputs, ppo_clip=ppo_clip,
                                             length_normalize=length_normalize)
  out.update(surrogate_metrics)
  if expert_weight is not None:
    gain = gain + expert_weight * inputs.expert_logprobs
  if extra_gain is not None:
    gain = gain + extra_gain
  loss = -mean_over_rows(gain, inputs.mask)
  out["loss"] = jax.lax.stop_gradient(loss)
  return loss, out

"""Tang et al. (algorithms.md section 7): leave-one-out policy gradient for the k-sample objective
f(y_1..n) = max_i g(y_i) with k = n (pass@n for a binary g).

  A_i = f(y_1..n) - f(y_{-i}),   E[sum_i A_i grad log pi(y_i)] = grad E[max_i g(y_i)]   (T11)

unbiased because f(y_{-i}) does not depend on y_i. Only a unique best sample gets a non-zero
advantage (best minus second best): [0, 1, 0, 0] -> [0, 1, 0, 0], [0, 1, 0, 1] -> 0 (T18).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class LOOPassKConfig:
  """Leave-one-out pass@n / max@n policy gradient.

  Attributes:
    signal: g: "env" (rewards) or "verifier" (scores).
    kl_coef, kl_estimator, ppo_clip, length_normalize: as in RLConfig.
  """

  signal: str = "env"
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_choice(self, "signal", checks.SIGNALS)
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


def loo_max_advantages(values: Array, mask: Array) -> Array:
  """`A_i = max_j g_j - max_{j != i} g_j` over valid samples (0 in groups of one).

  Returns:
    [B, N] advantages.
  """
  best = jnp.max(jnp.where(mask, values, -jnp.inf), axis=-1, keepdims=True)
  without_i, has_other = group_stats.max_excluding_each(values, mask)
  return jnp.where(has_other, best - without_i, 0)


def loo_passk(inputs: ObjectiveInputs, cfg: LOOPassKConfig) -> tuple[Array, dict]:
  """Loss `-mean_b sum_j A_bj log pi(y_bj)`."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "loo_passk")
  inputs = sanitize(inputs)
  values = group_stats.select_signal(inputs, cfg.signal)
  weights = loo_max_advantages(values, inputs.mask)
  best = jnp.max(jnp.where(inputs.mask, values, -jnp.inf), axis=-1)
  metrics = {"max_reward": loss_terms.mean_over_rows(
      jnp.where(group_stats.row_valid(inputs.mask), best, 0), inputs.mask)}
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.kl_coef, cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                             metrics=metrics)

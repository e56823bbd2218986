"""REINFORCE with a leave-one-out baseline (the inference-unaware RL-S / RL-V baselines)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLConfig:
  """Policy gradient on `E_pi[reward] - kl_coef * KL(pi || pi_ref)`.

  Attributes:
    signal: reward source, "env" (rewards; RL-S) or "verifier" (scores; RL-V).
    baseline: "loo" (mean reward of the other samples of the group; a group of one sample or
      with all rewards equal has no signal and is masked) or "none" (plain REINFORCE, the
      choice for N' = 1).
    kl_coef: weight of KL(pi || pi_ref); 0 disables it.
    kl_estimator: "k1" (score-function weights, exact gradient of KL(pi || pi_ref)) or "k3"
      (differentiable GRPO-style penalty; its gradient is that of KL(pi_ref || pi)).
    ppo_clip: PPO clip epsilon on the ratio exp(logprobs - sampler_logprobs), or None.
    length_normalize: divide each sample's surrogate by its token count.
  """

  signal: str = "env"
  baseline: str = "loo"
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_choice(self, "signal", checks.SIGNALS)
    checks.check_choice(self, "baseline", checks.BASELINES)
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


def loo_advantages(values: Array, mask: Array) -> Array:
  """`A_i = v_i - mean_{j != i} v_j`, exactly 0 in groups of one or with all values equal.

  Unbiased as a policy-gradient weight because the baseline of sample i does not depend on
  sample i. Adding a constant to every value leaves A unchanged.

  Returns:
    [B, N] advantages.
  """
  baseline, has_others = group_stats.loo_mean(values, mask)
  signal = has_others & ~group_stats.all_equal(values, mask)[:, None]
  return jnp.where(signal, values - baseline, 0)


def rl_weights(values: Array, mask: Array, baseline: str) -> Array:
  """REINFORCE weights `A_i / n` (n = valid samples in the group).

  With these weights `E[sum_i w_i grad log pi(y_i)] = grad E_pi[value]`.

  Args:
    values: [B, N] rewards.
    mask: [B, N] bool.
    baseline: "loo" or "none".

  Returns:
    [B, N] weights.
  """
  count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(values.dtype)
  if baseline == "loo":
    advantages = loo_advantages(values, mask)
  else:
    advantages = jnp.where(mask, values, 0)
  return advantages / count


def rl(inputs: ObjectiveInputs, cfg: RLConfig) -> tuple[Array, dict]:
  """REINFORCE / PPO loss with optional KL to the reference."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "rl")
  inputs = sanitize(inputs)
  values = group_stats.select_signal(inputs, cfg.signal)
  weights = rl_weights(values, inputs.mask, cfg.baseline)
  metrics = {"mean_reward": loss_terms.mean_over_rows(
      loss_terms.group_mean(values, inputs.mask), inputs.mask)}
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.kl_coef, cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                             metrics=metrics)

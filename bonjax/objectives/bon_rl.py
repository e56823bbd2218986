"""BoN-RL (Chow et al., algorithms.md section 3.4): maximise the reward of the Best-of-N pick,

  J(theta) = E_{y_1..N ~ pi_theta} f(y_1..N),   f = R_sig(y_{i*}),   i* = argmax_i score(y_i)

(first index on ties). Variants by `signal`: BoN-RL-S trains on the environment reward,
BoN-RL-V on the verifier score (suffix meaning per secondary sources).

Estimators of grad J (weights on grad log pi(y_i), no 1/N factor):
  "loo":           A_i = f(y_1..N) - f(y_{-i})  (Tang et al.'s leave-one-out; exact and unbiased,
                   T11); only the pick can be non-zero: A_{i*} = R(y_{i*}) - R(second pick).
  "selected_mean": A_{i*} = R(y_{i*}) - mean_j R(y_j), others 0 (the practical estimator as
                   re-implemented by Bagirov et al.; biased: it uses grad log pi instead of
                   grad log pi_bon. With a binary reward selected by itself its expectation is
                   (p - p^N) E_+ = grad pass@N * (p - p^N) / (N p^(N-1) (1 - p)).)
                   It always ascends in tests/objectives/test_objectives_ascent.py, at 0.5 to
                   8.4e6 times the true gradient (largest on easy prompts, where grad pass@N is
                   tiny); "loo" is exact there.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array

ESTIMATORS = ("selected_mean", "loo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNRLConfig:
  """BoN-aware RL with a general reward.

  Attributes:
    signal: the reward of the pick: "env" (BoN-RL-S) or "verifier" (BoN-RL-V).
    selection: the score that picks the BoN sample: "verifier" (deployment) or "env" (a
      perfect verifier; with signal="env" and a binary reward the objective is pass@N).
    estimator: "selected_mean" (the practical estimator reported for the paper; biased) or
      "loo" (exact and unbiased, but non-zero only when the pick beats the runner-up).
    kl_coef: weight of KL(pi || pi_ref) (0 disables).
    kl_estimator: "k1" or "k3" (see RLConfig).
    ppo_clip: PPO clip epsilon, or None.
    length_normalize: divide each sample's surrogate by its token count.
  """

  signal: str = "env"
  selection: str = "verifier"
  estimator: str = "selected_mean"
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_choice(self, "signal", checks.SIGNALS)
    checks.check_choice(self, "selection", checks.SIGNALS)
    checks.check_choice(self, "estimator", ESTIMATORS)
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


def bon_rl_weights(values: Array, selection_scores: Array, mask: Array,
                   estimator: str) -> Array:
  """Advantages of BoN-RL; non-zero only on the BoN pick.

  Args:
    values: [B, N] reward of each sample (R_sig).
    selection_scores: [B, N] scores used by the BoN argmax.
    mask: [B, N] bool.
    estimator: "loo" or "selected_mean".

  Returns:
    [B, N] weights (0 in groups of one sample).
  """
  pick = group_stats.first_argmax_onehot(selection_scores, mask)
  picked_value = jnp.where(pick, values, 0).sum(axis=-1)
  if estimator == "loo":
    second, has_other = group_stats.first_argmax_excluding_each(selection_scores, mask)
    without_i = jnp.take_along_axis(values, second, axis=-1)
    return jnp.where(has_other, picked_value[:, None] - without_i, 0)
  if estimator == "selected_mean":
    # Equal rewards carry no signal; masking them keeps float rounding of the mean from
    # leaving a tiny non-zero weight.
    several = (group_stats.valid_counts(mask) >= 2) & ~group_stats.all_equal(values, mask)
    several = several[:, None]
    advantage = picked_value - loss_terms.group_mean(values, mask)
    return jnp.where(pick & several, advantage[:, None], 0)
  raise ValueError(f"estimator={estimator!r}: must be one of {ESTIMATORS}")


def bon_rl(inputs: ObjectiveInputs, cfg: BoNRLConfig) -> tuple[Array, dict]:
  """BoN-RL loss `-mean_b sum_j A_bj log pi(y_bj)` (+ KL, PPO options)."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "bon_rl")
  inputs = sanitize(inputs)
  values = group_stats.select_signal(inputs, cfg.signal)
  selection = group_stats.select_signal(inputs, cfg.selection)
  weights = bon_rl_weights(values, selection, inputs.mask, cfg.estimator)
  pick = group_stats.first_argmax_onehot(selection, inputs.mask)
  metrics = {
      "mean_reward": loss_terms.mean_over_rows(loss_terms.group_mean(values, inputs.mask),
                                               inputs.mask),
      "bon_reward": loss_terms.mean_over_rows(jnp.where(pick, values, 0).sum(-1), inputs.mask),
  }
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.kl_coef, cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                             metrics=metrics)

"""vBoN (Amini et al., algorithms.md section 4): distil Best-of-N of a fixed reference policy into
a single-sample policy by minimising KL(pi_theta || pi_bon(pi_ref)).

  J(theta) = -KL(pi_theta || pi_bon) = E_pi[log pi_bon(y) - log pi_ref(y)] - KL(pi_theta || pi_ref),
  pi_bon(y) = sum_{i=1..N} C(N, i) F(y)^(N-i) pi_ref(y)^i,   F(y) = P_{y'~pi_ref}(r(y') < r(y))

(no ties in r assumed). Policy gradient with a per-sample reward (constants):
  "exact": R = s [log sum_i C(N, i) F^(N-i) pi_ref^i - log pi_ref]    (s = 1/N in the vBoN code)
  "l1":    R = s log F                                                  (s = 1; the lower bound
           log N + (N-1) E log F - KL(pi || ref), divided by N - 1)
and the KL coefficient beta = 1/(N - 1) (vBoN code: N = 1/beta + 1). With s = 1 and beta = 1 the
"exact" estimator is the exact gradient of -KL(pi || pi_bon). F is estimated from M reference
scores per prompt: F_hat = (1 + #{ref < r}) / (M + 1) ("add_one", never 0) or #{ref < r} / M
("plain"). The reward is centred with a leave-one-out baseline over the group (the vBoN code uses
PPO's value head instead); the KL enters through k1 score-function weights (exact gradient).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize
from bonjax.objectives.rl import loo_advantages

Array = jax.Array

REWARDS = ("exact", "l1")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VBoNConfig:
  """Variational BoN distillation.

  Attributes:
    bon_n: N, the BoN size being distilled (>= 2).
    reward: "exact" or "l1".
    cdf: "add_one" (vBoN code) or "plain" (unsmoothed; log F is floored at log(1/(2M)) for the
      l1 reward so a sample below every reference does not give -inf).
    reward_scale: multiplies the reward; None means 1/N for "exact" (vBoN code) and 1 for "l1".
    kl_coef: beta; None means 1/(N - 1).
    kl_estimator: "k1" (exact gradient of KL(pi || ref)) or "k3" (see RLConfig).
    baseline: "loo" (a group of one sample then has no reward signal; the KL term remains) or
      "none".
    ppo_clip: PPO clip epsilon, or None.
    length_normalize: divide each sample's surrogate by its token count.
  """

  bon_n: int = 8
  reward: str = "exact"
  cdf: str = "add_one"
  reward_scale: float | None = None
  kl_coef: float | None = None
  kl_estimator: str = "k1"
  baseline: str = "loo"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "bon_n", minimum=2, integer=True)
    checks.check_choice(self, "reward", REWARDS)
    checks.check_choice(self, "cdf", checks.CDF_KINDS)
    checks.check_number(self, "reward_scale", allow_none=True)
    checks.check_choice(self, "baseline", checks.BASELINES)
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    needed = {"ref_scores"}
    if self.reward == "exact" or self.resolved_kl_coef() > 0:
      needed.add("ref_logprobs")
    return frozenset(needed)

  def resolved_kl_coef(self) -> float:
    return 1.0 / (self.bon_n - 1) if self.kl_coef is None else float(self.kl_coef)

  def resolved_reward_scale(self) -> float:
    if self.reward_scale is not None:
      return float(self.reward_scale)
    return 1.0 / self.bon_n if self.reward == "exact" else 1.0


def log_bon_ratio(log_cdf: Array, ref_logprobs: Array, n: int) -> Array:
  """`log pi_bon(y) - log pi_ref(y)` for the no-ties BoN of the reference.

  `log sum_{i=1..N} C(N, i) F^(N-i) pi_ref^i - log pi_ref`, in log space with a logsumexp over i.
  F = 0 is allowed (log F = -inf): only the i = N term survives.

  Args:
    log_cdf: [B, N'] log F (may be -inf).
    ref_logprobs: [B, N'] log pi_ref(y) (sequence log-probs).
    n: BoN size N.

  Returns:
    [B, N'] log-ratio.
  """
  i = jnp.arange(1, n + 1, dtype=log_cdf.dtype)
  log_comb = jnp.asarray([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                          for k in range(1, n + 1)], log_cdf.dtype)
  powers = n - i
  # (N - i) log F with the convention 0 * log 0 = 0 for the i = N term.
  cdf_term = jnp.where(powers > 0, powers * log_cdf[..., None], 0)
  terms = log_comb + cdf_term + i * ref_logprobs[..., None]
  return jax.nn.logsumexp(terms, axis=-1) - ref_logprobs


def vbon_rewards(scores: Array, ref_scores: Array, ref_mask: Array | None,
                 ref_logprobs: Array | None, *, n: int, reward: str, cdf: str) -> Array:
  """Per-sample vBoN reward before scaling: `log pi_bon - log pi_ref` or `log F`.

  Depends on the scores only through the empirical CDF, so it is invariant to any strictly
  increasing transform applied to both policy and reference scores.

  Args:
    scores: [B, N'] reward-model scores of the policy samples.
    ref_scores: [B, M] reference scores.
    ref_mask: [B, M] bool or None.
    ref_logprobs: [B, N'] log pi_ref of the policy samples (needed for "exact").
    n: BoN size N.
    reward: "exact" or "l1".
    cdf: "add_one" or "plain".

  Returns:
    [B, N'] rewards.
  """
  cdf_values = group_stats.empirical_cdf(scores, ref_scores, ref_mask, strict=True, cdf=cdf)
  if reward == "exact":
    return log_bon_ratio(jnp.log(cdf_values), ref_logprobs, n)
  num_refs = group_stats.num_references(ref_scores, ref_mask)
  return group_stats.floored_log_cdf(cdf_values, num_refs)


def vbon(inputs: ObjectiveInputs, cfg: VBoNConfig) -> tuple[Array, dict]:
  """vBoN loss: policy gradient on the scaled reward with a KL(pi || pi_ref) penalty."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "vbon")
  inputs = sanitize(inputs)
  mask = inputs.mask
  rewards = vbon_rewards(inputs.scores, inputs.ref_scores, inputs.ref_mask, inputs.ref_logprobs,
                         n=cfg.bon_n, reward=cfg.reward, cdf=cfg.cdf)
  rewards = jnp.where(mask, cfg.resolved_reward_scale() * rewards, 0)
  count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(rewards.dtype)
  if cfg.baseline == "loo":
    weights = loo_advantages(rewards, mask) / count
  else:
    weights = rewards / count
  metrics = {"vbon_reward": loss_terms.mean_over_rows(loss_terms.group_mean(rewards, mask),
                                                      mask)}
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.resolved_kl_coef(),
                                                        cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                             metrics=metrics)

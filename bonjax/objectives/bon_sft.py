"""BoN-SFT (Chow et al., algorithms.md section 3.3): maximise the likelihood of an expert
response under the variational BoN policy of the current model,

  log pi_bon(y | x) = log pi(y | x) + lambda_N Q(x, y) - log Z,
  Q(x, y) = P_{y'~pi}(r(y) >= r(y')).

Its gradient (T13) is
  grad log pi(y) - E_{pi_bon}[grad log pi] + lambda_N (grad Q(y) - E_{pi_bon}[grad Q]),
  grad Q(y) = E_{y''~pi}[1{r(y) >= r(y'')} grad log pi(y'')].

Monte-Carlo estimator from one group y_1..y_n ~ pi with verifier scores v_j (all weights are
constants): expert weight +1, and for each group sample

  w_j = -omega_j + (lambda_N / n) (1{r(y) >= v_j} - sum_j' omega_j' 1{v_j' >= v_j}),

with omega the pi_bon weights of the group samples, either
  "softmax":  omega = softmax_j(lambda_N Q_hat_j), Q_hat_j = (1/n) sum_j' 1{v_j >= v_j'}
              (self-normalised; biased for finite n, exact when the group's empirical
              distribution equals pi), or
  "bon_pick": omega = one-hot on the BoN pick i* (one exact draw from the BoN-n policy; the
              last sum is then 1 for every j, so the bracket reduces to -1{v_j > r(y)}).
The paper's own practical loss ("Eq. 7") could not be read; this is the derived estimator.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms, tilt
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array

OMEGA_KINDS = ("softmax", "bon_pick")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNSFTConfig:
  """BoN-aware imitation learning.

  Attributes:
    bon_n: the BoN size N deployed at test time (sets lambda_N); None means the group size.
    lambda_n: the tilt strength; None derives it from `bon_n` by `lambda_rule`.
    lambda_rule: "kl_matched" (root of T14: 2.2886 for N = 2, ..., 33.0158 for N = 32) or
      "n_plus_one".
    omega: how E_{pi_bon}[.] is estimated from the group: "softmax" or "bon_pick".
    include_q_terms: keep the lambda_N bracket (the grad-Q terms); False keeps only the
      expert term and -omega_j.
    kl_coef: weight of KL(pi || pi_ref) (0 disables).
    kl_estimator: "k1" or "k3" (see RLConfig).
    ppo_clip: PPO clip epsilon for the group-sample terms, or None.
    length_normalize: divide each group sample's term by its token count.
  """

  bon_n: int | None = None
  lambda_n: float | None = None
  lambda_rule: str = "kl_matched"
  omega: str = "softmax"
  include_q_terms: bool = True
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "bon_n", minimum=1, integer=True, allow_none=True)
    checks.check_number(self, "lambda_n", minimum=0.0, allow_none=True)
    checks.check_choice(self, "lambda_rule", tilt.LAMBDA_RULES)
    checks.check_choice(self, "omega", OMEGA_KINDS)
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    needed = {"expert_logprobs"}
    if self.include_q_terms:
      needed.add("expert_scores")
    if self.kl_coef > 0:
      needed.add("ref_logprobs")
    return frozenset(needed)

  def resolved_lambda(self, group_size: int) -> float:
    """lambda_N for a batch whose static group size is `group_size`."""
    if self.lambda_n is not None:
      return float(self.lambda_n)
    return tilt.lambda_for(self.bon_n or group_size, self.lambda_rule)


def group_win_rates(scores: Array, mask: Array) -> Array:
  """`Q_hat_j = (1/n) sum_j' 1{v_j >= v_j'}` over the valid samples (itself included).

  Returns:
    [B, N] win rates (0 on masked samples).
  """
  beats = (scores[:, :, None] >= scores[:, None, :]) & mask[:, None, :]
  count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(scores.dtype)
  return jnp.where(mask, beats.sum(axis=-1).astype(scores.dtype) / count, 0)


def bon_pick_weights(scores: Array, mask: Array, lambda_n: float, omega: str) -> Array:
  """The weights omega_j of the group samples under the (approximate) BoN policy.

  Returns:
    [B, N] non-negative weights summing to 1 on every non-padding row.
  """
  if omega == "bon_pick":
    return group_stats.first_argmax_onehot(scores, mask).astype(scores.dtype)
  logits = lambda_n * group_win_rates(scores, mask)
  # A finite floor instead of -inf keeps padding rows (all masked) free of NaN.
  logits = jnp.where(mask, logits, jnp.finfo(scores.dtype).min)
  return jnp.where(mask, jax.nn.softmax(logits, axis=-1), 0)


def bon_sft_weights(scores: Array, mask: Array, expert_scores: Array | None, lambda_n: float,
                    omega: str = "softmax", include_q_terms: bool = True) -> Array:
  """Group-sample weights of BoN-SFT (the expert's weight is +1).

  Args:
    scores: [B, N] verifier scores v_j of the group samples.
    mask: [B, N] bool.
    expert_scores: [B] verifier score r(x, y) of the expert response (unused without the Q
      terms).
    lambda_n: tilt strength.
    omega: "softmax" or "bon_pick".
    include_q_terms: keep the lambda_N bracket.

  Returns:
    [B, N] weights.
  """
  omegas = bon_pick_weights(scores, mask, lambda_n, omega)
  weights = -omegas
  if include_q_terms:
    count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(scores.dtype)
    expert_beats = (expert_scores[:, None] >= scores).astype(scores.dtype)
    # sum_j' omega_j' 1{v_j' >= v_j}: the group estimate of E_{pi_bon}[grad Q] coefficients.
    picked_beats = jnp.einsum("bk,bkj->bj", omegas,
                              (scores[:, :, None] >= scores[:, None, :]).astype(scores.dtype),
                              precision=jax.lax.Precision.HIGHEST)  # Not TF32 on GPUs.
    weights = weights + (lambda_n / count) * (expert_beats - picked_beats)
  return jnp.where(mask, weights, 0)


def bon_sft(inputs: ObjectiveInputs, cfg: BoNSFTConfig) -> tuple[Array, dict]:
  """Loss `-mean_b [log pi(y_expert_b) + sum_j w_bj log pi(y_bj)]`."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "bon_sft")
  inputs = sanitize(inputs)
  lambda_n = cfg.resolved_lambda(inputs.group_size)
  weights = bon_sft_weights(inputs.scores, inputs.mask, inputs.expert_scores, lambda_n,
                            cfg.omega, cfg.include_q_terms)
  metrics = {"lambda_n": jnp.asarray(lambda_n, inputs.logprobs.dtype)}
  if cfg.include_q_terms:
    count = jnp.maximum(group_stats.valid_counts(inputs.mask), 1).astype(inputs.scores.dtype)
    expert_win = jnp.where(inputs.mask, inputs.expert_scores[:, None] >= inputs.scores,
                           False).sum(-1) / count
    metrics["expert_win_rate"] = loss_terms.mean_over_rows(expert_win, inputs.mask)
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.kl_coef, cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             expert_weight=1.0, ppo_clip=cfg.ppo_clip,
                             length_normalize=cfg.length_normalize, metrics=metrics)

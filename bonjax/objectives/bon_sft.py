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
  "bon_pick": omega = one-hot on the BoN pick i* (one exact draw from the BoN-n policy), and
              E_{pi_bon}[grad Q] estimated with leave-one-out picks:
                (lambda_N / n) sum_j 1{v(pick_-j) >= v_j} grad log pi(y_j),
              pick_-j = the BoN pick of the OTHER n - 1 samples. The comparison sample y_j is
              then independent of the pick, so the term is unbiased for
              lambda_N E_{BoN_(n-1)}[grad Q]. (Using the group's own pick i* instead makes
              1{v_i* >= v_j} = 1 for every j: a zero-mean term, i.e. the -lambda_N E[grad Q]
              term silently dropped, 31.5% off the gradient in a measured case.)
              Exact expectation (tests/objectives/test_objectives_bon_sft.py):
                grad[log pi(y) + lambda_N Q(y)] - E_{BoN_n}[grad log pi]
                - lambda_N E_{BoN_(n-1)}[grad Q],
              i.e. T13 with the tilt's expectations replaced by exact BoN draws.
The paper's own practical loss ("Eq. 7") could not be read; this is the derived estimator.
Measured against the exact T13 gradient of E_expert log mu (exact enumeration,
tests/objectives/test_objectives_ascent.py, lambda_N = 4, N' in {2, 4, 8}): both omegas ascend;
E[update] / gradient is 0.90 to 1.13 for "softmax" and 0.44 to 1.81 for "bon_pick" (whose
expectation is exactly the BoN-draw form above, not the tilt's).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.bon import failed_scores
from bonjax.objectives import checks, group_stats, loss_terms, tilt
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array

OMEGA_KINDS = ("softmax", "bon_pick")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNSFTConfig:
  """BoN-aware imitation learning.

  Attributes:
    bon_n: the BoN size N deployed at test time (sets lambda_N); None means each group's
      number of valid samples.
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
    """lambda_N for groups of `group_size` valid samples (when bon_n is None)."""
    if self.lambda_n is not None:
      return float(self.lambda_n)
    return tilt.lambda_for(self.bon_n or group_size, self.lambda_rule)

  def lambda_per_group(self, mask: Array) -> Array:
    """[B] lambda_N of every group: with bon_n None, N is the group's number of VALID samples
    (not the padded width), looked up in a host table over 0..width."""
    table = [self.resolved_lambda(max(m, 1)) for m in range(mask.shape[-1] + 1)]
    return jnp.asarray(table, jnp.float32)[group_stats.valid_counts(mask)]


def group_win_rates(scores: Array, mask: Array) -> Array:
  """`Q_hat_j = (1/n) sum_j' 1{v_j >= v_j'}` over the valid samples (itself included).

  Returns:
    [B, N] win rates (0 on masked samples).
  """
  scores = failed_scores.ranking_scores(scores)
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
    lambda_n: tilt strength, a float or [B, 1] per group.
    omega: "softmax" or "bon_pick".
    include_q_terms: keep the lambda_N bracket.

  Returns:
    [B, N] weights.
  """
  scores = failed_scores.ranking_scores(scores)
  if expert_scores is not None:
    expert_scores = failed_scores.ranking_scores(expert_scores)
  omegas = bon_pick_weights(scores, mask, lambda_n, omega)
  weights = -omegas
  if include_q_terms:
    count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(scores.dtype)
    expert_beats = (expert_scores[:, None] >= scores).astype(scores.dtype)
    if omega == "bon_pick":
      # The pick of the others is independent of y_j (see the module docstring).
      pick, has_other = group_stats.first_argmax_excluding_each(scores, mask)
      pick_score = jnp.take_along_axis(scores, pick, axis=-1)
      picked_beats = (has_other & (pick_score >= scores)).astype(scores.dtype)
    else:
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
  lambda_n = cfg.lambda_per_group(inputs.mask).astype(inputs.logprobs.dtype)
  weights = bon_sft_weights(inputs.scores, inputs.mask, inputs.expert_scores, lambda_n[:, None],
                            cfg.omega, cfg.include_q_terms)
  metrics = {"lambda_n": loss_terms.mean_over_rows(lambda_n, inputs.mask)}
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

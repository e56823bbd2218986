"""BoN-RLB and BoN-RLB(P) (Chow et al., algorithms.md sections 3.5-3.6): closed-form BoN
policy gradients for a binary reward with a perfect verifier, where J = pass@N = 1 - p^N and
p = P_pi(incorrect).

Exact identities (T10), with E_+/E_- the mean score function over correct/incorrect outcomes:
  grad J = N p^(N-1) (1 - p) E_+ = E_{pi_bon}[1{+} g+ grad log pi + 1{-} g- grad log pi]
         = E_{pi_bon}[1{+} gbar+ grad log pi],
  g+ = N p^(N-1) / (1 - p^N),  g- = N p / (1 - p),  gbar+ = N p^(N-1) (1 - p) / (1 - p^N).
The negative term must enter with a plus sign to be exact; with a minus sign ("push negatives
down") the expectation is grad J (1 + p) / (1 - p): same direction per prompt, larger on hard
prompts. Which sign the paper used is not known; `negative_sign` selects it.

Group estimator (section 3.6): from n samples with c correct, p_hat = (n - c) / n and the
pi_bon expectations with E_+/E_- replaced by group means:
  correct j:   w = N p_hat^(N-1) / c
  incorrect j: w = sign * N p_hat^N / c        (BoN-RLB)
  correct j:   w = (N / n) p_hat^(N-1)         (BoN-RLB(P); incorrect: 0)
Plug-in p_hat makes these biased (the weights are non-linear in p_hat); with the true p they are
exact. Groups with c = 0 have no signal and are masked.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array

RLBP_FORMS = ("group_mean", "selected")


def bon_rlb_coefficients(p: Array, n: int) -> tuple[Array, Array, Array]:
  """The BoN-RLB weights as functions of the failure probability p in [0, 1).

  Args:
    p: failure probability (any shape).
    n: BoN size N.

  Returns:
    (g_plus, g_minus, g_bar_plus). Reference values (T10): (N, p) = (4, 0.5) -> (0.533333, 4,
    0.266667); (32, 0.9) -> (1.264277, 288, 0.126428); (8, 0.99) -> (96.517938, 792, 0.965179).
  """
  p = jnp.asarray(p)
  one_minus_pn = -jnp.expm1(n * jnp.log(p))  # 1 - p^N without cancellation near p = 1
  g_plus = n * p ** (n - 1) / one_minus_pn
  g_minus = n * p / (1 - p)
  # gbar+ = N p^(N-1) / sum_{i<N} p^i; the geometric sum avoids 0/0 at p -> 1.
  geometric = sum(p ** i for i in range(n))
  g_bar_plus = n * p ** (n - 1) / geometric
  return g_plus, g_minus, g_bar_plus


def _failure_rate(correct: Array, mask: Array, dtype) -> tuple[Array, Array, Array]:
  """Returns (c [B] correct count, m [B] valid count, p_hat [B] = (m - c) / m in `dtype`)."""
  c = group_stats.valid_counts(correct & mask)
  m = group_stats.valid_counts(mask)
  p_hat = (m - c).astype(dtype) / jnp.maximum(m, 1).astype(dtype)
  return c, m, p_hat


def bon_rlb_weights(correct: Array, mask: Array, n: int, negative_sign: float = 1.0,
                    clip: float | None = None, dtype=jnp.float32) -> Array:
  """Group-form BoN-RLB weights (both signs of the negative term).

  Args:
    correct: [B, N'] bool correctness of the group samples.
    mask: [B, N'] bool.
    n: target BoN size N.
    negative_sign: +1 (exact) or -1 (push incorrect samples down).
    clip: clip |w| to this value, or None.
    dtype: floating dtype of the result.

  Returns:
    [B, N'] weights; 0 in groups with no correct sample.
  """
  correct = correct & mask
  c, _, p_hat = _failure_rate(correct, mask, dtype)
  c_safe = jnp.maximum(c, 1).astype(dtype)
  positive = n * p_hat ** (n - 1) / c_safe
  negative = negative_sign * n * p_hat ** n / c_safe
  weights = jnp.where(correct, positive[:, None], jnp.where(mask, negative[:, None], 0))
  weights = jnp.where((c > 0)[:, None], weights, 0)
  return weights if clip is None else jnp.clip(weights, -clip, clip)


def bon_rlb_p_weights(correct: Array, mask: Array, n: int, form: str = "group_mean",
                      clip: float | None = None, dtype=jnp.float32) -> Array:
  """BoN-RLB(P) weights: positives only.

  Args:
    correct: [B, N'] bool.
    mask: [B, N'] bool.
    n: target BoN size N.
    form: "group_mean" (`(N / n') p_hat^(N-1)` on every correct sample) or "selected"
      (`gbar+(p_hat)` on the first correct sample, the BoN pick of a perfect verifier).
    clip: clip |w| to this value, or None.
    dtype: floating dtype of the result.

  Returns:
    [B, N'] weights; 0 in groups with no correct sample.
  """
  correct = correct & mask
  c, m, p_hat = _failure_rate(correct, mask, dtype)
  if form == "group_mean":
    value = n * p_hat ** (n - 1) / jnp.maximum(m, 1).astype(dtype)
    weights = jnp.where(correct, value[:, None], 0)
  elif form == "selected":
    _, _, g_bar = bon_rlb_coefficients(p_hat, n)
    pick = group_stats.first_argmax_onehot(correct.astype(dtype), correct)
    weights = jnp.where(pick, g_bar[:, None], 0)
  else:
    raise ValueError(f"form={form!r}: must be one of {RLBP_FORMS}")
  weights = jnp.where((c > 0)[:, None], weights, 0)
  return weights if clip is None else jnp.clip(weights, -clip, clip)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNRLBConfig:
  """BoN-RLB (two-sided).

  Attributes:
    bon_n: target BoN size N; None means the group size.
    negative_sign: +1 (exact, default) or -1 (push incorrect samples down; expectation scaled
      by (1 + p) / (1 - p)).
    weight_clip: clip |w| to this value, or None.
    correct_threshold: a sample is correct when its environment reward is >= this.
    kl_coef, kl_estimator, ppo_clip, length_normalize: as in RLConfig.
  """

  bon_n: int | None = None
  negative_sign: float = 1.0
  weight_clip: float | None = None
  correct_threshold: float = 1.0
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "bon_n", minimum=1, integer=True, allow_none=True)
    checks.check_choice(self, "negative_sign", (1, -1))
    checks.check_number(self, "weight_clip", minimum=0.0, strict_minimum=True, allow_none=True)
    checks.check_number(self, "correct_threshold")
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNRLBPConfig:
  """BoN-RLB(P) (positives only; for settings without usable negatives).

  Attributes:
    bon_n: target BoN size N; None means the group size.
    form: "group_mean" or "selected" (see bon_rlb_p_weights).
    weight_clip: clip |w| to this value, or None.
    correct_threshold: a sample is correct when its environment reward is >= this.
    kl_coef, kl_estimator, ppo_clip, length_normalize: as in RLConfig.
  """

  bon_n: int | None = None
  form: str = "group_mean"
  weight_clip: float | None = None
  correct_threshold: float = 1.0
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "bon_n", minimum=1, integer=True, allow_none=True)
    checks.check_choice(self, "form", RLBP_FORMS)
    checks.check_number(self, "weight_clip", minimum=0.0, strict_minimum=True, allow_none=True)
    checks.check_number(self, "correct_threshold")
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


def _finish(inputs: ObjectiveInputs, weights: Array, correct: Array, cfg) -> tuple[Array, dict]:
  _, _, p_hat = _failure_rate(correct, inputs.mask, weights.dtype)
  metrics = {"p_fail_hat": loss_terms.mean_over_rows(p_hat, inputs.mask)}
  extra_w, extra_g, kl_metrics = loss_terms.optional_kl(inputs, cfg.kl_coef, cfg.kl_estimator)
  metrics.update(kl_metrics)
  return loss_terms.assemble(inputs, weights, extra_weights=extra_w, extra_gain=extra_g,
                             ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                             metrics=metrics)


def bon_rlb(inputs: ObjectiveInputs, cfg: BoNRLBConfig) -> tuple[Array, dict]:
  """BoN-RLB loss with group-form weights."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "bon_rlb")
  inputs = sanitize(inputs)
  correct = group_stats.is_correct(inputs.rewards, inputs.mask, cfg.correct_threshold)
  weights = bon_rlb_weights(correct, inputs.mask, cfg.bon_n or inputs.group_size,
                            cfg.negative_sign, cfg.weight_clip, inputs.logprobs.dtype)
  return _finish(inputs, weights, correct, cfg)


def bon_rlb_p(inputs: ObjectiveInputs, cfg: BoNRLBPConfig) -> tuple[Array, dict]:
  """BoN-RLB(P) loss."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "bon_rlb_p")
  inputs = sanitize(inputs)
  correct = group_stats.is_correct(inputs.rewards, inputs.mask, cfg.correct_threshold)
  weights = bon_rlb_p_weights(correct, inputs.mask, cfg.bon_n or inputs.group_size, cfg.form,
                              cfg.weight_clip, inputs.logprobs.dtype)
  return _finish(inputs, weights, correct, cfg)

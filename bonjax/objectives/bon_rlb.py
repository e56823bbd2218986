"""BoN-RLB and BoN-RLB(P) (Chow et al., algorithms.md sections 3.5-3.6): closed-form BoN
policy gradients for a binary reward with a perfect verifier, where J = pass@N = 1 - p^N and
p = P_pi(incorrect).

Exact identities (T10), with E_+/E_- the mean score function over correct/incorrect outcomes:
  grad J = N p^(N-1) (1 - p) E_+ = E_{pi_bon}[1{+} g+ grad log pi + 1{-} g- grad log pi]
         = E_{pi_bon}[1{+} gbar+ grad log pi],
  g+ = N p^(N-1) / (1 - p^N),  g- = N p / (1 - p),  gbar+ = N p^(N-1) (1 - p) / (1 - p^N).
These hold with the TRUE p. A group of n valid samples (c correct, f = n - c failures) only
gives estimates of p, and how they enter decides whether the update climbs pass@N.

Why the plug-in forms fail: the expected update of weights w_j that depend on the sample's own
correctness R_j and on the other samples is n (1 - p) (h(1) - h(0)) E_+ with
h(r) = E[w_j | R_j = r]; it equals grad J iff h(1) - h(0) = (N / n) p^(N-1). The plug-in
p_hat = f / n counts the sample itself, so h(0) sees a larger p_hat than h(1) and, with the plus
sign, outweighs it (a sign flip, mostly in the groups where p_hat >> p).

`estimator` of BoN-RLB (weights on grad log pi(y_j); u_j = C(f_-j, N - 1) / C(n - 1, N - 1)
is the unbiased estimate of p^(N-1) from the n - 1 OTHER samples, f_-j their failures):
  "loo" (default):  w_j = (N / n) u_j (R_j - b_j),  b_j = mean correctness of the others.
                    Unbiased for every p and N <= n (u_j and b_j do not depend on R_j);
                    negatives enter with a MINUS sign (pushed down). N = n: only a unique
                    correct sample gets weight 1 (Tang et al.'s LOO); N = 1: RLOO for pass@1.
  "plugin_minus":   correct: N p_hat^(N-1) / c, incorrect: -N p_hat^N / c (the paper's printed
                    form, section 3.6; ascends, biased up).
  "plugin_plus":    correct: N p_hat^(N-1) / c, incorrect: +N p_hat^N / c (the old default: exact
                    only with the true p; with p_hat it DESCENDS pass@N for most p).
`form` of BoN-RLB(P) (positives only; incorrect samples weigh 0):
  "loo":            correct: (N / n) u_j. Unbiased.
  "group_mean":     correct: (N / n) p_hat^(N-1) (section 3.6). Biased (p_hat counts the
                    sample itself; p_hat^(N-1) is not unbiased for p^(N-1)).
  "selected":       gbar+(p_hat) on the first correct sample. Biased.

Measured E[update] / grad pass@N (projection on grad pass@N; exact enumeration over all
2^n groups of a two-outcome softmax policy, float64; p = P(incorrect);
tests/objectives/test_objectives_ascent.py re-measures them):

  option                 (n, N)  p=0.05     0.2      0.5      0.8      0.95
  bon_rlb loo            any     1          1        1        1        1       (unbiased)
  bon_rlb plugin_minus   (4, 4)  281.7      27.21    6.677    2.852    1.928
                         (8, 8)  1.098e5    537.8    39.68    9.586    4.381
                         (8, 4)  40.98      8.835    7.608    7.956    6.372
                         (8, 2)  1.953      2.227    4.319    7.704    7.792
  bon_rlb plugin_plus    (4, 4)  -204.7     -15.83   -1.677   0.9062   1.526
                         (8, 8)  -7.664e4   -331.5   -20.54   -1.156   2.308
                         (8, 4)  -12.62     -2.117   -2.233   -0.3245  3.435
                         (8, 2)  0.1518     0.2733   -0.3501  0.1989   4.274
  bon_rlb_p loo          any     1          1        1        1        1       (unbiased)
  bon_rlb_p group_mean   (4, 4)  24.47      2.672    0.8438   0.5186   0.4417
                         (8, 8)  1.026e4    44.82    2.421    0.6796   0.4441
                         (8, 4)  10.80      1.982    0.9570   0.7391   0.6844
                         (8, 2)  0.875      0.875    0.875    0.875    0.875
  bon_rlb_p selected     (4, 4)  25.21      2.970    1.064    0.7201   0.6383
                         (8, 8)  1.028e4    45.81    2.750    0.9123   0.6552
                         (8, 4)  10.87      2.064    1.180    1.293    1.518
                         (8, 2)  0.9038     0.9712   1.287    2.231    3.255

So: "loo" (both objectives) is unbiased; "plugin_minus", "group_mean" and "selected" always
ascend but are off by factors from 0.44 to 1e5 (worst on easy prompts, where the true gradient
N p^(N-1) is tiny); "plugin_plus" descends pass@N for most p.
Clipping (`weight_clip`) bounds |w| and therefore BIASES every estimator (the clipped mass is
dropped); the loss metrics `weight_clip_frac` and `weight_clipped_mass` report how much.
Groups with no signal (all correct or all incorrect under "loo"; c = 0 under the plug-ins) weigh 0.
N larger than a group's valid count cannot be estimated without bias: "loo" gives that group 0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize, target_n

Array = jax.Array

ESTIMATORS = ("loo", "plugin_minus", "plugin_plus")
RLBP_FORMS = ("loo", "group_mean", "selected")


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


def unbiased_power(failures: Array, draws: Array, power: Array, width: int, dtype) -> Array:
  """C(f, k) / C(m, k) = prod_{i<k} (f - i) / (m - i): the unbiased estimate of p^k from m
  i.i.d. draws with f failures (hypergeometric: the chance that k draws without replacement
  all fail).

  Args:
    failures: integer array f.
    draws: integer array m (broadcasts with f).
    power: integer array k (broadcasts); k > m has no unbiased estimate and gives 0.
    width: static bound on k (the group width).
    dtype: floating dtype of the result.

  Returns:
    The estimates (1 where k = 0, 0 where f < k or k > m).
  """
  failures = failures.astype(dtype)
  draws_f = draws.astype(dtype)
  out = jnp.ones(jnp.broadcast_shapes(failures.shape, draws.shape, power.shape), dtype)
  for i in range(width):
    factor = (failures - i) / jnp.maximum(draws_f - i, 1)
    out = out * jnp.where(i < power, factor, 1)
  return jnp.where(power <= draws, out, 0)


def _loo_terms(correct: Array, mask: Array, n: Array, dtype) -> tuple[Array, Array, Array]:
  """Per sample: (u_j = unbiased p^(N-1) from the others, b_j = others' mean correctness,
  N / m per row [B, 1])."""
  c, m, _ = _failure_rate(correct, mask, dtype)
  failures_others = (m - c)[:, None] - (mask & ~correct).astype(jnp.int32)
  others = jnp.maximum(m - 1, 0)[:, None]
  u = unbiased_power(failures_others, others, (n - 1)[:, None], mask.shape[-1], dtype)
  baseline = (others - failures_others).astype(dtype) / jnp.maximum(others, 1).astype(dtype)
  scale = n.astype(dtype)[:, None] / jnp.maximum(m, 1).astype(dtype)[:, None]
  return u, baseline, scale


def bon_rlb_weights(correct: Array, mask: Array, n: Array | int, estimator: str = "loo",
                    dtype=jnp.float32) -> Array:
  """Group-form BoN-RLB weights (see the module docstring for the three estimators).

  Args:
    correct: [B, N'] bool correctness of the group samples.
    mask: [B, N'] bool.
    n: target BoN size N, an int or [B] ints (per group).
    estimator: "loo", "plugin_minus" or "plugin_plus".
    dtype: floating dtype of the result.

  Returns:
    [B, N'] unclipped weights; 0 on masked samples and in groups without signal.
  """
  correct = correct & mask
  n = jnp.broadcast_to(jnp.asarray(n, jnp.int32), mask.shape[:1])
  if estimator == "loo":
    u, baseline, scale = _loo_terms(correct, mask, n, dtype)
    weights = scale * u * (correct.astype(dtype) - baseline)
    return jnp.where(mask, weights, 0)
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator={estimator!r}: must be one of {ESTIMATORS}")
  sign = 1.0 if estimator == "plugin_plus" else -1.0
  c, _, p_hat = _failure_rate(correct, mask, dtype)
  c_safe = jnp.maximum(c, 1).astype(dtype)
  n_f = n.astype(dtype)
  positive = n_f * p_hat ** (n_f - 1) / c_safe
  negative = sign * n_f * p_hat ** n_f / c_safe
  weights = jnp.where(correct, positive[:, None], jnp.where(mask, negative[:, None], 0))
  return jnp.where((c > 0)[:, None], weights, 0)


def bon_rlb_p_weights(correct: Array, mask: Array, n: Array | int, form: str = "loo",
                      dtype=jnp.float32) -> Array:
  """BoN-RLB(P) weights: positives only.

  Args:
    correct: [B, N'] bool.
    mask: [B, N'] bool.
    n: target BoN size N, an int or [B] ints.
    form: "loo" ((N / n') u_j on every correct sample, unbiased), "group_mean"
      ((N / n') p_hat^(N-1) on every correct sample) or "selected" (gbar+(p_hat) on the first
      correct sample, the BoN pick of a perfect verifier).
    dtype: floating dtype of the result.

  Returns:
    [B, N'] unclipped weights; 0 in groups with no correct sample.
  """
  correct = correct & mask
  n = jnp.broadcast_to(jnp.asarray(n, jnp.int32), mask.shape[:1])
  c, m, p_hat = _failure_rate(correct, mask, dtype)
  n_f = n.astype(dtype)
  if form == "loo":
    u, _, scale = _loo_terms(correct, mask, n, dtype)
    weights = jnp.where(correct, scale * u, 0)
  elif form == "group_mean":
    value = n_f * p_hat ** (n_f - 1) / jnp.maximum(m, 1).astype(dtype)
    weights = jnp.where(correct, value[:, None], 0)
  elif form == "selected":
    # gbar+ = N p^(N-1) / sum_{i<N} p^i, with a per-row N (sum over the static width).
    geometric = sum(jnp.where(i < n, p_hat ** i, 0) for i in range(mask.shape[-1]))
    g_bar = n_f * p_hat ** (n_f - 1) / jnp.maximum(geometric, 1e-30)
    pick = group_stats.first_argmax_onehot(correct.astype(dtype), correct)
    weights = jnp.where(pick, g_bar[:, None], 0)
  else:
    raise ValueError(f"form={form!r}: must be one of {RLBP_FORMS}")
  return jnp.where((c > 0)[:, None], weights, 0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNRLBConfig:
  """BoN-RLB (two-sided).

  Attributes:
    bon_n: target BoN size N; None means each group's number of valid samples.
    estimator: "loo" (unbiased, default), "plugin_minus" (the paper's printed form; ascends,
      biased up) or "plugin_plus" (descends pass@N for most p; kept for comparison).
    weight_clip: clip |w| to this value, or None. Clipping biases the estimator.
    correct_threshold: a sample is correct when its environment reward is >= this.
    kl_coef, kl_estimator, ppo_clip, length_normalize: as in RLConfig.
  """

  bon_n: int | None = None
  estimator: str = "loo"
  weight_clip: float | None = None
  correct_threshold: float = 1.0
  kl_coef: float = 0.0
  kl_estimator: str = "k1"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "bon_n", minimum=1, integer=True, allow_none=True)
    checks.check_choice(self, "estimator", ESTIMATORS)
    checks.check_number(self, "weight_clip", minimum=0.0, strict_minimum=True, allow_none=True)
    checks.check_number(self, "correct_threshold")
    checks.check_policy_gradient_options(self)

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"ref_logprobs"}) if self.kl_coef > 0 else frozenset()


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoNRLBPConfig:
  """BoN-RLB(P) (positives only; for settings without usable negatives).

  Attributes:
    bon_n: target BoN size N; None means each group's number of valid samples.
    form: "loo" (unbiased, default), "group_mean" or "selected" (biased low; see
      bon_rlb_p_weights).
    weight_clip: clip |w| to this value, or None. Clipping biases the estimator.
    correct_threshold: a sample is correct when its environment reward is >= this.
    kl_coef, kl_estimator, ppo_clip, length_normalize: as in RLConfig.
  """

  bon_n: int | None = None
  form: str = "loo"
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
  weights, clip_metrics = loss_terms.clip_weights(weights, inputs.mask, cfg.weight_clip)
  metrics.update(clip_metrics)
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
  weights = bon_rlb_weights(correct, inputs.mask, target_n(inputs.mask, cfg.bon_n),
                            cfg.estimator, inputs.logprobs.dtype)
  return _finish(inputs, weights, correct, cfg)


def bon_rlb_p(inputs: ObjectiveInputs, cfg: BoNRLBPConfig) -> tuple[Array, dict]:
  """BoN-RLB(P) loss."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "bon_rlb_p")
  inputs = sanitize(inputs)
  correct = group_stats.is_correct(inputs.rewards, inputs.mask, cfg.correct_threshold)
  weights = bon_rlb_p_weights(correct, inputs.mask, target_n(inputs.mask, cfg.bon_n), cfg.form,
                              inputs.logprobs.dtype)
  return _finish(inputs, weights, correct, cfg)

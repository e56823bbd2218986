"""BOND and J-BOND (Sessa et al., algorithms.md section 5): match the policy to Best-of-N of a
reference with the Jeffreys divergence

  D = (1 - beta) KL(pi_bon || pi) + beta KL(pi || pi_bon),

  pi_bon(y) = pi_ref(y) p_<=(y)^(N-1) sum_{i=1..N} (p_<(y) / p_<=(y))^(i-1)   (index tie rule, T2).

* forward KL: gradient -E_{pi_bon}[grad log pi] = SFT on a Best-of-N sample of the reference
  (passed as the expert: `expert_logprobs` = log pi_theta of that sample);
* backward KL: policy gradient with reward log pi_bon - log pi_ref
  = (N - 1) log p_hat_<= (+ log of the tie-correction sum) and KL(pi || pi_ref) with weight 1
  (k1 score-function weights: exact). The reward depends on scores only through quantiles, so
  it is invariant to the reward model's scale.

p_<= and p_< are estimated from the M reference scores per prompt (same smoothing options as
vBoN). With the "plain" CDF, an exact sample of the reference and the tie correction, the
estimator's expectation is the exact gradient of D.

J-BOND is the iterative form: Best-of-2 of an exponential-moving-average anchor policy. Choices
made where the description is unverified: the backward reward is the tie-corrected Best-of-2 log
ratio with p_hat estimated from the M anchor-sample scores in `ref_scores` (not only two), the KL
is to the anchor (`anchor_logprobs`) with weight 1, the forward term is SFT on a Best-of-2 anchor
sample, beta defaults to 0.5, and the anchor update is `ema_anchor_update` (run by the training
loop, not by the loss).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize
from bonjax.objectives.rl import loo_advantages

Array = jax.Array

MODES = ("forward", "backward", "jeffreys")


@dataclasses.dataclass(frozen=True, kw_only=True)
class BONDConfig:
  """BOND distillation of Best-of-N of pi_ref.

  Attributes:
    bon_n: N (>= 1).
    mode: "forward", "backward" or "jeffreys".
    beta: weight of the backward KL in "jeffreys" ((1 - beta) forward + beta backward).
    cdf: "add_one" or "plain" quantile estimates (see vbon).
    tie_correction: include the log of the tie-correction sum in the backward reward.
    baseline: "loo" or "none" for the backward reward.
    ppo_clip: PPO clip epsilon, or None.
    length_normalize: divide each sample's surrogate by its token count.
  """

  bon_n: int = 8
  mode: str = "jeffreys"
  beta: float = 0.5
  cdf: str = "add_one"
  tie_correction: bool = True
  baseline: str = "loo"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "bon_n", minimum=1, integer=True)
    checks.check_choice(self, "mode", MODES)
    checks.check_number(self, "beta", minimum=0.0, maximum=1.0)
    checks.check_choice(self, "cdf", checks.CDF_KINDS)
    checks.check_choice(self, "baseline", checks.BASELINES)
    checks.check_policy_gradient_options(self)

  def mixture(self) -> tuple[float, float]:
    """(forward weight, backward weight)."""
    return {"forward": (1.0, 0.0), "backward": (0.0, 1.0),
            "jeffreys": (1.0 - self.beta, self.beta)}[self.mode]

  def required_inputs(self) -> frozenset[str]:
    forward, backward = self.mixture()
    needed = set()
    if forward > 0:
      needed.add("expert_logprobs")
    if backward > 0:
      needed.update({"ref_scores", "ref_logprobs"})
    return frozenset(needed)


def bond_log_ratio(scores: Array, ref_scores: Array, ref_mask: Array | None, *, n: int,
                   cdf: str = "add_one", tie_correction: bool = True) -> Array:
  """Estimated `log pi_bon(y) - log pi_ref(y)` from reference quantiles.

  `(N - 1) log p_<= + log sum_{i=0..N-1} (p_< / p_<=)^i`; without ties the sum is N.

  Args:
    scores: [B, N'] scores of the policy samples.
    ref_scores: [B, M] reference scores.
    ref_mask: [B, M] bool or None.
    n: BoN size N.
    cdf: "add_one" or "plain".
    tie_correction: include the tie-correction sum.

  Returns:
    [B, N'] log-ratios.
  """
  num_refs = group_stats.num_references(ref_scores, ref_mask)
  p_le = group_stats.empirical_cdf(scores, ref_scores, ref_mask, strict=False, cdf=cdf)
  log_le = group_stats.floored_log_cdf(p_le, num_refs)
  out = (n - 1) * log_le
  if tie_correction:
    p_lt = group_stats.empirical_cdf(scores, ref_scores, ref_mask, strict=True, cdf=cdf)
    log_ratio = jnp.log(p_lt) - log_le  # <= 0; -inf when p_< = 0
    powers = jnp.arange(n, dtype=scores.dtype)
    terms = jnp.where(powers > 0, powers * log_ratio[..., None], 0)  # 0 * log 0 = 0
    out = out + jax.nn.logsumexp(terms, axis=-1)
  return out


def _bond_loss(inputs: ObjectiveInputs, cfg: BONDConfig, name: str) -> tuple[Array, dict]:
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), name)
  inputs = sanitize(inputs)
  mask = inputs.mask
  forward, backward = cfg.mixture()
  weights = jnp.zeros_like(inputs.logprobs)
  extra_w = None
  metrics = {}
  if backward > 0:
    rewards = bond_log_ratio(inputs.scores, inputs.ref_scores, inputs.ref_mask, n=cfg.bon_n,
                             cdf=cfg.cdf, tie_correction=cfg.tie_correction)
    rewards = jnp.where(mask, rewards, 0)
    count = jnp.maximum(group_stats.valid_counts(mask), 1)[:, None].astype(rewards.dtype)
    advantages = loo_advantages(rewards, mask) if cfg.baseline == "loo" else rewards
    weights = backward * advantages / count
    extra_w, _, kl_metrics = loss_terms.kl_regulariser(inputs, inputs.ref_logprobs, backward,
                                                       "k1")
    metrics.update(kl_metrics)
    metrics["bond_reward"] = loss_terms.mean_over_rows(loss_terms.group_mean(rewards, mask),
                                                       mask)
  loss, out = loss_terms.assemble(inputs, weights, extra_weights=extra_w,
                                  expert_weight=forward if forward > 0 else None,
                                  ppo_clip=cfg.ppo_clip, length_normalize=cfg.length_normalize,
                                  metrics=metrics)
  if backward == 0:
    # Pure forward KL is SFT: the expert is the only (weight-1) sample.
    out.update(loss_terms.weight_metrics(jnp.ones_like(inputs.logprobs[:, :1]),
                                         group_stats.row_valid(mask)[:, None]))
  return loss, out


def bond(inputs: ObjectiveInputs, cfg: BONDConfig) -> tuple[Array, dict]:
  """BOND loss (forward / backward / Jeffreys divergence to Best-of-N of pi_ref)."""
  return _bond_loss(inputs, cfg, "bond")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JBONDConfig:
  """J-BOND: Jeffreys divergence to Best-of-2 of the EMA anchor (iterative BOND).

  Attributes:
    beta: weight of the backward KL ((1 - beta) forward + beta backward).
    cdf: "add_one" or "plain" quantile estimates from the anchor-sample scores.
    tie_correction: include the tie-correction term in the backward reward.
    baseline: "loo" or "none".
    ppo_clip: PPO clip epsilon, or None.
    length_normalize: divide each sample's surrogate by its token count.
  """

  beta: float = 0.5
  cdf: str = "add_one"
  tie_correction: bool = True
  baseline: str = "loo"
  ppo_clip: float | None = None
  length_normalize: bool = False

  def validate(self) -> None:
    checks.check_number(self, "beta", minimum=0.0, maximum=1.0)
    checks.check_choice(self, "cdf", checks.CDF_KINDS)
    checks.check_choice(self, "baseline", checks.BASELINES)
    checks.check_policy_gradient_options(self)

  def as_bond(self) -> BONDConfig:
    return BONDConfig(bon_n=2, mode="jeffreys", beta=self.beta, cdf=self.cdf,
                      tie_correction=self.tie_correction, baseline=self.baseline,
                      ppo_clip=self.ppo_clip, length_normalize=self.length_normalize)

  def required_inputs(self) -> frozenset[str]:
    needed = set(self.as_bond().required_inputs()) - {"ref_logprobs"}
    if self.beta > 0:
      needed.add("anchor_logprobs")
    return frozenset(needed)


def j_bond(inputs: ObjectiveInputs, cfg: JBONDConfig) -> tuple[Array, dict]:
  """J-BOND loss: BOND with N = 2 against the anchor.

  Inputs: `anchor_logprobs` (log pi_anchor of the group samples), `ref_scores` (scores of
  samples drawn from the anchor), `expert_logprobs` (log pi_theta of a Best-of-2 anchor sample).
  """
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "j_bond")
  return _bond_loss(inputs.replace(ref_logprobs=inputs.anchor_logprobs), cfg.as_bond(),
                    "j_bond")


def ema_anchor_update(anchor_params: Any, params: Any, eta: float) -> Any:
  """J-BOND anchor step: `anchor <- (1 - eta) anchor + eta params`, leaf by leaf.

  Args:
    anchor_params: the anchor's parameter pytree.
    params: the policy's parameter pytree (same structure).
    eta: EMA rate in [0, 1] (the paper's value is not known; small values such as 0.01-0.05
      keep the anchor a slowly moving Best-of-2 target).

  Returns:
    The new anchor pytree.
  """
  if not 0.0 <= eta <= 1.0:
    raise ValueError(f"eta={eta}: must be in [0, 1]")
  return jax.tree.map(lambda a, p: (1.0 - eta) * a + eta * p, anchor_params, params)

"""The arrays every objective consumes: one group of N sampled responses per prompt.

Layout: B prompts, N samples per prompt (an explicit axis), M reference samples per prompt.
Only `logprobs` and `expert_logprobs` carry gradients; everything else is a constant.
"""

from __future__ import annotations

from typing import Iterable

from flax import struct
import jax
import jax.numpy as jnp

Array = jax.Array


@struct.dataclass
class ObjectiveInputs:
  """One training batch as seen by an objective.

  Attributes:
    logprobs: [B, N] sequence log pi_theta(y_bj | x_b) of each group sample (differentiable).
    sampler_logprobs: [B, N] log-prob under the policy that drew the sample (PPO ratios).
    rewards: [B, N] environment reward R (binary correctness or a continuous score).
    scores: [B, N] verifier / reward-model score r used to select among samples.
    mask: [B, N] bool, valid samples. A row without any valid sample is a padding row: it
      contributes nothing, its expert term included.
    num_tokens: [B, N] completion lengths (only used by `length_normalize` options).
    ref_logprobs: [B, N] log pi_ref(y_bj | x_b) of the group samples, or None.
    ref_scores: [B, M] reward-model scores of M samples drawn from pi_ref (vBoN, BOND), or None.
    ref_mask: [B, M] bool, valid reference scores; None means all valid.
    expert_logprobs: [B] log pi_theta(y_expert | x_b) (differentiable), or None.
    expert_scores: [B] verifier score of the expert response (BoN-SFT), or None.
    anchor_logprobs: [B, N] log pi_anchor(y_bj | x_b) under the J-BOND EMA anchor, or None.
  """

  logprobs: Array
  sampler_logprobs: Array
  rewards: Array
  scores: Array
  mask: Array
  num_tokens: Array
  ref_logprobs: Array | None = None
  ref_scores: Array | None = None
  ref_mask: Array | None = None
  expert_logprobs: Array | None = None
  expert_scores: Array | None = None
  anchor_logprobs: Array | None = None

  @classmethod
  def create(cls, logprobs: Array, rewards: Array, *, scores: Array | None = None,
             mask: Array | None = None, sampler_logprobs: Array | None = None,
             num_tokens: Array | None = None, **optional: Array | None) -> "ObjectiveInputs":
    """Builds inputs with the usual defaults filled in.

    Args:
      logprobs: [B, N] differentiable sequence log-probs.
      rewards: [B, N] environment rewards.
      scores: verifier scores; defaults to `rewards` (a perfect verifier).
      mask: valid samples; defaults to all True.
      sampler_logprobs: defaults to stop_gradient(logprobs) (on-policy samples).
      num_tokens: defaults to ones.
      **optional: any of the optional fields (ref_logprobs, ref_scores, ...).

    Returns:
      An ObjectiveInputs.
    """
    logprobs = jnp.asarray(logprobs)
    rewards = jnp.asarray(rewards, dtype=logprobs.dtype)
    return cls(
        logprobs=logprobs,
        sampler_logprobs=(jax.lax.stop_gradient(logprobs) if sampler_logprobs is None
                          else jnp.asarray(sampler_logprobs)),
        rewards=rewards,
        scores=rewards if scores is None else jnp.asarray(scores, dtype=logprobs.dtype),
        mask=(jnp.ones(logprobs.shape, bool) if mask is None
              else jnp.asarray(mask, dtype=bool)),
        num_tokens=(jnp.ones(logprobs.shape, logprobs.dtype) if num_tokens is None
                    else jnp.asarray(num_tokens)),
        **{k: (None if v is None else jnp.asarray(v)) for k, v in optional.items()})

  @property
  def group_size(self) -> int:
    """The static N (samples per prompt, padding slots included)."""
    return self.logprobs.shape[-1]


def require_inputs(inputs: ObjectiveInputs, names: Iterable[str], objective: str) -> None:
  """Fails at trace time when an input the objective needs is missing or mis-shaped.

  Args:
    inputs: the batch.
    names: field names that must not be None.
    objective: objective name, for the message.

  Raises:
    ValueError: naming the objective, the field and the rule.
  """
  batch, group = inputs.logprobs.shape
  expected = {"ref_logprobs": (batch, group), "anchor_logprobs": (batch, group),
              "expert_logprobs": (batch,), "expert_scores": (batch,)}
  for name in sorted(names):
    value = getattr(inputs, name)
    if value is None:
      raise ValueError(f"objective {objective!r}: inputs.{name} is None; this configuration "
                       f"needs it")
    if name in expected and value.shape != expected[name]:
      raise ValueError(f"objective {objective!r}: inputs.{name} has shape {value.shape}; must "
                       f"be {expected[name]}")
    if name == "ref_scores" and (value.ndim != 2 or value.shape[0] != batch):
      raise ValueError(f"objective {objective!r}: inputs.ref_scores has shape {value.shape}; "
                       f"must be ({batch}, M)")
  for name in ("sampler_logprobs", "rewards", "scores", "mask", "num_tokens"):
    if getattr(inputs, name).shape != (batch, group):
      raise ValueError(f"objective {objective!r}: inputs.{name} has shape "
                       f"{getattr(inputs, name).shape}; must be {(batch, group)}")


def sanitize(inputs: ObjectiveInputs) -> ObjectiveInputs:
  """Zeroes every per-sample value in masked slots (and the expert of padding rows).

  Padding slots may hold anything (-inf log-probs, NaN rewards). Replacing them before any
  arithmetic keeps both the loss and its gradient finite: a NaN that only enters through the
  unselected branch of a `where` still poisons the gradient.

  Args:
    inputs: the batch.

  Returns:
    The batch with masked entries replaced by zeros.
  """
  mask = inputs.mask
  row_valid = mask.any(axis=-1)

  def per_sample(x):
    return None if x is None else jnp.where(mask, x, jnp.zeros_like(x))

  def per_row(x):
    return None if x is None else jnp.where(row_valid, x, jnp.zeros_like(x))

  return inputs.replace(
      logprobs=per_sample(inputs.logprobs),
      sampler_logprobs=per_sample(inputs.sampler_logprobs),
      rewards=per_sample(inputs.rewards),
      scores=per_sample(inputs.scores),
      num_tokens=per_sample(inputs.num_tokens),
      ref_logprobs=per_sample(inputs.ref_logprobs),
      anchor_logprobs=per_sample(inputs.anchor_logprobs),
      expert_logprobs=per_row(inputs.expert_logprobs),
      expert_scores=per_row(inputs.expert_scores))


def target_n(mask: Array, bon_n: int | None) -> Array:
  """The BoN size N of every group: `bon_n`, or (None) the number of VALID samples of the group.

  Padding slots are not samples: a group of 5 real samples padded to width 8 targets N = 5, so
  it yields the same loss and gradient as the unpadded group.

  Args:
    mask: [B, N'] bool valid samples.
    bon_n: a fixed N, or None.

  Returns:
    [B] int32 (0 for padding rows when bon_n is None).
  """
  if bon_n is None:
    return mask.sum(axis=-1).astype(jnp.int32)
  return jnp.full(mask.shape[:1], bon_n, jnp.int32)

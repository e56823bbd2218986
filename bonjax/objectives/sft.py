"""Supervised baselines: SFT on an expert response, SFT on the BoN-selected sample, and
rejection-sampling fine-tuning (SFT on every correct sample)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bonjax.objectives import checks, group_stats, loss_terms
from bonjax.objectives.inputs import ObjectiveInputs, require_inputs, sanitize

Array = jax.Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTConfig:
  """Plain SFT (the N' = 1 baseline): maximise log pi(y_expert | x). No options."""

  def validate(self) -> None:
    pass

  def required_inputs(self) -> frozenset[str]:
    return frozenset({"expert_logprobs"})


# How `supervised_nll` averages: the denominator from (row mask [B], target tokens [B]).
NLL_NORMALIZERS = {
    "token": lambda rows, tokens: jnp.where(rows, tokens, 0).sum(),
    "sequence": lambda rows, tokens: rows.sum(),
}


def supervised_nll(seq_logprobs: Array, rows: Array, num_tokens: Array | None,
                   normalize: str) -> Array:
  """Negative log-likelihood of target responses, per target token or per sequence.

  Args:
    seq_logprobs: [B] log pi(y_b | x_b), summed over each target's tokens.
    rows: [B] bool, the real (non-padding) rows.
    num_tokens: [B] target tokens per row (read by "token" only; may be None otherwise).
    normalize: "token" (`-sum_b log pi / #target tokens`, the teacher-forcing loss of
      `algorithm="sft"`) or "sequence" (`-mean_b log pi`, the `sft` objective).

  Returns:
    The scalar loss (0 when nothing is a target).
  """
  if normalize not in NLL_NORMALIZERS:
    raise ValueError(f"normalize={normalize!r}: must be one of {tuple(NLL_NORMALIZERS)}")
  total = -jnp.where(rows, seq_logprobs, 0).sum()
  count = jnp.maximum(NLL_NORMALIZERS[normalize](rows, num_tokens), 1)
  return total / count.astype(total.dtype)


def sft(inputs: ObjectiveInputs, cfg: SFTConfig) -> tuple[Array, dict]:
  """Loss `-mean_b log pi(y_expert_b | x_b)` (`supervised_nll` per sequence).

  Rows without any valid group sample are padding and are skipped (for a pure SFT batch, pass
  a [B, 1] mask that is True on real rows).
  """
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "sft")
  inputs = sanitize(inputs)
  rows = group_stats.row_valid(inputs.mask)
  loss = supervised_nll(inputs.expert_logprobs, rows, None, "sequence")
  # The expert is the signal here; report it as a weight-1 sample per valid row.
  metrics = loss_terms.weight_metrics(jnp.ones_like(inputs.logprobs[:, :1]), rows[:, None])
  metrics["loss"] = jax.lax.stop_gradient(loss)
  return loss, metrics


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTBestOfNConfig:
  """SFT on the BoN pick of the group (reviewers' "SFT on the best of N samples" baseline).

  Attributes:
    selection: which score picks the sample: "verifier" (scores) or "env" (rewards).
  """

  selection: str = "verifier"

  def validate(self) -> None:
    checks.check_choice(self, "selection", checks.SIGNALS)

  def required_inputs(self) -> frozenset[str]:
    return frozenset()


def sft_best_of_n_weights(selection_scores: Array, mask: Array) -> Array:
  """Weight 1 on the first maximiser of the selection score, 0 elsewhere.

  In expectation over the group this is SFT toward the (fixed) BoN distribution of the
  current policy: `E[grad] = sum_y P_bon(y) grad log pi(y)` with P_bon of algorithms.md T2.

  Returns:
    [B, N] weights.
  """
  return group_stats.first_argmax_onehot(selection_scores, mask).astype(selection_scores.dtype)


def sft_best_of_n(inputs: ObjectiveInputs, cfg: SFTBestOfNConfig) -> tuple[Array, dict]:
  """Loss `-mean_b log pi(y_{b, i*})`, `i* = argmax_j score_bj` (first index on ties)."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "sft_best_of_n")
  inputs = sanitize(inputs)
  weights = sft_best_of_n_weights(group_stats.select_signal(inputs, cfg.selection), inputs.mask)
  return loss_terms.assemble(inputs, weights)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RFTConfig:
  """Rejection-sampling fine-tuning: SFT on the correct samples of the group.

  Attributes:
    correct_threshold: a sample is correct when its environment reward is >= this.
    normalize: "group" divides by the group size n (then the expected gradient is exactly
      grad P_pi(correct), i.e. REINFORCE on the 0/1 reward without baseline); "correct" divides
      by the number of correct samples c (the usual filtered-SFT average; its expectation is
      `(1 - p^n) / s * grad s`, s = P(correct), p = 1 - s: same direction, rescaled per prompt).
  """

  correct_threshold: float = 1.0
  normalize: str = "group"

  def validate(self) -> None:
    checks.check_number(self, "correct_threshold")
    checks.check_choice(self, "normalize", ("group", "correct"))

  def required_inputs(self) -> frozenset[str]:
    return frozenset()


def rft_weights(correct: Array, mask: Array, normalize: str, dtype=jnp.float32) -> Array:
  """Weights of RFT: `1{correct} / n` ("group") or `1{correct} / c` ("correct").

  Args:
    correct: [B, N] bool.
    mask: [B, N] bool.
    normalize: "group" or "correct".
    dtype: floating dtype of the result.

  Returns:
    [B, N] weights, 0 in groups without a correct sample.
  """
  correct = correct & mask
  if normalize == "group":
    denom = group_stats.valid_counts(mask)
  else:
    denom = group_stats.valid_counts(correct)
  denom = jnp.maximum(denom, 1)[:, None].astype(dtype)
  return correct.astype(dtype) / denom


def rft(inputs: ObjectiveInputs, cfg: RFTConfig) -> tuple[Array, dict]:
  """Loss `-mean_b sum_j w_bj log pi(y_bj)` with the RFT weights."""
  cfg.validate()
  require_inputs(inputs, cfg.required_inputs(), "rft")
  inputs = sanitize(inputs)
  correct = group_stats.is_correct(inputs.rewards, inputs.mask, cfg.correct_threshold)
  weights = rft_weights(correct, inputs.mask, cfg.normalize, inputs.logprobs.dtype)
  return loss_terms.assemble(inputs, weights)

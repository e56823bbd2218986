"""Supervised fine-tuning loss: mean negative log-likelihood of the completion tokens."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bonjax.models import transformer
from bonjax.models.config import ModelConfig


def sft_loss(params: Any, batch: dict[str, jax.Array], rng: jax.Array, *,
             model_cfg: ModelConfig, compute_dtype: Any = jnp.float32
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Token-averaged NLL over `batch["target_mask"]` (prompt and padding are not scored).

  Args:
    params: model parameters.
    batch: `tokens` int32 [B, T], `valid` bool [B, T], `target_mask` bool [B, T] (see
      `bonjax.data.batching.encode_supervised`).
    rng: unused (SFT draws nothing); part of the common loss signature.
    model_cfg: architecture.
    compute_dtype: activation dtype.

  Returns:
    (loss, metrics) with `token_nll`, `sequence_nll` and `target_tokens`.
  """
  del rng
  seq_logp, _ = transformer.sequence_logprobs(params, model_cfg, batch["tokens"], batch["valid"],
                                              batch["target_mask"], compute_dtype=compute_dtype)
  num_targets = jnp.maximum(batch["target_mask"].sum(), 1)
  loss = -seq_logp.sum() / num_targets
  return loss, {"token_nll": loss, "sequence_nll": -seq_logp.mean(),
                "target_tokens": num_targets.astype(jnp.float32)}

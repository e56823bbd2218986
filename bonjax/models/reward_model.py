"""The outcome reward model (ORM) network: the transformer with a scalar correctness head.

It reads [prompt | completion + EOS] (`bonjax.data.batching.encode_pairs`) and predicts, from
the final-norm hidden state of the last real token, the logit of P(the completion is correct).
Training lives in `bonjax.training.reward_model`; scoring, saving and loading as a verifier in
`bonjax.training.learned_verifier`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from bonjax.models import transformer
from bonjax.models.config import ModelConfig
from bonjax.models.logprobs import token_logprobs

Params = Any


def init_head(cfg: ModelConfig) -> Params:
  """A zero scalar head: the untrained ORM predicts 0.5 for everything.

  `w` reads the final hidden state; `likelihood` weighs the backbone's own mean log-probability
  of the completion tokens, so the ORM can start from the generator's confidence (the policy's
  likely answers are more often right: maj@k > pass@1) and learn how much to trust it.
  """
  return {"w": jnp.zeros((cfg.d_model,), jnp.float32), "b": jnp.zeros((), jnp.float32),
          "likelihood": jnp.zeros((), jnp.float32)}


def init_reward_model(backbone: Params, cfg: ModelConfig) -> Params:
  """ORM parameters from a backbone (usually the policy whose samples it will judge)."""
  return {"backbone": backbone, "head": init_head(cfg)}


def orm_logits(params: Params, cfg: ModelConfig, tokens: jax.Array, valid: jax.Array,
               target_mask: jax.Array, compute_dtype: Any = jnp.float32) -> jax.Array:
  """Correctness logits [B]: the head on the hidden state of each row's last real token, plus
  `likelihood` x the backbone's mean log-probability of the completion tokens.

  Args:
    params: {"backbone": transformer params, "head": see `init_head`}.
    cfg: the backbone's architecture.
    tokens: int32 [B, T] from `encode_pairs`.
    valid: bool [B, T].
    target_mask: bool [B, T] completion tokens.
    compute_dtype: activation dtype of the backbone.
  """
  backbone, head = params["backbone"], params["head"]
  h = transformer.hidden_states(backbone, cfg, tokens, transformer.positions_from_valid(valid),
                                valid, compute_dtype=compute_dtype)
  last = valid.shape[1] - 1 - jnp.argmax(valid[:, ::-1], axis=1)
  h_last = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0].astype(jnp.float32)
  # Position t is predicted by the hidden state at t - 1 (vocabulary chunked, never [B, T, V]).
  token_logp = jnp.where(target_mask[:, 1:],
                         token_logprobs(backbone, cfg, h[:, :-1], tokens[:, 1:]), 0.0)
  mean_logp = token_logp.sum(-1) / jnp.maximum(target_mask[:, 1:].sum(-1), 1)
  # HIGHEST: float32, not TF32, on GPUs.
  return (jnp.matmul(h_last, head["w"], precision=jax.lax.Precision.HIGHEST) + head["b"]
          + head["likelihood"] * mean_logp)


def orm_loss(params: Params, cfg: ModelConfig, batch: dict[str, jax.Array],
             compute_dtype: Any = jnp.float32) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean binary cross-entropy of the ORM on a batch of labelled pairs.

  Args:
    params: ORM parameters.
    cfg: backbone architecture.
    batch: `tokens`, `valid`, `target_mask` (from `encode_pairs`), `labels` float [B] in {0, 1}.
    compute_dtype: activation dtype.

  Returns:
    (loss, metrics with `loss` and `accuracy` at threshold 0.5).
  """
  logits = orm_logits(params, cfg, batch["tokens"], batch["valid"], batch["target_mask"],
                      compute_dtype)
  loss = optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()
  accuracy = ((logits > 0) == (batch["labels"] > 0.5)).mean()
  return loss, {"loss": loss, "accuracy": accuracy}

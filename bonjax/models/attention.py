"""Grouped-query attention: one softmax rule shared by the full forward pass and decoding.

Queries are grouped as [..., kv_heads, group, head_dim] with group = num_heads // num_kv_heads,
so each key/value head is read once for all the query heads that share it. Attention logits,
soft-capping, masking and the softmax run in float32; the two matmuls take the compute dtype
with float32 accumulation.

Decoding attends to two key sets at once (the prompt cache kept once per prompt, and the
per-sample completion cache, which already holds the token being decoded); `joint_softmax`
normalises across both, so the result equals attention over their concatenation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from bonjax.models import layers
from bonjax.models.config import ModelConfig

# Finite, so a query with no visible key (a padding query) gets a uniform, finite distribution
# instead of NaN; such rows are never read by a valid position.
_MASKED_LOGIT = -1e30


def query_scale(cfg: ModelConfig) -> float:
  """Multiplier of q.k: cfg.query_scale, or head_dim ** -0.5."""
  return cfg.query_scale if cfg.query_scale is not None else cfg.head_dim**-0.5


def group_queries(q: jax.Array, cfg: ModelConfig) -> jax.Array:
  """[..., num_heads, head_dim] -> [..., kv_heads, group, head_dim]."""
  group = cfg.num_heads // cfg.num_kv_heads
  return q.reshape(*q.shape[:-2], cfg.num_kv_heads, group, cfg.head_dim)


def attention_logits(spec: str, q: jax.Array, k: jax.Array, cfg: ModelConfig) -> jax.Array:
  """Scaled, soft-capped q.k logits in float32 for an einsum `spec`."""
  logits = layers.dense(q, k, spec) * query_scale(cfg)
  return layers.soft_cap(logits, cfg.attn_softcap)


def joint_softmax(logits_and_masks: Sequence[tuple[jax.Array, jax.Array]]) -> list[jax.Array]:
  """Softmax over the concatenated last axes of several logit blocks.

  Args:
    logits_and_masks: (logits [..., S_i] float32, mask broadcastable to it) pairs; masked
      entries get zero probability.

  Returns:
    The probabilities, split back into blocks of the same shapes as the logits.
  """
  masked = [jnp.where(mask, logits, _MASKED_LOGIT) for logits, mask in logits_and_masks]
  sizes = [m.shape[-1] for m in masked]
  probs = jax.nn.softmax(jnp.concatenate(masked, axis=-1), axis=-1)
  splits = [sum(sizes[:i]) for i in range(1, len(sizes))]
  return jnp.split(probs, splits, axis=-1)


def full_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                   cfg: ModelConfig) -> jax.Array:
  """Attention of every query position over every key position under `mask`.

  Args:
    q: [B, T, num_heads, head_dim].
    k: [B, S, kv_heads, head_dim].
    v: [B, S, kv_heads, head_dim].
    mask: [B, T, S] bool, True where query t may attend to key s.
    cfg: model configuration (cfg.attention_impl picks the implementation).

  Returns:
    [B, T, num_heads, head_dim] in q's dtype.
  """
  return ATTENTION_IMPLS[cfg.attention_impl](q, k, v, mask, cfg)


def _xla_attention(q, k, v, mask, cfg):
  qg = group_queries(q, cfg)
  logits = attention_logits("btkgd,bskd->btkgs", qg, k, cfg)
  (probs,) = joint_softmax([(logits, mask[:, :, None, None, :])])
  out = layers.dense(probs.astype(q.dtype), v, "btkgs,bskd->btkgd")
  return out.reshape(q.shape).astype(q.dtype)


def _cudnn_attention(q, k, v, mask, cfg):
  # cuDNN's fused kernel (bfloat16 / float16 on NVIDIA GPUs; no logit soft-capping). A query
  # with no visible key (padding) is let see itself, so the kernel never normalises an empty
  # row; rows of real tokens always see themselves already, so their result is unchanged.
  t, s = mask.shape[-2:]
  mask = mask | jnp.eye(t, s, dtype=bool)[None]
  out = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], scale=query_scale(cfg),
                                     implementation="cudnn")
  return out.astype(q.dtype)


# model.attention_impl -> implementation of `full_attention` (the cached decoding step always
# uses `decode_attention`).
ATTENTION_IMPLS: dict[str, Callable[..., jax.Array]] = {
    "xla": _xla_attention,
    "cudnn": _cudnn_attention,
}


def attention_impl_problems(cfg: ModelConfig, backend: str, compute_dtype: str) -> list[str]:
  """Why cfg.attention_impl cannot run here (empty when it can)."""
  if cfg.attention_impl != "cudnn":
    return []
  problems = []
  if backend != "gpu":
    problems.append(f"model.attention_impl='cudnn': the cuDNN fused attention kernel runs only on "
                    f"NVIDIA GPUs, this backend is {backend!r}; use 'xla'")
  if compute_dtype != "bfloat16":
    problems.append(f"model.attention_impl='cudnn': needs model.compute_dtype='bfloat16' (cuDNN "
                    f"has no float32 kernel), not {compute_dtype!r}")
  if cfg.attn_softcap is not None:
    problems.append(f"model.attention_impl='cudnn': preset {cfg.family!r} soft-caps attention "
                    f"logits (attn_softcap={cfg.attn_softcap}), which the cuDNN kernel cannot; "
                    "use 'xla'")
  return problems


def decode_attention(q: jax.Array, prompt_kv: tuple[jax.Array, jax.Array], prompt_mask: jax.Array,
                     past_kv: tuple[jax.Array, jax.Array], past_mask: jax.Array,
                     cfg: ModelConfig) -> jax.Array:
  """Attention of one new token per sample over the prompt cache and the completion cache.

  The prompt cache has no sample axis: the N samples of a prompt read it once, as one matmul
  whose rows are their N * group queries.

  Args:
    q: [B, N, num_heads, head_dim] queries of the token being decoded.
    prompt_kv: K [B, kv_heads, head_dim, P] (transposed), V [B, kv_heads, P, head_dim].
    prompt_mask: [B, N, P] bool, visible prompt keys.
    past_kv: K [B, N, kv_heads, head_dim, L] (transposed), V [B, N, kv_heads, L, head_dim],
      with the token's own key and value already written.
    past_mask: [B or 1, N or 1, L] bool, visible completion keys (the token's own included).
    cfg: model configuration.

  Returns:
    [B, N, num_heads, head_dim] in q's dtype.
  """
  batch, samples = q.shape[:2]
  kv_heads, group = cfg.num_kv_heads, cfg.num_heads // cfg.num_kv_heads
  dtype = q.dtype
  qg = group_queries(q, cfg)  # [B, N, K, G, Dh]
  prompt_k, prompt_v = prompt_kv
  past_k, past_v = past_kv
  # The prompt matmuls take the N * G queries of a KV head as the rows of one GEMM. (Written
  # with [B, K] leading batch axes: XLA's CPU runtime has no bf16 x bf16 -> f32 kernel for the
  # equivalent "bnkgd,bkdp" contraction.)
  prompt_rows = jnp.transpose(qg, (0, 2, 1, 3, 4)).reshape(batch, kv_heads, samples * group, -1)
  prompt_logits = attention_logits("bkmd,bkdp->bkmp", prompt_rows, prompt_k, cfg)
  prompt_logits = jnp.transpose(
      prompt_logits.reshape(batch, kv_heads, samples, group, -1), (0, 2, 1, 3, 4))
  past_logits = attention_logits("bnkgd,bnkdl->bnkgl", qg, past_k, cfg)
  prompt_probs, past_probs = joint_softmax([
      (prompt_logits, prompt_mask[:, :, None, None, :]),
      (past_logits, past_mask[:, :, None, None, :]),
  ])
  prompt_probs = jnp.transpose(prompt_probs.astype(dtype), (0, 2, 1, 3, 4)).reshape(
      batch, kv_heads, samples * group, -1)
  prompt_out = layers.dense(prompt_probs, prompt_v, "bkmp,bkpd->bkmd")
  prompt_out = jnp.transpose(prompt_out.reshape(batch, kv_heads, samples, group, -1),
                             (0, 2, 1, 3, 4))
  past_out = layers.dense(past_probs.astype(dtype), past_v, "bnkgl,bnkld->bnkgd")
  return (prompt_out + past_out).reshape(q.shape).astype(dtype)

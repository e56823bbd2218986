"""Key/value caches and the cached decoding step.

Decoding N samples per prompt keeps two caches:

  PromptCache      once per prompt:  K [layers, B, kv_heads, head_dim, P]
                                     V [layers, B, kv_heads, P, head_dim]
  CompletionCache  once per sample:  K [layers, B, N, kv_heads, head_dim, L]
                                     V [layers, B, N, kv_heads, L, head_dim]

The prompt is prefilled once and its cache is never copied to the N samples: every decoding
step reads it once per prompt for all N samples (see `attention.decode_attention`), instead of
N times from a broadcast copy. Keys are stored transposed (head_dim before time) so the score
matmul q.K is a plain [rows, head_dim] x [head_dim, time] GEMM.

A decoding step runs the blocks as a scan over layers with both caches as read-only scanned
inputs; the token's own key and value are attended to directly and written into the completion
cache once, for all layers, after the scan. The caches are fixed-size (static shapes); inside a
jit-compiled decoding loop the completion cache is a loop carry, which XLA updates in place.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from bonjax.models import attention
from bonjax.models import transformer
from bonjax.models.config import ModelConfig

Params = transformer.Params


@flax.struct.dataclass
class PromptCache:
  """Keys and values of the prompts, one entry per prompt (no sample axis).

  Attributes:
    k: [layers, B, kv_heads, head_dim, P] keys (after q/k norm and rotary), transposed.
    v: [layers, B, kv_heads, P, head_dim] values.
    positions: [B, P] int32 positions of the prompt tokens.
    valid: [B, P] bool, real prompt tokens.
    lengths: [B] int32 number of real prompt tokens, i.e. the position of the first
      completion token.
  """

  k: jax.Array
  v: jax.Array
  positions: jax.Array
  valid: jax.Array
  lengths: jax.Array


@flax.struct.dataclass
class CompletionCache:
  """Keys and values of generated tokens, per sample.

  Attributes:
    k: [layers, B, N, kv_heads, head_dim, L] keys, transposed.
    v: [layers, B, N, kv_heads, L, head_dim] values.
  """

  k: jax.Array
  v: jax.Array


def prefill(params: Params, cfg: ModelConfig, tokens: jax.Array, valid: jax.Array, *,
            compute_dtype: Any = jnp.float32) -> tuple[jax.Array, PromptCache]:
  """Runs the prompts once and keeps their keys and values.

  Args:
    params: model params.
    cfg: model configuration.
    tokens: [B, P] int32 prompts, LEFT-padded so every prompt ends at index P - 1.
    valid: [B, P] bool real prompt tokens (each row needs at least one).
    compute_dtype: matmul input and cache dtype.

  Returns:
    (final hidden state of the last prompt token [B, D], the prompt cache).
  """
  positions = transformer.positions_from_valid(valid)
  h, (k, v) = transformer.transformer_forward(params, cfg, tokens, positions, valid,
                                              compute_dtype=compute_dtype, return_kv=True)
  cache = PromptCache(k=jnp.transpose(k, (0, 1, 3, 4, 2)), v=jnp.transpose(v, (0, 1, 3, 2, 4)),
                      positions=positions, valid=valid,
                      lengths=jnp.sum(valid, axis=-1, dtype=jnp.int32))
  return h[:, -1], cache


def init_completion_cache(cfg: ModelConfig, batch: int, num_samples: int, max_len: int,
                          dtype: Any = jnp.float32) -> CompletionCache:
  """An empty (zero) completion cache for `num_samples` samples of `batch` prompts."""
  lead = (cfg.num_layers, batch, num_samples, cfg.num_kv_heads)
  return CompletionCache(k=jnp.zeros(lead + (cfg.head_dim, max_len), dtype),
                         v=jnp.zeros(lead + (max_len, cfg.head_dim), dtype))


def decode_step(params: Params, cfg: ModelConfig, prompt_cache: PromptCache,
                completion_cache: CompletionCache, tokens: jax.Array, index: jax.Array, *,
                compute_dtype: Any = jnp.float32) -> tuple[jax.Array, CompletionCache]:
  """Runs one completion token per sample through the model, using and extending the caches.

  Args:
    params: model params (pre-cast with `transformer.cast_params` inside a loop).
    cfg: model configuration.
    prompt_cache: from `prefill`.
    completion_cache: holds completion tokens 0 .. index - 1 of every sample.
    tokens: [B, N] int32 completion token `index` of every sample.
    index: int32 scalar, the token's slot in the completion (position = prompt length + index).
    compute_dtype: matmul input dtype (the caches' dtype).

  Returns:
    (final hidden states [B, N, D] in compute_dtype, the cache with slot `index` written).
  """
  positions = jnp.broadcast_to(prompt_cache.lengths[:, None] + index, tokens.shape)
  prompt_distance = positions[:, :, None] - prompt_cache.positions[:, None, :]  # [B, N, P]
  slots = jnp.arange(completion_cache.k.shape[-1])
  past_distance = (index - slots)[None, None, :]  # [1, 1, L]

  def one_layer(x, scanned):
    lp, table, prompt_k, prompt_v, past_k, past_v = scanned
    window = table["window"]
    q, k, v = transformer.layer_qkv(lp, cfg, x, positions, table["inv_freq"], compute_dtype)
    prompt_mask = prompt_cache.valid[:, None, :] & (prompt_distance < window)
    past_mask = (past_distance > 0) & (past_distance < window)
    attn = attention.decode_attention(q, (prompt_k, prompt_v), prompt_mask, (past_k, past_v),
                                      past_mask, (k, v), cfg)
    x = transformer.layer_attention_residual(lp, cfg, x, attn)
    x = transformer.layer_mlp_residual(lp, cfg, x, compute_dtype)
    return x, (k, v)

  x = transformer.embed_tokens(params, cfg, tokens, compute_dtype)
  scanned = (params["layers"], transformer.layer_tables(cfg), prompt_cache.k, prompt_cache.v,
             completion_cache.k, completion_cache.v)
  x, (new_k, new_v) = jax.lax.scan(one_layer, x, scanned)
  zero = jnp.zeros((), jnp.int32)
  index = jnp.asarray(index, jnp.int32)
  cache = CompletionCache(
      k=jax.lax.dynamic_update_slice(completion_cache.k, new_k[..., None].astype(
          completion_cache.k.dtype), (zero,) * 5 + (index,)),
      v=jax.lax.dynamic_update_slice(completion_cache.v, new_v[..., None, :].astype(
          completion_cache.v.dtype), (zero,) * 4 + (index, zero)))
  h = transformer.final_norm(params, cfg, x, compute_dtype)
  return h, cache

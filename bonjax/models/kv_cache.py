"""Key/value caches and the cached decoding step.

Decoding N samples per prompt keeps two caches, one buffer per layer:

  PromptCache      once per prompt:  K [B, kv_heads, head_dim, P] per layer
                                     V [B, kv_heads, P, head_dim] per layer
  CompletionCache  once per sample:  K [B, N, kv_heads, head_dim, L] per layer
                                     V [B, N, kv_heads, L, head_dim] per layer

The prompt is prefilled once and its cache is never copied to the N samples: every decoding
step reads it once per prompt for all N samples (see `attention.decode_attention`), instead of
N times from a broadcast copy. Keys are stored transposed (head_dim before time) so the score
matmul q.K is a plain [rows, head_dim] x [head_dim, time] GEMM.

A decoding step runs the blocks unrolled over `decoding_params` (weights cast to the compute
dtype and split into one buffer per layer, once per sampler call; see `bonjax.models.transformer`
for why a loop should not read a stacked layout), writes the token's key and value into that
layer's completion cache and attends to both caches. The caches are fixed-size (static
shapes); inside a jit-compiled decoding loop they are loop carries, which XLA updates in place.
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
    k: per layer, [B, kv_heads, head_dim, P] keys (after q/k norm and rotary), transposed.
    v: per layer, [B, kv_heads, P, head_dim] values.
    positions: [B, P] int32 positions of the prompt tokens.
    valid: [B, P] bool, real prompt tokens.
    lengths: [B] int32 number of real prompt tokens, i.e. the position of the first
      completion token.
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]
  positions: jax.Array
  valid: jax.Array
  lengths: jax.Array


@flax.struct.dataclass
class CompletionCache:
  """Keys and values of generated tokens, per sample.

  Attributes:
    k: per layer, [B, N, kv_heads, head_dim, L] keys, transposed.
    v: per layer, [B, N, kv_heads, L, head_dim] values.
    Stored without the size-1 axes among (B, N, kv_heads) (see `_stored_lead`);
    `completion_kv` gives one layer's buffers in the shapes above.
  """

  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]


def _stored_lead(batch: int, num_samples: int, kv_heads: int) -> tuple[int, ...]:
  """Leading axes of the stored completion cache: (B, N, kv_heads) without the size-1 ones.

  Why: XLA:CPU canonicalises the attention matmul by dropping size-1 axes; a cache buffer
  stored with them needs a reshape between its in-place update and the matmul, and XLA then
  duplicates the update into both shapes and copies the whole cache every step (measured:
  SmolLM2 at B=1 copied each layer's cache three times per step). Stored without them, the
  matmul reads the updated buffer as it is.
  """
  return tuple(d for d in (batch, num_samples, kv_heads) if d != 1)


def _with_lead(x: jax.Array, lead: tuple[int, ...]) -> jax.Array:
  """A stored completion-cache buffer viewed with leading axes `lead` = (B, N, kv_heads)."""
  return x.reshape(tuple(lead) + x.shape[-2:])


def completion_kv(cache: CompletionCache, layer: int,
                  lead: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
  """One layer's keys [B, N, K, head_dim, L] and values [B, N, K, L, head_dim].

  Args:
    cache: the completion cache.
    layer: layer index.
    lead: (B, N, kv_heads).
  """
  return _with_lead(cache.k[layer], lead), _with_lead(cache.v[layer], lead)


def _write_slot(buffer: jax.Array, value: jax.Array, starts: tuple[jax.Array, ...]) -> jax.Array:
  """`lax.dynamic_update_slice(buffer, value, starts)`, written as bit patterns for 2-byte floats.

  Why: XLA:CPU has no bfloat16 dynamic-update-slice; it converts the whole buffer to float32,
  updates it and converts it back, every step (a sixth of SmolLM2's bfloat16 decoding step at
  N=64). On the uint16 bit patterns the update is one pass over the buffer with no
  conversion, and the bitcasts cost nothing.
  """
  value = value.astype(buffer.dtype)
  if not (jnp.issubdtype(buffer.dtype, jnp.floating) and buffer.dtype.itemsize == 2):
    return jax.lax.dynamic_update_slice(buffer, value, starts)
  bits = lambda x: jax.lax.bitcast_convert_type(x, jnp.uint16)
  updated = jax.lax.dynamic_update_slice(bits(buffer), bits(value), starts)
  return jax.lax.bitcast_convert_type(updated, buffer.dtype)


def decoding_params(params: Params, dtype: Any) -> Params:
  """The params as `prefill` and `decode_step` read them fastest: cast and unstacked.

  Matmul weights are cast to `dtype` and every layer's weights get their own buffers
  (`transformer.unstack_layers`). Call once per sampling call, outside the decoding loop: in a
  jit-compiled function it is one copy of the layer weights (fused with the cast).
  """
  return transformer.unstack_layers(transformer.cast_params(params, dtype))


def prefill(params: Params, cfg: ModelConfig, tokens: jax.Array, valid: jax.Array, *,
            compute_dtype: Any = jnp.float32) -> tuple[jax.Array, PromptCache]:
  """Runs the prompts once and keeps their keys and values.

  Args:
    params: model params, stacked or from `decoding_params`.
    cfg: model configuration.
    tokens: [B, P] int32 prompts, LEFT-padded so every prompt ends at index P - 1.
    valid: [B, P] bool real prompt tokens (each row needs at least one).
    compute_dtype: matmul input and cache dtype.

  Returns:
    (final hidden state of the last prompt token [B, D], the prompt cache).
  """
  positions = transformer.positions_from_valid(valid)
  h, kv = transformer.transformer_forward(params, cfg, tokens, positions, valid,
                                          compute_dtype=compute_dtype, return_kv=True)
  if isinstance(params["layers"], dict):  # stacked: [layers, B, P, K, Dh] each
    kv = tuple(zip(*(tuple(x) for x in kv)))
  cache = PromptCache(k=tuple(jnp.transpose(k, (0, 2, 3, 1)) for k, _ in kv),
                      v=tuple(jnp.transpose(v, (0, 2, 1, 3)) for _, v in kv),
                      positions=positions, valid=valid,
                      lengths=jnp.sum(valid, axis=-1, dtype=jnp.int32))
  return h[:, -1], cache


def init_completion_cache(cfg: ModelConfig, batch: int, num_samples: int, max_len: int,
                          dtype: Any = jnp.float32) -> CompletionCache:
  """An empty (zero) completion cache for `num_samples` samples of `batch` prompts."""
  lead = _stored_lead(batch, num_samples, cfg.num_kv_heads)
  layers = range(cfg.num_layers)
  return CompletionCache(k=tuple(jnp.zeros(lead + (cfg.head_dim, max_len), dtype) for _ in layers),
                         v=tuple(jnp.zeros(lead + (max_len, cfg.head_dim), dtype) for _ in layers))


def decode_step(params: Params, cfg: ModelConfig, prompt_cache: PromptCache,
                completion_cache: CompletionCache, tokens: jax.Array, index: jax.Array, *,
                compute_dtype: Any = jnp.float32) -> tuple[jax.Array, CompletionCache]:
  """Runs one completion token per sample through the model, using and extending the caches.

  Args:
    params: from `decoding_params(params, compute_dtype)` (made once, outside the loop).
    cfg: model configuration.
    prompt_cache: from `prefill`.
    completion_cache: holds completion tokens 0 .. index - 1 of every sample.
    tokens: [B, N] int32 completion token `index` of every sample.
    index: int32 scalar, the token's slot in the completion (position = prompt length + index).
    compute_dtype: matmul input dtype (the caches' dtype).

  Returns:
    (final hidden states [B, N, D] in compute_dtype, the cache with slot `index` written).
  """
  if isinstance(params["layers"], dict):
    raise ValueError("decode_step reads per-layer weights: pass "
                     "kv_cache.decoding_params(params, compute_dtype), made once before the loop")
  positions = jnp.broadcast_to(prompt_cache.lengths[:, None] + index, tokens.shape)
  prompt_distance = positions[:, :, None] - prompt_cache.positions[:, None, :]  # [B, N, P]
  slots = jnp.arange(completion_cache.v[0].shape[-2])
  past_distance = (index - slots)[None, None, :]  # [1, 1, L]
  zero = jnp.zeros((), jnp.int32)
  index = jnp.asarray(index, jnp.int32)
  lead = tokens.shape + (cfg.num_kv_heads,)
  stored_lead = _stored_lead(*lead)

  def one_layer(x, per_layer):
    lp, table, (prompt_k, prompt_v, past_k, past_v) = per_layer
    window = table["window"]
    q, k, v = transformer.layer_qkv(lp, cfg, x, positions, table["inv_freq"], compute_dtype)
    # Written before it is read: attention then reads the updated buffer, so XLA can update
    # the cache in place (reading the old buffer and writing a new one forces a copy of it).
    starts = (zero,) * len(stored_lead)
    past_k = _write_slot(past_k, k.reshape(stored_lead + (-1, 1)), starts + (zero, index))
    past_v = _write_slot(past_v, v.reshape(stored_lead + (1, -1)), starts + (index, zero))
    prompt_mask = prompt_cache.valid[:, None, :] & (prompt_distance < window)
    past_mask = (past_distance >= 0) & (past_distance < window)
    attn = attention.decode_attention(q, (prompt_k, prompt_v), prompt_mask,
                                      (_with_lead(past_k, lead), _with_lead(past_v, lead)),
                                      past_mask, cfg)
    x = transformer.layer_attention_residual(lp, cfg, x, attn)
    x = transformer.layer_mlp_residual(lp, cfg, x, compute_dtype)
    return x, (past_k, past_v)

  x = transformer.embed_tokens(params, cfg, tokens, compute_dtype)
  caches = tuple(zip(prompt_cache.k, prompt_cache.v, completion_cache.k, completion_cache.v))
  x, written = transformer.run_layers(one_layer, x, params["layers"],
                                      transformer.layer_tables(cfg), caches)
  cache = CompletionCache(k=tuple(k for k, _ in written), v=tuple(v for _, v in written))
  h = transformer.final_norm(params, cfg, x, compute_dtype)
  return h, cache

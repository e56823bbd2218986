"""Cached decoding reproduces the full forward pass."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import kv_cache
from bonjax.models import transformer
from tests.models import model_fixtures as fx

PROMPT_LENGTHS = (7, 4, 1)  # left-padded to 7 in one batch
NUM_SAMPLES = 2
NEW_TOKENS = 6  # prompt + completion = 13 > 2 * sliding window


def _decode_logits(params, cfg, prompt_tokens, prompt_valid, completions):
  """Logits predicting completion token t (t = 0 from prefill), [B, N, L, V]."""
  batch, samples, length = completions.shape
  h, prompt_cache = kv_cache.prefill(params, cfg, prompt_tokens, prompt_valid)
  first = jnp.broadcast_to(transformer.logits_from_hidden(params, cfg, h)[:, None],
                           (batch, samples, cfg.vocab_size))
  cache = kv_cache.init_completion_cache(cfg, batch, samples, length)
  per_layer = kv_cache.decoding_params(params, jnp.float32)

  def step(cache, t):
    h, cache = kv_cache.decode_step(per_layer, cfg, prompt_cache, cache, completions[:, :, t],
                                    t)
    return cache, transformer.logits_from_hidden(params, cfg, h)

  _, rest = jax.lax.scan(step, cache, jnp.arange(length - 1))
  return jnp.concatenate([first[:, :, None], jnp.moveaxis(rest, 0, 2)], axis=2)


def _full_forward_logits(params, cfg, prompt_tokens, prompt_valid, completions):
  """The same logits from one forward pass over prompt + completion per sample."""
  batch, samples, length = completions.shape
  prompt_len = prompt_tokens.shape[1]
  tokens = jnp.concatenate([jnp.repeat(prompt_tokens, samples, axis=0),
                            completions.reshape(batch * samples, length)], axis=1)
  valid = jnp.concatenate([jnp.repeat(prompt_valid, samples, axis=0),
                           jnp.ones((batch * samples, length), bool)], axis=1)
  h = transformer.hidden_states(params, cfg, tokens, transformer.positions_from_valid(valid),
                                valid)
  logits = transformer.logits_from_hidden(params, cfg, h[:, prompt_len - 1:-1])
  return logits.reshape(batch, samples, length, cfg.vocab_size)


@pytest.mark.parametrize("cfg", [fx.GEMMA_LIKE, fx.LLAMA_LIKE], ids=["gemma_like", "llama_like"])
def test_cached_decoding_matches_full_forward(cfg):
  params = fx.random_params(cfg)
  prompt_tokens, prompt_valid = fx.left_padded_prompts(PROMPT_LENGTHS, max(PROMPT_LENGTHS),
                                                       cfg.vocab_size)
  completions = jnp.asarray(np.random.default_rng(1).integers(
      0, cfg.vocab_size, (len(PROMPT_LENGTHS), NUM_SAMPLES, NEW_TOKENS)), jnp.int32)
  decode = jax.jit(functools.partial(_decode_logits, cfg=cfg))
  full = jax.jit(functools.partial(_full_forward_logits, cfg=cfg))
  args = dict(params=params, prompt_tokens=jnp.asarray(prompt_tokens),
              prompt_valid=jnp.asarray(prompt_valid), completions=completions)
  decoded, reference = decode(**args), full(**args)
  chex.assert_trees_all_close(decoded, reference, atol=2e-5, rtol=2e-5)
  # The samples of a prompt differ once their completions do, and the check is not vacuous.
  assert np.abs(reference[:, 0, 1:] - reference[:, 1, 1:]).max() > 1e-2
  assert np.abs(reference).max() > 0.5


@pytest.mark.parametrize("unstacked", [False, True], ids=["stacked", "unstacked"])
def test_prompt_cache_layout(unstacked):
  cfg = fx.GEMMA_LIKE
  params = fx.random_params(cfg)
  if unstacked:
    params = kv_cache.decoding_params(params, jnp.float32)
  tokens, valid = fx.left_padded_prompts((5, 2), 5, cfg.vocab_size)
  h, cache = jax.jit(kv_cache.prefill, static_argnums=1)(params, cfg, tokens, valid)
  positions = transformer.positions_from_valid(valid)
  full_h, kv = jax.jit(transformer.transformer_forward, static_argnums=1,
                       static_argnames=("compute_dtype", "return_kv"))(
                           params, cfg, tokens, positions, valid, compute_dtype=jnp.float32,
                           return_kv=True)
  if not unstacked:
    kv = tuple(zip(*kv))  # [layers, ...] arrays -> one (k, v) per layer
  assert len(cache.k) == len(cache.v) == cfg.num_layers
  for layer, (k, v) in enumerate(kv):
    assert cache.k[layer].shape == (2, cfg.num_kv_heads, cfg.head_dim, 5)
    assert cache.v[layer].shape == (2, cfg.num_kv_heads, 5, cfg.head_dim)
    # The prefill is the forward pass on the same params: bit for bit.
    np.testing.assert_array_equal(cache.k[layer][:, :, :, 3], k[:, 3])
    np.testing.assert_array_equal(cache.v[layer][:, :, 3], v[:, 3])
  np.testing.assert_array_equal(cache.lengths, [5, 2])
  np.testing.assert_array_equal(h, full_h[:, -1])


def test_unstacked_forward_matches_stacked():
  cfg = fx.GEMMA_LIKE  # local and global layers: a layer given another's table would show
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts((5, 2), 5, cfg.vocab_size)
  positions = transformer.positions_from_valid(valid)
  forward = jax.jit(transformer.transformer_forward, static_argnums=1,
                    static_argnames=("compute_dtype", "return_kv"))
  run = lambda p: forward(p, cfg, tokens, positions, valid, compute_dtype=jnp.float32,
                          return_kv=True)
  h, (k, v) = run(params)
  unrolled_h, unrolled_kv = run(transformer.unstack_layers(params))
  # The same float32 arithmetic compiled as a loop instead of a scan: XLA fuses and blocks the
  # matmuls differently, so sums are taken in another order. That moves results by a few tens
  # of float32 ulps of the values' scale (measured up to 1.2e-6 of it); a layer or table mixup
  # moves them by O(1).
  def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=0,
                               atol=1e-5 * float(np.abs(expected).max()))

  assert_close(unrolled_h, h)
  for layer, (layer_k, layer_v) in enumerate(unrolled_kv):
    assert_close(layer_k, k[layer])
    assert_close(layer_v, v[layer])


def test_decode_step_rejects_stacked_params():
  cfg = fx.LLAMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts((3,), 3, cfg.vocab_size)
  _, prompt_cache = kv_cache.prefill(params, cfg, tokens, valid)
  cache = kv_cache.init_completion_cache(cfg, 1, 2, 4)
  with pytest.raises(ValueError, match="decoding_params"):
    kv_cache.decode_step(params, cfg, prompt_cache, cache, jnp.zeros((1, 2), jnp.int32), 0)


@pytest.mark.parametrize("samples", [1, 3], ids=["one_sample", "three_samples"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_completion_cache_holds_each_decoded_token(samples, dtype):
  # One sample and one prompt make size-1 axes, which the stored buffers drop; bfloat16 takes
  # the bit-pattern write. Either way slot t must hold the keys and values of completion
  # token t as the full forward pass computes them at its position.
  cfg = fx.LLAMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts((4,), 4, cfg.vocab_size)
  completion = np.random.default_rng(2).integers(0, cfg.vocab_size, (1, samples, 3))
  per_layer = kv_cache.decoding_params(params, dtype)

  @jax.jit
  def decode(per_layer, completion):
    _, prompt_cache = kv_cache.prefill(per_layer, cfg, tokens, valid, compute_dtype=dtype)
    cache = kv_cache.init_completion_cache(cfg, 1, samples, 5, dtype)
    for t in range(3):
      _, cache = kv_cache.decode_step(per_layer, cfg, prompt_cache, cache, completion[:, :, t],
                                      t, compute_dtype=dtype)
    return cache

  cache = decode(per_layer, jnp.asarray(completion, jnp.int32))
  full = jnp.concatenate([jnp.repeat(jnp.asarray(tokens), samples, axis=0),
                          jnp.asarray(completion[0], jnp.int32)], axis=1)
  full_valid = jnp.ones(full.shape, bool)
  _, (k, v) = transformer.transformer_forward(
      params, cfg, full, transformer.positions_from_valid(full_valid), full_valid,
      compute_dtype=dtype, return_kv=True)
  lead = (1, samples, cfg.num_kv_heads)
  # Float32: every layer to a few ulps (the two paths run differently shaped matmuls). Bfloat16:
  # layer 0, whose keys depend on the token alone, to one bfloat16 rounding step; deeper layers
  # compound bfloat16 rounding through attention.
  layers = range(cfg.num_layers) if dtype == jnp.float32 else range(1)
  tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == jnp.float32 else dict(rtol=2**-8, atol=0)
  for layer in layers:
    cached_k, cached_v = kv_cache.completion_kv(cache, layer, lead)
    assert cached_k.shape == lead + (cfg.head_dim, 5) and cached_k.dtype == dtype
    np.testing.assert_allclose(np.asarray(cached_k[0, :, :, :, :3], np.float32),
                               np.asarray(jnp.transpose(k[layer, :, 4:], (0, 2, 3, 1)), np.float32),
                               **tolerance)
    np.testing.assert_allclose(np.asarray(cached_v[0, :, :, :3], np.float32),
                               np.asarray(jnp.transpose(v[layer, :, 4:], (0, 2, 1, 3)), np.float32),
                               **tolerance)
    # Slots not yet decoded stay empty.
    assert not np.asarray(cached_k[..., 3:], np.float32).any()

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

  def step(cache, t):
    h, cache = kv_cache.decode_step(params, cfg, prompt_cache, cache, completions[:, :, t], t)
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


def test_prompt_cache_layout():
  cfg = fx.GEMMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts((5, 2), 5, cfg.vocab_size)
  h, cache = jax.jit(kv_cache.prefill, static_argnums=1)(params, cfg, tokens, valid)
  positions = transformer.positions_from_valid(valid)
  _, (k, v) = jax.jit(transformer.transformer_forward, static_argnums=1,
                      static_argnames=("compute_dtype", "return_kv"))(
                          params, cfg, tokens, positions, valid, compute_dtype=jnp.float32,
                          return_kv=True)
  assert cache.k.shape == (cfg.num_layers, 2, cfg.num_kv_heads, cfg.head_dim, 5)
  assert cache.v.shape == (cfg.num_layers, 2, cfg.num_kv_heads, 5, cfg.head_dim)
  np.testing.assert_array_equal(cache.k[:, :, :, :, 3], k[:, :, 3])
  np.testing.assert_array_equal(cache.v[:, :, :, 3], v[:, :, 3])
  np.testing.assert_array_equal(cache.lengths, [5, 2])
  full_h = jax.jit(transformer.hidden_states, static_argnums=1)(params, cfg, tokens, positions,
                                                                valid)
  np.testing.assert_allclose(h, full_h[:, -1], rtol=1e-6, atol=1e-6)

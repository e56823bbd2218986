"""The one log-probability function: chunked equals unchunked, sequences score the right tokens."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import logprobs
from bonjax.models import transformer
from tests.models import model_fixtures as fx

TEMPERATURE = 0.7

token_logprobs = jax.jit(logprobs.token_logprobs, static_argnums=1,
                         static_argnames=("vocab_chunk",))
sequence_logprobs = jax.jit(logprobs.sequence_logprobs, static_argnums=1,
                            static_argnames=("vocab_chunk",))


def _hidden_and_targets(cfg, seed=0):
  params = fx.random_params(cfg, seed)
  h = jax.random.normal(jax.random.key(seed), (3, 5, cfg.d_model)) * 2.0
  targets = jax.random.randint(jax.random.key(seed + 1), (3, 5), 0, cfg.vocab_size)
  return params, h, targets


def _reference_logprobs(params, cfg, h, targets, temperature):
  head = params["embedding"] if cfg.tie_embeddings else params["unembedding"]
  logits = np.asarray(h, np.float64) @ np.asarray(head, np.float64).T
  if cfg.final_softcap is not None:
    logits = cfg.final_softcap * np.tanh(logits / cfg.final_softcap)
  logits = logits / temperature
  logits -= logits.max(-1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return np.take_along_axis(logp, np.asarray(targets)[..., None], -1)[..., 0]


@pytest.mark.parametrize("cfg,chunk", [
    (fx.GEMMA_LIKE, None), (fx.GEMMA_LIKE, 1), (fx.GEMMA_LIKE, 8), (fx.GEMMA_LIKE, 61),
    (fx.GEMMA_LIKE, 1000), (fx.LLAMA_LIKE, None), (fx.LLAMA_LIKE, 20),
])  # V = 61: chunks that divide it, leave a ragged last chunk, or exceed it; tied and untied
def test_token_logprobs_match_log_softmax(cfg, chunk):
  params, h, targets = _hidden_and_targets(cfg)
  got = token_logprobs(params, cfg, h, targets, temperature=TEMPERATURE, vocab_chunk=chunk)
  np.testing.assert_allclose(got, _reference_logprobs(params, cfg, h, targets, TEMPERATURE),
                             rtol=1e-5, atol=1e-5)


def test_chunked_gradient_matches_unchunked():
  cfg = fx.GEMMA_LIKE
  params, h, targets = _hidden_and_targets(cfg)

  def total(p, h, chunk):
    return logprobs.token_logprobs(p, cfg, h, targets, temperature=TEMPERATURE,
                                   vocab_chunk=chunk).sum()

  grad = jax.jit(jax.grad(total, argnums=(0, 1)), static_argnums=2)
  chex.assert_trees_all_close(grad(params, h, 8), grad(params, h, None), atol=1e-5, rtol=1e-5)


def test_chunked_logits_are_never_materialised():
  cfg = fx.LLAMA_LIKE.replace(vocab_size=4096)
  params, h, targets = _hidden_and_targets(cfg)
  fn = lambda p, h: jax.grad(lambda p: logprobs.token_logprobs(
      p, cfg, h, targets, vocab_chunk=256).sum())(p)
  hlo = jax.jit(fn).lower(params, h).as_text()
  assert "15x4096" not in hlo and "3x5x4096" not in hlo  # no [B*T, V] or [B, T, V] array
  assert "3x5x256" in hlo


def test_sequence_logprobs_scores_targets_from_previous_position():
  cfg = fx.GEMMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts([6, 3], 6, cfg.vocab_size)
  completion = np.array([[9, 10, 11], [12, 13, 0]], np.int32)
  completion_valid = np.array([[True, True, True], [True, True, False]])
  tokens = np.concatenate([tokens, completion], 1)
  valid = np.concatenate([valid, completion_valid], 1)
  target_mask = np.concatenate([np.zeros((2, 6), bool), completion_valid], 1)
  total, per_token = sequence_logprobs(params, cfg, tokens, valid, target_mask,
                                      temperature=TEMPERATURE)
  h = jax.jit(transformer.hidden_states, static_argnums=1)(
      params, cfg, tokens, transformer.positions_from_valid(valid), valid)
  for b in range(2):
    for t in range(tokens.shape[1]):
      if not target_mask[b, t]:
        assert per_token[b, t] == 0.0
        continue
      expected = _reference_logprobs(params, cfg, h[b, t - 1], tokens[b, t], TEMPERATURE)
      np.testing.assert_allclose(per_token[b, t], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(total, per_token.sum(-1), rtol=1e-6)
  chunked_total, _ = sequence_logprobs(params, cfg, tokens, valid, target_mask,
                                      temperature=TEMPERATURE, vocab_chunk=16)
  np.testing.assert_allclose(chunked_total, total, rtol=1e-5)


def test_invalid_chunk_is_rejected():
  params, h, targets = _hidden_and_targets(fx.LLAMA_LIKE)
  with pytest.raises(ValueError, match="vocab_chunk=0"):
    logprobs.token_logprobs(params, fx.LLAMA_LIKE, h, targets, vocab_chunk=0)

"""Memory knobs change memory, not results: remat policies and sequence-chunked log-probs."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import logprobs
from tests.models import model_fixtures as fx

# Every family switch on, 2 layers (the scan is the same for more); vocab 61: a last axis of 61
# is a logits array.
CFG = fx.GEMMA_LIKE.replace(num_layers=2)
B, T = 3, 12


def _batch():
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, CFG.vocab_size, (B, T)), jnp.int32)
  valid = jnp.asarray(np.arange(T)[None, :] >= np.array([[0], [2], [5]]))
  return tokens, valid


@functools.partial(jax.jit, static_argnums=(0,))
def _value_and_grad(cfg, params, tokens, valid):
  def loss(p):
    total, per_token = logprobs.sequence_logprobs(p, cfg, tokens, valid, valid, temperature=0.7)
    return total.sum(), per_token
  return jax.value_and_grad(loss, has_aux=True)(params)


@pytest.mark.parametrize("remat, chunk", [("dots", None), ("full", 3), ("none", 7)])
def test_remat_and_logits_chunk_give_the_same_logprobs_and_gradients(remat, chunk):
  params = fx.random_params(CFG)
  tokens, valid = _batch()
  (total, per_token), grads = _value_and_grad(CFG, params, tokens, valid)
  (total_k, per_token_k), grads_k = _value_and_grad(
      CFG.replace(remat=remat, logits_chunk=chunk), params, tokens, valid)
  np.testing.assert_allclose(per_token_k, per_token, rtol=1e-6, atol=1e-6)
  assert float(total_k) == pytest.approx(float(total), rel=1e-6)
  chex.assert_trees_all_close(grads_k, grads, rtol=1e-5, atol=1e-6)


def _avals(jaxpr):
  for eqn in jaxpr.eqns:
    yield from (v.aval for v in eqn.outvars)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from _avals(sub)


def test_chunked_gradient_never_holds_all_logits():
  params = fx.random_params(CFG)
  tokens, valid = _batch()
  chunk = 6  # 6 // B = 2 positions of every row per chunk
  cfg = CFG.replace(logits_chunk=chunk)
  closed = jax.make_jaxpr(lambda p: _value_and_grad.__wrapped__(cfg, p, tokens, valid))(params)
  logits_sizes = [math.prod(a.shape) for a in _avals(closed.jaxpr)
                  if getattr(a, "shape", ()) and a.shape[-1] == CFG.vocab_size]
  assert logits_sizes and max(logits_sizes) == B * 2 * CFG.vocab_size
  unchunked = jax.make_jaxpr(lambda p: _value_and_grad.__wrapped__(CFG, p, tokens, valid))(params)
  assert max(math.prod(a.shape) for a in _avals(unchunked.jaxpr)
             if getattr(a, "shape", ()) and a.shape[-1] == CFG.vocab_size) == B * (T - 1) * 61


def test_remat_policies_store_less():
  params = fx.random_params(CFG)
  tokens, valid = _batch()

  def saved(remat):
    f = lambda p: logprobs.sequence_logprobs(p, CFG.replace(remat=remat), tokens, valid,
                                             valid)[0].sum()
    residuals = jax.eval_shape(lambda p: jax.vjp(f, p)[1], params)
    return sum(math.prod(x.shape) for x in jax.tree.leaves(residuals))

  none, dots, full = saved("none"), saved("dots"), saved("full")
  assert full < dots < none

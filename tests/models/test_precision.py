"""Every model matmul asks for float32 precision in float32 and float32 accumulation in bfloat16.

Checked on the traced programs (the forward pass, its gradient, the decoding step), so the
test fails on any backend, CPU included, when a matmul would fall back to the default
precision that XLA:GPU runs as TF32.
"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import kv_cache, logprobs, transformer
from tests.models import model_fixtures as fx

CFG = fx.GEMMA_LIKE.replace(lora_rank=2)


def _dot_generals(jaxpr) -> list:
  """Every dot_general equation of a closed jaxpr, sub-jaxprs (scan, remat, pjit) included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      found.append(eqn)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found.extend(_dot_generals(sub))
  return found


def _loss(params, tokens, valid, dtype):
  total, _ = logprobs.sequence_logprobs(params, CFG.replace(logits_chunk=8), tokens, valid,
                                        valid, compute_dtype=dtype, remat="dots")
  return total.sum()


def _programs(dtype):
  params = jax.eval_shape(lambda: transformer.init_params(CFG, jax.random.key(0)))
  tokens = jnp.asarray(np.arange(24).reshape(2, 12) % CFG.vocab_size, jnp.int32)
  valid = jnp.ones((2, 12), bool)
  grad = jax.make_jaxpr(jax.grad(_loss), static_argnums=3)(params, tokens, valid, dtype)

  def decode(p):
    _, prompt = kv_cache.prefill(p, CFG, tokens, valid, compute_dtype=dtype)
    completion = kv_cache.init_completion_cache(CFG, 2, 3, 4, dtype)
    p = kv_cache.decoding_params(p, dtype)
    h, _ = kv_cache.decode_step(p, CFG, prompt, completion, tokens[:, :3],
                                jnp.asarray(0, jnp.int32), compute_dtype=dtype)
    return transformer.logits_from_hidden(p, CFG, h)

  return {"grad": grad, "decode": jax.make_jaxpr(decode)(params)}


@pytest.mark.parametrize("dtype, precision", [
    (jnp.float32, jax.lax.Precision.HIGHEST), (jnp.bfloat16, jax.lax.Precision.DEFAULT)])
def test_every_matmul_has_the_precision_of_its_dtype(dtype, precision):
  for name, closed in _programs(dtype).items():
    dots = _dot_generals(closed.jaxpr)
    assert len(dots) >= 10, name  # q, k, v, o, MLP, attention, logits, adapters
    for eqn in dots:
      assert eqn.params["precision"] == (precision, precision), (name, eqn)
      assert eqn.params["preferred_element_type"] == jnp.float32, (name, eqn)
      # Forward matmuls take the compute dtype; a bfloat16 backward pass multiplies float32
      # cotangents with bfloat16 activations (jax's transpose of the float32-accumulating dot).
      dtypes = {v.aval.dtype for v in eqn.invars}
      assert jnp.dtype(dtype) in dtypes and dtypes <= {jnp.dtype(dtype), jnp.dtype(jnp.float32)}

"""LoRA: fresh adapters change nothing, merged adapters equal the adapter path, and one rank-r
step is the dense step projected on the adapter subspace."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import logprobs, lora, transformer
from tests.models import model_fixtures as fx

RANK = 3
CFG = fx.LLAMA_LIKE.replace(lora_rank=RANK, lora_alpha=float(RANK))  # scale alpha / r = 1


def _batch():
  rng = np.random.default_rng(1)
  tokens = jnp.asarray(rng.integers(0, CFG.vocab_size, (2, 9)), jnp.int32)
  return tokens, jnp.ones((2, 9), bool)


@functools.partial(jax.jit, static_argnums=1)
def _loss(params, cfg=CFG):
  tokens, valid = _batch()
  return -logprobs.sequence_logprobs(params, cfg, tokens, valid, valid)[0].sum()


def test_declared_adapters_and_layouts():
  params = transformer.init_params(CFG, jax.random.key(0))
  layer = params["layers"]
  assert layer["q_lora_a"].shape == (2, 32, RANK) and layer["q_lora_b"].shape == (2, RANK, 4, 8)
  assert layer["o_lora_a"].shape == (2, 4, 8, RANK) and layer["o_lora_b"].shape == (2, RANK, 32)
  assert layer["down_lora_a"].shape == (2, 48, RANK) and layer["down_lora_b"].shape == (2, RANK, 32)
  assert not np.any(layer["up_lora_b"])
  axes = transformer.param_logical_axes(CFG)["layers"]
  assert axes["q_lora_a"] == ("layers", "embed", None)
  assert axes["q_lora_b"] == ("layers", None, "q_heads", "head_dim")
  mask = lora.trainable_mask(params)
  assert mask["layers"]["q_lora_a"] and not mask["layers"]["q"] and not mask["embedding"]
  assert lora.trainable_mask(lora.without_adapters(params)) is None


def test_fresh_adapters_change_nothing_and_merge_equals_adapters():
  params = transformer.init_params(CFG, jax.random.key(0))
  base = lora.without_adapters(params)
  assert float(_loss(params)) == float(_loss(base))
  # Non-zero B: the merged dense weights give the adapter path's result.
  layers = dict(params["layers"])
  for name in lora.TARGETS:
    layers[name + "_lora_b"] = 0.2 * jax.random.normal(jax.random.key(len(name)),
                                                       layers[name + "_lora_b"].shape)
  trained = {**params, "layers": layers}
  merged = lora.merge_lora(trained, CFG)
  assert set(merged["layers"]) == set(base["layers"])
  assert abs(float(_loss(trained)) - float(_loss(base))) > 0.1
  np.testing.assert_allclose(float(_loss(merged)), float(_loss(trained)), rtol=1e-5)


def test_rank_r_step_is_the_dense_step_projected_on_the_adapter_subspace():
  params = transformer.init_params(CFG, jax.random.key(0))
  layers = dict(params["layers"])
  for i, name in enumerate(lora.TARGETS):  # A with orthonormal columns: A A^T is a projector.
    a = layers[name + "_lora_a"]
    flat = jax.random.normal(jax.random.key(10 + i),
                             (a.shape[0], int(np.prod(a.shape[1:-1])), RANK))
    q, _ = jnp.linalg.qr(flat)
    layers[name + "_lora_a"] = q.reshape(a.shape)
  params = {**params, "layers": layers}
  base = lora.without_adapters(params)
  dense_grads = jax.jit(jax.grad(_loss), static_argnums=1)(base, CFG.replace(lora_rank=0))
  grads = jax.jit(jax.grad(_loss))(params)
  lr = 0.1
  mask = lora.trainable_mask(params)
  stepped = jax.tree.map(lambda p, g, m: p - lr * g if m else p, params, grads, mask)
  merged = lora.merge_lora(stepped, CFG)
  for name in lora.TARGETS:
    w = base["layers"][name]
    a = params["layers"][name + "_lora_a"]
    n, r = a.shape[0], a.shape[-1]
    flat_a = a.reshape(n, -1, r)
    g = dense_grads["layers"][name].reshape(n, flat_a.shape[1], -1)
    projected = jnp.einsum("lir,ljr,ljo->lio", flat_a, flat_a, g,
                           precision=jax.lax.Precision.HIGHEST)
    np.testing.assert_allclose((merged["layers"][name] - w).reshape(projected.shape),
                               -lr * projected, rtol=1e-4, atol=1e-7, err_msg=name)
    # The dense step itself is not in the subspace: the projection drops a real part of it.
    assert float(jnp.linalg.norm(projected)) < 0.9 * float(jnp.linalg.norm(g)), name
  chex.assert_trees_all_equal(lora.without_adapters(stepped)["embedding"], base["embedding"])


def test_match_adapters_adds_and_merges():
  base = transformer.init_params(CFG.replace(lora_rank=0), jax.random.key(0))
  with_adapters = lora.match_adapters(base, CFG, jax.random.key(1))
  assert lora.has_adapters(with_adapters)
  assert float(_loss(with_adapters)) == float(_loss(base))
  back = lora.match_adapters(with_adapters, CFG.replace(lora_rank=0), jax.random.key(1))
  assert set(back["layers"]) == set(base["layers"])


def test_invalid_options_name_the_field():
  with pytest.raises(ValueError, match="model.lora_targets"):
    transformer.init_params(CFG.replace(lora_targets=("q", "nope")), jax.random.key(0))
  with pytest.raises(ValueError, match="model.lora_rank"):
    transformer.init_params(CFG.replace(lora_rank=-1), jax.random.key(0))

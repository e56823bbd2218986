"""Parameters, logical axes and the full forward pass of the transformer."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models import config as model_config
from bonjax.models import layers
from bonjax.models import transformer
from tests.models import model_fixtures as fx


@pytest.mark.parametrize("cfg", [fx.GEMMA_LIKE, fx.LLAMA_LIKE] + [
    model_config.get_preset(name) for name in model_config.preset_names()])
def test_param_count_and_logical_axes_match_config(cfg):
  abstract = jax.eval_shape(lambda: transformer.init_params(cfg, jax.random.key(0)))
  axes = transformer.param_logical_axes(cfg)
  is_axes = lambda x: isinstance(x, tuple)
  assert jax.tree.structure(abstract) == jax.tree.structure(axes, is_leaf=is_axes)
  for leaf, names in zip(jax.tree.leaves(abstract), jax.tree.leaves(axes, is_leaf=is_axes)):
    assert leaf.dtype == jnp.float32
    assert len(names) == leaf.ndim
  assert sum(leaf.size for leaf in jax.tree.leaves(abstract)) == cfg.num_params()
  assert axes["embedding"] == ("vocab", "embed")
  assert axes["layers"]["q"] == ("layers", "embed", "q_heads", "head_dim")
  assert axes["layers"]["k"] == ("layers", "embed", "kv_heads", "head_dim")
  assert axes["layers"]["o"] == ("layers", "q_heads", "head_dim", "embed")
  assert axes["layers"]["down"] == ("layers", "mlp", "embed")
  assert abstract["layers"]["q"].shape == (cfg.num_layers, cfg.d_model, cfg.num_heads,
                                           cfg.head_dim)
  assert ("unembedding" in abstract) == (not cfg.tie_embeddings)
  assert ("q_norm" in abstract["layers"]) == cfg.qk_norm
  assert ("post_attn_norm" in abstract["layers"]) == cfg.post_norms


def test_norm_weights_start_at_unit_multiplier():
  gemma = transformer.init_params(fx.GEMMA_LIKE, jax.random.key(0))
  llama = transformer.init_params(fx.LLAMA_LIKE, jax.random.key(0))
  np.testing.assert_array_equal(gemma["layers"]["q_norm"], 0.0)  # used as (1 + w)
  np.testing.assert_array_equal(gemma["final_norm"], 0.0)
  np.testing.assert_array_equal(llama["layers"]["attn_norm"], 1.0)
  # Layers are initialised independently, not copies of one another.
  q = llama["layers"]["q"]
  assert not np.allclose(q[0], q[1])
  np.testing.assert_allclose(np.std(q), fx.LLAMA_LIKE.d_model**-0.5, rtol=0.1)


def test_check_config_names_the_field():
  with pytest.raises(ValueError, match=r"model.num_heads=5: must be a multiple of num_kv_heads=2"):
    transformer.init_params(fx.LLAMA_LIKE.replace(num_heads=5), jax.random.key(0))
  with pytest.raises(ValueError, match=r"model.activation='relu'"):
    transformer.param_logical_axes(fx.LLAMA_LIKE.replace(activation="relu"))


def test_positions_from_valid():
  valid = jnp.array([[False, False, True, True, True], [True, True, True, False, False]])
  np.testing.assert_array_equal(transformer.positions_from_valid(valid),
                                [[-1, -1, 0, 1, 2], [0, 1, 2, 2, 2]])


def test_cast_params_keeps_norms_float32():
  cast = jax.eval_shape(lambda: transformer.cast_params(
      transformer.init_params(fx.GEMMA_LIKE, jax.random.key(0)), jnp.bfloat16))
  assert cast["layers"]["q"].dtype == jnp.bfloat16
  assert cast["embedding"].dtype == jnp.bfloat16
  assert cast["layers"]["k_norm"].dtype == jnp.float32
  assert cast["final_norm"].dtype == jnp.float32


def test_rms_norm_and_rope_values():
  x = jnp.array([[3.0, 4.0]])
  np.testing.assert_allclose(layers.rms_norm(x, jnp.array([1.0, 2.0]), eps=0.0, plus_one=False),
                             [[3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]], rtol=1e-6)
  np.testing.assert_allclose(layers.rms_norm(x, jnp.array([0.0, 1.0]), eps=0.0, plus_one=True),
                             [[3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]], rtol=1e-6)
  # Split-half rotary: pair (x[0], x[2]) rotates by pos * 1, pair (x[1], x[3]) by pos * 0.01.
  inv_freq = jnp.asarray(layers.rope_inverse_frequencies([10_000.0], 4)[0])
  np.testing.assert_allclose(inv_freq, [1.0, 0.01], rtol=1e-6)
  x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
  out = layers.apply_rope(x, jnp.array([[2]]), inv_freq).reshape(4)
  a, b = 2.0, 0.02
  expected = [np.cos(a) - 3 * np.sin(a), 2 * np.cos(b) - 4 * np.sin(b),
              3 * np.cos(a) + np.sin(a), 4 * np.cos(b) + 2 * np.sin(b)]
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def _forward(params, cfg, tokens, valid):
  positions = transformer.positions_from_valid(valid)
  return transformer.hidden_states(params, cfg, jnp.asarray(tokens), positions,
                                   jnp.asarray(valid))


def test_left_padding_does_not_change_real_positions():
  cfg = fx.GEMMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts([7], 7, cfg.vocab_size)
  padded = np.concatenate([np.full((1, 4), 5, np.int32), tokens], axis=1)  # pads are not 0
  padded_valid = np.concatenate([np.zeros((1, 4), bool), valid], axis=1)
  forward = jax.jit(_forward, static_argnums=1)
  chex.assert_trees_all_close(forward(params, cfg, padded, padded_valid)[:, 4:],
                              forward(params, cfg, tokens, valid), atol=1e-5, rtol=1e-5)


def test_sliding_window_hides_tokens_beyond_the_window():
  # One local layer, window 3: position t sees positions t-2..t only.
  cfg = fx.GEMMA_LIKE.replace(num_layers=1, sliding_window=3, global_every=2)
  assert cfg.is_local_layer(0)
  params = fx.random_params(cfg)
  tokens = np.arange(3, 11, dtype=np.int32)[None]
  valid = np.ones_like(tokens, bool)
  changed = tokens.copy()
  changed[0, 2] = 40
  forward = jax.jit(_forward, static_argnums=1)
  base, other = forward(params, cfg, tokens, valid), forward(params, cfg, changed, valid)
  np.testing.assert_array_equal(base[:, :2], other[:, :2])
  assert np.all(np.abs(base[0, 2:5] - other[0, 2:5]).max(axis=-1) > 1e-3)  # inside the window
  np.testing.assert_array_equal(base[:, 5:], other[:, 5:])  # beyond it
  # The same layer made global sees everything before it.
  global_cfg = cfg.replace(sliding_window=None, global_every=0)
  g_base, g_other = forward(params, global_cfg, tokens, valid), forward(params, global_cfg,
                                                                         changed, valid)
  assert np.abs(g_base[0, 5:] - g_other[0, 5:]).max() > 1e-3


def test_bfloat16_forward_is_close_to_float32():
  cfg = fx.GEMMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts([6, 4], 6, cfg.vocab_size)
  positions = transformer.positions_from_valid(valid)

  @functools.partial(jax.jit, static_argnums=1)
  def logits(params, dtype):
    h = transformer.hidden_states(params, cfg, tokens, positions, valid, compute_dtype=dtype)
    return transformer.logits_from_hidden(params, cfg, h.astype(jnp.float32))

  logits = {dtype: logits(params, dtype) for dtype in (jnp.float32, jnp.bfloat16)}
  real = valid[..., None]
  diff = np.abs(np.where(real, logits[jnp.float32] - logits[jnp.bfloat16], 0.0)).max()
  assert 0.0 < diff < 0.1


def test_remat_gives_the_same_gradient():
  cfg = fx.LLAMA_LIKE
  params = fx.random_params(cfg)
  tokens, valid = fx.left_padded_prompts([5, 3], 5, cfg.vocab_size)
  positions = transformer.positions_from_valid(valid)

  def loss(p, remat):
    h = transformer.hidden_states(p, cfg, tokens, positions, valid, remat=remat)
    return jnp.sum(jnp.where(valid[..., None], h, 0.0) ** 2)

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  chex.assert_trees_all_close(grad(params, False), grad(params, True), atol=1e-5, rtol=1e-5)

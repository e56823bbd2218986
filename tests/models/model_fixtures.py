"""Small configurations and inputs shared by the model and sampler tests."""

from __future__ import annotations

import functools

import jax
import numpy as np

from bonjax.models import transformer
from bonjax.models.config import ModelConfig

# Every family switch on: GQA, q/k norm, post-norms, 3-token sliding window with every second
# layer global, both soft-caps, embedding scale, (1 + w) norms, explicit query scale, separate
# rotary bases, untied output head.
GEMMA_LIKE = ModelConfig(
    family="gemma3", vocab_size=61, num_layers=4, d_model=32, num_heads=4, num_kv_heads=2,
    head_dim=8, mlp_dim=48, activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
    tie_embeddings=False, rope_base=10_000.0, local_rope_base=100.0, sliding_window=3,
    global_every=2, qk_norm=True, post_norms=True, query_scale=0.3, attn_softcap=5.0,
    final_softcap=4.0)

LLAMA_LIKE = ModelConfig(family="llama", vocab_size=61, num_layers=2, d_model=32, num_heads=4,
                         num_kv_heads=2, head_dim=8, mlp_dim=48, activation="silu")


@functools.lru_cache(maxsize=None)
def random_params(cfg: ModelConfig, seed: int = 0, norm_noise: float = 0.3):
  """Initialised params whose norm weights are perturbed, so every norm matters (cached)."""
  return _perturb_norms(transformer.init_params(cfg, jax.random.key(seed)),
                        jax.random.key(seed + 1), norm_noise)


@jax.jit
def _perturb_norms(params, key, norm_noise):
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for i, (path, leaf) in enumerate(leaves):
    if any(getattr(p, "key", "").endswith("norm") for p in path):
      leaf = leaf + norm_noise * jax.random.normal(jax.random.fold_in(key, i), leaf.shape)
    out.append(leaf)
  return jax.tree.unflatten(treedef, out)


def left_padded_prompts(lengths, prompt_len: int, vocab: int, seed: int = 0,
                        pad_id: int = 0, low: int = 3):
  """[B, P] int32 prompts of the given lengths, left-padded with pad_id, and their mask."""
  rng = np.random.default_rng(seed)
  tokens = np.full((len(lengths), prompt_len), pad_id, np.int32)
  valid = np.zeros((len(lengths), prompt_len), bool)
  for b, n in enumerate(lengths):
    tokens[b, prompt_len - n:] = rng.integers(low, vocab, size=n)
    valid[b, prompt_len - n:] = True
  return tokens, valid

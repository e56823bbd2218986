"""Tiny configurations of every exportable family and seeded random params for them."""

from __future__ import annotations

import jax
import numpy as np

from bonjax.models import transformer
from bonjax.models.config import ModelConfig

SEQ_LEN = 12

CONFIGS = {
    # Llama layout, grouped-query attention, untied output head.
    "llama": ModelConfig(family="llama", vocab_size=67, num_layers=2, d_model=32, num_heads=4,
                         num_kv_heads=2, head_dim=8, mlp_dim=48, activation="silu",
                         norm_eps=1e-5, tie_embeddings=False, rope_base=500.0,
                         local_rope_base=500.0, bos_id=1),
    # The model family's "tiny" preset shape exports as llama, tied head.
    "tiny": ModelConfig(family="tiny", vocab_size=40, num_layers=2, d_model=32, num_heads=4,
                        num_kv_heads=1, head_dim=16, mlp_dim=40, activation="silu"),
    # Gemma 3: q/k norm, post norms, (1 + w) norms, embedding scale, a 3-token window shorter
    # than the sequence with every 2nd layer global, separate rotary bases, explicit query scale.
    "gemma3": ModelConfig(family="gemma3", vocab_size=71, num_layers=4, d_model=32, num_heads=4,
                          num_kv_heads=1, head_dim=16, mlp_dim=48, activation="gelu_tanh",
                          norm_eps=1e-6, norm_plus_one=True, embed_scale=True,
                          rope_base=1_000_000.0, local_rope_base=100.0, sliding_window=3,
                          global_every=2, qk_norm=True, post_norms=True, query_scale=0.1,
                          bos_id=2),
    # Gemma 2: attention and final soft-capping (caps small enough that tanh bends the
    # logits of a random model), alternating local/global layers, untied head.
    "gemma2": ModelConfig(family="gemma2", vocab_size=53, num_layers=3, d_model=24, num_heads=2,
                          num_kv_heads=1, head_dim=12, mlp_dim=40, activation="gelu_tanh",
                          norm_plus_one=True, embed_scale=True, tie_embeddings=False,
                          rope_base=10_000.0, local_rope_base=10_000.0, sliding_window=4,
                          global_every=2, post_norms=True, query_scale=144**-0.5,
                          attn_softcap=0.3, final_softcap=5.0, bos_id=2),
    # Gemma 3 with the final soft-cap (HF's Gemma 3 has no attention soft-cap).
    "gemma3_softcap": ModelConfig(family="gemma3", vocab_size=50, num_layers=2, d_model=16,
                                  num_heads=2, num_kv_heads=2, head_dim=8, mlp_dim=24,
                                  activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
                                  local_rope_base=10.0, sliding_window=5, global_every=2,
                                  qk_norm=True, post_norms=True, final_softcap=6.0),
}


def random_params(cfg: ModelConfig, seed: int = 0) -> dict:
  """Seeded random params of `cfg`'s shapes: matrices N(0, 0.3 / sqrt(fan_in)), norm weights
  N(1, 0.3) or N(0, 0.3) under (1 + w), so that a swapped or misnamed tensor changes logits."""
  shapes = jax.eval_shape(lambda: transformer.init_params(cfg, jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name.endswith("norm"):
      centre = 0.0 if cfg.norm_plus_one else 1.0
      return (centre + rng.normal(0.0, 0.3, leaf.shape)).astype(np.float32)
    fan_in = cfg.d_model if name in ("q", "k", "v", "gate", "up", "embedding", "unembedding") else (
        leaf.shape[-2] if name == "down" else cfg.num_heads * cfg.head_dim)
    scale = 1.0 if name in ("embedding", "unembedding") else 0.5 / np.sqrt(fan_in)
    return rng.normal(0.0, scale, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)

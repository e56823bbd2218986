"""Small GGUF files written in llama.cpp's conventions, from known params.

Tensor names, the Q/K row permutation and Gemma's stored (1 + w) norms are spelled out here,
independently of the converter under test.
"""

from __future__ import annotations

import os
import sys

import gguf
import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenizers"))
import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.checkpoints import hf_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.models import transformer  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.models.config import ModelConfig  # pylint: disable=g-import-not-at-top,wrong-import-position

LLAMA = ModelConfig(family="llama", vocab_size=len(fx.byte_level_metadata()["tokenizer.ggml.tokens"]),
                    num_layers=2, d_model=16, num_heads=4, num_kv_heads=2, head_dim=4, mlp_dim=24,
                    activation="silu", norm_eps=1e-5, rope_base=100_000.0,
                    local_rope_base=100_000.0, bos_id=1)
GEMMA3 = ModelConfig(family="gemma3", vocab_size=len(fx.sentencepiece_metadata()[
    "tokenizer.ggml.tokens"]), num_layers=6, d_model=16, num_heads=2, num_kv_heads=1,
                     head_dim=8, mlp_dim=24, activation="gelu_tanh", norm_eps=1e-6,
                     norm_plus_one=True, embed_scale=True, rope_base=1_000_000.0,
                     local_rope_base=10_000.0, sliding_window=4, global_every=6, qk_norm=True,
                     post_norms=True, query_scale=8**-0.5, bos_id=2)

# HF name -> llama.cpp name, as llama.cpp's converter writes them.
_GLOBAL = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
           "output_norm.weight", "lm_head.weight": "output.weight"}
_LAYER = {
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
_LLAMA_LAYER = {"post_attention_layernorm.weight": "ffn_norm.weight"}
_GEMMA_LAYER = {"post_attention_layernorm.weight": "post_attention_norm.weight",
                "pre_feedforward_layernorm.weight": "ffn_norm.weight",
                "post_feedforward_layernorm.weight": "post_ffw_norm.weight"}


def llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
  """llama.cpp's converter: per head, rows (half, pair) -> (pair, half)."""
  return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


def random_params(cfg: ModelConfig, seed: int) -> dict:
  # Norm weights on a 2^-10 grid, so Gemma's stored 1 + w gives w back exactly.
  shapes = jax.eval_shape(lambda: transformer.init_params(cfg, jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    values = rng.normal(0.0, 0.5, leaf.shape).astype(np.float32)
    return np.round(values * 1024) / 1024 if path[-1].key.endswith("norm") else values

  return jax.tree_util.tree_map_with_path(draw, shapes)


def write_gguf(path: str, arch: str, cfg: ModelConfig, params: dict, tokenizer_meta: dict,
               extra: dict | None = None) -> None:
  hf_arch = hf_layout.HF_ARCHITECTURES["llama" if arch == "llama" else "gemma3_text"]
  state = hf_layout.hf_state_from_params(cfg, params, hf_arch)
  writer = gguf.GGUFWriter(path, arch)
  writer.add_uint32(f"{arch}.block_count", cfg.num_layers)
  writer.add_uint32(f"{arch}.embedding_length", cfg.d_model)
  writer.add_uint32(f"{arch}.feed_forward_length", cfg.mlp_dim)
  writer.add_uint32(f"{arch}.attention.head_count", cfg.num_heads)
  writer.add_uint32(f"{arch}.attention.head_count_kv", cfg.num_kv_heads)
  writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.norm_eps)
  writer.add_float32(f"{arch}.rope.freq_base", cfg.rope_base)
  if arch == "llama":
    writer.add_uint32("llama.rope.dimension_count", cfg.head_dim)
  else:
    writer.add_uint32("gemma3.attention.key_length", cfg.head_dim)
    writer.add_uint32("gemma3.attention.value_length", cfg.head_dim)
    writer.add_uint32("gemma3.attention.sliding_window", cfg.sliding_window)
  for key, value in (extra or {}).items():
    writer.add_uint32(key, value)
  meta = tokenizer_meta
  writer.add_tokenizer_model(meta["tokenizer.ggml.model"])
  writer.add_tokenizer_pre(meta["tokenizer.ggml.pre"])
  writer.add_token_list(meta["tokenizer.ggml.tokens"])
  writer.add_token_types(meta["tokenizer.ggml.token_type"])
  if "tokenizer.ggml.merges" in meta:
    writer.add_token_merges(meta["tokenizer.ggml.merges"])
  if "tokenizer.ggml.scores" in meta:
    writer.add_token_scores(meta["tokenizer.ggml.scores"])
  writer.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
  writer.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
  writer.add_pad_token_id(meta["tokenizer.ggml.padding_token_id"])
  writer.add_add_bos_token(meta["tokenizer.ggml.add_bos_token"])
  if "tokenizer.chat_template" in meta:
    writer.add_chat_template(meta["tokenizer.chat_template"])
  layer_names = {**_LAYER, **(_LLAMA_LAYER if arch == "llama" else _GEMMA_LAYER)}
  for name, value in state.items():
    rest = None
    if name in _GLOBAL:
      gguf_name = _GLOBAL[name]
    else:
      _, _, layer, rest = name.split(".", 3)
      gguf_name = f"blk.{layer}.{layer_names[rest]}"
    if arch == "llama" and rest == "self_attn.q_proj.weight":
      value = llama_cpp_permute(value, cfg.num_heads)
    elif arch == "llama" and rest == "self_attn.k_proj.weight":
      value = llama_cpp_permute(value, cfg.num_kv_heads)
    if arch == "gemma3" and name.endswith("norm.weight"):
      value = value + np.float32(1.0)
    writer.add_tensor(gguf_name, np.ascontiguousarray(value, dtype=np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()

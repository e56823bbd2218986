"""GGUF file -> ModelConfig, float32 params and tokenizer, with the `gguf` package.

Quantized tensors are dequantized to float32: the result is the float model the quantized file
computes, and it can be fine-tuned like any other. Tensors are renamed to HF names and then go
through `hf_layout.params_from_hf_state`, the mapping the HF export parity tests check, after
undoing the two ways llama.cpp's converters change weights:

- llama-architecture Q and K projections have their rows permuted for llama.cpp's interleaved
  rotary: within each head, rows are ordered (pair, half) instead of (half, pair). Undone by
  `unpermute_rotary_rows`; without it SmolLM2's perplexity goes from about 13 to 150.
- Gemma norm weights (every RMSNorm, q/k norms included) are stored as the multiplier 1 + w;
  HF and our `norm_plus_one` params hold w, so 1 is subtracted.

Each architecture is a registry entry: how its metadata becomes a ModelConfig, which HF
architecture names its tensors, and the per-tensor fix-ups.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import numpy as np

from bonjax.checkpoints import hf_layout
from bonjax.models.config import ModelConfig
from bonjax.tokenizers.gguf_vocab import tokenizer_from_gguf_metadata
from bonjax.tokenizers.hf import HFTokenizer

# GGUF tensor name -> HF tensor name ({} is the layer index). Norms that only some
# architectures have are simply absent from files of the others.
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
}
# The per-layer norms whose HF names differ between llama and gemma (see hf_layout).
_LLAMA_LAYER_NORMS = {"ffn_norm.weight": "post_attention_layernorm.weight"}
_GEMMA_LAYER_NORMS = {
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}
_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


def unpermute_rotary_rows(w: np.ndarray, num_heads: int) -> np.ndarray:
  """Undoes llama.cpp's Q/K row permutation.

  llama.cpp stores HF's per-head rows (half, pair) as (pair, half), i.e.
  gguf = hf.reshape(heads, 2, head_dim/2, d).swapaxes(1, 2).

  Args:
    w: [num_heads * head_dim, d_in] projection in GGUF row order.
    num_heads: heads of this projection (query heads for Q, KV heads for K).

  Returns:
    The same matrix in HF row order (split-half rotary pairs).
  """
  rows, d_in = w.shape
  return w.reshape(num_heads, rows // num_heads // 2, 2, d_in).swapaxes(1, 2).reshape(rows, d_in)


def permute_rotary_rows(w: np.ndarray, num_heads: int) -> np.ndarray:
  """Inverse of `unpermute_rotary_rows`: HF row order -> llama.cpp's (for writing GGUF files)."""
  rows, d_in = w.shape
  return w.reshape(num_heads, 2, rows // num_heads // 2, d_in).swapaxes(1, 2).reshape(rows, d_in)


@dataclasses.dataclass(frozen=True)
class GGUFArchitecture:
  """How one `general.architecture` is read.

  Attributes:
    hf_model_type: the HF architecture naming the converted tensors.
    config_from_metadata: (metadata, tensor names) -> ModelConfig.
    layer_names: extra GGUF -> HF per-layer names (the family's norms).
    fix_tensor: (HF name, array, config) -> array in HF convention.
  """

  hf_model_type: str
  config_from_metadata: Callable[[dict, set[str]], ModelConfig]
  layer_names: dict[str, str]
  fix_tensor: Callable[[str, np.ndarray, ModelConfig], np.ndarray]


def _meta(meta: dict, arch: str, key: str, default: Any = None) -> Any:
  value = meta.get(f"{arch}.{key}", default)
  if value is None:
    raise KeyError(f"GGUF metadata {arch}.{key} missing")
  return value


def _common_config(meta: dict, arch: str, tensors: set[str]) -> dict:
  d = int(_meta(meta, arch, "embedding_length"))
  heads = int(_meta(meta, arch, "attention.head_count"))
  head_dim = int(meta.get(f"{arch}.attention.key_length",
                          meta.get(f"{arch}.rope.dimension_count", d // heads)))
  vocab = meta.get(f"{arch}.vocab_size", len(meta.get("tokenizer.ggml.tokens", ())))
  return {
      "vocab_size": int(vocab),
      "num_layers": int(_meta(meta, arch, "block_count")),
      "d_model": d,
      "num_heads": heads,
      "num_kv_heads": int(meta.get(f"{arch}.attention.head_count_kv", heads)),
      "head_dim": head_dim,
      "mlp_dim": int(_meta(meta, arch, "feed_forward_length")),
      "norm_eps": float(_meta(meta, arch, "attention.layer_norm_rms_epsilon")),
      "tie_embeddings": "output.weight" not in tensors,
      "bos_id": meta.get("tokenizer.ggml.bos_token_id"),
  }


def _float(value: float) -> float:
  # Metadata floats are float32; round to the shortest decimal that reads back the same.
  return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def _llama_config(meta: dict, tensors: set[str]) -> ModelConfig:
  base = _float(meta.get("llama.rope.freq_base", 10_000.0))
  common = _common_config(meta, "llama", tensors)
  return ModelConfig(family="llama", activation="silu", rope_base=base, local_rope_base=base,
                     **{**common, "norm_eps": _float(common["norm_eps"])})


def _llama_fix(name: str, w: np.ndarray, cfg: ModelConfig) -> np.ndarray:
  if name.endswith("self_attn.q_proj.weight"):
    return unpermute_rotary_rows(w, cfg.num_heads)
  if name.endswith("self_attn.k_proj.weight"):
    return unpermute_rotary_rows(w, cfg.num_kv_heads)
  return w


def _gemma3_config(meta: dict, tensors: set[str]) -> ModelConfig:
  common = _common_config(meta, "gemma3", tensors)
  # llama.cpp's fixed values for Gemma 3: every 6th layer global, local rotary base 1e4,
  # and q.k scaled by key_length ** -0.5 (the 27B model, not read here, differs).
  return ModelConfig(
      family="gemma3", activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
      rope_base=_float(meta.get("gemma3.rope.freq_base", 1_000_000.0)),
      local_rope_base=10_000.0,
      sliding_window=int(_meta(meta, "gemma3", "attention.sliding_window")),
      global_every=int(meta.get("gemma3.attention.sliding_window_pattern", 6)), qk_norm=True,
      post_norms=True, query_scale=common["head_dim"]**-0.5,
      attn_softcap=meta.get("gemma3.attn_logit_softcapping"),
      final_softcap=meta.get("gemma3.final_logit_softcapping"),
      **{**common, "norm_eps": _float(common["norm_eps"])})


def _gemma_fix(name: str, w: np.ndarray, cfg: ModelConfig) -> np.ndarray:
  del cfg
  return w - np.float32(1.0) if name.endswith("norm.weight") else w


GGUF_ARCHITECTURES: dict[str, GGUFArchitecture] = {
    "llama": GGUFArchitecture("llama", _llama_config, _LLAMA_LAYER_NORMS, _llama_fix),
    "gemma3": GGUFArchitecture("gemma3_text", _gemma3_config, _GEMMA_LAYER_NORMS, _gemma_fix),
}


def _hf_name(gguf_name: str, layer_names: dict[str, str]) -> str | None:
  if gguf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[gguf_name]
  match = _LAYER_RE.match(gguf_name)
  if match is None:
    return None
  layer, rest = match.groups()
  hf = {**_LAYER_NAMES, **layer_names}.get(rest)
  return None if hf is None else f"model.layers.{layer}.{hf}"


def read_metadata(reader) -> dict:
  """Every GGUF key-value field as a plain Python value (arrays as lists)."""
  return {name: field.contents() for name, field in reader.fields.items()
          if not name.startswith("GGUF.")}


def dequantized_tensors(reader) -> dict[str, np.ndarray]:
  """Every tensor of the file as float32 numpy in its logical [rows, cols] shape."""
  from gguf import quants  # pylint: disable=g-import-not-at-top

  out = {}
  for tensor in reader.tensors:
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dims innermost first
    values = quants.dequantize(tensor.data, tensor.tensor_type)
    out[tensor.name] = np.asarray(values, dtype=np.float32).reshape(shape)
  return out


def convert_gguf(path: str) -> tuple[ModelConfig, dict, HFTokenizer, dict]:
  """Reads, dequantizes and converts a GGUF model file.

  Args:
    path: the .gguf file.

  Returns:
    (ModelConfig, params of float32 numpy arrays, tokenizer, metadata dict).

  Raises:
    ValueError: unsupported architecture, or a tensor this converter does not know.
  """
  import gguf  # pylint: disable=g-import-not-at-top

  reader = gguf.GGUFReader(path)
  meta = read_metadata(reader)
  arch_name = meta.get("general.architecture")
  if arch_name not in GGUF_ARCHITECTURES:
    raise ValueError(f"{path}: general.architecture={arch_name!r} unsupported; supported: "
                     f"{sorted(GGUF_ARCHITECTURES)}")
  arch = GGUF_ARCHITECTURES[arch_name]
  tensors = dequantized_tensors(reader)
  cfg = arch.config_from_metadata(meta, set(tensors))
  state = {}
  for name, value in tensors.items():
    hf_name = _hf_name(name, arch.layer_names)
    if hf_name is None:
      raise ValueError(f"{path}: tensor {name!r} has no place in a {arch_name} model")
    state[hf_name] = arch.fix_tensor(hf_name, value, cfg)
  del tensors
  params = hf_layout.params_from_hf_state(cfg, state, hf_layout.HF_ARCHITECTURES[
      arch.hf_model_type])
  return cfg, params, tokenizer_from_gguf_metadata(meta), meta

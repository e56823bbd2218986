"""The Hugging Face checkpoint layout of each supported architecture, both ways.

One table per HF architecture (llama, gemma2, gemma3_text) says how its `config.json` maps to a
`ModelConfig` and back, and how its tensor names map to our params. Every importer and the
exporter go through here: HF safetensors -> params (`params_from_hf_state`), params -> HF
(`hf_state_from_params`), and GGUF files, which are first renamed to HF names. So the export
parity test against `transformers` also checks the naming every importer relies on.

HF tensors are PyTorch `nn.Linear` weights, [out_features, in_features]; ours are einsum
kernels, [in, ..., out]. Norm weights need no conversion: HF's Gemma RMSNorm stores w and
multiplies by (1 + w), which is our `norm_plus_one` convention, and HF's Llama RMSNorm stores
the multiplier, which is ours without it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from bonjax.models.config import ModelConfig

Params = dict[str, Any]
HFState = dict[str, np.ndarray]

# Our per-layer norm params -> the HF module name of that norm, per architecture. Llama's
# "post_attention_layernorm" is the pre-MLP norm; Gemma 2/3 name it "pre_feedforward_layernorm"
# and use "post_attention_layernorm" for the norm applied to the attention output.
_LLAMA_NORMS = {
    "attn_norm": "input_layernorm",
    "mlp_norm": "post_attention_layernorm",
}
_GEMMA_NORMS = {
    "attn_norm": "input_layernorm",
    "post_attn_norm": "post_attention_layernorm",
    "mlp_norm": "pre_feedforward_layernorm",
    "post_mlp_norm": "post_feedforward_layernorm",
}
_QK_NORMS = {"q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm"}


@dataclasses.dataclass(frozen=True)
class HFArchitecture:
  """How one HF architecture stores a model.

  Attributes:
    model_type: `config.json`'s "model_type".
    class_name: the `transformers` causal-LM class ("architectures" in `config.json`).
    norms: our per-layer norm param name -> HF module name inside `model.layers.{i}`.
    config_to_hf: ModelConfig -> `config.json` dict (raises ValueError when the config uses a
      switch this architecture cannot express).
    config_from_hf: `config.json` dict -> ModelConfig.
  """

  model_type: str
  class_name: str
  norms: dict[str, str]
  config_to_hf: Callable[[ModelConfig], dict]
  config_from_hf: Callable[[dict], ModelConfig]


# ----------------------------------------------------------------------------------------------
# config.json <-> ModelConfig.
# ----------------------------------------------------------------------------------------------


def _require(cfg: ModelConfig, model_type: str, **expected) -> None:
  for field, value in expected.items():
    actual = getattr(cfg, field)
    if actual != value:
      raise ValueError(f"model.{field}={actual!r}: HF {model_type} requires {value!r}")


def _common_to_hf(cfg: ModelConfig) -> dict:
  return {
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.d_model,
      "intermediate_size": cfg.mlp_dim,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim,
      "rms_norm_eps": cfg.norm_eps,
      "tie_word_embeddings": cfg.tie_embeddings,
      "attention_bias": False,
      "torch_dtype": "float32",
  }


def _common_from_hf(hf: dict) -> dict:
  heads = hf["num_attention_heads"]
  return {
      "vocab_size": hf["vocab_size"],
      "num_layers": hf["num_hidden_layers"],
      "d_model": hf["hidden_size"],
      "num_heads": heads,
      "num_kv_heads": hf.get("num_key_value_heads") or heads,
      "head_dim": hf.get("head_dim") or hf["hidden_size"] // heads,
      "mlp_dim": hf["intermediate_size"],
      "norm_eps": hf.get("rms_norm_eps", 1e-6),
  }


def _rope_theta(hf: dict, layer_type: str | None, default: float) -> float:
  """The rotary base, from `rope_parameters` (nested per layer type or flat) or `rope_theta`."""
  params = hf.get("rope_parameters") or {}
  if layer_type is not None and isinstance(params.get(layer_type), dict):
    params = params[layer_type]
  legacy_scaling = hf.get("rope_scaling") or {}
  for scaling in (params.get("rope_type"), legacy_scaling.get("rope_type"),
                  legacy_scaling.get("type")):
    if scaling not in (None, "default"):
      raise ValueError(f"rope_type={scaling!r}: only unscaled rotary embeddings are supported")
  legacy = {"full_attention": "rope_theta", "sliding_attention": "rope_local_base_freq"}
  return float(params.get("rope_theta", hf.get(legacy.get(layer_type, "rope_theta"), default)))


def _query_pre_attn_scalar(cfg: ModelConfig) -> int | float:
  # HF scales q.k by query_pre_attn_scalar ** -0.5; round trips like 256 ** -0.5 stay exact.
  scale = cfg.query_scale if cfg.query_scale is not None else cfg.head_dim**-0.5
  scalar = scale**-2
  return int(round(scalar)) if math.isclose(scalar, round(scalar), rel_tol=1e-9) else scalar


def _layer_types(cfg: ModelConfig) -> list[str]:
  return ["sliding_attention" if cfg.is_local_layer(i) else "full_attention"
          for i in range(cfg.num_layers)]


def _window_from_layer_types(hf: dict, default_every: int) -> int:
  """`global_every` reproducing HF's `layer_types` (raises when no period fits)."""
  types = hf.get("layer_types")
  if types is None:
    return default_every
  for every in range(1, len(types) + 2):
    expected = ["full_attention" if (i + 1) % every == 0 else "sliding_attention"
                for i in range(len(types))]
    if expected == list(types):
      return every
  raise ValueError(f"layer_types={types}: not a periodic local/global pattern")


def _llama_to_hf(cfg: ModelConfig) -> dict:
  _require(cfg, "llama", activation="silu", norm_plus_one=False, embed_scale=False, qk_norm=False,
           post_norms=False, sliding_window=None, attn_softcap=None, final_softcap=None)
  if cfg.query_scale is not None and not math.isclose(cfg.query_scale, cfg.head_dim**-0.5):
    raise ValueError(f"model.query_scale={cfg.query_scale}: HF llama uses head_dim ** -0.5")
  return {**_common_to_hf(cfg), "hidden_act": "silu", "mlp_bias": False,
          "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
          "bos_token_id": cfg.bos_id}


def _llama_from_hf(hf: dict) -> ModelConfig:
  if hf.get("hidden_act", "silu") != "silu" or hf.get("attention_bias") or hf.get("mlp_bias"):
    raise ValueError("HF llama config with a non-silu activation or biases is not supported")
  base = _rope_theta(hf, None, 10_000.0)
  return ModelConfig(family="llama", activation="silu", tie_embeddings=hf.get(
      "tie_word_embeddings", False), rope_base=base, local_rope_base=base,
                     bos_id=hf.get("bos_token_id"), **_common_from_hf(hf))


def _gemma_to_hf(cfg: ModelConfig, model_type: str) -> dict:
  _require(cfg, model_type, activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
           post_norms=True)
  hf = {**_common_to_hf(cfg), "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": _query_pre_attn_scalar(cfg), "layer_types": _layer_types(cfg),
        "sliding_window": cfg.sliding_window, "attn_logit_softcapping": cfg.attn_softcap,
        "final_logit_softcapping": cfg.final_softcap, "bos_token_id": cfg.bos_id}
  return hf


def _gemma2_to_hf(cfg: ModelConfig) -> dict:
  _require(cfg, "gemma2", qk_norm=False, local_rope_base=cfg.rope_base)
  return {**_gemma_to_hf(cfg, "gemma2"),
          "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base}}


def _gemma3_to_hf(cfg: ModelConfig) -> dict:
  # HF's Gemma 3 attention takes no soft-cap argument (its config field is unused).
  _require(cfg, "gemma3_text", qk_norm=True, attn_softcap=None)
  return {**_gemma_to_hf(cfg, "gemma3_text"), "rope_parameters": {
      "full_attention": {"rope_type": "default", "rope_theta": cfg.rope_base},
      "sliding_attention": {"rope_type": "default", "rope_theta": cfg.local_rope_base}}}


def _gemma_from_hf(hf: dict, family: str, default_every: int, qk_norm: bool) -> ModelConfig:
  common = _common_from_hf(hf)
  if hf.get("hidden_activation", hf.get("hidden_act")) not in ("gelu_pytorch_tanh", None):
    raise ValueError(f"HF {family} config: only gelu_pytorch_tanh is supported")
  return ModelConfig(
      family=family, activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
      tie_embeddings=hf.get("tie_word_embeddings", True),
      rope_base=_rope_theta(hf, "full_attention", 1_000_000.0 if qk_norm else 10_000.0),
      local_rope_base=_rope_theta(hf, "sliding_attention", 10_000.0),
      sliding_window=hf.get("sliding_window"),
      global_every=_window_from_layer_types(hf, default_every) if hf.get("sliding_window") else 0,
      qk_norm=qk_norm, post_norms=True,
      query_scale=float(hf.get("query_pre_attn_scalar", common["head_dim"]))**-0.5,
      attn_softcap=hf.get("attn_logit_softcapping"),
      final_softcap=hf.get("final_logit_softcapping"), bos_id=hf.get("bos_token_id"), **common)


def _gemma2_from_hf(hf: dict) -> ModelConfig:
  cfg = _gemma_from_hf(hf, "gemma2", 2, qk_norm=False)
  return cfg.replace(local_rope_base=cfg.rope_base)


def _gemma3_from_hf(hf: dict) -> ModelConfig:
  # Configs older than `layer_types` give the period as `sliding_window_pattern`.
  return _gemma_from_hf(hf, "gemma3", hf.get("sliding_window_pattern", 6), qk_norm=True)


HF_ARCHITECTURES: dict[str, HFArchitecture] = {
    "llama": HFArchitecture("llama", "LlamaForCausalLM", _LLAMA_NORMS, _llama_to_hf,
                            _llama_from_hf),
    "gemma2": HFArchitecture("gemma2", "Gemma2ForCausalLM", _GEMMA_NORMS, _gemma2_to_hf,
                             _gemma2_from_hf),
    "gemma3_text": HFArchitecture("gemma3_text", "Gemma3ForCausalLM", {**_GEMMA_NORMS,
                                                                       **_QK_NORMS},
                                  _gemma3_to_hf, _gemma3_from_hf),
}

# Our family tag -> the HF architecture that exports it ("tiny" models are llama-shaped).
EXPORT_ARCHITECTURE: dict[str, str] = {
    "tiny": "llama",
    "llama": "llama",
    "gemma": "gemma2",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
}


def architecture_for_model_type(model_type: str) -> HFArchitecture:
  """Raises ValueError listing the supported model types when `model_type` is unknown."""
  if model_type not in HF_ARCHITECTURES:
    raise ValueError(f"HF model_type={model_type!r}: unsupported; supported: "
                     f"{sorted(HF_ARCHITECTURES)}")
  return HF_ARCHITECTURES[model_type]


def architecture_for_config(cfg: ModelConfig) -> HFArchitecture:
  """The HF architecture that exports `cfg`, chosen by its family tag."""
  if cfg.family not in EXPORT_ARCHITECTURE:
    raise ValueError(f"model.family={cfg.family!r}: no HF export; known: "
                     f"{sorted(EXPORT_ARCHITECTURE)}")
  return HF_ARCHITECTURES[EXPORT_ARCHITECTURE[cfg.family]]


def hf_config_dict(cfg: ModelConfig, arch: HFArchitecture) -> dict:
  """The complete `config.json` contents of `cfg` as HF architecture `arch`."""
  return {"architectures": [arch.class_name], "model_type": arch.model_type,
          **arch.config_to_hf(cfg)}


# ----------------------------------------------------------------------------------------------
# Tensors.
# ----------------------------------------------------------------------------------------------

_PREFIX = "model.layers.{}."


def _layer_matrices(cfg: ModelConfig) -> dict[str, tuple[str, Callable, Callable]]:
  """Our matmul param -> (HF name, ours -> HF [out, in], HF -> ours)."""
  d, h, k, hd = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

  def heads_in(num):  # [D, num, Dh] <-> [num * Dh, D]
    return (lambda w: w.reshape(d, num * hd).T, lambda w: w.T.reshape(d, num, hd))

  def plain():  # [in, out] <-> [out, in]
    return (lambda w: w.T, lambda w: w.T)

  return {
      "q": ("self_attn.q_proj.weight", *heads_in(h)),
      "k": ("self_attn.k_proj.weight", *heads_in(k)),
      "v": ("self_attn.v_proj.weight", *heads_in(k)),
      "o": ("self_attn.o_proj.weight", lambda w: w.reshape(h * hd, d).T,
            lambda w: w.T.reshape(h, hd, d)),
      "gate": ("mlp.gate_proj.weight", *plain()),
      "up": ("mlp.up_proj.weight", *plain()),
      "down": ("mlp.down_proj.weight", *plain()),
  }


def _layer_norm_names(cfg: ModelConfig, arch: HFArchitecture) -> dict[str, str]:
  wanted = {"attn_norm", "mlp_norm"}
  if cfg.post_norms:
    wanted |= {"post_attn_norm", "post_mlp_norm"}
  if cfg.qk_norm:
    wanted |= {"q_norm", "k_norm"}
  missing = wanted - set(arch.norms)
  if missing:
    raise ValueError(f"HF {arch.model_type} has no place for {sorted(missing)}")
  return {ours: arch.norms[ours] + ".weight" for ours in sorted(wanted)}


def hf_state_from_params(cfg: ModelConfig, params: Params, arch: HFArchitecture) -> HFState:
  """Our params -> HF state dict (float32 numpy arrays, HF names and layouts).

  Args:
    cfg: model configuration.
    params: params pytree (any array type; read to host as float32).
    arch: target HF architecture.

  Returns:
    {HF tensor name: array}; the tied output head is omitted, as HF checkpoints do.
  """
  host = lambda x: np.asarray(x, dtype=np.float32)
  layers = params["layers"]
  state = {"model.embed_tokens.weight": host(params["embedding"]),
           "model.norm.weight": host(params["final_norm"])}
  if not cfg.tie_embeddings:
    state["lm_head.weight"] = host(params["unembedding"])
  for i in range(cfg.num_layers):
    prefix = _PREFIX.format(i)
    for ours, (name, to_hf, _) in _layer_matrices(cfg).items():
      state[prefix + name] = np.ascontiguousarray(to_hf(host(layers[ours][i])))
    for ours, name in _layer_norm_names(cfg, arch).items():
      state[prefix + name] = host(layers[ours][i])
  return state


def params_from_hf_state(cfg: ModelConfig, state: HFState, arch: HFArchitecture) -> Params:
  """HF state dict -> our params (float32 numpy arrays, layers stacked on axis 0).

  Args:
    cfg: model configuration (e.g. from `arch.config_from_hf`).
    state: {HF tensor name: array}; a "model." prefix may be missing, "lm_head.weight" is
      ignored when the embeddings are tied.
    arch: the checkpoint's HF architecture.

  Raises:
    KeyError: a tensor is missing (the message names it); ValueError: a shape is wrong.
  """
  state = {(k if k.startswith(("model.", "lm_head.")) else "model." + k): v
           for k, v in state.items()}

  def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in state:
      raise KeyError(f"tensor {name!r} missing from the checkpoint")
    value = np.asarray(state[name], dtype=np.float32)
    if value.shape != shape:
      raise ValueError(f"tensor {name!r} has shape {value.shape}, expected {shape}")
    return value

  d, hd, f = cfg.d_model, cfg.head_dim, cfg.mlp_dim
  hf_shapes = {"q": (cfg.num_heads * hd, d), "k": (cfg.num_kv_heads * hd, d),
               "v": (cfg.num_kv_heads * hd, d), "o": (d, cfg.num_heads * hd), "gate": (f, d),
               "up": (f, d), "down": (d, f)}
  norm_shapes = {"q_norm": (hd,), "k_norm": (hd,)}
  per_layer: dict[str, list[np.ndarray]] = {}
  for i in range(cfg.num_layers):
    prefix = _PREFIX.format(i)
    for ours, (name, _, from_hf) in _layer_matrices(cfg).items():
      per_layer.setdefault(ours, []).append(from_hf(get(prefix + name, hf_shapes[ours])))
    for ours, name in _layer_norm_names(cfg, arch).items():
      per_layer.setdefault(ours, []).append(get(prefix + name, norm_shapes.get(ours, (d,))))
  params: Params = {
      "embedding": get("model.embed_tokens.weight", (cfg.vocab_size, d)),
      "final_norm": get("model.norm.weight", (d,)),
      "layers": {name: np.stack(values) for name, values in per_layer.items()},
  }
  if not cfg.tie_embeddings:
    params["unembedding"] = get("lm_head.weight", (cfg.vocab_size, d))
  return params

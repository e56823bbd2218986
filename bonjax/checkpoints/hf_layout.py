"""The Hugging Face checkpoint layout of each supported architecture, both ways.

One table per HF architecture (llama incl. SmolLM2 and Llama 3, qwen2, qwen3, gemma2,
gemma3_text) says how its `config.json` maps to a
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

from bonjax.models.config import ModelConfig, RopeScaling

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


# rope_type of a config.json -> whether we implement it (see config.RopeScaling).
_ROPE_TYPES = ("default", "linear", "llama3")


def _rope(hf: dict, layer_type: str | None, default: float) -> tuple[float, RopeScaling | None]:
  """The rotary base and scaling, from `rope_parameters` (nested per layer type or flat) or the
  legacy `rope_theta` / `rope_scaling` keys.

  Raises:
    ValueError: a rope type we do not implement, naming the config field.
  """
  params, field = hf.get("rope_parameters") or {}, "rope_parameters"
  if layer_type is not None and isinstance(params.get(layer_type), dict):
    params, field = params[layer_type], f"rope_parameters.{layer_type}"
  scaling = params
  if params.get("rope_type") in (None, "default") and hf.get("rope_scaling"):
    # Legacy configs put the scaling of global layers under rope_scaling (Gemma 3: local layers
    # are never scaled).
    scaling = {} if layer_type == "sliding_attention" else hf["rope_scaling"]
    field = "rope_scaling"
  rope_type = scaling.get("rope_type", scaling.get("type")) or "default"
  if rope_type not in _ROPE_TYPES:
    raise ValueError(f"config.json {field}.rope_type={rope_type!r}: unsupported; supported: "
                     f"{list(_ROPE_TYPES)}")
  for key in ("partial_rotary_factor", "attention_factor"):
    value = params.get(key, hf.get(key))
    if value not in (None, 1, 1.0):
      raise ValueError(f"config.json {key}={value!r}: unsupported (only 1.0)")
  legacy = {"full_attention": "rope_theta", "sliding_attention": "rope_local_base_freq"}
  theta = float(params.get("rope_theta", hf.get(legacy.get(layer_type, "rope_theta"), default)))
  if rope_type == "default":
    return theta, None
  if rope_type == "linear":
    return theta, RopeScaling(rope_type="linear", factor=float(scaling["factor"]))
  original = scaling.get("original_max_position_embeddings",
                         hf.get("max_position_embeddings", 8192))
  return theta, RopeScaling(rope_type=rope_type, factor=float(scaling["factor"]),
                            low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
                            high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
                            original_max_position_embeddings=int(original))


def _rope_to_hf(base: float, scaling: RopeScaling | None) -> dict:
  """One `rope_parameters` entry of config.json."""
  if scaling is None:
    return {"rope_type": "default", "rope_theta": base}
  out = {"rope_type": scaling.rope_type, "rope_theta": base, "factor": scaling.factor}
  if scaling.rope_type == "llama3":
    out.update(low_freq_factor=scaling.low_freq_factor, high_freq_factor=scaling.high_freq_factor,
               original_max_position_embeddings=scaling.original_max_position_embeddings)
  return out


def _check_fields(hf: dict, model_type: str, allowed: dict[str, tuple]) -> None:
  """Raises ValueError naming the first config.json field whose value we do not implement.

  Args:
    hf: config.json contents.
    model_type: for the message.
    allowed: field -> the values we implement (an absent field passes).
  """
  for field, values in allowed.items():
    value = hf.get(field)
    if value is not None and value not in values:
      raise ValueError(f"HF {model_type} config.json {field}={value!r}: unsupported; supported: "
                       f"{[v for v in values if v is not None]}")


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
           post_norms=False, sliding_window=None, attn_softcap=None, final_softcap=None,
           qkv_bias=False)
  if cfg.query_scale is not None and not math.isclose(cfg.query_scale, cfg.head_dim**-0.5):
    raise ValueError(f"model.query_scale={cfg.query_scale}: HF llama uses head_dim ** -0.5")
  return {**_common_to_hf(cfg), "hidden_act": "silu", "mlp_bias": False,
          "rope_parameters": _rope_to_hf(cfg.rope_base, cfg.rope_scaling),
          "bos_token_id": cfg.bos_id}


def _llama_from_hf(hf: dict) -> ModelConfig:
  _check_fields(hf, "llama", {"hidden_act": ("silu",), "attention_bias": (False,),
                              "mlp_bias": (False,)})
  base, scaling = _rope(hf, None, 10_000.0)
  return ModelConfig(family="llama", activation="silu", tie_embeddings=hf.get(
      "tie_word_embeddings", False), rope_base=base, local_rope_base=base, rope_scaling=scaling,
                     bos_id=hf.get("bos_token_id"), **_common_from_hf(hf))


def _qwen_to_hf(cfg: ModelConfig, model_type: str) -> dict:
  qwen3 = model_type == "qwen3"
  _require(cfg, model_type, activation="silu", norm_plus_one=False, embed_scale=False,
           qk_norm=qwen3, qkv_bias=not qwen3, post_norms=False, sliding_window=None,
           attn_softcap=None, final_softcap=None, rope_scaling=None)
  if cfg.query_scale is not None and not math.isclose(cfg.query_scale, cfg.head_dim**-0.5):
    raise ValueError(f"model.query_scale={cfg.query_scale}: HF {model_type} uses head_dim ** -0.5")
  hf = {**_common_to_hf(cfg), "hidden_act": "silu", "use_sliding_window": False,
        "rope_parameters": _rope_to_hf(cfg.rope_base, None), "bos_token_id": cfg.bos_id}
  if not qwen3:
    del hf["attention_bias"]  # Qwen2's q/k/v biases are not a switch.
  return hf


def _qwen_from_hf(hf: dict, model_type: str) -> ModelConfig:
  qwen3 = model_type == "qwen3"
  allowed = {"hidden_act": ("silu",), "use_sliding_window": (False,),
             "layer_types": (["full_attention"] * hf.get("num_hidden_layers", 0),)}
  if qwen3:
    allowed["attention_bias"] = (False,)
  _check_fields(hf, model_type, allowed)
  base, scaling = _rope(hf, None, 1_000_000.0 if qwen3 else 10_000.0)
  if scaling is not None:
    raise ValueError(f"HF {model_type} config.json rope_scaling={scaling.rope_type!r}: "
                     "unsupported for this family")
  return ModelConfig(family=model_type, activation="silu",
                     tie_embeddings=hf.get("tie_word_embeddings", False), rope_base=base,
                     local_rope_base=base, qk_norm=qwen3, qkv_bias=not qwen3,
                     bos_id=hf.get("bos_token_id"), **_common_from_hf(hf))


def _gemma_to_hf(cfg: ModelConfig, model_type: str) -> dict:
  _require(cfg, model_type, activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
           post_norms=True, qkv_bias=False)
  hf = {**_common_to_hf(cfg), "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": _query_pre_attn_scalar(cfg), "layer_types": _layer_types(cfg),
        "sliding_window": cfg.sliding_window, "attn_logit_softcapping": cfg.attn_softcap,
        "final_logit_softcapping": cfg.final_softcap, "bos_token_id": cfg.bos_id}
  return hf


def _gemma2_to_hf(cfg: ModelConfig) -> dict:
  _require(cfg, "gemma2", qk_norm=False, local_rope_base=cfg.rope_base, rope_scaling=None)
  return {**_gemma_to_hf(cfg, "gemma2"), "rope_parameters": _rope_to_hf(cfg.rope_base, None)}


def _gemma3_to_hf(cfg: ModelConfig) -> dict:
  # HF's Gemma 3 attention takes no soft-cap argument (its config field is unused).
  _require(cfg, "gemma3_text", qk_norm=True, attn_softcap=None)
  return {**_gemma_to_hf(cfg, "gemma3_text"), "rope_parameters": {
      "full_attention": _rope_to_hf(cfg.rope_base, cfg.rope_scaling),
      "sliding_attention": _rope_to_hf(cfg.local_rope_base, None)}}


def _gemma_from_hf(hf: dict, family: str, default_every: int, qk_norm: bool) -> ModelConfig:
  common = _common_from_hf(hf)
  _check_fields(hf, family, {"hidden_activation": ("gelu_pytorch_tanh",),
                             "hidden_act": ("gelu_pytorch_tanh",)})
  rope_base, scaling = _rope(hf, "full_attention", 1_000_000.0 if qk_norm else 10_000.0)
  local_rope_base, local_scaling = _rope(hf, "sliding_attention", 10_000.0)
  if local_scaling is not None:
    raise ValueError(f"HF {family} config.json rope_parameters.sliding_attention.rope_type="
                     f"{local_scaling.rope_type!r}: unsupported (local layers are unscaled)")
  return ModelConfig(
      family=family, activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
      tie_embeddings=hf.get("tie_word_embeddings", True),
      rope_base=rope_base, local_rope_base=local_rope_base, rope_scaling=scaling,
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
    "qwen2": HFArchitecture("qwen2", "Qwen2ForCausalLM", _LLAMA_NORMS,
                            lambda cfg: _qwen_to_hf(cfg, "qwen2"),
                            lambda hf: _qwen_from_hf(hf, "qwen2")),
    "qwen3": HFArchitecture("qwen3", "Qwen3ForCausalLM", {**_LLAMA_NORMS, **_QK_NORMS},
                            lambda cfg: _qwen_to_hf(cfg, "qwen3"),
                            lambda hf: _qwen_from_hf(hf, "qwen3")),
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
    "qwen2": "qwen2",
    "qwen3": "qwen3",
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


def _layer_biases(cfg: ModelConfig) -> dict[str, tuple[str, int]]:
  """Our q/k/v bias param -> (HF name, heads); HF stores [heads * Dh], we [heads, Dh]."""
  if not cfg.qkv_bias:
    return {}
  return {"q_bias": ("self_attn.q_proj.bias", cfg.num_heads),
          "k_bias": ("self_attn.k_proj.bias", cfg.num_kv_heads),
          "v_bias": ("self_attn.v_proj.bias", cfg.num_kv_heads)}


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
    for ours, (name, _) in _layer_biases(cfg).items():
      state[prefix + name] = host(layers[ours][i]).reshape(-1)
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
    for ours, (name, heads) in _layer_biases(cfg).items():
      per_layer.setdefault(ours, []).append(get(prefix + name, (heads * hd,)).reshape(heads, hd))
  params: Params = {
      "embedding": get("model.embed_tokens.weight", (cfg.vocab_size, d)),
      "final_norm": get("model.norm.weight", (d,)),
      "layers": {name: np.stack(values) for name, values in per_layer.items()},
  }
  if not cfg.tie_embeddings:
    params["unembedding"] = get("lm_head.weight", (cfg.vocab_size, d))
  return params

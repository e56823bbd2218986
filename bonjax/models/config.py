"""Architecture description of the one decoder-only transformer, and named presets.

One frozen dataclass describes every family (tiny, llama, gemma, gemma3): the families differ
only in switches (norm convention, embedding scale, activation, q/k norm, post-norms, local
attention windows, soft-capping), never in code paths chosen by family name.
"""

from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Rotary frequency scaling of global layers, as HF checkpoints declare it.

  Attributes:
    rope_type: "linear" (every inverse frequency / factor, e.g. Gemma 3 4B+) or "llama3"
      (Llama 3.1+: low frequencies / factor, high ones kept, a smooth ramp between).
    factor: context extension factor.
    low_freq_factor: llama3 only: wavelengths above original_max_position_embeddings /
      low_freq_factor are scaled fully.
    high_freq_factor: llama3 only: wavelengths below original_max_position_embeddings /
      high_freq_factor are kept.
    original_max_position_embeddings: llama3 only: pre-extension context length.
  """

  rope_type: str = "linear"
  factor: float = 1.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Static architecture of a decoder-only transformer.

  Attributes:
    family: free-form family tag ("tiny", "llama", "gemma", "gemma3"); informational only.
    vocab_size: number of token ids (rows of the embedding table).
    num_layers: number of transformer blocks.
    d_model: residual stream width.
    num_heads: query heads.
    num_kv_heads: key/value heads (grouped-query attention when < num_heads).
    head_dim: width of one attention head.
    mlp_dim: hidden width of the gated MLP.
    activation: "silu" (SwiGLU, llama) or "gelu_tanh" (GeGLU, gemma).
    norm_eps: RMSNorm epsilon.
    norm_plus_one: the stored norm weight w multiplies as (1 + w) (gemma convention).
    embed_scale: multiply token embeddings by sqrt(d_model) (gemma).
    tie_embeddings: the output head is the (unscaled) embedding table.
    rope_base: rotary base of global layers.
    local_rope_base: rotary base of local (sliding-window) layers.
    sliding_window: window of local layers in tokens; None means no local layers.
    global_every: with a sliding window, every `global_every`-th layer (1-based) is global,
      e.g. 6 gives layers 5, 11, 17 global (Gemma 3); 0 means all layers are global.
    qk_norm: per-head RMSNorm on queries and keys before rotary (gemma3).
    post_norms: extra RMSNorm after attention and after the MLP, before the residual add.
    query_scale: attention logits are multiplied by this; None means head_dim ** -0.5.
    attn_softcap: tanh soft-cap of attention logits (gemma2); None disables.
    final_softcap: tanh soft-cap of output logits (gemma2); None disables.
    bos_id: token prepended to every prompt by tokenizers of this model (informational).
    qkv_bias: q/k/v projections add a learned bias (Qwen2).
    rope_scaling: rotary scaling of global layers (Llama 3.1+, Gemma 3 4B+); None: unscaled.

  Execution and fine-tuning options (not architecture: `architecture()` resets them; run
  configs set them as `model.<name>`, see README "Precision, memory and LoRA"):
    remat: rematerialisation of the scanned layer stack in the backward pass: "none", "dots"
      (keep matmul outputs, recompute the rest) or "full" (keep only each layer's input).
    logits_chunk: output layer and token log-probabilities of whole sequences are computed in
      sequence chunks of about this many tokens (all rows together), never [B, T, V] at once;
      None computes them in one piece.
    attention_impl: "xla" (einsum attention) or "cudnn" (jax.nn.dot_product_attention's fused
      kernel; GPU only, forward pass and training, not the cached decoding step).
    lora_rank: rank of the low-rank adapters (0: none; see bonjax/models/lora.py).
    lora_alpha: adapters are scaled by lora_alpha / lora_rank.
    lora_targets: the matmul weights that get adapters (of q, k, v, o, gate, up, down).
  """

  family: str = "tiny"
  vocab_size: int = 32
  num_layers: int = 2
  d_model: int = 64
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  mlp_dim: int = 128
  activation: str = "silu"
  norm_eps: float = 1e-6
  norm_plus_one: bool = False
  embed_scale: bool = False
  tie_embeddings: bool = True
  rope_base: float = 10_000.0
  local_rope_base: float = 10_000.0
  sliding_window: int | None = None
  global_every: int = 0
  qk_norm: bool = False
  post_norms: bool = False
  query_scale: float | None = None
  attn_softcap: float | None = None
  final_softcap: float | None = None
  bos_id: int | None = None
  # HF checkpoint families (bonjax/checkpoints/hf_layout.py).
  qkv_bias: bool = False
  rope_scaling: RopeScaling | None = None
  # Execution and fine-tuning options (see the docstring).
  remat: str = "none"
  logits_chunk: int | None = None
  attention_impl: str = "xla"
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ("q", "k", "v", "o", "gate", "up", "down")

  def __post_init__(self):
    # Configs read back from JSON (the converted-weights cache, a reward model's record) carry
    # the scaling as a dict and tuples as lists; the config must stay hashable (a jit key).
    if isinstance(self.rope_scaling, dict):
      object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
    if isinstance(self.lora_targets, list):
      object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

  def architecture(self) -> "ModelConfig":
    """This config with the execution and fine-tuning options at their defaults."""
    return dataclasses.replace(self, **{f: ModelConfig.__dataclass_fields__[f].default
                                        for f in EXECUTION_FIELDS})

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def is_local_layer(self, layer: int) -> bool:
    """Whether 0-based `layer` uses sliding-window attention."""
    if self.sliding_window is None or self.global_every <= 0:
      return False
    return (layer + 1) % self.global_every != 0

  def num_params(self) -> int:
    """Parameter count (embedding counted once when tied)."""
    attn = self.d_model * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
    mlp = 3 * self.d_model * self.mlp_dim
    norms = self.d_model * (4 if self.post_norms else 2) + (2 * self.head_dim if self.qk_norm else 0)
    biases = self.head_dim * (self.num_heads + 2 * self.num_kv_heads) if self.qkv_bias else 0
    layer = attn + mlp + norms + biases
    embed = self.vocab_size * self.d_model * (1 if self.tie_embeddings else 2)
    return self.num_layers * layer + embed + self.d_model


EXECUTION_FIELDS = ("remat", "logits_chunk", "attention_impl", "lora_rank", "lora_alpha",
                    "lora_targets")

_PRESETS: dict[str, Callable[[], ModelConfig]] = {}


def register_preset(name: str):
  """Decorator adding a zero-argument ModelConfig factory to the preset registry."""

  def wrap(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    _PRESETS[name] = fn
    return fn

  return wrap


def preset_names() -> list[str]:
  return sorted(_PRESETS)


def get_preset(name: str, **overrides) -> ModelConfig:
  """Returns the preset `name` with field `overrides` applied.

  Raises:
    KeyError: unknown preset, with the list of known ones.
  """
  if name not in _PRESETS:
    raise KeyError(f"model.preset={name!r}: unknown preset; known presets: {preset_names()}")
  return _PRESETS[name]().replace(**overrides)


@register_preset("tiny")
def _tiny() -> ModelConfig:
  # Sized to learn multi-digit arithmetic from scratch on 2 CPU cores in a few minutes.
  return ModelConfig(family="tiny", vocab_size=32, num_layers=4, d_model=128, num_heads=4,
                     num_kv_heads=2, head_dim=32, mlp_dim=384, activation="silu",
                     rope_base=10_000.0)


@register_preset("tiny-byte")
def _tiny_byte() -> ModelConfig:
  # The tiny model with a byte vocabulary (tokenizer.name="byte"): real-text tasks on CPU.
  return _tiny().replace(vocab_size=264)


@register_preset("smollm2-135m")
def _smollm2_135m() -> ModelConfig:
  return ModelConfig(family="llama", vocab_size=49_152, num_layers=30, d_model=576, num_heads=9,
                     num_kv_heads=3, head_dim=64, mlp_dim=1536, activation="silu", norm_eps=1e-5,
                     rope_base=100_000.0, local_rope_base=100_000.0, bos_id=1)


@register_preset("gemma3-270m")
def _gemma3_270m() -> ModelConfig:
  return ModelConfig(family="gemma3", vocab_size=262_144, num_layers=18, d_model=640, num_heads=4,
                     num_kv_heads=1, head_dim=256, mlp_dim=2048, activation="gelu_tanh",
                     norm_eps=1e-6, norm_plus_one=True, embed_scale=True, rope_base=1_000_000.0,
                     local_rope_base=10_000.0, sliding_window=512, global_every=6, qk_norm=True,
                     post_norms=True, query_scale=256 ** -0.5, bos_id=2)


def _gemma2(num_layers: int, d_model: int, num_heads: int, num_kv_heads: int,
            mlp_dim: int) -> ModelConfig:
  # Gemma 2: alternating local (4096-token window) and global layers with one rope base,
  # post-norms, attention and final logit soft-capping, q.k scaled by 256 ** -0.5.
  return ModelConfig(family="gemma2", vocab_size=256_000, num_layers=num_layers,
                     d_model=d_model, num_heads=num_heads, num_kv_heads=num_kv_heads,
                     head_dim=256, mlp_dim=mlp_dim, activation="gelu_tanh", norm_eps=1e-6,
                     norm_plus_one=True, embed_scale=True, rope_base=10_000.0,
                     local_rope_base=10_000.0, sliding_window=4096, global_every=2,
                     post_norms=True, query_scale=256 ** -0.5, attn_softcap=50.0,
                     final_softcap=30.0, bos_id=2)


@register_preset("gemma2-2b")
def _gemma2_2b() -> ModelConfig:
  # The paper's (Chow et al.) main model; bring the weights as an HF checkpoint.
  return _gemma2(num_layers=26, d_model=2304, num_heads=8, num_kv_heads=4, mlp_dim=9216)


@register_preset("gemma2-9b")
def _gemma2_9b() -> ModelConfig:
  return _gemma2(num_layers=42, d_model=3584, num_heads=16, num_kv_heads=8, mlp_dim=14_336)

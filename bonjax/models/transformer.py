"""The one decoder-only transformer: parameters, full forward pass, output head.

Parameters are declared by Flax Linen modules (`TransformerParams`), so each carries logical
axis names for sharding, but the forward pass is a set of pure functions of the unboxed params
pytree. One implementation of a block (`layer_qkv`, `layer_attention_residual`,
`layer_mlp_residual`) serves the full forward pass here and the cached decoding step in
`kv_cache.py`; only where the keys come from differs.

Layers are stacked on a leading "layers" axis and the forward pass scans over them, which keeps
compile time flat in depth (Gemma 3 has 18 layers, SmolLM2 30). The per-layer differences of a
family (sliding window or global attention, local or global rotary base) are scanned-over
arrays built from the config at trace time, so one scan body serves every layer.

The sampler instead runs the same block unrolled over `unstack_layers(params)`, one buffer per
layer weight: a scan body (or a static slice inside a loop) reads each layer's weights through
a slice of the stack, which XLA:CPU copies and, in bfloat16, feeds to a dot that misses the
AMX matmul kernels. Measured on the 2-core CPU this was developed on (SmolLM2's 30 MLP blocks at
64 rows): 126 ms scanned vs 28 ms unstacked in bfloat16, 74 vs 60 ms in float32.

Parameter layout (float32; L = num_layers):

  embedding       [V, D]           ("vocab", "embed")
  unembedding     [V, D]           ("vocab", "embed")     only when tie_embeddings is False
  final_norm      [D]              ("embed",)
  layers/
    attn_norm     [L, D]           ("layers", "embed")
    q             [L, D, H, Dh]    ("layers", "embed", "q_heads", "head_dim")
    k, v          [L, D, K, Dh]    ("layers", "embed", "kv_heads", "head_dim")
    o             [L, H, Dh, D]    ("layers", "q_heads", "head_dim", "embed")
    q_norm,k_norm [L, Dh]          ("layers", "head_dim")  only with qk_norm
    q_bias        [L, H, Dh]       ("layers", "q_heads", "head_dim")   only with qkv_bias
    k_bias,v_bias [L, K, Dh]       ("layers", "kv_heads", "head_dim")  only with qkv_bias
    post_attn_norm[L, D]           ("layers", "embed")     only with post_norms
    mlp_norm      [L, D]           ("layers", "embed")
    gate, up      [L, D, F]        ("layers", "embed", "mlp")
    down          [L, F, D]        ("layers", "mlp", "embed")
    post_mlp_norm [L, D]           ("layers", "embed")     only with post_norms

Norm weights are stored as used by the config's convention: with norm_plus_one the multiplier
is (1 + w) and w is initialised to 0.

Precision: the residual stream, norms, rotary and softmax are float32; matmul inputs are the
compute dtype (params are cast where used, norm weights never) and accumulate in float32.
Every matmul goes through `layers.dense`, which asks for Precision.HIGHEST when its inputs are
float32, so compute_dtype="float32" means true float32 matmuls on every backend (not TF32 on
NVIDIA GPUs); bfloat16 inputs multiply in one bfloat16 pass with float32 accumulation.

LoRA adapters (`bonjax.models.lora`), when cfg.lora_rank > 0, are declared next to their
target weights in the layer stack ("q_lora_a" [L, D, r], "q_lora_b" [L, r, H, Dh], ...).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bonjax.models import attention
from bonjax.models import layers
from bonjax.models import lora
from bonjax.models.config import ModelConfig

Params = dict[str, Any]

# Window of a global layer: larger than any sequence, so the window test never masks.
GLOBAL_WINDOW = 2**30

# model.remat -> how the scanned layer stack is rematerialised in the backward pass: nothing
# (store every residual), "dots" (store the matmul outputs, recompute the elementwise work and
# the attention softmax) or "full" (store each layer's input, recompute the whole layer).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def remat_layer(one_layer, remat: str):
  """`one_layer` under the `REMAT_POLICIES[remat]` checkpoint policy (unchanged for "none")."""
  policy = REMAT_POLICIES[remat]
  if policy is None:
    return one_layer
  return jax.checkpoint(one_layer, prevent_cse=False, policy=policy)


def check_config(cfg: ModelConfig) -> None:
  """Raises ValueError naming the field, value and rule when `cfg` cannot be built."""
  rules = [
      ("num_heads", cfg.num_heads, cfg.num_kv_heads > 0 and cfg.num_heads % cfg.num_kv_heads == 0,
       f"must be a multiple of num_kv_heads={cfg.num_kv_heads}"),
      ("head_dim", cfg.head_dim, cfg.head_dim > 0 and cfg.head_dim % 2 == 0,
       "must be even and > 0 (split-half rotary)"),
      ("activation", cfg.activation, cfg.activation in layers.ACTIVATIONS,
       f"must be one of {sorted(layers.ACTIVATIONS)}"),
      ("sliding_window", cfg.sliding_window, cfg.sliding_window is None or cfg.sliding_window >= 1,
       "must be None or >= 1"),
  ]
  rules += [
      ("remat", cfg.remat, cfg.remat in REMAT_POLICIES, f"must be one of {sorted(REMAT_POLICIES)}"),
      ("logits_chunk", cfg.logits_chunk, cfg.logits_chunk is None or cfg.logits_chunk >= 1,
       "must be None or >= 1 (tokens per chunk)"),
      ("attention_impl", cfg.attention_impl, cfg.attention_impl in attention.ATTENTION_IMPLS,
       f"must be one of {sorted(attention.ATTENTION_IMPLS)}"),
  ]
  for name, value, ok, rule in rules:
    if not ok:
      raise ValueError(f"model.{name}={value!r}: {rule}")
  lora.check_lora(cfg)


# ----------------------------------------------------------------------------------------------
# Parameter declaration (Linen): shapes, initialisers and logical axis names.
# ----------------------------------------------------------------------------------------------


def _declare(module: nn.Module, name: str, init, shape: tuple[int, ...],
             axes: tuple[str | None, ...]) -> jax.Array:
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


def _stacked_dense_init(in_axis, out_axis):
  # Fan-in scaling per layer: the leading layer axis is a batch axis, not a fan.
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=in_axis,
                                          out_axis=out_axis, batch_axis=(0,))


def _norm_init(cfg: ModelConfig):
  # The multiplier starts at 1 under either convention.
  return nn.initializers.zeros if cfg.norm_plus_one else nn.initializers.ones


# Logical axes of the LoRA target weights (their adapters split the same way).
LORA_BASE_AXES: dict[str, tuple[str, ...]] = {
    "q": ("layers", "embed", "q_heads", "head_dim"),
    "k": ("layers", "embed", "kv_heads", "head_dim"),
    "v": ("layers", "embed", "kv_heads", "head_dim"),
    "o": ("layers", "q_heads", "head_dim", "embed"),
    "gate": ("layers", "embed", "mlp"),
    "up": ("layers", "embed", "mlp"),
    "down": ("layers", "mlp", "embed"),
}


class LayerStackParams(nn.Module):
  """Declares the parameters of all blocks, stacked on a leading "layers" axis."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self) -> None:
    c = self.cfg
    n, d, h, k, hd, f = c.num_layers, c.d_model, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim
    norm = _norm_init(c)
    _declare(self, "attn_norm", norm, (n, d), ("layers", "embed"))
    _declare(self, "q", _stacked_dense_init(1, (2, 3)), (n, d, h, hd),
             ("layers", "embed", "q_heads", "head_dim"))
    _declare(self, "k", _stacked_dense_init(1, (2, 3)), (n, d, k, hd),
             ("layers", "embed", "kv_heads", "head_dim"))
    _declare(self, "v", _stacked_dense_init(1, (2, 3)), (n, d, k, hd),
             ("layers", "embed", "kv_heads", "head_dim"))
    _declare(self, "o", _stacked_dense_init((1, 2), 3), (n, h, hd, d),
             ("layers", "q_heads", "head_dim", "embed"))
    if c.qkv_bias:
      _declare(self, "q_bias", nn.initializers.zeros, (n, h, hd),
               ("layers", "q_heads", "head_dim"))
      for name in ("k_bias", "v_bias"):
        _declare(self, name, nn.initializers.zeros, (n, k, hd), ("layers", "kv_heads", "head_dim"))
    if c.qk_norm:
      _declare(self, "q_norm", norm, (n, hd), ("layers", "head_dim"))
      _declare(self, "k_norm", norm, (n, hd), ("layers", "head_dim"))
    if c.post_norms:
      _declare(self, "post_attn_norm", norm, (n, d), ("layers", "embed"))
      _declare(self, "post_mlp_norm", norm, (n, d), ("layers", "embed"))
    _declare(self, "mlp_norm", norm, (n, d), ("layers", "embed"))
    _declare(self, "gate", _stacked_dense_init(1, 2), (n, d, f), ("layers", "embed", "mlp"))
    _declare(self, "up", _stacked_dense_init(1, 2), (n, d, f), ("layers", "embed", "mlp"))
    _declare(self, "down", _stacked_dense_init(1, 2), (n, f, d), ("layers", "mlp", "embed"))
    shapes = {"q": (n, d, h, hd), "k": (n, d, k, hd), "v": (n, d, k, hd), "o": (n, h, hd, d),
              "gate": (n, d, f), "up": (n, d, f), "down": (n, f, d)}
    for name in c.lora_targets if c.lora_rank else ():
      adapters = lora.adapter_shapes(c, name, shapes[name], LORA_BASE_AXES[name])
      for adapter, (shape, axes) in adapters.items():
        # Fan-in scaled A, zero B: a fresh adapter leaves the model unchanged.
        init = (_stacked_dense_init(tuple(range(1, len(shape) - 1)), len(shape) - 1)
                if adapter.endswith("_a") else nn.initializers.zeros)
        _declare(self, adapter, init, shape, axes)


class TransformerParams(nn.Module):
  """Declares every parameter of the model; `__call__` creates them and computes nothing."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self) -> None:
    c = self.cfg
    # Unit-scale logits at initialisation: rows of norm ~1 against a final hidden of RMS 1.
    embed_init = nn.initializers.normal(stddev=c.d_model**-0.5)
    _declare(self, "embedding", embed_init, (c.vocab_size, c.d_model), ("vocab", "embed"))
    if not c.tie_embeddings:
      _declare(self, "unembedding", embed_init, (c.vocab_size, c.d_model), ("vocab", "embed"))
    _declare(self, "final_norm", _norm_init(c), (c.d_model,), ("embed",))
    LayerStackParams(c, name="layers")()


def init_params(cfg: ModelConfig, rng: jax.Array) -> Params:
  """Returns freshly initialised float32 parameters (plain arrays, no partitioning boxes).

  Args:
    cfg: model configuration.
    rng: PRNG key.
  """
  check_config(cfg)
  return _jitted_init(cfg, rng)


@functools.partial(jax.jit, static_argnums=0)
def _jitted_init(cfg: ModelConfig, rng: jax.Array) -> Params:
  return nn.unbox(TransformerParams(cfg).init(rng)["params"])


def param_logical_axes(cfg: ModelConfig) -> Params:
  """Logical axis names of every parameter, without allocating any.

  Returns:
    A pytree shaped like `init_params(cfg, ...)` whose leaves are tuples of axis names
    (use `is_leaf=lambda x: isinstance(x, tuple)` when mapping over it).
  """
  check_config(cfg)
  abstract = jax.eval_shape(lambda: TransformerParams(cfg).init(jax.random.key(0))["params"])
  return jax.tree.map(lambda box: tuple(box.names), abstract,
                      is_leaf=lambda x: isinstance(x, nn.Partitioned))


def unstack_layers(params: Params) -> Params:
  """The params with "layers" as a tuple of per-layer dicts (no layer axis), one buffer each.

  `transformer_forward` and `kv_cache.decode_step` run the layers unrolled over this layout.
  Inside a jit-compiled function the split is one copy of the layer weights; do it once, outside
  any loop (see the module docstring for why a loop should not read a stacked layout).
  """
  stacked = params["layers"]
  num_layers = jax.tree.leaves(stacked)[0].shape[0]
  per_layer = tuple(jax.tree.map(lambda w, i=i: w[i], stacked) for i in range(num_layers))
  return {**params, "layers": per_layer}


def cast_params(params: Params, dtype: Any) -> Params:
  """Casts the matmul weights to `dtype` once; norm weights stay float32.

  A forward pass casts weights where it uses them anyway, so this changes no result; it lets a
  decoding loop read weights in `dtype` on every step instead of converting them each time.
  """

  def cast(path, leaf):
    is_norm = any(getattr(p, "key", "").endswith("norm") for p in path)
    return leaf if is_norm else leaf.astype(dtype)

  return jax.tree_util.tree_map_with_path(cast, params)


# ----------------------------------------------------------------------------------------------
# Forward pass.
# ----------------------------------------------------------------------------------------------


def positions_from_valid(valid: jax.Array) -> jax.Array:
  """Token positions cumsum(valid) - 1: the first real token is at 0 whatever the padding.

  Args:
    valid: [B, T] bool.

  Returns:
    [B, T] int32 (padding before the first real token gets -1; it is never attended to).
  """
  return jnp.cumsum(valid.astype(jnp.int32), axis=-1) - 1


def layer_tables(cfg: ModelConfig) -> dict[str, jax.Array]:
  """Per-layer constants scanned over with the layer params.

  Returns:
    inv_freq [L, head_dim // 2] float32 rotary inverse frequencies (local or global base),
    window [L] int32 attention window (GLOBAL_WINDOW for global layers).
  """
  is_local = [cfg.is_local_layer(i) for i in range(cfg.num_layers)]
  bases = [cfg.local_rope_base if local else cfg.rope_base for local in is_local]
  windows = [cfg.sliding_window if local else GLOBAL_WINDOW for local in is_local]
  inv_freq = layers.rope_inverse_frequencies(bases, cfg.head_dim)
  if cfg.rope_scaling is not None:  # HF scales global layers only (Gemma 3's local ones not).
    inv_freq = np.where(np.asarray(is_local)[:, None], inv_freq,
                        layers.scale_rope_frequencies(inv_freq, cfg.rope_scaling))
  return {
      "inv_freq": jnp.asarray(inv_freq),
      "window": jnp.asarray(np.asarray(windows, dtype=np.int32)),
  }


def embed_tokens(params: Params, cfg: ModelConfig, tokens: jax.Array, dtype: Any) -> jax.Array:
  """Token embeddings as the float32 residual stream, [..., D].

  Rows are rounded to the compute dtype first, so a forward pass gives the same result whether
  the caller pre-cast the params or not.
  """
  x = jnp.take(params["embedding"], tokens, axis=0).astype(dtype).astype(jnp.float32)
  if cfg.embed_scale:
    x = x * np.float32(np.sqrt(cfg.d_model))
  return x


def _norm(x: jax.Array, scale: jax.Array, cfg: ModelConfig) -> jax.Array:
  return layers.rms_norm(x, scale, eps=cfg.norm_eps, plus_one=cfg.norm_plus_one)


def layer_qkv(lp: Params, cfg: ModelConfig, x: jax.Array, positions: jax.Array,
              inv_freq: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Queries, keys and values of one block (pre-norm, q/k norm, rotary).

  Args:
    lp: one layer's params (no layer axis).
    cfg: model configuration.
    x: [B, T, D] float32 residual stream.
    positions: [B, T] int32.
    inv_freq: [head_dim // 2] rotary inverse frequencies of this layer.
    dtype: compute dtype.

  Returns:
    q [B, T, H, Dh], k and v [B, T, K, Dh], all in `dtype`.
  """
  h = _norm(x, lp["attn_norm"], cfg).astype(dtype)
  q = lora.project(lp, "q", h, cfg)
  k = lora.project(lp, "k", h, cfg)
  v = lora.project(lp, "v", h, cfg)
  if cfg.qkv_bias:  # Rounded to the compute dtype like every weight (see cast_params).
    q, k, v = (y + lp[name].astype(dtype).astype(jnp.float32) for y, name in
               ((q, "q_bias"), (k, "k_bias"), (v, "v_bias")))
  if cfg.qk_norm:
    q = _norm(q, lp["q_norm"], cfg)
    k = _norm(k, lp["k_norm"], cfg)
  q = layers.apply_rope(q, positions, inv_freq)
  k = layers.apply_rope(k, positions, inv_freq)
  return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def layer_attention_residual(lp: Params, cfg: ModelConfig, x: jax.Array,
                             attn: jax.Array) -> jax.Array:
  """Output projection of attention [B, T, H, Dh] (+ post-norm) added to the residual x."""
  out = lora.project(lp, "o", attn, cfg)
  if cfg.post_norms:
    out = _norm(out, lp["post_attn_norm"], cfg)
  return x + out


def layer_mlp_residual(lp: Params, cfg: ModelConfig, x: jax.Array, dtype: Any) -> jax.Array:
  """Gated MLP block (pre-norm, optional post-norm) added to the residual x [B, T, D]."""
  h = _norm(x, lp["mlp_norm"], cfg).astype(dtype)
  gate = lora.project(lp, "gate", h, cfg)
  up = lora.project(lp, "up", h, cfg)
  hidden = (layers.ACTIVATIONS[cfg.activation](gate) * up).astype(dtype)
  out = lora.project(lp, "down", hidden, cfg)
  if cfg.post_norms:
    out = _norm(out, lp["post_mlp_norm"], cfg)
  return x + out


def final_norm(params: Params, cfg: ModelConfig, x: jax.Array, dtype: Any) -> jax.Array:
  """The final RMSNorm of the residual stream x [..., D], cast to the compute dtype."""
  return _norm(x, params["final_norm"], cfg).astype(dtype)


def attention_mask(positions: jax.Array, valid: jax.Array, window: jax.Array) -> jax.Array:
  """[B, T, T] causal mask over valid keys within `window` positions of the query."""
  t = positions.shape[1]
  causal = jnp.tril(jnp.ones((t, t), dtype=bool))
  distance = positions[:, :, None] - positions[:, None, :]
  return causal[None] & valid[:, None, :] & (distance < window)


def transformer_forward(params: Params, cfg: ModelConfig, tokens: jax.Array,
                        positions: jax.Array, valid: jax.Array, *, compute_dtype: Any,
                        return_kv: bool = False, remat: bool | str | None = None):
  """Full forward pass; optionally also every layer's keys and values (for prefill).

  Args:
    params: model params (float32, or pre-cast by `cast_params`; stacked or `unstack_layers`).
    cfg: model configuration.
    tokens: [B, T] int32.
    positions: [B, T] int32, usually `positions_from_valid(valid)`.
    valid: [B, T] bool; invalid keys are never attended to.
    compute_dtype: matmul input dtype.
    return_kv: also return keys and values.
    remat: a `REMAT_POLICIES` name; None takes cfg.remat (True means "full", False "none").

  Returns:
    (h [B, T, D] in compute_dtype after the final norm, keys and values in compute_dtype or
     None: (k, v) each [num_layers, B, T, K, Dh] for stacked params, a tuple of per-layer
     (k, v) each [B, T, K, Dh] for `unstack_layers` params).
  """
  check_config(cfg)

  def one_layer(x, per_layer):
    lp, table, _ = per_layer
    q, k, v = layer_qkv(lp, cfg, x, positions, table["inv_freq"], compute_dtype)
    mask = attention_mask(positions, valid, table["window"])
    x = layer_attention_residual(lp, cfg, x, attention.full_attention(q, k, v, mask, cfg))
    x = layer_mlp_residual(lp, cfg, x, compute_dtype)
    return x, ((k, v) if return_kv else None)

  one_layer = remat_layer(one_layer, remat_name(cfg, remat))
  x = embed_tokens(params, cfg, tokens, compute_dtype)
  x, kv = run_layers(one_layer, x, params["layers"], layer_tables(cfg))
  return final_norm(params, cfg, x, compute_dtype), kv


def remat_name(cfg: ModelConfig, remat: bool | str | None) -> str:
  """The remat policy name of an explicit `remat` argument, or cfg.remat when it is None."""
  if remat is None:
    return cfg.remat
  if isinstance(remat, bool):
    return "full" if remat else "none"
  return remat


def run_layers(one_layer, x: jax.Array, layer_params, tables: dict[str, jax.Array],
               extra: Any = None):
  """Threads x through every block: a scan over stacked params, a loop over unstacked ones.

  Args:
    one_layer: (x, (layer params, layer table, layer extra)) -> (x, per-layer output).
    x: the residual stream.
    layer_params: stacked params["layers"] (arrays with a leading layer axis), or the tuple of
      per-layer dicts from `unstack_layers`.
    tables: `layer_tables(cfg)`.
    extra: per-layer inputs laid out like layer_params (stacked arrays, or a tuple with one
      entry per layer), or None.

  Returns:
    (x, per-layer outputs): stacked on a leading layer axis after a scan, a tuple with one
    output per layer after the loop.
  """
  if isinstance(layer_params, dict):
    return jax.lax.scan(one_layer, x, (layer_params, tables, extra))
  outputs = []
  for i, lp in enumerate(layer_params):
    table = jax.tree.map(lambda t, i=i: t[i], tables)
    x, out = one_layer(x, (lp, table, None if extra is None else extra[i]))
    outputs.append(out)
  return x, tuple(outputs)


def hidden_states(params: Params, cfg: ModelConfig, tokens: jax.Array, positions: jax.Array,
                  valid: jax.Array, *, compute_dtype: Any = jnp.float32,
                  remat: bool | str | None = None) -> jax.Array:
  """Final-norm hidden states [B, T, D] in compute_dtype (see `transformer_forward`)."""
  h, _ = transformer_forward(params, cfg, tokens, positions, valid, compute_dtype=compute_dtype,
                             remat=remat)
  return h


def output_embedding(params: Params, cfg: ModelConfig) -> jax.Array:
  """The [V, D] output head: the (unscaled) embedding table when tied."""
  return params["embedding"] if cfg.tie_embeddings else params["unembedding"]


def logits_from_hidden(params: Params, cfg: ModelConfig, h: jax.Array) -> jax.Array:
  """Output logits [..., V] float32 (final soft-cap applied) of hidden states h [..., D].

  The matmul takes h's dtype with float32 accumulation. This materialises the whole vocabulary
  for every row of h: call it on one position per sample (decoding), and use
  `token_logprobs(..., vocab_chunk=...)` for log-probabilities of whole sequences.
  """
  logits = layers.dense(h, output_embedding(params, cfg), "...d,vd->...v")
  return layers.soft_cap(logits, cfg.final_softcap)

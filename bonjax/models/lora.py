"""Low-rank adapters (LoRA) on the attention and MLP matmuls of the one transformer.

A target weight W (e.g. q [D, H, Dh]) gets two trainable factors stored next to it in the
layer stack: A = W_lora_a [*in, r] and B = W_lora_b [r, *out], with the in axes those that W
contracts. The projection becomes

  x W  +  (alpha / r) (x A) B,

with B initialised to zero, so a fresh adapter leaves the model unchanged. Only the adapters
are trained (`trainable_mask`); the base weights stay frozen, so the base model (the params
without their adapters, `without_adapters`, which shares the base buffers: no second copy) is
the reference policy of KL-regularised objectives. `merge_lora` folds the adapters into dense
weights for export.

The rank is read from the adapter's shape and the scale from `cfg.lora_alpha`, so a forward
pass runs any params with or without adapters; `cfg.lora_rank` only decides whether
`init_params` declares them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bonjax.models import layers
from bonjax.models.config import ModelConfig

Params = dict[str, Any]

# Target -> (einsum spec of its projection, number of leading axes the spec contracts).
TARGETS: dict[str, tuple[str, int]] = {
    "q": ("btd,dhk->bthk", 1),
    "k": ("btd,dhk->bthk", 1),
    "v": ("btd,dhk->bthk", 1),
    "o": ("bthk,hkd->btd", 2),
    "gate": ("btd,df->btf", 1),
    "up": ("btd,df->btf", 1),
    "down": ("btf,fd->btd", 1),
}

_SUFFIX_A, _SUFFIX_B = "_lora_a", "_lora_b"
_RANK_LABEL = "z"  # An einsum label no projection spec uses.


def check_lora(cfg: ModelConfig) -> None:
  """Raises ValueError naming the field when the LoRA options are invalid."""
  if cfg.lora_rank < 0:
    raise ValueError(f"model.lora_rank={cfg.lora_rank}: must be >= 0 (0: no adapters)")
  unknown = sorted(set(cfg.lora_targets) - set(TARGETS))
  if unknown or (cfg.lora_rank and not cfg.lora_targets):
    raise ValueError(f"model.lora_targets={tuple(cfg.lora_targets)!r}: must be a non-empty subset "
                     f"of {tuple(TARGETS)}")
  if cfg.lora_alpha <= 0:
    raise ValueError(f"model.lora_alpha={cfg.lora_alpha}: must be > 0")


def adapter_specs(spec: str) -> tuple[str, str]:
  """Einsum specs (x, A) -> x A and (x A, B) -> the projection's output, from its `spec`.

  E.g. "bthk,hkd->btd" gives ("bthk,hkz->btz", "btz,zd->btd").
  """
  inputs, out = spec.split("->")
  x, w = inputs.split(",")
  contracted = [c for c in w if c in x and c not in out]
  kept = [c for c in w if c not in contracted]
  batch = "".join(c for c in x if c not in contracted)
  z = _RANK_LABEL
  return (f"{x},{''.join(contracted)}{z}->{batch}{z}", f"{batch}{z},{z}{''.join(kept)}->{out}")


def adapter_shapes(cfg: ModelConfig, name: str, weight_shape: tuple[int, ...],
                   axes: tuple[str | None, ...]) -> dict[str, tuple[tuple[int, ...], tuple]]:
  """Shapes and logical axes of the adapters of stacked weight `name` ([L, ...]).

  Returns:
    {"<name>_lora_a": (shape, axes), "<name>_lora_b": (shape, axes)}; empty without LoRA or
    when `name` is not a target.
  """
  if cfg.lora_rank == 0 or name not in cfg.lora_targets:
    return {}
  n_in = TARGETS[name][1]
  layers_dim, shape = weight_shape[0], weight_shape[1:]
  r = cfg.lora_rank
  return {
      name + _SUFFIX_A: ((layers_dim, *shape[:n_in], r), (axes[0], *axes[1:1 + n_in], None)),
      name + _SUFFIX_B: ((layers_dim, r, *shape[n_in:]), (axes[0], None, *axes[1 + n_in:])),
  }


def is_adapter(name: str) -> bool:
  return name.endswith(_SUFFIX_A) or name.endswith(_SUFFIX_B)


def project(lp: Params, name: str, x: jax.Array, cfg: ModelConfig) -> jax.Array:
  """x W (+ the adapter's (alpha / r) x A B when lp has one), float32.

  Args:
    lp: one layer's params (no layer axis).
    name: the weight ("q", "k", "v", "o", "gate", "up", "down").
    x: input in the compute dtype.
    cfg: model configuration (lora_alpha).
  """
  spec = TARGETS[name][0]
  y = layers.dense(x, lp[name], spec)
  a = lp.get(name + _SUFFIX_A)
  if a is None:
    return y
  spec_a, spec_b = adapter_specs(spec)
  low = layers.dense(x, a, spec_a).astype(x.dtype)
  scale = cfg.lora_alpha / a.shape[-1]
  return y + scale * layers.dense(low, lp[name + _SUFFIX_B], spec_b)


def has_adapters(params: Params) -> bool:
  return any(is_adapter(k) for k in params["layers"])


def without_adapters(params: Params) -> Params:
  """The base model: `params` without adapter entries (the same buffers, no copy)."""
  kept = {k: v for k, v in params["layers"].items() if not is_adapter(k)}
  return {**params, "layers": kept}


def trainable_mask(params: Params) -> Params | None:
  """True at adapter leaves, False elsewhere; None (everything trainable) without adapters."""
  if not has_adapters(params):
    return None
  mask = jax.tree.map(lambda _: False, params)
  mask["layers"] = {k: jax.tree.map(lambda _, t=is_adapter(k): t, v)
                    for k, v in params["layers"].items()}
  return mask


def merge_lora(params: Params, cfg: ModelConfig) -> Params:
  """Dense params with every adapter folded in: W + (alpha / r) A B (float32).

  The result has the base layout (no adapter entries), for export or for a run without LoRA.
  """
  if not has_adapters(params):
    return params
  merged = dict(without_adapters(params)["layers"])
  for name in TARGETS:
    a = params["layers"].get(name + _SUFFIX_A)
    if a is None:
      continue
    b = params["layers"][name + _SUFFIX_B]
    w = merged[name]
    flat_a = a.reshape(a.shape[0], -1, a.shape[-1]).astype(jnp.float32)
    flat_b = b.reshape(b.shape[0], b.shape[1], -1).astype(jnp.float32)
    delta = jnp.einsum("lir,lro->lio", flat_a, flat_b, precision=jax.lax.Precision.HIGHEST)
    merged[name] = (w.astype(jnp.float32)
                    + (cfg.lora_alpha / a.shape[-1]) * delta.reshape(w.shape)).astype(w.dtype)
  return {**params, "layers": merged}


def init_adapters(base: Params, cfg: ModelConfig, rng: jax.Array) -> Params:
  """Fresh adapters for base params: A ~ N(0, 1 / fan_in) (truncated normal), B = 0.

  Returns:
    {"<name>_lora_a": [L, *in, r], "<name>_lora_b": [L, r, *out]} for every target.
  """
  out = {}
  for i, name in enumerate(t for t in TARGETS if t in cfg.lora_targets):
    w = base["layers"][name]
    n_in = TARGETS[name][1]
    fan_in = 1
    for size in w.shape[1:1 + n_in]:
      fan_in *= size
    shapes = adapter_shapes(cfg, name, w.shape, (None,) * w.ndim)
    (a_name, (a_shape, _)), (b_name, (b_shape, _)) = shapes.items()
    key = jax.random.fold_in(rng, i)
    out[a_name] = jax.random.truncated_normal(key, -2.0, 2.0, a_shape, jnp.float32) * fan_in**-0.5
    out[b_name] = jnp.zeros(b_shape, jnp.float32)
  return out


def match_adapters(params: Params, cfg: ModelConfig, rng: jax.Array) -> Params:
  """Params in the layout `cfg` trains: fresh adapters added to base params when
  cfg.lora_rank > 0, adapters merged into dense weights when it is 0."""
  if cfg.lora_rank == 0:
    return merge_lora(params, cfg)
  if has_adapters(params):
    return params
  return {**params, "layers": {**params["layers"], **init_adapters(params, cfg, rng)}}

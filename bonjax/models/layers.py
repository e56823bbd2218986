"""Stateless building blocks of the transformer: RMSNorm, rotary embeddings, gated-MLP activations.

Every function here is a pure function of arrays; parameters are passed in, never created.
Normalisation and rotary arithmetic run in float32 whatever the compute dtype, because both
are cheap and their rounding errors compound across layers.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


def rms_norm(x: jax.Array, scale: jax.Array, *, eps: float, plus_one: bool) -> jax.Array:
  """Root-mean-square normalisation over the last axis.

  Args:
    x: [..., D] activations of any float dtype.
    scale: [D] stored weight.
    eps: added to the mean square before the reciprocal square root.
    plus_one: the weight multiplies as (1 + scale) (gemma convention, stored weights near 0).

  Returns:
    [..., D] float32.
  """
  x = x.astype(jnp.float32)
  inv_rms = jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
  scale = scale.astype(jnp.float32)
  return x * inv_rms * (1.0 + scale if plus_one else scale)


def rope_inverse_frequencies(bases: np.ndarray | list[float], head_dim: int) -> np.ndarray:
  """Rotary inverse frequencies base^(-2i/head_dim), i < head_dim/2, one row per base.

  Computed in float64 on the host, so a per-layer table is an exact compile-time constant.

  Args:
    bases: [L] rotary base per layer.
    head_dim: even head width.

  Returns:
    [L, head_dim // 2] float32.
  """
  exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
  bases = np.asarray(bases, dtype=np.float64)[:, None]
  return (1.0 / bases**exponents[None, :]).astype(np.float32)


def scale_rope_frequencies(inv_freq: np.ndarray, scaling) -> np.ndarray:
  """Inverse frequencies under a `config.RopeScaling` (the formulas of HF's rope utilities).

  Args:
    inv_freq: [..., head_dim // 2] unscaled inverse frequencies.
    scaling: a RopeScaling ("linear" or "llama3").

  Returns:
    The scaled frequencies, same shape and dtype.
  """
  inv = np.asarray(inv_freq, dtype=np.float64)
  if scaling.rope_type == "linear":
    return (inv / scaling.factor).astype(inv_freq.dtype)
  if scaling.rope_type != "llama3":
    raise ValueError(f"rope_scaling.rope_type={scaling.rope_type!r}: expected linear or llama3")
  context = scaling.original_max_position_embeddings
  low_wavelen = context / scaling.low_freq_factor
  high_wavelen = context / scaling.high_freq_factor
  wavelen = 2 * np.pi / inv
  # Long wavelengths (low frequencies) are stretched by `factor`, short ones kept, and the band
  # between is interpolated.
  scaled = np.where(wavelen > low_wavelen, inv / scaling.factor, inv)
  smooth = ((context / wavelen - scaling.low_freq_factor)
            / (scaling.high_freq_factor - scaling.low_freq_factor))
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, smoothed, scaled).astype(inv_freq.dtype)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
  """Rotates `x` by its positions with the split-half ("rotate half") layout.

  The first and second halves of the head dimension form the (real, imaginary) pairs, i.e.
  pair i is (x[i], x[i + head_dim/2]), rotated by angle position * inv_freq[i].

  Args:
    x: [B, T, heads, head_dim].
    positions: [B, T] int32 token positions.
    inv_freq: [head_dim // 2] float32.

  Returns:
    [B, T, heads, head_dim] in x's dtype.
  """
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, half]
  sin = jnp.sin(angles)[:, :, None, :]
  cos = jnp.cos(angles)[:, :, None, :]
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return rotated.astype(x.dtype)


def soft_cap(x: jax.Array, cap: float | None) -> jax.Array:
  """cap * tanh(x / cap); identity when cap is None."""
  if cap is None:
    return x
  return cap * jnp.tanh(x / cap)


def matmul_precision(dtype: Any) -> jax.lax.Precision:
  """The precision of every model matmul whose inputs have `dtype`.

  float32 inputs get Precision.HIGHEST: without it XLA:GPU runs float32 matmuls as TF32 (10-bit
  mantissa) on NVIDIA GPUs, and the sampler's log-probs then differ from the trainer's by ~1e-3,
  enough to bias on-policy importance ratios and KL terms. Other dtypes (bfloat16) keep
  Precision.DEFAULT: one bfloat16 pass, accumulated in float32 (`preferred_element_type`).
  On CPU both are the same kernel.
  """
  return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else jax.lax.Precision.DEFAULT


def dense(x: jax.Array, w: jax.Array, spec: str) -> jax.Array:
  """Einsum in x's dtype with float32 accumulation and `matmul_precision`; returns float32."""
  return jnp.einsum(spec, x, w.astype(x.dtype), precision=matmul_precision(x.dtype),
                    preferred_element_type=jnp.float32)

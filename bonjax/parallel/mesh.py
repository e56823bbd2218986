"""Device mesh with axes (data, fsdp, tensor), built from the config."""

from __future__ import annotations

import math
from typing import Sequence

import jax
from jax.experimental import mesh_utils
import numpy as np
from jax.sharding import Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Replaces the single -1 entry of `shape` by the devices left over.

  Args:
    shape: one size per mesh axis; at most one -1.
    num_devices: devices available.

  Returns:
    The concrete shape, whose product is `num_devices`.

  Raises:
    ValueError: naming the mesh axis and the rule that the shape breaks.
  """
  shape = [int(s) for s in shape]
  if len(shape) != len(MESH_AXES):
    raise ValueError(f"mesh shape {shape}: needs one entry per axis {MESH_AXES}")
  for axis, size in zip(MESH_AXES, shape):
    if size == 0 or size < -1:
      raise ValueError(f"mesh.{axis}={size}: must be >= 1, or -1 for the remaining devices")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh shape {dict(zip(MESH_AXES, shape))}: at most one axis may be -1")
  fixed = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % fixed:
      raise ValueError(f"mesh shape {dict(zip(MESH_AXES, shape))}: the fixed axes ({fixed} "
                       f"devices) must divide the {num_devices} available devices")
    shape[shape.index(-1)] = num_devices // fixed
  elif fixed != num_devices:
    raise ValueError(f"mesh shape {dict(zip(MESH_AXES, shape))} uses {fixed} devices but "
                     f"{num_devices} are available; set one axis to -1 to use the rest")
  return tuple(shape)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the (data, fsdp, tensor) mesh; with one device this is the trivial mesh.

  Args:
    data: data-parallel size (-1: the rest).
    fsdp: parameter/optimizer-sharding size (-1: the rest).
    tensor: tensor-parallel size (-1: the rest).
    devices: devices to use (default: all of `jax.devices()`).

  Returns:
    A `jax.sharding.Mesh` with axis names MESH_AXES.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape((data, fsdp, tensor), len(devices))
  try:
    grid = mesh_utils.create_device_mesh(shape, devices=devices)
  except Exception:  # Non-TPU topologies the helper cannot place: plain row-major order.
    grid = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(grid, MESH_AXES)

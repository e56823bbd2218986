"""Mesh construction and logical-axis sharding rules on 8 simulated CPU devices."""

import jax
import pytest
from jax.sharding import PartitionSpec as P

from bonjax.parallel.mesh import make_mesh, resolve_mesh_shape
from bonjax.parallel.sharding import partition_spec


def test_resolve_mesh_shape():
  assert resolve_mesh_shape((-1, 1, 1), 8) == (8, 1, 1)
  assert resolve_mesh_shape((2, -1, 2), 8) == (2, 2, 2)
  assert resolve_mesh_shape((1, 1, 1), 1) == (1, 1, 1)


@pytest.mark.parametrize("shape, message", [
    ((-1, -1, 1), "at most one axis may be -1"),
    ((3, -1, 1), "must divide the 8 available devices"),
    ((2, 2, 1), "uses 4 devices but 8 are available"),
    ((0, 1, 1), r"mesh.data=0: must be >= 1, or -1"),
])
def test_bad_mesh_shapes_are_explained(shape, message):
  with pytest.raises(ValueError, match=message):
    resolve_mesh_shape(shape, 8)


@pytest.mark.devices(8)
def test_make_mesh_uses_all_devices():
  assert jax.device_count() == 8
  mesh = make_mesh(2, 2, 2)
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert make_mesh().shape["data"] == 8


def test_partition_spec_rules_and_divisibility_fallback():
  mesh = make_mesh(2, 2, 2)
  assert partition_spec(("embed", "mlp"), (64, 128), mesh) == P("fsdp", "tensor")
  # One KV head cannot be split over 2 tensor devices: replicated instead.
  assert partition_spec(("embed", "kv_heads", "head_dim"), (64, 1, 16), mesh) == P("fsdp", None, None)
  assert partition_spec(("batch", None), (8, 3), mesh) == P(("data", "fsdp"), None)
  # A mesh axis is used at most once per array.
  assert partition_spec(("mlp", "vocab"), (8, 8), mesh) == P("tensor", None)
  with pytest.raises(KeyError, match="no sharding rule"):
    partition_spec(("nonsense",), (8,), mesh)

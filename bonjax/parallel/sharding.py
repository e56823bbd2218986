"""Logical-axis sharding: arrays name their axes, rules map those names to mesh axes."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Logical axis -> mesh axes it is split over. Parameters: embed over fsdp (ZeRO-3 style),
# heads / mlp / vocab over tensor (Megatron style). Activations: prompts over data and fsdp;
# a prompt's N samples and the sequence are never split, so per-prompt statistics stay local.
DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "batch": ("data", "fsdp"),
    "embed": ("fsdp",),
    "vocab": ("tensor",),
    "mlp": ("tensor",),
    "q_heads": ("tensor",),
    "kv_heads": ("tensor",),
    "head_dim": (),
    "layers": (),
    "samples": (),
    "length": (),
}

LogicalAxes = Sequence[str | None]


def partition_spec(logical_axes: LogicalAxes, shape: Sequence[int], mesh: Mesh,
                   rules: Mapping[str, Sequence[str]] = DEFAULT_RULES) -> PartitionSpec:
  """Maps one array's logical axes to a PartitionSpec on `mesh`.

  A dimension is split over a rule's mesh axes only if its size is divisible by their total
  size and none of them is already used by an earlier dimension; otherwise it is replicated
  (e.g. Gemma 3's single KV head on a tensor-parallel mesh).

  Args:
    logical_axes: one name (or None) per dimension.
    shape: the array's shape.
    mesh: target mesh.
    rules: logical name -> mesh axes.

  Returns:
    The PartitionSpec.

  Raises:
    KeyError: a logical name with no rule.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(f"logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}")
  used: set[str] = set()
  spec = []
  for name, size in zip(logical_axes, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in rules:
      raise KeyError(f"logical axis {name!r} has no sharding rule; known: {sorted(rules)}")
    axes = tuple(a for a in rules[name] if mesh.shape.get(a, 1) > 1 and a not in used)
    total = 1
    for a in axes:
      total *= mesh.shape[a]
    if not axes or size % total:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*spec)


def named_sharding(logical_axes: LogicalAxes, shape: Sequence[int], mesh: Mesh,
                   rules: Mapping[str, Sequence[str]] = DEFAULT_RULES) -> NamedSharding:
  """NamedSharding of one array from its logical axes (see `partition_spec`)."""
  return NamedSharding(mesh, partition_spec(logical_axes, shape, mesh, rules))


def tree_shardings(logical_tree: Any, shape_tree: Any, mesh: Mesh,
                   rules: Mapping[str, Sequence[str]] = DEFAULT_RULES) -> Any:
  """NamedShardings for a pytree, given a matching tree of logical-axis tuples.

  Args:
    logical_tree: pytree whose leaves are tuples of logical names (tuples are leaves).
    shape_tree: matching pytree of arrays or jax.ShapeDtypeStruct.
    mesh: target mesh.
    rules: logical name -> mesh axes.

  Returns:
    Pytree of NamedSharding with the structure of `shape_tree`.
  """
  flat_shapes, treedef = jax.tree.flatten(shape_tree)
  flat_axes = treedef.flatten_up_to(logical_tree)
  return treedef.unflatten([named_sharding(axes, x.shape, mesh, rules)
                            for axes, x in zip(flat_axes, flat_shapes)])


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device."""
  return NamedSharding(mesh, PartitionSpec())


def box_logical(tree: Any, logical_tree: Any) -> Any:
  """Wraps each leaf of `tree` with its logical axis names (flax LogicallyPartitioned).

  Boxes survive `jax.tree.map`, so an optimizer state initialised from boxed parameters
  carries the parameters' axis names on its moment estimates; `boxed_shardings` reads them.
  """
  import flax.linen as nn  # Local import: only sharding of boxed trees needs flax.

  flat, treedef = jax.tree.flatten(tree)
  names = treedef.flatten_up_to(logical_tree)
  return treedef.unflatten([nn.LogicallyPartitioned(x, tuple(n)) for x, n in zip(flat, names)])


def boxed_shardings(boxed_tree: Any, mesh: Mesh,
                    rules: Mapping[str, Sequence[str]] = DEFAULT_RULES) -> Any:
  """NamedShardings for a tree whose leaves may be LogicallyPartitioned boxes.

  Boxed leaves are sharded by their names; plain leaves (step counters, scalars) are
  replicated. The result has the structure of the unboxed tree.
  """
  import flax.linen as nn

  def one(leaf):
    if isinstance(leaf, nn.LogicallyPartitioned):
      return named_sharding(leaf.names, leaf.value.shape, mesh, rules)
    return replicated(mesh)

  return jax.tree.map(one, boxed_tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def unbox(tree: Any) -> Any:
  """Removes LogicallyPartitioned boxes, leaving the raw values."""
  import flax.linen as nn

  return jax.tree.map(lambda x: x.value if isinstance(x, nn.LogicallyPartitioned) else x, tree,
                      is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))

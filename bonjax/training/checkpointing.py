"""Orbax checkpoints of the whole train state plus a JSON record of where the run stands."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the last k checkpoints of a run under `<workdir>/checkpoints`.

  Each checkpoint holds the TrainState (params, optimizer state, step, RNG) and a JSON
  `meta` item (data position, config snapshot), so a killed run resumes exactly.

  Args:
    workdir: run directory.
    keep: checkpoints kept on disk.
    async_save: write in a background thread while training continues.
  """

  def __init__(self, workdir: str, keep: int = 2, async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict[str, Any], force: bool = False) -> bool:
    """Saves `state` and `meta` as checkpoint `step`; returns whether a save started."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    return self._manager.save(step, args=args, force=force)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]] | None:
    """Restores checkpoint `step` (default: latest) onto the shardings of `abstract_state`.

    Args:
      abstract_state: pytree of jax.ShapeDtypeStruct with `.sharding` set (from the current
        mesh), so a checkpoint restores onto whatever devices this run has.
      step: which checkpoint; None for the latest.

    Returns:
      (state, meta), or None when there is no checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                              meta=ocp.args.JsonRestore())
    restored = self._manager.restore(step, args=args)
    return restored.state, dict(restored.meta)

  def restore_meta(self, step: int | None = None) -> dict[str, Any] | None:
    """The JSON `meta` item of checkpoint `step` (default: latest), or None without one."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)

  def wait(self) -> None:
    """Blocks until background saves have finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` carrying `shardings` (restore targets)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)

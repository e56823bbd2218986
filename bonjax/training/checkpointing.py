"""Orbax checkpoints of the whole train state plus a JSON record of where the run stands.

Failures are named and bounded:
  * a save that cannot succeed (directory not writable, too little free space) fails before
    it starts, and a save that fails while writing fails at the next save or wait, both with
    `CheckpointWriteError`; the previous checkpoints stay on disk;
  * restoring takes the newest checkpoint that reads back whole: unreadable newer ones are
    logged with the reason and moved aside to `<step>.corrupt`, so the run can save that step
    again; a checkpoint whose arrays do not match the run's state (another model) raises
    `CheckpointMismatchError` listing the differing arrays, before orbax reads any of them.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from bonjax.training.config_validation import ConfigError

# Room left beyond the estimated checkpoint size (orbax metadata files, the JSON meta item).
_SLACK_BYTES = 1 << 20
_MIB = 1 << 20


class CheckpointError(RuntimeError):
  """A checkpoint could not be written or no checkpoint could be read."""


class CheckpointWriteError(CheckpointError):
  """A save failed; the message names the directory, the step and the cause."""


class CheckpointReadError(CheckpointError):
  """Checkpoints exist but none of them reads back."""


class CheckpointMismatchError(ConfigError):
  """The checkpoint holds arrays of other shapes or structure than this run's state."""


def root_cause(error: BaseException, limit: int = 400) -> str:
  """The innermost cause's message, first line, at most `limit` characters (orbax wraps I/O
  errors several levels deep)."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  text = f"{type(error).__name__}: {text}"
  return text if len(text) <= limit else text[:limit] + "..."


def _path_key(entry: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _array_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """Dotted path -> (shape, dtype name) of every array leaf (dataclass fields, dict keys and
  sequence indices all become path parts, as orbax stores them)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {".".join(_path_key(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in leaves}


def describe_mismatch(saved: dict[str, Any], wanted: dict[str, Any], limit: int = 6) -> list[str]:
  """Lines naming arrays missing on either side or with another shape/dtype (parameters
  first: they say which model each side is)."""
  lines = []
  for path in sorted(saved.keys() | wanted.keys(), key=lambda p: (not p.startswith("params."), p)):
    if path not in wanted:
      lines.append(f"{path}: in the checkpoint {saved[path]}, not in this run")
    elif path not in saved:
      lines.append(f"{path}: in this run {wanted[path]}, not in the checkpoint")
    elif saved[path] != wanted[path]:
      lines.append(f"{path}: checkpoint {saved[path]}, this run {wanted[path]}")
  if len(lines) > limit:
    lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
  return lines


def _directory_bytes(path: str) -> int:
  total = 0
  for root, _, files in os.walk(path):
    for name in files:
      try:
        total += os.path.getsize(os.path.join(root, name))
      except OSError:
        pass
  return total


class Checkpointer:
  """Keeps the last k checkpoints of a run under `<workdir>/checkpoints`.

  Each checkpoint holds the TrainState (params, optimizer state, step, RNG) and a JSON
  `meta` item (data position, config snapshot), so a killed run resumes exactly.

  Args:
    workdir: run directory.
    keep: checkpoints kept on disk.
    async_save: write in a background thread while training continues.
    read_only: only read (evaluation, sampling, `init_from`): nothing is created, and
      unreadable checkpoints are skipped but not moved aside.
  """

  def __init__(self, workdir: str, keep: int = 2, async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.read_only = read_only
    # Reading only: create nothing, clean nothing (orbax's own read_only mode warns on every
    # open, so it is not used); writing: remove leftovers of saves killed mid-write.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only,
        enable_async_checkpointing=async_save and not read_only,
        cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _check_can_write(self, step: int, state: Any) -> None:
    """Fails before a save that cannot succeed: a directory we cannot create files in, or
    less free space than the newest checkpoint takes (the raw array bytes for the first)."""
    latest = self.latest_step()
    kept = "" if latest is None else f"; checkpoint {latest} is kept"
    probe = os.path.join(self.directory, f".write_probe.{os.getpid()}")
    try:
      with open(probe, "wb") as f:
        f.write(b"0")
      os.remove(probe)
    except OSError as e:
      raise CheckpointWriteError(f"cannot write checkpoint {step} to {self.directory}: "
                                 f"{e.strerror or e}{kept}") from None
    needed = (_directory_bytes(os.path.join(self.directory, str(latest))) if latest is not None
              else sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)))
    free = shutil.disk_usage(self.directory).free
    if free < needed + _SLACK_BYTES:
      raise CheckpointWriteError(
          f"cannot write checkpoint {step} to {self.directory}: {free / _MIB:.1f} MiB free, it "
          f"needs about {(needed + _SLACK_BYTES) / _MIB:.1f} MiB{kept}")

  def save(self, step: int, state: Any, meta: dict[str, Any], force: bool = False) -> bool:
    """Saves `state` and `meta` as checkpoint `step`; returns whether a save started.

    Raises:
      CheckpointWriteError: this save cannot start, or an earlier background save failed.
    """
    self._raise_failed_save()
    self._check_can_write(step, state)
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    try:
      return self._manager.save(step, args=args, force=force)
    except Exception as e:  # Orbax raises many types; all mean this save failed.
      raise CheckpointWriteError(f"checkpoint {step} in {self.directory} failed: "
                                 f"{root_cause(e)}") from e

  def _raise_failed_save(self) -> None:
    try:
      self._manager.check_for_errors()
    except Exception as e:
      raise CheckpointWriteError(f"a background save to {self.directory} failed: "
                                 f"{root_cause(e)}; the newest complete checkpoint is "
                                 f"{self.latest_step()}") from e

  def restore(self, abstract_state: Any,
              check_meta: Callable[[dict[str, Any]], None] | None = None
              ) -> tuple[Any, dict[str, Any]] | None:
    """Restores the newest checkpoint that reads back whole onto `abstract_state`.

    Args:
      abstract_state: pytree of jax.ShapeDtypeStruct with `.sharding` set (from the current
        mesh), so a checkpoint restores onto whatever devices this run has.
      check_meta: called with each candidate's meta before its arrays are read; may raise
        (e.g. the checkpoint belongs to another config), which ends the restore.

    Returns:
      (state, meta) of the checkpoint used, or None when there is none.

    Raises:
      CheckpointMismatchError: the checkpoint's arrays differ from `abstract_state`'s.
      CheckpointReadError: checkpoints exist but none reads back.
    """
    wanted = _array_specs(abstract_state)
    failures: list[tuple[int, str]] = []
    for step in reversed(self.all_steps()):
      try:
        meta = self.restore_meta(step)
        saved = _array_specs(self._manager.item_metadata(step)["state"].tree)
      except Exception as e:  # Unreadable metadata: a damaged checkpoint.
        failures.append((step, root_cause(e)))
        continue
      if check_meta is not None:
        check_meta(meta)
      mismatch = describe_mismatch(saved, wanted)
      if mismatch:
        raise CheckpointMismatchError(
            f"checkpoint {step} in {self.directory} holds another state than this run "
            f"builds:\n  " + "\n  ".join(mismatch))
      args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
      try:
        state = self._manager.restore(step, args=args).state
      except Exception as e:
        failures.append((step, root_cause(e)))
        continue
      if failures:
        self._set_aside(failures, step)
      return state, meta
    if failures:
      raise CheckpointReadError(
          f"no checkpoint in {self.directory} reads back:\n  " +
          "\n  ".join(f"step {s}: {why}" for s, why in failures) +
          "\nmove the directory away to start afresh")
    return None

  def _set_aside(self, failures: list[tuple[int, str]], used: int) -> None:
    """Logs the unreadable checkpoints and renames them to `<step>.corrupt` (so the resumed
    run can save those steps again) unless read-only."""
    for step, why in failures:
      where = os.path.join(self.directory, str(step))
      moved = ""
      if not self.read_only and jax.process_index() == 0:
        target = where + ".corrupt"
        suffix = 1
        while os.path.exists(target):
          target, suffix = f"{where}.corrupt{suffix}", suffix + 1
        os.rename(where, target)
        moved = f"; moved to {target}"
      logging.warning("Checkpoint %d is unreadable (%s)%s; using checkpoint %d instead", step,
                      why, moved, used)
    self._manager.reload()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def newest_meta(self) -> dict[str, Any] | None:
    """The meta item of the newest checkpoint whose meta reads back; None without checkpoints.

    Raises:
      CheckpointReadError: checkpoints exist but no meta item reads back.
    """
    failures = []
    for step in reversed(self.all_steps()):
      try:
        return self.restore_meta(step)
      except Exception as e:
        failures.append(f"step {step}: {root_cause(e)}")
    if failures:
      raise CheckpointReadError(f"no checkpoint in {self.directory} reads back:\n  " +
                                "\n  ".join(failures))
    return None

  def restore_meta(self, step: int | None = None) -> dict[str, Any] | None:
    """The JSON `meta` item of checkpoint `step` (default: latest), or None without one."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return dict(restored.meta)

  def wait(self) -> None:
    """Blocks until background saves have finished.

    Raises:
      CheckpointWriteError: a background save failed.
    """
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      raise CheckpointWriteError(f"a background save to {self.directory} failed: "
                                 f"{root_cause(e)}") from e
    self._raise_failed_save()

  def close(self) -> None:
    """Waits for background saves and releases the manager; a failure is logged, not raised
    (`save` and `wait` raise it; `close` also runs while another error propagates)."""
    try:
      self.wait()
    except CheckpointWriteError as e:
      logging.error("%s", e)
    self._manager.close()


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` carrying `shardings` (restore targets)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)

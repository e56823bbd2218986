"""Checkpoint failures: corrupt newest checkpoint, another model's checkpoint, unwritable or
full directory. Small pytrees on one device; every case is a named error or a logged fallback."""

import glob
import logging
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.training import checkpointing
from bonjax.training.checkpointing import (CheckpointMismatchError, CheckpointReadError,
                                           Checkpointer, CheckpointWriteError)
from tests.reliability.read_only import make_unwritable, make_writable

_DEVICE = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def state_at(step: int) -> dict:
  return {"params": {"w": jnp.full((2, 3), float(step)), "b": jnp.arange(4, dtype=jnp.int32)},
          "step": jnp.asarray(step, jnp.int32)}


def abstract(tree) -> dict:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=_DEVICE), tree)


def save_steps(workdir, steps, keep=3) -> None:
  checkpointer = Checkpointer(workdir, keep=keep, async_save=False)
  for step in steps:
    checkpointer.save(step, state_at(step), {"step": step}, force=True)
  checkpointer.close()


def corrupt(workdir, step) -> None:
  """Overwrites every array data file of checkpoint `step` with garbage."""
  files = glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"),
                    recursive=True)
  assert files
  for path in files:
    with open(path, "wb") as f:
      f.write(b"garbage")


def test_corrupt_newest_checkpoint_falls_back_and_is_moved_aside(tmp_path, caplog):
  workdir = str(tmp_path)
  save_steps(workdir, [2, 4, 6])
  corrupt(workdir, 6)
  checkpointer = Checkpointer(workdir, keep=3, async_save=False)
  with caplog.at_level(logging.WARNING):
    state, meta = checkpointer.restore(abstract(state_at(0)))
  assert meta == {"step": 4} and int(state["step"]) == 4
  np.testing.assert_array_equal(state["params"]["w"], np.full((2, 3), 4.0))
  assert "Checkpoint 6 is unreadable" in caplog.text and "using checkpoint 4" in caplog.text
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "6.corrupt"))
  # The resumed run can save step 6 again.
  checkpointer.save(6, state_at(6), {"step": 6}, force=True)
  checkpointer.close()
  assert Checkpointer(workdir, read_only=True).all_steps() == [2, 4, 6]


def test_unreadable_meta_falls_back(tmp_path):
  workdir = str(tmp_path)
  save_steps(workdir, [2, 4])
  with open(os.path.join(workdir, "checkpoints", "4", "meta", "metadata"), "w") as f:
    f.write("{not json")
  checkpointer = Checkpointer(workdir, read_only=True)
  assert checkpointer.newest_meta() == {"step": 2}
  state, meta = checkpointer.restore(abstract(state_at(0)))
  assert meta == {"step": 2}
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "4"))  # Read-only: left in place.


def test_no_readable_checkpoint_is_a_named_error(tmp_path):
  workdir = str(tmp_path)
  save_steps(workdir, [2, 4])
  corrupt(workdir, 2)
  corrupt(workdir, 4)
  with pytest.raises(CheckpointReadError, match=r"no checkpoint in .* reads back:\n  step 4: "
                     r".*\n  step 2: .*\nmove the directory away"):
    Checkpointer(workdir, keep=3, async_save=False).restore(abstract(state_at(0)))


def test_another_models_checkpoint_is_named_before_reading_it(tmp_path):
  workdir = str(tmp_path)
  save_steps(workdir, [2])
  wider = state_at(0)
  wider["params"]["w"] = jnp.zeros((2, 5))
  wider["params"]["extra"] = jnp.zeros(3)
  with pytest.raises(CheckpointMismatchError) as info:
    Checkpointer(workdir, async_save=False).restore(abstract(wider))
  assert str(info.value).splitlines()[1:] == [
      "  params.extra: in this run ((3,), 'float32'), not in the checkpoint",
      "  params.w: checkpoint ((2, 3), 'float32'), this run ((2, 5), 'float32')"]
  assert "Traceback" not in str(info.value)


def test_reading_an_empty_workdir_creates_nothing(tmp_path):
  checkpointer = Checkpointer(str(tmp_path / "none"), read_only=True)
  assert checkpointer.newest_meta() is None
  assert checkpointer.restore(abstract(state_at(0))) is None
  checkpointer.close()
  assert not os.path.exists(tmp_path / "none")


def test_full_disk_fails_before_writing_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  checkpointer = Checkpointer(workdir, keep=1, async_save=True)
  checkpointer.save(2, state_at(2), {"step": 2}, force=True)
  checkpointer.wait()
  real = shutil.disk_usage
  monkeypatch.setattr(checkpointing.shutil, "disk_usage",
                      lambda path: real(path)._replace(free=1000))
  start = time.perf_counter()
  with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint 4 to .*: 0.0 MiB "
                     r"free, it needs about 1.0 MiB; checkpoint 2 is kept"):
    checkpointer.save(4, state_at(4), {"step": 4}, force=True)
  assert time.perf_counter() - start < 5
  checkpointer.close()
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]


def test_read_only_directory_fails_fast_and_keeps_the_previous_checkpoint(tmp_path):
  workdir = str(tmp_path)
  checkpointer = Checkpointer(workdir, keep=1, async_save=True)
  checkpointer.save(2, state_at(2), {"step": 2}, force=True)
  checkpointer.wait()
  directory = os.path.join(workdir, "checkpoints")
  if not make_unwritable(directory):
    pytest.skip("cannot make a directory read-only here")
  try:
    start = time.perf_counter()
    with pytest.raises(CheckpointWriteError, match=r"cannot write checkpoint 4 to .*checkpoints: "
                       r".*; checkpoint 2 is kept"):
      checkpointer.save(4, state_at(4), {"step": 4}, force=True)
    assert time.perf_counter() - start < 5  # Not orbax's 300 s barrier timeout.
  finally:
    make_writable(directory)
  checkpointer.close()
  assert sorted(os.listdir(directory)) == ["2"]


def test_a_failed_background_save_is_raised_at_the_next_save(tmp_path, monkeypatch):
  checkpointer = Checkpointer(str(tmp_path), keep=2, async_save=True)

  def failing():
    raise ValueError("RESOURCE_EXHAUSTED: No space left on device [os_error_code='28']")

  monkeypatch.setattr(checkpointer._manager, "check_for_errors", failing)
  with pytest.raises(CheckpointWriteError, match=r"a background save to .* failed: ValueError: "
                     r"RESOURCE_EXHAUSTED: No space left on device"):
    checkpointer.save(2, state_at(2), {"step": 2}, force=True)
  monkeypatch.undo()
  checkpointer.close()

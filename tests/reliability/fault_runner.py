"""`python -m launch.main` with one injected fault, for tests/reliability/test_fault_injection.py.

  python -m tests.reliability.fault_runner FAULT -- LAUNCHER_ARGS...

FAULT is one of (N counts steps as metrics.jsonl does: step N is the N-th update):
  none
  sigkill_before_step=N   SIGKILL itself when step N is about to run
  sigterm_before_step=N   SIGTERM itself then (the launcher checkpoints step N and exits 3)
  sigkill_in_save=N       SIGKILL itself as soon as the save of step N has started (its files
                          are being written by orbax's background thread)
  sigkill_in_commit=N     SIGKILL itself when orbax commits checkpoint N (all of it written to
                          the temporary directory, not yet renamed)
  pause_before_step=N:P   before step N create P.reached, then wait (up to 120 s) until P exists
  readonly_before_step=N  make <workdir>/checkpoints unwritable before step N (chmod; as root,
                          the immutable attribute)

Only test code patches the library here; the launcher runs unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from absl import app
from orbax.checkpoint._src.path import atomicity

from bonjax.training import checkpointing, sft
from launch import main as launcher
from tests.reliability.read_only import make_unwritable


def _before_step(n: int, action) -> None:
  real = sft.supervised_batch

  def batch(setup, step):
    if step + 1 == n:
      action()
    return real(setup, step)

  sft.supervised_batch = batch


def _kill(sig: int):
  return lambda: os.kill(os.getpid(), sig)


def _pause(marker: str) -> None:
  open(marker + ".reached", "w").close()
  deadline = time.time() + 120
  while not os.path.exists(marker) and time.time() < deadline:
    time.sleep(0.05)


def _kill_in_save(n: int) -> None:
  real = checkpointing.Checkpointer.save

  def save(self, step, state, meta, force=False):
    started = real(self, step, state, meta, force)
    if step == n:
      os.kill(os.getpid(), signal.SIGKILL)
    return started

  checkpointing.Checkpointer.save = save


def _kill_in_commit(n: int) -> None:
  real = atomicity.AtomicRenameTemporaryPath.finalize

  async def finalize(self, *args, **kwargs):
    if os.path.basename(str(self.get_final())) == str(n):
      os.kill(os.getpid(), signal.SIGKILL)
    return await real(self, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = finalize


def install(fault: str, workdir: str) -> None:
  """Installs `fault` (see the module docstring) for a run into `workdir`."""
  if fault == "none":
    return
  name, value = fault.split("=", 1)
  if name == "sigkill_before_step":
    _before_step(int(value), _kill(signal.SIGKILL))
  elif name == "sigterm_before_step":
    _before_step(int(value), _kill(signal.SIGTERM))
  elif name == "sigkill_in_save":
    _kill_in_save(int(value))
  elif name == "sigkill_in_commit":
    _kill_in_commit(int(value))
  elif name == "pause_before_step":
    step, marker = value.split(":", 1)
    _before_step(int(step), lambda: _pause(marker))
  elif name == "readonly_before_step":
    directory = os.path.join(workdir, "checkpoints")
    _before_step(int(value), lambda: make_unwritable(directory) or sys.exit(99))
  else:
    raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
  fault, separator, *launcher_args = sys.argv[1:]
  assert separator == "--", sys.argv
  workdir = next(a.split("=", 1)[1] for a in launcher_args if a.startswith("--workdir="))
  install(fault, workdir)
  sys.argv = ["launch.main", *launcher_args]
  app.run(launcher.main, flags_parser=launcher._parse_or_exit)

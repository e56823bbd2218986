"""Fault injection: a small `python -m launch.main` run is killed, preempted, corrupted, denied
its disk and raced, and still ends bit-identical to an uninterrupted run.

One workdir goes through every fault in turn (tests/reliability/fault_runner.py injects them
into the real launcher in a subprocess); each run checks what its fault must leave behind and
the next run resumes from it:

  1. SIGKILL before step 3                   -> killed; the next run takes over its stale lock
  2. SIGKILL while committing checkpoint 4    -> only a temporary directory; resume from 2
  3. SIGKILL while checkpoint 6 is written    -> resume from an intact checkpoint
  4. SIGTERM before step 7                    -> checkpoint 7, "preempted" on stdout, status 3
  5. checkpoint 7 corrupted                   -> the next run falls back to 6 and says why
  6. checkpoints/ made read-only before 8     -> status 6 at the save of 8, in seconds
  7. a second run while the first one runs    -> refused with status 4, naming the first's pid
  8. the first run finishes                   -> final state == the uninterrupted run's, bit
                                                 for bit; every intermediate checkpoint too

Runs use one CPU device, the tiny model with batches of 8, and a shared JAX compilation cache,
so the module takes about a minute on 2 cores.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.reliability.read_only import make_unwritable, make_writable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 8
OVERRIDES = {
    "task.num_train": 64, "task.num_test": 8, "train.batch_size": 8,
    "train.num_steps": NUM_STEPS, "train.warmup_steps": 1, "train.log_every": 1,
    "train.checkpoint_every": 2, "train.keep_checkpoints": 3, "eval.num_prompts": 8,
    "eval.num_samples": 2, "eval.prompt_batch_size": 8, "eval.max_new_tokens": 4,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = str(tmp_path_factory.mktemp("jax_cache"))
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT,
              XLA_FLAGS="--xla_force_host_platform_device_count=1",
              JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def command(workdir: str, fault: str = "none") -> list[str]:
  return ([sys.executable, "-m", "tests.reliability.fault_runner", fault, "--",
           f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in OVERRIDES.items()])


def launch(workdir: str, env: dict, fault: str = "none") -> subprocess.CompletedProcess:
  return subprocess.run(command(workdir, fault), cwd=REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def states(workdir: str) -> dict[int, list[np.ndarray]]:
  """{step: leaves of the saved TrainState} of every checkpoint in `workdir`."""
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=False),
                                  item_handlers={"state": ocp.StandardCheckpointHandler()})
  args = ocp.args.Composite(state=ocp.args.StandardRestore())
  out = {step: [np.asarray(x) for x in jax.tree.leaves(manager.restore(step, args=args).state)]
         for step in manager.all_steps()}
  manager.close()
  return out


def losses(workdir: str) -> list[tuple[int, float]]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def expect(result: subprocess.CompletedProcess, status: int) -> str:
  output = result.stdout + result.stderr
  assert result.returncode == status, output[-4000:]
  return output


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
  """The uninterrupted run (keeping every checkpoint, for the intermediate comparisons)."""
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  result = subprocess.run(command(workdir) + ["--config.train.keep_checkpoints=10"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
  expect(result, 0)
  return workdir


def test_every_fault_resumes_bit_identically_or_is_refused(tmp_path, env, reference):
  workdir = str(tmp_path / "run")
  checkpoints = os.path.join(workdir, "checkpoints")

  # 1. SIGKILL mid-run: no clean-up at all, the lock file stays behind.
  expect(launch(workdir, env, "sigkill_before_step=3"), -9)
  assert [s for s, _ in losses(workdir)] == [1, 2]
  assert os.path.exists(os.path.join(workdir, "run.lock"))

  # 2. SIGKILL while checkpoint 4 is committed: its files exist only under a temporary name.
  output = expect(launch(workdir, env, "sigkill_in_commit=4"), -9)
  assert "Took over the lock of pid" in output
  assert glob.glob(os.path.join(checkpoints, "4.orbax-checkpoint-tmp*"))
  assert not os.path.exists(os.path.join(checkpoints, "4"))

  # 3. SIGKILL while checkpoint 6 is being written in the background.
  output = expect(launch(workdir, env, "sigkill_in_save=6"), -9)
  assert "Resumed from step 2" in output
  assert not glob.glob(os.path.join(checkpoints, "4.orbax-checkpoint-tmp*"))  # Cleaned up.

  # 4. SIGTERM (preemption): the step in progress is saved, the launcher says so, status 3.
  result = launch(workdir, env, "sigterm_before_step=7")
  expect(result, 3)
  assert "preempted: SIGTERM received; saved step 7" in result.stdout
  assert max(states(workdir)) == 7
  assert not os.path.exists(os.path.join(workdir, "run.lock"))  # Released on the way out.

  # 5. Corrupt the newest checkpoint: the next run uses checkpoint 6 and moves 7 aside.
  for path in glob.glob(os.path.join(checkpoints, "7", "state", "**", "d", "*"), recursive=True):
    with open(path, "wb") as f:
      f.write(b"\0" * 16)

  # 6. A checkpoint directory that turns read-only: the save of step 8 fails at once.
  if make_unwritable(checkpoints):
    make_writable(checkpoints)  # Only checked that it can be done here.
    start = time.perf_counter()
    output = expect(launch(workdir, env, "readonly_before_step=8"), 6)
    make_writable(checkpoints)
    assert "Checkpoint 7 is unreadable" in output and "using checkpoint 6" in output
    assert "error: cannot write checkpoint 8 to" in output and "checkpoint 6 is kept" in output
    assert time.perf_counter() - start < 60  # Not orbax's 300 s barrier timeout.
    assert os.path.isdir(os.path.join(checkpoints, "7.corrupt"))

  # 7. Two runs on one workdir: the second is refused while the first holds it.
  marker = str(tmp_path / "release")
  first = subprocess.Popen(command(workdir, f"pause_before_step=8:{marker}"), cwd=REPO_ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.time() + 240
    while not os.path.exists(marker + ".reached") and first.poll() is None:
      assert time.time() < deadline, "the first run never reached step 8"
      time.sleep(0.1)
    second = launch(workdir, env)
    expect(second, 4)
    assert (f"is in use by another run: pid {first.pid} on host {socket.gethostname()}"
            in second.stderr)
  finally:
    open(marker, "w").close()
    output, _ = first.communicate(timeout=300)

  # 8. The first run finishes: everything equals the uninterrupted run, bit for bit.
  assert first.returncode == 0, output[-4000:]
  assert "Resumed from step 6" in output
  assert losses(workdir) == losses(reference)  # One row per step, none twice.
  ours, theirs = states(workdir), states(reference)
  assert sorted(ours) == [4, 6, NUM_STEPS]  # keep_checkpoints=3 (7 was moved aside)
  for step in set(ours) & set(theirs):
    assert len(ours[step]) == len(theirs[step])
    for a, b in zip(ours[step], theirs[step]):
      np.testing.assert_array_equal(a, b, err_msg=f"checkpoint {step}")
  with open(os.path.join(workdir, "eval.json")) as f, \
      open(os.path.join(reference, "eval.json")) as g:
    assert json.load(f)["curve"] == json.load(g)["curve"]

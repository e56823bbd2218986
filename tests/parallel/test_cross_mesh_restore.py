"""Checkpoints move between meshes, and a SIGTERM'd run leaves one that a rerun resumes from.

A state saved from a (data=4) mesh is restored through abstract targets built from the current
mesh, on (fsdp=2) and on one device: the restored arrays are bit-identical and land in the new
layout, and training continues with the losses the original mesh gives.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from bonjax.parallel.mesh import make_mesh
from bonjax.training import loop, sft
from bonjax.training.checkpointing import Checkpointer, abstract_like
from bonjax.training.metrics_writer import read_metrics
from bonjax.training.run_setup import build_run_setup
from bonjax.training.state import make_optimizer
from bonjax.training.step import jit_train_step, make_train_step
from experiments import quickstart
from tests.small_configs import shrink

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# LLVM optimisation of the CPU kernels costs compile time and changes no result checked here.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SAVED_AT = 2  # Steps run before the checkpoint.
CONTINUED = 2  # Steps compared after restoring.


def small_config():
  return shrink(quickstart.get_config(), num_train=128, num_test=8, batch_size=8)


class MeshRun:
  """The SFT train step of `config` on one mesh layout (over the first devices)."""

  def __init__(self, config, layout: tuple[int, int, int]):
    config = copy.deepcopy(config)
    config.mesh.data = -1  # Validated against all devices; the mesh below uses a subset.
    setup = build_run_setup(config)
    devices = jax.devices()[:int(np.prod(layout))]
    self.setup = dataclasses.replace(setup, mesh=make_mesh(*layout, devices=devices))
    self.optimizer = make_optimizer(config.train)
    self.shardings = loop.state_shardings(self.setup, self.optimizer)
    batch_shardings = {k: self.setup.batch_sharding(2) for k in ("tokens", "valid",
                                                                 "target_mask")}
    loss_fn = sft.SupervisedTrainer(self.setup).loss_fn
    self._step = jit_train_step(make_train_step(loss_fn, self.optimizer), self.shardings,
                                batch_shardings, self.setup.mesh)
    self._compiled = None

  def init(self):
    params = self.setup.init_params(self.setup.config.seed)
    return loop.init_state(self.setup, self.optimizer, self.shardings, params)

  def abstract_state(self):
    """Restore targets: shapes and dtypes of a fresh state, shardings of this mesh."""
    return abstract_like(self.setup.abstract_train_state(self.optimizer), self.shardings)

  def run(self, state, start: int, num_steps: int):
    """Steps start .. start + num_steps - 1; returns (state, losses)."""
    losses = []
    for step in range(start, start + num_steps):
      batch = self.setup.shard_batch(sft.supervised_batch(self.setup, step))
      if self._compiled is None:  # Compiled ahead of time only to skip LLVM optimisation.
        self._compiled = self._step.lower(state, batch).compile(FAST_COMPILE)
      state, metrics = self._compiled(state, batch)
      losses.append(float(metrics["loss"]))
    return state, losses


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A state trained SAVED_AT steps on (4,1,1) and checkpointed, then CONTINUED more steps."""
  config = small_config()
  workdir = str(tmp_path_factory.mktemp("saved"))
  source = MeshRun(config, (4, 1, 1))
  state, _ = source.run(source.init(), 0, SAVED_AT)
  checkpointer = Checkpointer(workdir, keep=1, async_save=False)
  checkpointer.save(SAVED_AT, state, {"step": SAVED_AT}, force=True)
  checkpointer.close()
  saved = _host(state)
  _, losses = source.run(state, SAVED_AT, CONTINUED)
  return config, workdir, saved, losses


@pytest.mark.devices(8)
@pytest.mark.parametrize("layout", [(1, 2, 1), (1, 1, 1)], ids=["fsdp2", "one_device"])
def test_restore_on_another_mesh_continues_identically(saved_run, layout):
  config, workdir, saved, reference_losses = saved_run
  target = MeshRun(config, layout)
  checkpointer = Checkpointer(workdir, keep=1, async_save=False)
  state, meta = checkpointer.restore(target.abstract_state())
  checkpointer.close()
  assert meta["step"] == SAVED_AT and int(state.step) == SAVED_AT
  # Bit-identical values, in the new mesh's layout.
  jax.tree.map(np.testing.assert_array_equal, _host(state), saved)
  for leaf, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(target.shardings)):
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    assert leaf.sharding.device_set == set(target.setup.mesh.devices.flat)
  if layout == (1, 2, 1):  # fsdp really splits the restored embedding.
    assert not state.params["embedding"].sharding.is_fully_replicated
  _, losses = target.run(state, SAVED_AT, CONTINUED)
  np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Preemption: SIGTERM to the launcher.
# ----------------------------------------------------------------------------------------------

_NUM_STEPS = 300


def _launcher_command(workdir: str) -> list[str]:
  overrides = {
      "task.num_train": 256, "task.num_test": 8, "train.batch_size": 8,
      "train.num_steps": _NUM_STEPS, "train.warmup_steps": 10, "train.log_every": 1,
      "train.checkpoint_every": 10_000, "eval.num_prompts": 8, "eval.num_samples": 2,
      "eval.prompt_batch_size": 8, "mesh.data": 2,
  }
  return ([sys.executable, "-m", "launch.main", f"--workdir={workdir}"]
          + [f"--config.{k}={v}" for k, v in overrides.items()])


def _launcher_env() -> dict[str, str]:
  return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT,
              XLA_FLAGS="--xla_force_host_platform_device_count=2")


def _wait_for_metrics(workdir: str, proc: subprocess.Popen, timeout: float = 240) -> int:
  """Blocks until the run has logged a training step; returns the last logged step."""
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      pytest.fail(f"launcher exited early with {proc.returncode}: {proc.stdout.read()[-3000:]}")
    if os.path.exists(path) and os.path.getsize(path) > 0:
      return read_metrics(workdir)[-1]["step"]
    time.sleep(0.05)
  proc.kill()
  pytest.fail("launcher logged no step in time")


@pytest.mark.slow
def test_sigterm_leaves_a_checkpoint_that_a_rerun_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  command, env = _launcher_command(workdir), _launcher_env()
  proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  _wait_for_metrics(workdir, proc)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == 3, output[-3000:]  # The launcher's "preempted" status.
  assert "SIGTERM: saved step" in output

  checkpointer = Checkpointer(workdir, async_save=False)
  preempted_at = checkpointer.latest_step()
  meta = checkpointer.restore_meta()
  checkpointer.close()
  assert preempted_at is not None and 1 <= preempted_at < _NUM_STEPS
  assert meta["step"] == preempted_at
  logged = [m["step"] for m in read_metrics(workdir)]
  assert logged == list(range(1, preempted_at + 1))  # Nothing after the checkpoint ran.
  assert not os.path.exists(os.path.join(workdir, "eval.json"))

  rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"Resumed from step {preempted_at}" in rerun.stderr
  records = [m for m in read_metrics(workdir) if "loss" in m]
  assert [m["step"] for m in records] == list(range(1, _NUM_STEPS + 1))
  with open(os.path.join(workdir, "eval.json")) as f:
    assert json.load(f)["step"] == _NUM_STEPS

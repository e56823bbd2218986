"""One process of a multi-process SFT run on local CPU devices (started by test_multiprocess.py).

Usage (every process of the run, same arguments, its own BONJAX_PROCESS_ID):

  BONJAX_COORDINATOR_ADDRESS=localhost:PORT BONJAX_NUM_PROCESSES=2 BONJAX_PROCESS_ID=i \
  XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \
  python tests/parallel/multiprocess_worker.py WORKDIR NUM_STEPS

Joins the processes with `maybe_initialize_distributed`, builds the global (data=2, fsdp=2)
mesh over all processes' devices, runs NUM_STEPS SFT steps of the tiny model where each process
feeds only its own rows of the global batch (`jax.make_array_from_process_local_data`), saves an
orbax checkpoint that every process writes its shards of, restores it, and writes what it saw to
WORKDIR/process_<i>.json.

`run_steps` is also called in a single process by the test, as the reference.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from typing import Any, Callable

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bonjax.parallel.distributed import (fetch_to_host,  # noqa: E402
                                        maybe_initialize_distributed)
from bonjax.parallel.mesh import make_mesh  # noqa: E402
from bonjax.training import loop, sft  # noqa: E402
from bonjax.training.checkpointing import Checkpointer, abstract_like  # noqa: E402
from bonjax.training.run_setup import build_run_setup  # noqa: E402
from bonjax.training.state import make_optimizer  # noqa: E402
from bonjax.training.step import jit_train_step, make_train_step  # noqa: E402
from tests.small_configs import shrink  # noqa: E402

MESH = (2, 2, 1)  # (data, fsdp, tensor): rows over 4 devices, parameters split over fsdp.


def small_config():
  """The quickstart config shrunk to a few fast steps of the tiny model."""
  from experiments import quickstart

  config = shrink(quickstart.get_config(), num_train=64, num_test=8, batch_size=8)
  config.train.async_checkpoints = False
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = MESH
  return config


def local_rows(global_batch: dict[str, np.ndarray], sharding: Any) -> dict[str, np.ndarray]:
  """This process's rows of a global host batch: those its local devices hold under `sharding`.

  Every process derives the same global batch from (seed, step); only the rows that land on
  its own devices are placed, as a data loader reading per-host shards would.
  """
  indices = sharding.addressable_devices_indices_map(next(iter(global_batch.values())).shape)
  starts = sorted({idx[0].start or 0 for idx in indices.values()})
  stops = sorted({idx[0].stop for idx in indices.values()})
  rows = slice(starts[0], stops[-1])
  return {k: v[rows] for k, v in global_batch.items()}


def run_steps(config, workdir: str, num_steps: int,
              devices: list | None = None) -> tuple[list[float], Any, Any, Callable]:
  """Runs `num_steps` SFT steps on the MESH layout and saves a checkpoint at the end.

  Args:
    config: run config.
    workdir: checkpoint directory root (shared by all processes).
    num_steps: steps to run.
    devices: devices of the mesh (default: all global devices).

  Returns:
    (losses, final state, state shardings, setup).
  """
  if devices is not None:  # Validate against all devices, then use only `devices`.
    config = copy.deepcopy(config)
    config.mesh.data = -1
  setup = build_run_setup(config)
  if devices is not None:
    setup = dataclasses.replace(setup, mesh=make_mesh(*MESH, devices=devices))
  optimizer = make_optimizer(config.train)
  shardings = loop.state_shardings(setup, optimizer)
  state = loop.init_state(setup, optimizer, shardings, setup.init_params(config.seed))
  keys = ("tokens", "valid", "target_mask")
  batch_shardings = {k: setup.batch_sharding(2) for k in keys}
  step_fn = jit_train_step(make_train_step(sft.SupervisedTrainer(setup).loss_fn, optimizer),
                           shardings, batch_shardings, setup.mesh)
  losses, fetched_equal = [], True
  for step in range(num_steps):
    host_batch = sft.supervised_batch(setup, step)
    mine = local_rows(host_batch, batch_shardings["tokens"])
    batch = {k: jax.make_array_from_process_local_data(batch_shardings[k], mine[k],
                                                       host_batch[k].shape) for k in keys}
    state, metrics = step_fn(state, batch)
    losses.append(float(metrics["loss"]))
    # The batch is split over both processes; every process can still read all of it.
    fetched_equal &= bool(np.array_equal(fetch_to_host(batch)["tokens"], host_batch["tokens"]))
  checkpointer = Checkpointer(workdir, keep=1, async_save=False)
  checkpointer.save(num_steps, state, {"step": num_steps, "losses": losses}, force=True)
  checkpointer.close()
  if not fetched_equal:
    raise AssertionError("fetch_to_host did not return the global batch")
  return losses, state, shardings, setup


def local_shards(tree: Any) -> dict[str, list[np.ndarray]]:
  """{path: [addressable shard data]} of a tree of global arrays."""
  return {jax.tree_util.keystr(p): [np.asarray(s.data) for s in x.addressable_shards]
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def main(workdir: str, num_steps: int) -> None:
  plan = maybe_initialize_distributed()
  losses, state, shardings, _ = run_steps(small_config(), workdir, num_steps)
  checkpointer = Checkpointer(workdir, keep=1, async_save=False)
  restored, meta = checkpointer.restore(abstract_like(state, shardings))
  checkpointer.close()
  before, after = local_shards(state), local_shards(restored)
  restored_equal = before.keys() == after.keys() and all(
      np.array_equal(a, b) for k in before for a, b in zip(before[k], after[k]))
  report = {
      "method": plan.method, "process_index": jax.process_index(),
      "process_count": jax.process_count(), "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(), "losses": losses,
      "meta_losses": meta["losses"], "restored_equal": restored_equal,
      "params_split": [not x.is_fully_replicated for x in jax.tree.leaves(state.params)],
  }
  with open(os.path.join(workdir, f"process_{jax.process_index()}.json"), "w") as f:
    json.dump(report, f)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))

"""Two processes joined with jax.distributed on localhost train together and checkpoint together.

Each process has 2 CPU devices; the global (data=2, fsdp=2) mesh spans all 4. Each process
feeds only its own rows of every batch, both take part in one orbax checkpoint, and both must
see the same losses as a single process running the same steps on 4 devices. The distributed
environment detection itself is checked without starting anything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from bonjax.parallel import distributed
from bonjax.training.checkpointing import Checkpointer, abstract_like
from tests.parallel import multiprocess_worker as worker

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess_worker.py")
NUM_PROCESSES = 2
NUM_STEPS = 3


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_processes(workdir: str) -> list[subprocess.Popen]:
  port = _free_port()
  procs = []
  for rank in range(NUM_PROCESSES):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2",
               BONJAX_COORDINATOR_ADDRESS=f"localhost:{port}",
               BONJAX_NUM_PROCESSES=str(NUM_PROCESSES), BONJAX_PROCESS_ID=str(rank))
    log = open(os.path.join(workdir, f"process_{rank}.log"), "w")
    procs.append(subprocess.Popen([sys.executable, WORKER, workdir, str(NUM_STEPS)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(procs: list[subprocess.Popen], workdir: str, timeout: float = 300) -> None:
  try:
    for proc in procs:
      proc.wait(timeout=timeout)
  finally:
    for proc in procs:  # One crashed process leaves the other waiting at a barrier.
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for rank, proc in enumerate(procs):
    if proc.returncode != 0:
      with open(os.path.join(workdir, f"process_{rank}.log")) as f:
        tail = f.read()[-3000:]
      pytest.fail(f"process {rank} exited with {proc.returncode}:\n{tail}")


@pytest.mark.devices(4)
@pytest.mark.slow  # Three jax processes compile the same programs: about 30 s of CPU.
def test_two_processes_train_and_checkpoint_together(tmp_path):
  workdir = str(tmp_path)
  procs = _start_processes(workdir)
  try:
    # Meanwhile, the reference: one process, the same steps on 4 of this process's devices.
    ref_losses, ref_state, ref_shardings, _ = worker.run_steps(
        worker.small_config(), str(tmp_path / "single"), NUM_STEPS, devices=jax.devices()[:4])
  finally:
    _wait(procs, workdir)

  reports = []
  for rank in range(NUM_PROCESSES):
    with open(os.path.join(workdir, f"process_{rank}.json")) as f:
      reports.append(json.load(f))
  for rank, report in enumerate(reports):
    assert report["method"] == "env"
    assert (report["process_index"], report["process_count"]) == (rank, NUM_PROCESSES)
    assert (report["device_count"], report["local_device_count"]) == (4, 2)
    assert report["restored_equal"], rank
    assert report["meta_losses"] == report["losses"]
    assert all(report["params_split"])  # fsdp=2 splits every parameter across the processes.
  # Both processes computed the one global loss: identical bits.
  assert reports[0]["losses"] == reports[1]["losses"]
  assert len(reports[0]["losses"]) == NUM_STEPS
  np.testing.assert_allclose(reports[0]["losses"], ref_losses, rtol=2e-6)
  assert reports[0]["losses"][-1] < reports[0]["losses"][0]

  # Each process wrote its own shards of the one checkpoint; together they restore the state
  # the single process reached.
  state_dir = os.path.join(workdir, "checkpoints", str(NUM_STEPS), "state")
  assert {f"ocdbt.process_{r}" for r in range(NUM_PROCESSES)} <= set(os.listdir(state_dir))
  checkpointer = Checkpointer(workdir, keep=1, async_save=False)
  restored, meta = checkpointer.restore(abstract_like(ref_state, ref_shardings))
  checkpointer.close()
  assert meta["losses"] == reports[0]["losses"]
  assert int(restored.step) == NUM_STEPS
  for got, want in zip(jax.tree.leaves(jax.device_get(restored.params)),
                       jax.tree.leaves(jax.device_get(ref_state.params))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Environment detection (no processes started).
# ----------------------------------------------------------------------------------------------


def _never_tpu() -> bool:
  return False


def test_no_coordinator_means_single_process():
  plan = distributed.plan_distributed({}, is_tpu_vm=_never_tpu)
  assert plan.method == "none"
  # And initialising is then a no-op that leaves this process alone.
  assert distributed.maybe_initialize_distributed({}, is_tpu_vm=_never_tpu).method == "none"
  assert jax.process_count() == 1


def test_fetch_to_host_reads_sharded_arrays():
  from bonjax.parallel.mesh import make_mesh
  from jax.sharding import NamedSharding, PartitionSpec

  mesh = make_mesh(4, 2, 1)
  values = np.arange(32, dtype=np.int32).reshape(8, 4)
  sharded = jax.device_put(values, NamedSharding(mesh, PartitionSpec(("data", "fsdp"))))
  fetched = distributed.fetch_to_host({"x": sharded, "n": 3})
  np.testing.assert_array_equal(fetched["x"], values)
  assert fetched["n"] == 3


def test_coordinator_variables_are_read_and_checked():
  env = {"BONJAX_COORDINATOR_ADDRESS": "10.0.0.2:1234", "BONJAX_NUM_PROCESSES": "4",
         "BONJAX_PROCESS_ID": "3", "BONJAX_LOCAL_DEVICE_IDS": "0,1"}
  plan = distributed.plan_distributed(env, is_tpu_vm=_never_tpu)
  assert (plan.method, plan.coordinator_address, plan.num_processes, plan.process_id,
          plan.local_device_ids) == ("env", "10.0.0.2:1234", 4, 3, (0, 1))
  bad = [
      ({"BONJAX_PROCESS_ID": "4"}, r"BONJAX_PROCESS_ID=4: must be in \[0, 4\)"),
      ({"BONJAX_NUM_PROCESSES": None}, "BONJAX_NUM_PROCESSES must be set too"),
      ({"BONJAX_COORDINATOR_ADDRESS": "10.0.0.2"}, "must be host:port"),
      ({"BONJAX_NUM_PROCESSES": "two"}, "BONJAX_NUM_PROCESSES='two': must be an integer"),
  ]
  for change, message in bad:
    broken = {k: v for k, v in {**env, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
      distributed.plan_distributed(broken, is_tpu_vm=_never_tpu)


def test_tpu_slices_and_the_off_switch():
  hosts = {"TPU_WORKER_HOSTNAMES": "t1k-w-0,t1k-w-1,t1k-w-2,t1k-w-3"}
  assert distributed.plan_distributed(hosts, is_tpu_vm=_never_tpu).method == "tpu"
  single_host = {"TPU_WORKER_HOSTNAMES": "localhost"}
  assert distributed.plan_distributed(single_host, is_tpu_vm=lambda: True).method == "none"
  # Without a host list a TPU VM defers to jax's metadata-based detection.
  assert distributed.plan_distributed({}, is_tpu_vm=lambda: True).method == "tpu"
  assert distributed.plan_distributed({"BONJAX_DISTRIBUTED": "1"},
                                      is_tpu_vm=_never_tpu).method == "tpu"
  off = dict(hosts, BONJAX_DISTRIBUTED="0", BONJAX_COORDINATOR_ADDRESS="h:1")
  assert distributed.plan_distributed(off, is_tpu_vm=lambda: True).method == "none"
  # An explicit coordinator wins over TPU detection.
  explicit = dict(hosts, BONJAX_COORDINATOR_ADDRESS="h:1", BONJAX_NUM_PROCESSES="2",
                  BONJAX_PROCESS_ID="0")
  assert distributed.plan_distributed(explicit, is_tpu_vm=lambda: True).method == "env"

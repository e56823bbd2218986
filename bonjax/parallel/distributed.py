"""Joining the processes of a multi-host run (jax.distributed), or doing nothing on one host.

`maybe_initialize_distributed()` must run before anything touches a jax backend (first thing
in the launcher). It decides how the run is spread over processes, in this order:

  1. BONJAX_DISTRIBUTED=0 (or "off"): never initialise (single process).
  2. BONJAX_COORDINATOR_ADDRESS is set: an explicit cluster, e.g. several CPU or GPU hosts, or
     several local processes in tests. Also read:
       BONJAX_NUM_PROCESSES   total number of processes (required),
       BONJAX_PROCESS_ID      this process's rank, 0 .. BONJAX_NUM_PROCESSES - 1 (required),
       BONJAX_LOCAL_DEVICE_IDS  optional comma-separated local device ids this process uses.
     The coordinator address is host:port of process 0, reachable from every process.
  3. A Cloud TPU VM: the runtime's host list (TPU_WORKER_HOSTNAMES or TPU_PROCESS_ADDRESSES)
     names several workers, or there is no host list but libtpu and TPU device files are
     present (BONJAX_DISTRIBUTED=1 forces this case): call jax.distributed.initialize()
     without arguments; jax reads the coordinator, process count and rank from the TPU
     metadata (a single-host VM gives one process). Every worker of the slice runs the same
     command (see launch/tpu_vm.py).
  4. Otherwise: nothing (one process, all local devices).

After initialisation every process sees the global device list (jax.devices()) and its own
jax.local_devices(); a mesh built from jax.devices() spans all hosts. CPU processes exchange
collectives through gloo.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import logging
import os
from typing import Callable, Mapping

import jax

ENV_SWITCH = "BONJAX_DISTRIBUTED"
ENV_COORDINATOR = "BONJAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "BONJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "BONJAX_PROCESS_ID"
ENV_LOCAL_DEVICE_IDS = "BONJAX_LOCAL_DEVICE_IDS"

# Host lists TPU runtimes export (GKE, some TPU VM images): one entry per worker.
TPU_HOST_LIST_VARIABLES = ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES")

_OFF = ("0", "off", "false", "no")
_FORCE_TPU = ("1", "on", "true", "yes", "auto-tpu")


@dataclasses.dataclass(frozen=True)
class DistributedPlan:
  """How this process joins the run.

  Attributes:
    method: "none" (single process), "env" (explicit coordinator from BONJAX_* variables) or
      "tpu" (jax's own TPU-VM cluster detection).
    coordinator_address: host:port of process 0 ("env" only).
    num_processes: total processes ("env" only; "tpu" learns it from the metadata).
    process_id: this process's rank ("env" only).
    local_device_ids: local devices this process uses (None: all).
    reason: why this method was chosen (logged).
  """

  method: str
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  local_device_ids: tuple[int, ...] | None = None
  reason: str = ""


def _int_variable(environ: Mapping[str, str], name: str) -> int:
  value = environ.get(name)
  if value is None:
    raise ValueError(f"{ENV_COORDINATOR} is set, so {name} must be set too")
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r}: must be an integer") from None


def plan_from_environment(environ: Mapping[str, str]) -> DistributedPlan | None:
  """The explicit cluster named by BONJAX_COORDINATOR_ADDRESS & co., or None without one.

  Raises:
    ValueError: naming the variable that is missing or out of range.
  """
  address = environ.get(ENV_COORDINATOR)
  if not address:
    return None
  if ":" not in address:
    raise ValueError(f"{ENV_COORDINATOR}={address!r}: must be host:port")
  num_processes = _int_variable(environ, ENV_NUM_PROCESSES)
  process_id = _int_variable(environ, ENV_PROCESS_ID)
  if num_processes < 1:
    raise ValueError(f"{ENV_NUM_PROCESSES}={num_processes}: must be >= 1")
  if not 0 <= process_id < num_processes:
    raise ValueError(f"{ENV_PROCESS_ID}={process_id}: must be in [0, {num_processes})")
  local = environ.get(ENV_LOCAL_DEVICE_IDS)
  try:
    local_ids = tuple(int(i) for i in local.split(",")) if local else None
  except ValueError:
    raise ValueError(
        f"{ENV_LOCAL_DEVICE_IDS}={local!r}: must be comma-separated integers") from None
  return DistributedPlan("env", address, num_processes, process_id, local_ids,
                         reason=f"{ENV_COORDINATOR}={address}")


def tpu_vm_hosts(environ: Mapping[str, str]) -> int | None:
  """Workers of the TPU slice named by the runtime's host list variables, or None."""
  for name in TPU_HOST_LIST_VARIABLES:
    if environ.get(name):
      return len([h for h in environ[name].split(",") if h.strip()])
  return None


def on_tpu_vm() -> bool:
  """Whether this machine is a Cloud TPU VM: libtpu installed and TPU device files present."""
  has_libtpu = importlib.util.find_spec("libtpu") is not None
  has_chips = bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))
  return has_libtpu and has_chips


def plan_distributed(environ: Mapping[str, str] | None = None,
                     is_tpu_vm: Callable[[], bool] = on_tpu_vm) -> DistributedPlan:
  """Decides how this process joins the run (see the module docstring for the order).

  Args:
    environ: environment variables (default: os.environ).
    is_tpu_vm: TPU-VM detector (replaceable in tests).

  Returns:
    The plan; method "none" means a single-process run.
  """
  environ = os.environ if environ is None else environ
  switch = environ.get(ENV_SWITCH, "").strip().lower()
  if switch in _OFF:
    return DistributedPlan("none", reason=f"{ENV_SWITCH}={switch}")
  explicit = plan_from_environment(environ)
  if explicit is not None:
    return explicit
  if switch in _FORCE_TPU:
    return DistributedPlan("tpu", reason=f"{ENV_SWITCH}={switch}")
  hosts = tpu_vm_hosts(environ)
  if hosts is not None and hosts > 1:
    return DistributedPlan("tpu", reason=f"TPU slice with {hosts} workers")
  if hosts is None and is_tpu_vm():
    # Without a host list only the metadata server knows the slice size; jax asks it.
    return DistributedPlan("tpu", reason="Cloud TPU VM (libtpu and TPU devices present)")
  return DistributedPlan("none", reason="no coordinator configured and not a multi-host TPU VM")


def _initialize_env(plan: DistributedPlan) -> None:
  # Collectives between CPU devices of different processes; accelerators ignore the setting.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=plan.coordinator_address,
                             num_processes=plan.num_processes, process_id=plan.process_id,
                             local_device_ids=list(plan.local_device_ids)
                             if plan.local_device_ids is not None else None)


def _initialize_tpu(plan: DistributedPlan) -> None:
  del plan
  jax.distributed.initialize()


_INITIALIZERS: dict[str, Callable[[DistributedPlan], None]] = {
    "none": lambda plan: None,
    "env": _initialize_env,
    "tpu": _initialize_tpu,
}


def maybe_initialize_distributed(environ: Mapping[str, str] | None = None,
                                 is_tpu_vm: Callable[[], bool] = on_tpu_vm) -> DistributedPlan:
  """Calls jax.distributed.initialize() when the run spans several processes; else nothing.

  Safe to call twice (the second call does nothing). Must run before any jax computation.

  Args:
    environ: environment variables (default: os.environ).
    is_tpu_vm: TPU-VM detector.

  Returns:
    The plan that was applied.
  """
  plan = plan_distributed(environ, is_tpu_vm)
  if plan.method != "none" and jax.distributed.is_initialized():
    return plan
  _INITIALIZERS[plan.method](plan)
  if plan.method != "none":
    logging.info("jax.distributed initialised (%s): process %d of %d, %d local / %d global "
                 "devices", plan.reason, jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
  return plan


def is_primary_process() -> bool:
  """True on the process that writes run-level files (reports, plots): process 0."""
  return jax.process_index() == 0


def fetch_to_host(tree):
  """numpy copies of a pytree of global arrays, on every process.

  `jax.device_get` only reads arrays whose shards all live on this process; arrays split over
  several hosts (a rollout sharded over the batch) are all-gathered instead, so each process
  gets the whole value. Single-process runs take the plain device_get path.
  """
  from jax.experimental import multihost_utils  # Imported only where a run spans hosts.

  def one(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return jax.device_get(x)
    return multihost_utils.process_allgather(x, tiled=True)

  return jax.tree.map(one, tree)

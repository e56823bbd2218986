r"""Multi-process (multi-host) runs, shared by every entry point (launch.main, launch.sweep,
launch.train_verifier).

Each process of the run runs the same command; the entry point joins them with
`jax.distributed` before anything touches a device. How the processes find each other, in the
order `bonjax.parallel.distributed.plan_distributed` applies:

  * a Cloud TPU VM slice: detected (every worker runs the command, e.g. through
    `gcloud compute tpus tpu-vm ssh ... --worker=all`, see launch/tpu_vm.py);
  * an explicit cluster: --coordinator_address=host:port (of process 0) --num_processes=N
    --process_id=i, or the same as BONJAX_COORDINATOR_ADDRESS / BONJAX_NUM_PROCESSES /
    BONJAX_PROCESS_ID in the environment (flags win);
  * otherwise one process.

Afterwards only process 0 writes metrics, reports and plots (`is_writer`) and logs at INFO;
checkpoints are written by all processes together (each its own shards).
"""

from __future__ import annotations

import logging as std_logging
import os
from typing import Any, Mapping

from absl import flags, logging

from bonjax.parallel import distributed

# Flag name -> the environment variable it overrides.
FLAG_VARIABLES = {
    "coordinator_address": distributed.ENV_COORDINATOR,
    "num_processes": distributed.ENV_NUM_PROCESSES,
    "process_id": distributed.ENV_PROCESS_ID,
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines --coordinator_address, --num_processes and --process_id on `flag_values` (those
  not defined yet: several entry points may be imported into one process)."""
  definitions = {
      "coordinator_address": lambda: flags.DEFINE_string(
          "coordinator_address", None, "Multi-process run: host:port of process 0 (default: "
          f"${distributed.ENV_COORDINATOR}; TPU VM slices are detected).",
          flag_values=flag_values),
      "num_processes": lambda: flags.DEFINE_integer(
          "num_processes", None, f"Multi-process run: number of processes "
          f"(default: ${distributed.ENV_NUM_PROCESSES}).", flag_values=flag_values),
      "process_id": lambda: flags.DEFINE_integer(
          "process_id", None, f"Multi-process run: this process's rank, 0 .. N-1 "
          f"(default: ${distributed.ENV_PROCESS_ID}).", flag_values=flag_values),
  }
  for name, define in definitions.items():
    if name not in flag_values:
      define()


def flag_values_of(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """{flag name: parsed value or None} of the multi-process flags."""
  return {name: flag_values[name].value for name in FLAG_VARIABLES}


def environment(values: Mapping[str, Any], environ: Mapping[str, str] | None = None
                ) -> dict[str, str]:
  """The environment with the multi-process flags that are set written over their variables.

  Args:
    values: {flag name: value or None} (extra keys are ignored).
    environ: the environment (default: os.environ).
  """
  env = dict(os.environ if environ is None else environ)
  for name, variable in FLAG_VARIABLES.items():
    if values.get(name) is not None:
      env[variable] = str(values[name])
  return env


def initialize(values: Mapping[str, Any]) -> distributed.DistributedPlan:
  """Joins the run's processes (or does nothing for a single-process run); call before any
  device work. On processes other than 0, absl logging drops to warnings.

  Args:
    values: the multi-process flag values ({name: value or None}).

  Raises:
    ValueError: inconsistent settings, naming the flag's variable and the rule.
  """
  plan = distributed.maybe_initialize_distributed(environ=environment(values))
  if plan.method != "none":
    import jax  # pylint: disable=g-import-not-at-top

    logging.info("process %d of %d (%s)", jax.process_index(), jax.process_count(), plan.reason)
    if not is_writer():
      logging.set_verbosity(logging.WARNING)
      std_logging.getLogger().setLevel(std_logging.WARNING)
  return plan


# Whether this process writes the run's files (process 0; the only one when single).
is_writer = distributed.is_primary_process

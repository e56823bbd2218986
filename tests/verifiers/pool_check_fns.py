"""Module-level check functions for the pool tests (workers import them by name)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from bonjax.verifiers.base import Status, VerifierResult

_IMPORTED_AT = time.time()
_CALLS = 0


def echo(item):
  """Scores int items: correct iff even; answer is the item; detail names the worker pid."""
  global _CALLS
  _CALLS += 1
  return VerifierResult(score=float(item % 2 == 0), correct=item % 2 == 0, status=Status.OK,
                        answer=str(item), detail=f"{os.getpid()}:{_IMPORTED_AT}:{_CALLS}")


def sleep_then_echo(item):
  """item = (seconds, value): sleeps, then scores like `echo`."""
  seconds, value = item
  time.sleep(seconds)
  return echo(value)


def raise_value_error(item):
  raise ValueError(f"bad item {item}")


def return_wrong_type(item):
  return item


def die_hard(item):
  """Kills its own worker process (like a segfault or an OOM kill)."""
  del item
  os.kill(os.getpid(), signal.SIGKILL)


def spawn_sleeper_and_hang(item):
  """Starts a child `sleep` with a marker argument, then hangs: the timeout must kill both."""
  subprocess.Popen(["sleep", str(item)])
  time.sleep(3600)


def allocate(item):
  """Allocates `item` bytes (a worker memory limit turns this into MemoryError)."""
  block = bytearray(item)
  return echo(len(block) % 2)


def sleepy_math_check(task):
  """Math check that hangs on completions containing SLEEP (an injected timeout)."""
  from bonjax.verifiers import math_answers  # pylint: disable=import-outside-toplevel
  if "SLEEP" in task.completion:
    time.sleep(3600)
  return math_answers.check_math_task(task)

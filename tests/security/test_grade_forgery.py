"""A hostile policy cannot fake a code grade: every attack is graded incorrect, host untouched.

All attacks run once, through a CodeVerifier and its worker pool as in training, with the
fraction reward (so any case an attack slips through shows as a score above 0).
"""

import os
import shutil
import stat
import time

import psutil
import pytest

from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status
from bonjax.verifiers.code_execution import CodeVerifier

from tests.security import attacks

CASE_SECONDS = 0.5
LIMITS = sandbox.SandboxLimits(wall_seconds=8.0, cpu_seconds=4)
# Probes walk the sandbox's whole filesystem and memory: they get the time to finish.
PROBE_CASE_SECONDS = 20.0
PROBE_LIMITS = sandbox.SandboxLimits(wall_seconds=40.0, cpu_seconds=30)
PRIVATE_UID_BASE = 0x40000000


def _snapshot(path):
  """(mode, content) of every entry below `path`."""
  state = {}
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      full = os.path.join(root, name)
      info = os.lstat(full)
      content = open(full, "rb").read() if stat.S_ISREG(info.st_mode) else None
      state[os.path.relpath(full, path)] = (stat.S_IMODE(info.st_mode), content)
  return state


def _sandbox_processes(callers):
  """Live processes running under a private uid of a sandbox started by one of `callers`."""
  callers = {pid & 0x3FFFFF for pid in callers}
  found = []
  for proc in psutil.process_iter(["pid", "uids", "status", "cmdline"]):
    uids = proc.info["uids"]
    if proc.info["status"] == psutil.STATUS_ZOMBIE or not uids:
      continue
    if uids.real >= PRIVATE_UID_BASE and (uids.real - PRIVATE_UID_BASE) >> 8 in callers:
      found.append((proc.info["pid"], proc.info["cmdline"]))
  return found


def _grade(named, limits, case_seconds):
  """Grades {name: completion}; returns the results and what the pool saw."""
  names = list(named)
  with CodeVerifier(reward="fraction", limits=limits, case_seconds=case_seconds,
                    num_workers=2) as verifier:
    verifier.verify(["def f():\n"], ["    return 1\n"], tests=["assert f() == 1"])  # Warm.
    workers = set(verifier.pool.worker_pids())
    start = time.monotonic()
    results = verifier.verify([attacks.PROMPT] * len(names), [named[n] for n in names],
                              tests=[attacks.CHECK] * len(names),
                              entry_points=["add"] * len(names))
    elapsed = time.monotonic() - start
    time.sleep(0.2)
    seen = {"elapsed": elapsed, "metrics": dict(verifier.last_metrics),
            "workers_before": workers, "workers_after": set(verifier.pool.worker_pids()),
            "leftovers": _sandbox_processes({os.getpid(), *workers})}
  return dict(zip(names, results)), seen


@pytest.fixture(scope="module")
def battle():
  """Every forgery, probe and honest completion, graded once; what the host saw."""
  os.makedirs(attacks.CANARY_DIR, exist_ok=True)
  os.chmod(attacks.CANARY_DIR, 0o777)
  canary = os.path.join(attacks.CANARY_DIR, "canary.txt")
  with open(canary, "w") as f:
    f.write("untouched")
  os.chmod(canary, 0o666)
  before = _snapshot(attacks.CANARY_DIR)
  try:
    named = dict(attacks.FORGERIES, **{"honest:correct": attacks.CORRECT,
                                       "honest:wrong": attacks.WRONG})
    results, seen = _grade(named, LIMITS, CASE_SECONDS)
    probes = {f"probe:{name}": attacks.probe_completion(name) for name in attacks.PROBES}
    probes.update({f"cheat:{name}": attacks.probe_completion(name, cheat=True)
                   for name in attacks.PROBES})
    probe_results, probe_seen = _grade(probes, PROBE_LIMITS, PROBE_CASE_SECONDS)
    yield dict(seen, results={**results, **probe_results}, probe_seen=probe_seen,
               canary_before=before, canary_after=_snapshot(attacks.CANARY_DIR),
               pwned=[p for p in attacks.PWNED if os.path.exists(p)])
  finally:
    shutil.rmtree(attacks.CANARY_DIR, ignore_errors=True)
    for path in attacks.PWNED:
      if os.path.isfile(path):
        os.remove(path)


def test_honest_completions_are_graded_by_their_answers(battle):
  correct = battle["results"]["honest:correct"]
  assert (correct.correct, correct.score, correct.status) == (True, 1.0, Status.OK), correct
  wrong = battle["results"]["honest:wrong"]
  assert (wrong.correct, wrong.score, wrong.status) == (False, 0.0, Status.OK), wrong


@pytest.mark.parametrize("name", sorted(attacks.PROBES))
def test_a_probe_with_its_capability_would_pass(battle, name):
  """The probes can fail: where the capability holds, the answer is right and graded so."""
  result = battle["results"][f"cheat:{name}"]
  assert (result.correct, result.score) == (True, 1.0), result


@pytest.mark.parametrize("name", sorted(attacks.FORGERIES))
def test_forgery_is_graded_incorrect(battle, name):
  result = battle["results"][name]
  assert not result.correct and result.score == 0.0, result
  assert result.status in (Status.OK, Status.TIMEOUT), result


@pytest.mark.parametrize("name", sorted(attacks.PROBES))
def test_capability_probe_finds_nothing(battle, name):
  result = battle["results"][f"probe:{name}"]
  assert not result.correct and result.score == 0.0, result
  assert result.status == Status.OK, result


def test_host_untouched(battle):
  assert battle["canary_after"] == battle["canary_before"]
  assert battle["pwned"] == []
  assert battle["leftovers"] == [] and battle["probe_seen"]["leftovers"] == []


def test_workers_survived_and_the_batch_was_prompt(battle):
  for seen in (battle, battle["probe_seen"]):
    assert seen["workers_after"] == seen["workers_before"]
    assert seen["metrics"]["worker_restarts"] == 0
    assert seen["metrics"]["error"] == 0
  # The slowest forgeries hang 6 cases x 0.5 s each.
  assert battle["elapsed"] < 30.0

"""A hostile policy cannot fake a code grade: every attack is graded incorrect, host untouched.

All attacks run once, through a CodeVerifier and its worker pool as in training, with the
fraction reward (so any case an attack slips through shows as a score above 0).
"""

import os
import shutil
import stat
import subprocess
import tempfile
import time

import psutil
import pytest

from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status
from bonjax.verifiers.code_execution import CodeTask, CodeVerifier, check_code_task, extract_program

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


def test_redefining_a_prompt_helper_the_tests_use_changes_nothing():
  """HumanEval/32-style: the tests check `square(candidate(y))`; `square` is the prompt's."""
  prompt = 'def square(x):\n    return x * x\n\n\ndef root(y):\n    """Root of y."""\n'
  check = "def check(candidate):\n    assert abs(square(candidate(9.0)) - 9.0) < 1e-6\n"
  grades = []
  honest, forged = "    return y ** 0.5\n", "    return 0.0\n\n\ndef square(x):\n    return 9.0\n"
  for completion in (honest, forged):
    task = CodeTask(extract_program(prompt, completion, "root"), check, "root", LIMITS,
                    CASE_SECONDS, True, prompt)
    result = check_code_task(task)
    grades.append((result.correct, result.score))
  assert grades == [(True, 1.0), (False, 0.0)]


_USERNS_DRIVER = """
import sys
sys.path.insert(0, REPO)
from bonjax.verifiers import code_execution as ce, sandbox
isolation = sandbox.probe_isolation()
print(isolation.namespaces, isolation.user_namespace, isolation.private_uid)
check = ("def check(candidate):\\n    assert candidate(2, 3) == 5\\n"
         "    assert candidate(1, 1) == 2\\n")
capabilities = '''    return a + b if FOUND else None
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
traced = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()
          and libc.ptrace(16, int(p), None, None) == 0]
FOUND = bool(traced) or libc.mount(None, b'/', None, 32 | 4096, None) == 0
'''
for completion in ["    return a + b\\n", FORGERY, capabilities]:
    task = ce.CodeTask(ce.extract_program("def add(a, b):\\n", completion, "add"), check, "add",
                       sandbox.SandboxLimits(wall_seconds=5.0), 1.0, True)
    result = ce.check_code_task(task)
    print(result.correct, result.score)
"""


def test_grades_hold_in_an_unprivileged_user_namespace():
  """As a plain user (uid 0 of a user namespace, no private uid), the candidate holds no
  capability: it can neither trace the judge nor remount the root, and fake records fail."""
  if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
    pytest.skip("needs root (to become another user), setpriv and /usr/bin/python3")
  work = tempfile.mkdtemp(prefix="bonjax-userns-", dir="/var/tmp")
  try:
    os.chmod(work, 0o755)
    script = os.path.join(work, "drive.py")
    with open(script, "w") as f:
      f.write(_USERNS_DRIVER.replace("REPO", repr(attacks.REPO)).replace(
          "FORGERY", repr(attacks.FORGERIES["records_on_every_fd_then_exit"])))
    os.chmod(script, 0o644)
    uid = PRIVATE_UID_BASE - 12346  # Unused, and below the range of sandbox uids.
    proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           "/usr/bin/python3", script], capture_output=True, text=True,
                          timeout=120, cwd="/")
  finally:
    shutil.rmtree(work, ignore_errors=True)
  if "ModuleNotFoundError" in proc.stderr or "Permission denied" in proc.stderr:
    pytest.skip(f"bonjax.verifiers is not importable by another user: {proc.stderr[-300:]}")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == ["True True False", "True 1.0", "False 0.0", "False 0.0"]

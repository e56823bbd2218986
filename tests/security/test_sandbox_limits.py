"""Each sandbox limit, measured from inside: what a program that tries its hardest gets.

These are the measurements behind README's "What the code sandbox contains" table
(`python -m pytest -n 0 -q -s tests/security/test_sandbox_limits.py` prints them).
"""

import os
import time

import pytest

from bonjax.verifiers import cgroups
from bonjax.verifiers import sandbox

MiB = 1 << 20

# Forks as many processes as it may; each allocates (and touches) 8 MiB blocks until refused,
# then reports what it holds and keeps holding it. The parent sums what the survivors hold
# at the same time.
_MEMORY_HOG = """
import os, time
pipes = []
for _ in range(64):
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r); os.close(w)
        break
    if pid == 0:
        held = []
        try:
            while True:
                held.append(bytearray(8 << 20))
        except MemoryError:
            pass
        os.write(w, str(len(held) * (8 << 20)).encode())
        time.sleep(60)
        os._exit(0)
    os.close(w)
    pipes.append(r)
held = []
try:
    while True:
        held.append(bytearray(8 << 20))
except MemoryError:
    pass
total = len(held) * (8 << 20)
for r in pipes:
    data = os.read(r, 64)
    total += int(data) if data else 0
os.write(3, f"{len(pipes) + 1} {total}".encode())
"""


@pytest.mark.parametrize("memory_mib, max_processes", [(512, 4), (1024, 2)])
def test_memory_of_all_processes_together_stays_within_the_bound(memory_mib, max_processes):
  limits = sandbox.SandboxLimits(wall_seconds=20.0, memory_bytes=memory_mib * MiB,
                                 max_processes=max_processes)
  run = sandbox.run_python(_MEMORY_HOG, limits)
  processes, held = (int(v) for v in run.report.split())
  print(f"\n{processes} processes held {held / MiB:.0f} MiB together "
        f"(bound {memory_mib} MiB, cgroup: {cgroups.sandbox_parent() is not None})")
  assert 1 <= processes <= max_processes
  assert 0 < held <= memory_mib * MiB
  if cgroups.sandbox_parent() is None:
    # Per-process limits sized so that the product fits: each got close to its share.
    assert held >= max_processes * (memory_mib * MiB // max_processes - 64 * MiB)


_FORK_BOMB = """
import os, time
alive = 1
for _ in range(10000):
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        alive += 1
    except OSError:
        break
os.write(3, str(alive).encode())
"""


def test_fork_bomb_is_held_to_the_process_budget():
  for budget in (1, 2, 8):
    run = sandbox.run_python(_FORK_BOMB, sandbox.SandboxLimits(
        wall_seconds=10.0, max_processes=budget, memory_bytes=budget * 128 * MiB))
    print(f"\nprocess budget {budget}: {run.report} processes")
    assert run.report == str(budget), run


def test_wall_clock_kills_a_program_that_ignores_signals():
  source = ("import signal\nfor s in (signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU):\n"
            "    signal.signal(s, signal.SIG_IGN)\nimport time\ntime.sleep(60)\n")
  start = time.monotonic()
  run = sandbox.run_python(source, sandbox.SandboxLimits(wall_seconds=1.5))
  elapsed = time.monotonic() - start
  print(f"\nwall limit 1.5 s: ended after {elapsed:.2f} s")
  assert run.timed_out and run.exit_code is None
  assert 1.5 <= elapsed < 1.5 + 1.0


def test_cpu_limit_kills_a_busy_loop():
  source = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
  run = sandbox.run_python(source, sandbox.SandboxLimits(wall_seconds=10.0, cpu_seconds=1))
  print(f"\ncpu limit 1 s: killed by signal {-run.exit_code} after {run.cpu_seconds:.2f} s CPU")
  assert run.exit_code == -9 and 1.0 <= run.cpu_seconds < 2.5, run


def test_file_size_and_tmpfs_are_bounded():
  source = """
import os
written = {}
for name, size in (("big", 64 << 20), ):
    path = os.path.join(os.environ["TMPDIR"], name)
    done = 0
    try:
        with open(path, "wb", buffering=0) as f:
            while done < size:
                done += f.write(b"x" * (1 << 20))
    except OSError:
        pass
    written[name] = os.path.getsize(path)
total = 0
for i in range(1000):
    try:
        with open(os.path.join(os.environ["TMPDIR"], f"part{i}"), "wb", buffering=0) as f:
            for _ in range(8):
                total += f.write(b"x" * (1 << 20))
    except OSError:
        break
os.write(3, f"{written['big']} {total + written['big']}".encode())
"""
  limits = sandbox.SandboxLimits(file_bytes=8 * MiB, tmpfs_bytes=32 * MiB)
  run = sandbox.run_python(source, limits)
  largest, total = (int(v) for v in run.report.split())
  print(f"\nlargest file {largest / MiB:.1f} MiB (limit 8), all files {total / MiB:.1f} MiB "
        "(tmpfs 32)")
  assert largest == 8 * MiB
  assert total <= 32 * MiB


def test_per_process_memory_is_the_share_of_the_bound():
  source = ("import resource, os\n"
            "os.write(3, str(resource.getrlimit(resource.RLIMIT_AS)[0]).encode())\n")
  run = sandbox.run_python(source, sandbox.SandboxLimits(memory_bytes=1024 * MiB,
                                                         max_processes=2))
  expected = 1024 * MiB if cgroups.sandbox_parent() else 512 * MiB
  assert int(run.report) == expected


def test_limits_that_cannot_fit_are_refused():
  with pytest.raises(ValueError, match="each process needs >= 64 MiB"):
    sandbox.SandboxLimits(memory_bytes=256 * MiB, max_processes=8).validate()


def _fake_hierarchy(root, own):
  """A cgroup2-like tree: the root enables memory and pids for its children; `own` is ours."""
  (root / "cgroup.subtree_control").write_text("memory pids\n")
  (root / own).mkdir(parents=True)
  parent = root / cgroups.PARENT_NAME
  parent.mkdir()
  (parent / "cgroup.controllers").write_text("memory pids\n")
  (parent / "cgroup.subtree_control").write_text("memory pids\n")
  return parent


def test_cgroup_parent_is_made_under_an_ancestor_that_delegates_memory(tmp_path):
  parent = _fake_hierarchy(tmp_path, "a")
  assert cgroups.find_parent(str(tmp_path), "/a") == str(parent)
  (tmp_path / "cgroup.subtree_control").write_text("pids\n")
  assert cgroups.find_parent(str(tmp_path), "/a") is None  # Memory not delegated: rlimits.


def test_run_cgroup_bounds_memory_and_processes(tmp_path):
  parent = _fake_hierarchy(tmp_path, "a")
  (parent / "run-999999999-0").mkdir()  # Left by a process that no longer exists.
  cgroups._remove_stale(str(parent))  # pylint: disable=protected-access
  assert not (parent / "run-999999999-0").exists()
  path = cgroups.create(str(parent), 256 * MiB, 3)
  assert open(os.path.join(path, "memory.max")).read() == str(256 * MiB)
  # Files a controller does not provide are not invented (a real cgroupfs has pids.max).
  assert not os.path.exists(os.path.join(path, "pids.max"))
  with open(os.path.join(path, "memory.events"), "w") as f:
    f.write("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
  assert cgroups.oom_kills(path) == 2
  os.remove(os.path.join(path, "memory.events"))
  os.remove(os.path.join(path, "memory.max"))
  cgroups.remove(path)
  assert not os.path.exists(path)


def test_program_processes_join_the_run_cgroup(tmp_path, monkeypatch):
  """With a cgroup, every program process writes itself into cgroup.procs before it runs,
  and its own RLIMIT_AS is the whole bound (the cgroup divides it, not the rlimit)."""
  parent = _fake_hierarchy(tmp_path, "a")
  made = []

  def create(where, memory_bytes, max_processes):
    path = os.path.join(where, f"run-{len(made)}")
    os.mkdir(path)
    open(os.path.join(path, "cgroup.procs"), "w").close()
    made.append((path, memory_bytes, max_processes))
    return path

  monkeypatch.setattr(cgroups, "sandbox_parent", lambda: str(parent))
  monkeypatch.setattr(cgroups, "create", create)
  monkeypatch.setattr(cgroups, "remove", lambda path, wait_s=1.0: None)
  source = ("import os, resource\nif os.fork() == 0:\n    os._exit(0)\nos.wait()\n"
            "os.write(3, str(resource.getrlimit(resource.RLIMIT_AS)[0]).encode())\n")
  run = sandbox.run_python(source, sandbox.SandboxLimits(memory_bytes=768 * MiB,
                                                         max_processes=3))
  assert run.report == str(768 * MiB), run
  path, memory_bytes, max_processes = made[-1]  # (The first may be the isolation probe.)
  assert (memory_bytes, max_processes) == (768 * MiB, 3)
  # The program's process joined; its child was forked inside (it inherits the cgroup).
  assert open(os.path.join(path, "cgroup.procs")).read() == "0\n"

"""cgroup v2 memory bounds for sandboxed runs, where the host lets this process make cgroups.

A sandboxed program may fork; per-process limits (RLIMIT_AS) then bound its memory only as
a product with its process count. A cgroup bounds all its processes together: each run gets
a cgroup with `memory.max` (and `memory.swap.max` = 0, `pids.max`) under a parent directory
`bonjax-sandboxes`, made next to this process's own cgroup:

* the unified hierarchy (cgroup2) must be mounted and list `memory` in the parent's
  `cgroup.subtree_control` (enabled for its children), and the parent must be writable by
  us (real root, or a subtree delegated to our user);
* cgroup v1 and hybrid hierarchies, read-only cgroupfs (most containers) and undelegated
  trees are not used: `sandbox_parent()` returns None and the sandbox sizes its per-process
  limits so that the product fits instead.

Nothing outside `bonjax-sandboxes` is created or changed.
"""

from __future__ import annotations

import functools
import itertools
import os
import time

PARENT_NAME = "bonjax-sandboxes"
_counter = itertools.count()


def _unescape(field: str) -> str:
  for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
    field = field.replace(escaped, char)
  return field


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
  """Mount point of the cgroup2 (unified) filesystem, or None."""
  try:
    with open(mountinfo) as f:
      for line in f:
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] == "cgroup2":
          return _unescape(fields[4])
  except (OSError, ValueError, IndexError):
    return None
  return None


def own_cgroup(cgroup_file: str = "/proc/self/cgroup") -> str | None:
  """This process's path in the unified hierarchy ("0::<path>" line), or None."""
  try:
    with open(cgroup_file) as f:
      for line in f:
        if line.startswith("0::"):
          return line[3:].strip()
  except OSError:
    return None
  return None


def _controllers(path: str, name: str) -> set[str]:
  try:
    with open(os.path.join(path, name)) as f:
      return set(f.read().split())
  except OSError:
    return set()


def find_parent(mount: str, own: str) -> str | None:
  """Makes (or finds) `bonjax-sandboxes` under the nearest usable ancestor of `own`.

  Args:
    mount: the cgroup2 mount point.
    own: this process's cgroup path relative to `mount` ("/a/b").

  Returns:
    the parent directory for run cgroups, with the memory controller enabled for its
    children, or None when no ancestor enables memory for its children and is writable.
  """
  parts = [p for p in own.split("/") if p]
  # Our own cgroup holds processes, so unless it is the root it cannot enable controllers for
  # children: start above it.
  for depth in range(max(len(parts) - 1, 0), -1, -1):
    ancestor = os.path.join(mount, *parts[:depth])
    if "memory" not in _controllers(ancestor, "cgroup.subtree_control"):
      continue
    if not os.access(ancestor, os.W_OK):
      continue
    parent = os.path.join(ancestor, PARENT_NAME)
    try:
      os.makedirs(parent, exist_ok=True)
      wanted = {"memory", "pids"} & _controllers(parent, "cgroup.controllers")
      missing = wanted - _controllers(parent, "cgroup.subtree_control")
      if missing:
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
          f.write(" ".join(f"+{c}" for c in sorted(missing)))
    except OSError:
      continue
    if "memory" in _controllers(parent, "cgroup.subtree_control"):
      return parent
  return None


@functools.lru_cache(maxsize=None)
def sandbox_parent() -> str | None:
  """The parent of run cgroups on this host, or None (cached per process)."""
  mount, own = cgroup2_mount(), own_cgroup()
  if mount is None or own is None:
    return None
  parent = find_parent(mount, own)
  if parent is not None:
    _remove_stale(parent)
  return parent


def _write(path: str, value: str) -> None:
  with open(path, "w") as f:
    f.write(value)


def _remove_stale(parent: str) -> None:
  """Removes run cgroups left by processes that died before cleaning up."""
  try:
    names = os.listdir(parent)
  except OSError:
    return
  for name in names:
    owner = name.split("-")[1] if name.startswith("run-") and name.count("-") == 2 else ""
    if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
      remove(os.path.join(parent, name), wait_s=0.0)


def create(parent: str, memory_bytes: int, max_processes: int) -> str | None:
  """A fresh run cgroup bounding memory (no swap) and process count; None on failure."""
  path = os.path.join(parent, f"run-{os.getpid()}-{next(_counter)}")
  try:
    os.mkdir(path)
    _write(os.path.join(path, "memory.max"), str(int(memory_bytes)))
    for name, value in (("memory.swap.max", "0"), ("pids.max", str(int(max_processes)))):
      if os.path.exists(os.path.join(path, name)):
        _write(os.path.join(path, name), value)
  except OSError:
    remove(path, wait_s=0.0)
    return None
  return path


def oom_kills(path: str) -> int:
  """How many processes the memory limit of the cgroup killed."""
  try:
    with open(os.path.join(path, "memory.events")) as f:
      for line in f:
        key, _, value = line.partition(" ")
        if key == "oom_kill":
          return int(value)
  except (OSError, ValueError):
    pass
  return 0


def remove(path: str, wait_s: float = 1.0) -> None:
  """Removes a run cgroup once its (killed) processes are gone; best effort."""
  end = time.monotonic() + wait_s
  while True:
    try:
      os.rmdir(path)
      return
    except FileNotFoundError:
      return
    except OSError:
      if time.monotonic() >= end:
        return
      time.sleep(0.005)

"""Process-table helpers (Linux /proc) used to find and kill everything a check started.

Killing a worker or a sandbox must also kill what it spawned; `os.killpg` misses children that
left the process group (setsid, double fork), so these helpers walk parent links and owners in
/proc instead.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Iterable


def _read_stat_fields(pid: int) -> list[str] | None:
  """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      data = f.read().decode("ascii", "replace")
  except OSError:
    return None
  # The command name is parenthesised and may itself contain spaces or parentheses.
  return data[data.rfind(")") + 2:].split()


def all_pids() -> list[int]:
  """Ids of every process visible in /proc."""
  return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def parent_pid(pid: int) -> int | None:
  """The parent of `pid`, or None if it has exited."""
  fields = _read_stat_fields(pid)
  return int(fields[1]) if fields else None


def process_state(pid: int) -> str | None:
  """One-letter state of `pid` (R, S, Z, ...), or None if it has exited."""
  fields = _read_stat_fields(pid)
  return fields[0] if fields else None


def is_alive(pid: int) -> bool:
  """True while `pid` exists and is not a zombie."""
  state = process_state(pid)
  return state is not None and state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
  """All processes whose chain of parents reaches `pid` (not including `pid`).

  Args:
    pid: the root of the tree.

  Returns:
    the descendant pids, parents before children.
  """
  children: dict[int, list[int]] = {}
  for child in all_pids():
    parent = parent_pid(child)
    if parent is not None:
      children.setdefault(parent, []).append(child)
  found, frontier = [], [pid]
  while frontier:
    current = frontier.pop()
    for child in children.get(current, ()):
      found.append(child)
      frontier.append(child)
  return found


def pids_owned_by(uid: int) -> list[int]:
  """Processes whose real uid is `uid`."""
  owned = []
  for pid in all_pids():
    try:
      with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
          if line.startswith(b"Uid:"):
            if int(line.split()[1]) == uid:
              owned.append(pid)
            break
    except (OSError, ValueError, IndexError):
      continue
  return owned


def task_count(uid: int) -> int:
  """Threads (the unit RLIMIT_NPROC counts) of all processes whose real uid is `uid`."""
  total = 0
  for pid in pids_owned_by(uid):
    try:
      with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
          if line.startswith(b"Threads:"):
            total += int(line.split()[1])
            break
    except (OSError, ValueError, IndexError):
      continue
  return total


def kill_all(pids: Iterable[int]) -> None:
  """Sends SIGKILL to each pid, ignoring the ones already gone or not ours."""
  for pid in pids:
    try:
      os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass


def kill_tree(pid: int, timeout: float = 5.0) -> None:
  """SIGKILLs `pid` and every descendant, and waits until none of them runs.

  The tree is read before anything dies: a dead parent's children are re-parented at once,
  which would hide them from a later scan.

  Args:
    pid: root of the tree (e.g. a worker or a sandbox launcher).
    timeout: seconds to keep sweeping for processes forked during the kill.
  """
  tree = [pid] + descendants(pid)
  end = time.monotonic() + timeout
  while True:
    kill_all(tree)
    alive = [p for p in tree if is_alive(p)]
    if not alive or time.monotonic() > end:
      return
    # Children forked between the scan and the kill are found under the survivors.
    for survivor in alive:
      tree.extend(p for p in descendants(survivor) if p not in tree)
    time.sleep(0.002)


def kill_uid(uid: int, rounds: int = 50) -> int:
  """SIGKILLs every process of `uid` until none is left (a fork bomb races the first sweeps).

  Only safe for a uid no other workload uses, such as a sandbox's private uid.

  Args:
    uid: the owner whose processes die.
    rounds: sweeps to try before giving up.

  Returns:
    the number of live processes of `uid` left after the last sweep (0 on success).
  """
  if uid == 0:
    raise ValueError("refusing to kill every process of uid 0")
  for _ in range(rounds):
    alive = [p for p in pids_owned_by(uid) if is_alive(p)]
    if not alive:
      return 0
    kill_all(alive)
    time.sleep(0.002)
  return len([p for p in pids_owned_by(uid) if is_alive(p)])

"""The run directory: checked before anything is written, and owned by one run at a time.

A training run holds `<workdir>/run.lock` for its whole life: an exclusive `flock` on the file
(released by the kernel however the process ends) plus the holder's host, pid and start time
written in it for the messages. A second run on the same workdir is refused with
`WorkdirLockedError` naming the holder. A lock file left by a run that died (its flock is free
on this host and its pid is gone) is taken over with a warning. A lock file written on another
host (a workdir on a network file system) is always honoured, even when its flock cannot be
seen from here: remove the file when that run is known to be gone.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from typing import Any

LOCK_FILE = "run.lock"


class WorkdirError(OSError):
  """The workdir cannot be used (a file in its path, or not writable)."""


class WorkdirLockedError(RuntimeError):
  """Another run holds the workdir."""


def check_workdir(workdir: str) -> None:
  """Checks, without creating anything, that `workdir` is or can become a writable directory.

  Raises:
    WorkdirError: a file stands where a directory of the path is needed, or the nearest
      existing directory is not writable.
  """
  path = os.path.abspath(workdir)
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f"--workdir={workdir}: {existing} is a file, not a directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir={workdir}: {existing} is not writable")


def _holder_text(holder: dict[str, Any]) -> str:
  started = holder.get("started")
  when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
  return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (started {when})"


def _read_holder(fd: int) -> dict[str, Any]:
  os.lseek(fd, 0, os.SEEK_SET)
  raw = os.read(fd, 4096)
  try:
    holder = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, ValueError):
    return {}
  return holder if isinstance(holder, dict) else {}


def _process_start_time(pid: int) -> float | None:
  """Wall-clock start time of process `pid` from /proc (None where unavailable)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat", encoding="ascii") as f:
      boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
  except (OSError, ValueError, IndexError, StopIteration):
    return None
  return boot + ticks / os.sysconf("SC_CLK_TCK")


def _holder_alive(holder: dict[str, Any]) -> bool:
  """Whether the process that wrote `holder` (on this host) still runs: its pid exists and,
  where /proc tells, that process started before the lock was taken (not a reused pid)."""
  pid = holder.get("pid")
  if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  started = _process_start_time(pid)
  return started is None or started <= float(holder.get("started", 0)) + 2.0


class WorkdirLock:
  """Exclusive ownership of a workdir by this process (a context manager).

  Args:
    workdir: the run directory (created if needed).
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self._fd: int | None = None

  def acquire(self) -> None:
    """Takes the lock.

    Raises:
      WorkdirLockedError: another live run holds it, naming its host and pid.
    """
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    host = socket.gethostname()
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise WorkdirLockedError(
            f"{os.path.dirname(self.path)} is in use by another run: {_holder_text(holder)}; "
            f"wait for it to finish or use another --workdir") from None
      # The holder may have removed the file between our open and flock: lock the new one.
      if os.path.exists(self.path) and os.fstat(fd).st_ino == os.stat(self.path).st_ino:
        break
      os.close(fd)
    previous = _read_holder(fd)
    if previous and (previous.get("host") != host or _holder_alive(previous)):
      # Another host's run, or a live process whose flock we cannot see (a file system
      # without flock): its lock stands.
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
      raise WorkdirLockedError(
          f"{os.path.dirname(self.path)} is in use by another run: {_holder_text(previous)}; "
          f"if that run is gone, delete {self.path}")
    if previous:
      logging.warning("Took over the lock of %s: that run ended without releasing it",
                      _holder_text(previous))
    record = json.dumps({"host": host, "pid": os.getpid(), "started": time.time()}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    os.fsync(fd)
    self._fd = fd

  def release(self) -> None:
    """Removes the lock file and releases the lock (a no-op when not held)."""
    if self._fd is None:
      return
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

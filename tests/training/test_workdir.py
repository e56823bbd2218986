"""One run per workdir: the lock names its holder, a dead holder's lock is taken over, and a
workdir path that cannot become a directory is refused before anything is written."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from bonjax.training.workdir import (LOCK_FILE, WorkdirError, WorkdirLock, WorkdirLockedError,
                                     check_workdir)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_second_lock_is_refused_naming_the_holder(tmp_path):
  with WorkdirLock(str(tmp_path)):
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(WorkdirLockedError, match=rf"{tmp_path} is in use by another run: pid "
                       rf"{os.getpid()} on host {socket.gethostname()} \(started 20"):
      WorkdirLock(str(tmp_path)).acquire()
  assert not (tmp_path / LOCK_FILE).exists()  # Released and removed.
  with WorkdirLock(str(tmp_path)):  # Free again.
    pass


def test_lock_held_by_another_process_is_refused(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from bonjax.training.workdir import WorkdirLock;"
       f"WorkdirLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
      stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirLockedError, match=rf"pid {holder.pid} on host"):
      WorkdirLock(str(tmp_path)).acquire()
  finally:
    holder.kill()
    holder.wait()
  # Killed without releasing: the file stays, its flock is gone, the next run takes it over.
  assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
  with WorkdirLock(str(tmp_path)):
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
  pid = _dead_pid()
  (tmp_path / LOCK_FILE).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": pid, "started": time.time() - 60}))
  with caplog.at_level(logging.WARNING), WorkdirLock(str(tmp_path)):
    pass
  assert f"Took over the lock of pid {pid} on host {socket.gethostname()}" in caplog.text


def test_lock_of_a_live_process_without_flock_is_honoured(tmp_path):
  # A lock file whose flock is free but whose writer still runs (a file system without flock).
  (tmp_path / LOCK_FILE).write_text(json.dumps(
      {"host": socket.gethostname(), "pid": os.getppid(), "started": time.time()}))
  with pytest.raises(WorkdirLockedError, match=rf"pid {os.getppid()} .*if that run is gone, "
                     rf"delete .*{LOCK_FILE}"):
    WorkdirLock(str(tmp_path)).acquire()


def test_lock_from_another_host_is_honoured(tmp_path):
  (tmp_path / LOCK_FILE).write_text(json.dumps(
      {"host": "other-host", "pid": 12345, "started": time.time()}))
  with pytest.raises(WorkdirLockedError, match=r"pid 12345 on host other-host"):
    WorkdirLock(str(tmp_path)).acquire()


def test_unusable_workdir_paths_are_named(tmp_path):
  check_workdir(str(tmp_path / "new" / "deeper"))  # Creatable: fine, and nothing is created.
  assert not (tmp_path / "new").exists()
  (tmp_path / "afile").write_text("x")
  with pytest.raises(WorkdirError, match=rf"{tmp_path}/afile is a file, not a directory"):
    check_workdir(str(tmp_path / "afile" / "run"))
  with pytest.raises(WorkdirError, match="is a file"):
    check_workdir(str(tmp_path / "afile"))

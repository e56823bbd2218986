"""Run an untrusted Python program in a sandboxed subprocess.

Layers, strongest first (each measured on the project machine, see `probe_isolation`):

1. Namespaces (`unshare`): a new PID namespace whose init is our launcher, so when the program
   ends or the wall clock runs out every process it made dies with the namespace (fork bombs,
   double forks, `setsid`, `nohup`); a new network namespace with no interface up (no network
   at all, loopback included); a new mount namespace in which every host mount is read-only,
   /tmp and /dev/shm are fresh size-limited tmpfs, and the user's home, /home and /root are
   covered by an empty read-only tmpfs (the Python installation, if it lives there, is bound
   back read-only); new IPC and UTS namespaces. Any failure there aborts the run. Without
   root the same is done inside a user namespace (`unshare --user --map-root-user`), which
   this machine allows unprivileged.
2. A private uid (only when the caller is real root): the program runs as a uid no other
   process uses, so it cannot signal or ptrace anything else or read root-only files, and
   every process it left behind can be found and killed by owner.
3. Resource limits in the child: RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE,
   RLIMIT_CORE=0, RLIMIT_NPROC (per real uid: the program's budget for a private uid, the
   caller's current thread count plus that budget otherwise; root itself ignores it, hence
   the private uid), no-new-privileges, parent-death signal.
4. Always: `python -I` (no PYTHON* variables, no user site), a minimal environment whose HOME
   and TMPDIR are the private working directory, a wall-clock timeout that SIGKILLs the whole
   process group and process tree, and output captured to files capped by RLIMIT_FSIZE.

Fallback without namespaces (no `unshare`, or the kernel refuses, as in an unprivileged
container): layers 2-4, Python's socket constructors replaced before the program runs (best
effort: ctypes can bypass it), leftover processes killed by uid (root) or process group, and
with a private uid whatever it left in /tmp, /var/tmp and /dev/shm deleted after the run.
Without root and without namespaces a process that left the group (double fork + setsid)
cannot be found, and world-writable directories and world-readable files are reachable;
`probe_isolation().summary()` says which case applies.
cgroups (pids, memory) exist on the project machine for root only (cgroup v1, not delegated to
users) and are not used: the layers above bound processes and memory without touching the
host's cgroup tree.

What it does not do: syscall filtering (seccomp) and hiding world-readable files outside the
home directories; the program can read the repository and /etc, but not change them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import marshal
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

from bonjax.verifiers import processes

REPORT_FD = 3  # The program's structured result channel (fd 3 inside the sandbox).
_PATH = "/usr/local/bin:/usr/bin:/bin"
_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_launcher.py")
_NAMESPACE_FLAGS = ("--pid", "--fork", "--kill-child", "--net", "--mount", "--ipc", "--uts")
_USER_NAMESPACE_FLAGS = ("--user", "--map-root-user")
# Private uids live far above any distribution's user range.
_PRIVATE_UID_BASE = 0x40000000
_uid_counter = itertools.count()
# World-writable places a program can reach without a mount namespace.
_SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Resource limits of one sandboxed run.

  Attributes:
    wall_seconds: wall-clock limit; the whole process tree is killed after it.
    cpu_seconds: RLIMIT_CPU of the program (per process).
    memory_bytes: RLIMIT_AS of the program (address space, per process).
    file_bytes: RLIMIT_FSIZE: largest file the program may write (also caps its stdout).
    max_processes: processes + threads the program may add (RLIMIT_NPROC, see `_nproc_limit`).
    open_files: RLIMIT_NOFILE.
    tmpfs_bytes: size of the namespace's /tmp, which holds the working directory.
    output_chars: characters of stdout/stderr kept in the result.
  """

  wall_seconds: float = 10.0
  cpu_seconds: int = 10
  memory_bytes: int = 1 << 30
  file_bytes: int = 8 << 20
  max_processes: int = 16
  open_files: int = 64
  tmpfs_bytes: int = 64 << 20
  output_chars: int = 4096

  def validate(self) -> None:
    """Raises ValueError naming the first field out of range."""
    for name in ("wall_seconds", "cpu_seconds", "memory_bytes", "file_bytes", "max_processes",
                 "open_files", "tmpfs_bytes", "output_chars"):
      value = getattr(self, name)
      if value <= 0:
        raise ValueError(f"{name}={value}: must be > 0")
    if self.open_files < 8:
      raise ValueError(f"open_files={self.open_files}: must be >= 8 (Python needs a few)")


@dataclasses.dataclass(frozen=True)
class Isolation:
  """Which isolation layers this machine gives a sandboxed program.

  Attributes:
    namespaces: PID/network/mount/IPC namespaces via `unshare`.
    user_namespace: the namespaces need a user namespace (we are not root).
    private_uid: the program runs under a uid of its own (we are real root).
    unshare: path of the `unshare` binary, or None.
  """

  namespaces: bool
  user_namespace: bool
  private_uid: bool
  unshare: str | None

  def summary(self) -> str:
    """One line naming the layers in force, for logs and reports."""
    parts = []
    if self.namespaces:
      parts.append("pid+net+mount+ipc namespaces" +
                   (" in a user namespace" if self.user_namespace else ""))
    else:
      parts.append("no namespaces (python-level socket block, subreaper kill)")
    parts.append("private uid + RLIMIT_NPROC" if self.private_uid else "caller's uid")
    return "; ".join(parts)


@dataclasses.dataclass(frozen=True)
class SandboxResult:
  """How a sandboxed run ended.

  Attributes:
    exit_code: the program's exit status (negative: killed by that signal); None when the
      launcher did not report one (killed at the wall-clock limit, or the launcher failed).
    timed_out: the wall-clock limit was reached and everything was killed.
    stdout: the program's standard output (truncated).
    stderr: its standard error (truncated).
    report: what the program wrote to file descriptor 3.
    seconds: wall time of the run.
    cpu_seconds: CPU time of the program's main process (0 when it was killed by the wall
      clock); near `SandboxLimits.cpu_seconds` means the CPU limit ended it.
    notes: launcher diagnostics (a failed mount, ...); empty when all went as planned.
  """

  exit_code: int | None
  timed_out: bool
  stdout: str
  stderr: str
  report: str
  seconds: float
  cpu_seconds: float = 0.0
  notes: tuple[str, ...] = ()


def _namespace_command(unshare: str, user_namespace: bool) -> list[str]:
  flags = list(_NAMESPACE_FLAGS)
  if user_namespace:
    flags = list(_USER_NAMESPACE_FLAGS) + flags
  return [unshare, *flags, "--"]


@functools.lru_cache(maxsize=None)
def interpreter_trees(python: str) -> tuple[str, ...]:
  """Real paths of an interpreter's installation (prefix, base prefix, exec prefix).

  The program needs them readable: they hold its standard library.
  """
  if os.path.realpath(python) == os.path.realpath(sys.executable):
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix)
  else:
    output = subprocess.run(
        [python, "-I", "-S", "-c",
         "import sys; print(sys.prefix); print(sys.base_prefix); print(sys.exec_prefix)"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    prefixes = tuple(output.split("\n")[:3])
  return tuple(sorted({os.path.realpath(p) for p in prefixes}))


def fallback_isolation(python: str | None = None) -> Isolation:
  """The isolation left without namespaces: a private uid when root can use one.

  A private uid must be able to read the interpreter where it is installed (pyenv under a
  0700 /root cannot be); inside a mount namespace the installation is re-exposed instead.
  """
  python = python or sys.executable
  is_root = os.geteuid() == 0
  private_uid = is_root and all(_readable_by_others(p) for p in interpreter_trees(python))
  return Isolation(False, False, private_uid, shutil.which("unshare"))


# A UDP connect() sends no packet, it only asks the kernel for a route, which a fresh network
# namespace (no interface up) lacks; statvfs tells whether / is mounted read-only; the
# launcher is PID 1 of a new PID namespace.
_PROBE = """
import os, socket
try:
  socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("192.0.2.1", 9))
  routed = True
except OSError:
  routed = False
read_only = bool(os.statvfs("/").f_flag & 1)
isolated = read_only and not routed and os.getppid() == 1
os.write(3, f"{'ok' if isolated else 'weak'} {os.getuid()}".encode())
"""


@functools.lru_cache(maxsize=None)
def probe_isolation(python: str | None = None) -> Isolation:
  """Finds the strongest isolation that works here, by running a trivial sandboxed program.

  Cached per interpreter. The probe program must find no route to any address, a read-only
  root, PID 1 as its parent and the expected uid, so a half-working `unshare` is not trusted.

  Args:
    python: the interpreter the sandbox will run (default: this one).
  """
  python = python or sys.executable
  fallback = fallback_isolation(python)
  if fallback.unshare is None:
    return fallback
  is_root = os.geteuid() == 0
  for user_namespace in ((False, True) if is_root else (True,)):
    candidate = Isolation(True, user_namespace, is_root and not user_namespace,
                          fallback.unshare)
    try:
      result = run_python(_PROBE, SandboxLimits(wall_seconds=30.0), isolation=candidate,
                          python=python)
    except OSError:
      continue
    verdict, _, uid = result.report.partition(" ")
    dropped = uid.isdigit() and int(uid) != 0
    if (verdict == "ok" and result.exit_code == 0 and not result.notes
        and dropped == candidate.private_uid):
      return candidate
  return fallback


def _private_uid() -> int:
  """A uid no other process uses: unique per (calling process, run)."""
  return _PRIVATE_UID_BASE + ((os.getpid() & 0x3FFFFF) << 8) + (next(_uid_counter) & 0xFF)


def _hidden_paths() -> list[str]:
  """Home directories to cover with an empty tmpfs inside the mount namespace."""
  candidates = {os.path.realpath(os.path.expanduser("~")), "/root", "/home"}
  return sorted(p for p in candidates if p not in ("/", "/tmp") and os.path.isdir(p))


def _readable_by_others(path: str) -> bool:
  """True if a uid with no permissions of its own can read `path` (o+x on every ancestor)."""
  path = os.path.realpath(path)
  parts = path.split(os.sep)
  for depth in range(1, len(parts) + 1):
    ancestor = os.sep.join(parts[:depth]) or os.sep
    try:
      mode = os.stat(ancestor).st_mode
    except OSError:
      return False
    if not mode & 0o001:
      return False
  return bool(os.stat(path).st_mode & 0o004)


def _read_capped(path: str, chars: int) -> str:
  with open(path, "rb") as f:
    data = f.read(chars * 4)
  return data.decode("utf-8", "replace")[:chars]


def _parse_status(text: str) -> tuple[int | None, float, tuple[str, ...]]:
  """(program exit code or None, its CPU seconds, notes) from the launcher's status lines."""
  exit_code, cpu_seconds, notes = None, 0.0, []
  for line in text.splitlines():
    key, _, value = line.partition(" ")
    if key == "note":
      notes.append(value)
    elif key == "exit" and value.lstrip("-").isdigit():
      exit_code = int(value)
    elif key == "cpu":
      try:
        cpu_seconds = float(value)
      except ValueError:
        pass
  return exit_code, cpu_seconds, tuple(notes)


def _wait_for_exit(process: subprocess.Popen, timeout: float) -> bool:
  """Waits for `process` to exit; False on timeout. Uses a pidfd: no polling latency."""
  try:
    pidfd = os.pidfd_open(process.pid)
  except (AttributeError, OSError):
    try:
      process.wait(timeout=timeout)
      return True
    except subprocess.TimeoutExpired:
      return False
  try:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    end = time.monotonic() + timeout
    while True:
      remaining = end - time.monotonic()
      if remaining <= 0:
        return process.poll() is not None
      if poller.poll(remaining * 1000.0):
        process.wait()
        return True
  finally:
    os.close(pidfd)


def _remove_files_of(uid: int, keep: str,
                     directories: tuple[str, ...] = _SHARED_WRITABLE) -> list[str]:
  """Deletes what a private uid left in the shared world-writable directories.

  Without a mount namespace the program can write there; the entries it owns are removed
  after the run. Only entries owned by `uid` are touched (except `keep`, the working
  directory); symlinks are unlinked, not followed.

  Returns:
    the removed paths.
  """
  removed = []
  for directory in directories:
    try:
      entries = os.listdir(directory)
    except OSError:
      continue
    for name in entries:
      path = os.path.join(directory, name)
      if path == keep:
        continue
      try:
        info = os.lstat(path)
      except OSError:
        continue
      if info.st_uid != uid:
        continue
      if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path, ignore_errors=True)
      else:
        try:
          os.unlink(path)
        except OSError:
          continue
      removed.append(path)
  return removed


def _kill_everything(launcher: subprocess.Popen, uid: int | None) -> None:
  """SIGKILLs the launcher's process group, its process tree and (root) the private uid."""
  try:
    os.killpg(launcher.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  processes.kill_tree(launcher.pid)
  if uid is not None:
    processes.kill_uid(uid)


def _nproc_limit(limits: SandboxLimits, uid: int | None) -> int:
  """RLIMIT_NPROC for the program: its budget, plus what the caller's uid already runs.

  The limit counts every thread of the real uid. A private uid starts from zero; a shared one
  (no root) gets its current count added, which bounds a fork bomb to `max_processes` more
  (approximately: the caller's own thread count may change meanwhile). Root ignores it.
  """
  if uid is not None:
    return limits.max_processes
  return processes.task_count(os.getuid()) + limits.max_processes


def _launcher_config(source: str, limits: SandboxLimits, isolation: Isolation, python: str,
                     site_packages: bool, uid: int | None, workdir: str,
                     report_fd: int, status_fd: int) -> dict:
  """The launcher's instructions (see sandbox_launcher.py)."""
  return {
      "source": source,
      "workdir": workdir,
      "env": {"PATH": _PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
              "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"},
      "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes,
                 "file_bytes": limits.file_bytes, "max_processes": _nproc_limit(limits, uid),
                 "open_files": limits.open_files},
      "uid": uid,
      "isolate_mounts": isolation.namespaces,
      "tmpfs_bytes": limits.tmpfs_bytes,
      "hide_paths": _hidden_paths(),
      "expose_paths": list(interpreter_trees(python)),
      "block_network": not isolation.namespaces,
      "site_packages": site_packages,
      "report_fd": report_fd,
      "status_fd": status_fd,
      # A backstop only: the host kills everything at `wall_seconds`.
      "wall_seconds": limits.wall_seconds + 2.0,
  }


def run_python(source: str, limits: SandboxLimits | None = None, *,
               isolation: Isolation | None = None, python: str | None = None,
               site_packages: bool = False) -> SandboxResult:
  """Runs `source` as a Python program in the sandbox and waits for it (or the wall clock).

  Args:
    source: the program text (e.g. a completion followed by its tests). It may write a
      structured result to file descriptor 3 (`os.write(3, ...)`), returned as `report`.
    limits: resource limits; defaults to `SandboxLimits()`.
    isolation: layers to use; defaults to `probe_isolation(python)`.
    python: interpreter to run (default: this one); the launcher needs Python >= 3.9.
    site_packages: let the program import installed third-party packages (numpy, ...);
      off by default: the standard library is all unit-test programs usually need.

  Returns:
    the run's SandboxResult. Never raises because of what the program does; raises OSError
    only if the sandbox itself cannot be started (no interpreter, no /tmp).
  """
  limits = limits or SandboxLimits()
  limits.validate()
  python = python or sys.executable
  isolation = isolation or probe_isolation(python)
  uid = _private_uid() if isolation.private_uid else None
  # Host side: `io_dir` (root-only) holds the captured output; `workdir` is the program's
  # directory when there is no mount namespace (inside one, a tmpfs takes its path).
  io_dir = tempfile.mkdtemp(prefix="bonjax-sbx-io-")
  workdir = tempfile.mkdtemp(prefix="bonjax-sbx-")
  start = time.monotonic()
  launcher = None
  notes: tuple[str, ...] = ()
  try:
    if uid is not None:
      os.chown(workdir, uid, uid)
    paths = {name: os.path.join(io_dir, name)
             for name in ("config", "stdout", "stderr", "report", "status")}
    files = {name: open(path, "w+b") for name, path in paths.items()}
    try:
      config = _launcher_config(source, limits, isolation, python, site_packages, uid, workdir,
                                files["report"].fileno(), files["status"].fileno())
      files["config"].write(marshal.dumps(config))
      files["config"].seek(0)
      # -S: no site-packages scan at start-up (a third of Python's start time here).
      command = [python, "-I", "-S", "-B", _LAUNCHER]
      if isolation.namespaces:
        command = _namespace_command(isolation.unshare, isolation.user_namespace) + command
      launcher = subprocess.Popen(
          command, stdin=files["config"], stdout=files["stdout"], stderr=files["stderr"],
          pass_fds=(files["report"].fileno(), files["status"].fileno()),
          cwd="/", env={"PATH": _PATH, "LANG": "C.UTF-8"}, start_new_session=True)
      timed_out = not _wait_for_exit(launcher, limits.wall_seconds)
      # Also after a normal exit: nothing the program started may outlive the run.
      _kill_everything(launcher, uid)
      launcher.wait()
      if uid is not None and not isolation.namespaces:
        removed = _remove_files_of(uid, keep=workdir)
        if removed:
          notes += (f"removed {len(removed)} entries left in shared directories",)
    finally:
      for f in files.values():
        f.close()
    exit_code, cpu_seconds, launcher_notes = _parse_status(
        _read_capped(paths["status"], 1 << 16))
    notes = launcher_notes + notes
    if exit_code is None and not timed_out:
      notes += (f"launcher exited with {launcher.returncode} without a status",)
    return SandboxResult(
        exit_code=None if timed_out else exit_code,
        timed_out=timed_out,
        stdout=_read_capped(paths["stdout"], limits.output_chars),
        stderr=_read_capped(paths["stderr"], limits.output_chars),
        report=_read_capped(paths["report"], 1 << 20),
        seconds=time.monotonic() - start,
        cpu_seconds=cpu_seconds,
        notes=notes)
  finally:
    if launcher is not None and launcher.returncode is None:
      _kill_everything(launcher, uid)
      launcher.wait()
    shutil.rmtree(io_dir, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)

"""Run an untrusted Python program in a sandboxed subprocess.

Layers, strongest first (each measured on the project machine, see `probe_isolation`):

1. Namespaces (`unshare`): a new PID namespace whose init is our launcher, so when the program
   ends or the wall clock runs out every process it made dies with the namespace (fork bombs,
   double forks, `setsid`, `nohup`); a new network namespace with no interface up (no network
   at all, loopback included); a new mount namespace whose root is an empty tmpfs holding,
   read-only, only the system directories (/usr, /etc, /lib*, /bin, /sbin), the interpreter's
   standard library and five device nodes, plus a fresh size-limited /tmp and /dev/shm: the
   repository, datasets, home directories, site-packages (unless asked for) and the host's
   /tmp do not exist there; new IPC and UTS namespaces. Any failure there aborts the run.
   Without root the same is done inside a user namespace (`unshare --user --map-root-user`),
   which this machine allows unprivileged; the program then drops every capability.
2. A private uid (only when the caller is real root): the program runs as a uid no other
   process uses, so it cannot signal or ptrace anything else or read root-only files, and
   every process it left behind can be found and killed by owner. A judged run's judge gets
   a second private uid.
3. Resource limits: a cgroup v2 memory bound on all the program's processes together where
   the host lets us make one (`cgroups.sandbox_parent`); RLIMIT_CPU, RLIMIT_AS (the whole
   memory bound divided by the process budget when there is no cgroup, so that the product
   fits), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0, RLIMIT_NPROC (per real uid: the
   program's budget for a private uid, the caller's current thread count plus that budget
   otherwise; root itself ignores it, hence the private uid), no-new-privileges,
   parent-death signal.
4. Always: `python -I` (no PYTHON* variables, no user site), a minimal environment whose HOME
   and TMPDIR are the private working directory, a wall-clock timeout that SIGKILLs the whole
   process group and process tree, and output captured to unlinked files capped by
   RLIMIT_FSIZE.

A judged run (`judge_input`) splits the work between two processes of the sandbox: the
candidate loads the program and answers calls, the judge runs the tests and alone holds the
report channel (see `sandbox_judge` and `code_execution`).

Fallback without namespaces (no `unshare`, or the kernel refuses, as in an unprivileged
container): layers 2-4, Python's socket constructors replaced before the program runs (best
effort: ctypes can bypass it), leftover processes killed by uid (root) or process group, and
with a private uid whatever it left in /tmp, /var/tmp and /dev/shm deleted after the run.
Without root and without namespaces the program runs under the caller's own uid: a process
that left the group (double fork + setsid) cannot be found, world-writable directories and
world-readable files are reachable, and the program could tamper with the caller itself, so
grades are not trustworthy; `probe_isolation().trustworthy` says so.

What it does not do: syscall filtering (seccomp).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import glob
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
from typing import Sequence

from bonjax.verifiers import cgroups
from bonjax.verifiers import processes

REPORT_FD = 3  # A plain program's structured result channel (fd 3 inside the sandbox).
_PATH = "/usr/local/bin:/usr/bin:/bin"
_HERE = os.path.dirname(os.path.abspath(__file__))
# Run inside the sandbox, imported as top-level modules by the launcher's bootstrap.
_SANDBOX_MODULES = ("sandbox_launcher.py", "sandbox_judge.py", "sandbox_values.py")
_NAMESPACE_FLAGS = ("--pid", "--fork", "--kill-child", "--net", "--mount", "--ipc", "--uts")
_USER_NAMESPACE_FLAGS = ("--user", "--map-root-user")
# Private uids live far above any distribution's user range.
_PRIVATE_UID_BASE = 0x40000000
_uid_counter = itertools.count()
# World-writable places a program can reach without a mount namespace.
_SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/dev/mqueue")
# Host directories a program sees (read-only) in its new root, besides the standard library.
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
  """Resource limits of one sandboxed run.

  Attributes:
    wall_seconds: wall-clock limit; the whole process tree is killed after it.
    cpu_seconds: RLIMIT_CPU of each program process.
    memory_bytes: memory of all the program's processes together: a cgroup's memory.max where
      available, else RLIMIT_AS of memory_bytes // max_processes for each process.
    file_bytes: RLIMIT_FSIZE: largest file the program may write (also caps its stdout).
    max_processes: processes + threads the program may run, itself included (RLIMIT_NPROC,
      see `_nproc_limit`; the cgroup's pids.max too).
    open_files: RLIMIT_NOFILE.
    tmpfs_bytes: size of the namespace's /tmp, which holds the working directory.
    output_chars: characters of stdout/stderr kept in the result.
    judge_memory_bytes: RLIMIT_AS of the judge of a judged run (separate from the program's).
  """

  wall_seconds: float = 10.0
  cpu_seconds: int = 10
  memory_bytes: int = 1 << 30
  file_bytes: int = 8 << 20
  max_processes: int = 2
  open_files: int = 64
  tmpfs_bytes: int = 64 << 20
  output_chars: int = 4096
  judge_memory_bytes: int = 512 << 20

  def validate(self) -> None:
    """Raises ValueError naming the first field out of range."""
    for name in ("wall_seconds", "cpu_seconds", "memory_bytes", "file_bytes", "max_processes",
                 "open_files", "tmpfs_bytes", "output_chars", "judge_memory_bytes"):
      value = getattr(self, name)
      if value <= 0:
        raise ValueError(f"{name}={value}: must be > 0")
    if self.open_files < 8:
      raise ValueError(f"open_files={self.open_files}: must be >= 8 (Python needs a few)")
    if self.memory_bytes // self.max_processes < 64 << 20:
      raise ValueError(f"memory_bytes={self.memory_bytes}, max_processes={self.max_processes}: "
                       "each process needs >= 64 MiB (memory_bytes // max_processes)")


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

  @property
  def trustworthy(self) -> bool:
    """True when the program cannot reach the caller: other namespaces or another uid."""
    return self.namespaces or self.private_uid

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
    exit_code: the program's exit status (a judged run: the judge's; negative: killed by that
      signal); None when the launcher did not report one (killed at the wall-clock limit, or
      the launcher failed).
    timed_out: the wall-clock limit was reached and everything was killed.
    stdout: the program's standard output (truncated).
    stderr: its standard error (truncated).
    report: what the program (a judged run: the judge) wrote to file descriptor 3.
    seconds: wall time of the run.
    cpu_seconds: CPU time of a plain run's main process (0 when it was killed by the wall
      clock, and in judged runs); near `SandboxLimits.cpu_seconds` means the CPU limit ended
      it.
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


# Run by the sandbox's interpreter: its module path, site dirs (those `site.main()` adds in a
# program run with site_packages, virtual environments included) and prefixes.
_PATHS_QUERY = """
import os, site, sys
print(repr(([p for p in sys.path if p], site.getsitepackages() + [site.getusersitepackages()],
            [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix],
            os.path.join(sys.prefix, "pyvenv.cfg"))))
"""
_SITE_PATTERNS = ("{}/lib/python3*/site-packages", "{}/lib/python3*/dist-packages",
                  "{}/local/lib/python3*/site-packages", "{}/local/lib/python3*/dist-packages",
                  "{}/lib/python3/dist-packages")


@dataclasses.dataclass(frozen=True)
class InterpreterPaths:
  """Where an interpreter's code lives.

  Attributes:
    stdlib: its module path without site directories (standard library, extension modules).
    site: every site-packages / dist-packages directory of it or of the system's Pythons.
    venv_config: its virtual environment's pyvenv.cfg (`site` reads it), or None.
  """

  stdlib: tuple[str, ...]
  site: tuple[str, ...]
  venv_config: str | None = None


@functools.lru_cache(maxsize=None)
def interpreter_paths(python: str) -> InterpreterPaths:
  """The standard library and site directories of `python` (cached per interpreter)."""
  output = subprocess.run([python, "-I", "-c", _PATHS_QUERY], capture_output=True,
                          text=True, check=True, timeout=60).stdout
  stdlib, sites, prefixes, venv_config = ast.literal_eval(output.strip())
  for prefix in {*prefixes, "/usr"}:
    for pattern in _SITE_PATTERNS:
      sites.extend(glob.glob(pattern.format(prefix)))
  existing = lambda paths: tuple(sorted({os.path.abspath(p) for p in paths if os.path.isdir(p)}))
  site_dirs = existing(sites)
  inside_site = lambda p: any(p == s or p.startswith(s + "/") for s in site_dirs)
  return InterpreterPaths(existing(p for p in stdlib if not inside_site(p)), site_dirs,
                          venv_config if os.path.isfile(venv_config) else None)


def _within(path: str, trees: Sequence[str]) -> bool:
  return any(path == t or path.startswith(t.rstrip("/") + "/") for t in trees)


def root_paths(python: str, site_packages: bool) -> tuple[list[str], list[str]]:
  """(paths to expose read-only, paths to cover) in a sandbox's new root.

  Exposed: the system directories and `python`'s standard library, plus its site-packages
  when asked. Covered: every site-packages directory the exposed trees would otherwise show.
  """
  paths = interpreter_paths(python)
  expose = [p for p in _SYSTEM_PATHS if os.path.lexists(p)]
  expose += [p for p in paths.stdlib if not _within(p, expose)]
  if site_packages:
    expose += [p for p in paths.site if not _within(p, expose)]
    if paths.venv_config and not _within(paths.venv_config, expose):
      expose.append(paths.venv_config)
    return expose, []
  return expose, [p for p in paths.site if _within(p, expose)]


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


def _private_uids() -> tuple[int, int]:
  """Two uids no other process uses (the program's, the judge's): unique per (calling
  process, run); both map to the caller's pid as (uid - _PRIVATE_UID_BASE) >> 8."""
  uid = _PRIVATE_UID_BASE + ((os.getpid() & 0x3FFFFF) << 8) + (2 * next(_uid_counter) & 0xFF)
  return uid, uid + 1


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


def _kill_everything(launcher: subprocess.Popen, uids: Sequence[int]) -> None:
  """SIGKILLs the launcher's process group, its process tree and (root) the private uids."""
  try:
    os.killpg(launcher.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  processes.kill_tree(launcher.pid)
  for uid in uids:
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
                     site_packages: bool, uids: tuple[int, int] | None, workdir: str,
                     cgroup: str | None) -> dict:
  """The launcher's instructions (see sandbox_launcher.py); descriptors are added later."""
  uid, judge_uid = uids or (None, None)
  expose, hide = root_paths(python, site_packages) if isolation.namespaces else ([], [])
  # Without a cgroup the per-process limit is sized so that all processes together fit.
  process_memory = limits.memory_bytes if cgroup else limits.memory_bytes // limits.max_processes
  return {
      "source": source,
      "workdir": workdir,
      "env": {"PATH": _PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
              "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"},
      "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": process_memory,
                 "file_bytes": limits.file_bytes, "max_processes": _nproc_limit(limits, uid),
                 "open_files": limits.open_files},
      "uid": uid,
      "judge_uid": judge_uid,
      "judge_memory_bytes": limits.judge_memory_bytes,
      "isolate_mounts": isolation.namespaces,
      "tmpfs_bytes": limits.tmpfs_bytes,
      "expose_paths": expose,
      "hide_paths": hide,
      "cgroup_procs": os.path.join(cgroup, "cgroup.procs") if cgroup else None,
      "block_network": not isolation.namespaces,
      "site_packages": site_packages,
      # A backstop only: the host kills everything at `wall_seconds`.
      "wall_seconds": limits.wall_seconds + 2.0,
  }


# The launcher's `python -c` program: imports it from its directory, which it leaves off
# sys.path before `main` runs anything.
_BOOTSTRAP = ("import sys; sys.path.insert(0, {directory}); import sandbox_launcher; "
              "del sys.path[0]; sandbox_launcher.main()")


@functools.lru_cache(maxsize=None)
def _compile_sandbox_modules(python: str) -> None:
  """Writes the bytecode of the in-sandbox modules, so that no run compiles them (~6 ms).

  Best effort (a read-only installation keeps whatever bytecode it has); once per process.
  """
  sources = [os.path.join(_HERE, name) for name in _SANDBOX_MODULES]
  subprocess.run([python, "-I", "-S", "-c",
                  "import py_compile, sys\nfor f in sys.argv[1:]: py_compile.compile(f)",
                  *sources], capture_output=True, timeout=60, check=False)


def _read_file(f, chars: int) -> str:
  f.seek(0)
  return f.read(chars * 4).decode("utf-8", "replace")[:chars]


def run_python(source: str, limits: SandboxLimits | None = None, *,
               isolation: Isolation | None = None, python: str | None = None,
               site_packages: bool = False, judge_input: bytes | None = None) -> SandboxResult:
  """Runs `source` as a Python program in the sandbox and waits for it (or the wall clock).

  Args:
    source: the program text. In a plain run it may write a structured result to file
      descriptor 3 (`os.write(3, ...)`), returned as `report`.
    limits: resource limits; defaults to `SandboxLimits()`.
    isolation: layers to use; defaults to `probe_isolation(python)`.
    python: interpreter to run (default: this one); the launcher needs Python >= 3.9.
    site_packages: let the program import installed third-party packages (numpy, ...);
      off by default: the standard library is all unit-test programs usually need.
    judge_input: a judged run: the `marshal`-encoded input of `sandbox_judge.Judge` (the
      tests), which only the judge reads; `source` is then served by candidate processes
      and `report` is what the judge wrote.

  Returns:
    the run's SandboxResult. Never raises because of what the program does; raises OSError
    only if the sandbox itself cannot be started (no interpreter, no /tmp).
  """
  limits = limits or SandboxLimits()
  limits.validate()
  python = python or sys.executable
  isolation = isolation or probe_isolation(python)
  uids = _private_uids() if isolation.private_uid else None
  cgroup_parent = cgroups.sandbox_parent()
  cgroup = (cgroups.create(cgroup_parent, limits.memory_bytes, limits.max_processes)
            if cgroup_parent else None)
  # `workdir` is the program's directory when there is no mount namespace (inside one, a
  # tmpfs takes its path). Every other file is unlinked: no path leads to it.
  workdir = tempfile.mkdtemp(prefix="bonjax-sbx-")
  names = ("config", "stdout", "stderr", "report", "status", "judge")
  files = {name: tempfile.TemporaryFile() for name in names}
  start = time.monotonic()
  launcher = None
  notes: tuple[str, ...] = ()
  try:
    if uids is not None:
      os.chown(workdir, uids[0], uids[0])
    config = _launcher_config(source, limits, isolation, python, site_packages, uids, workdir,
                              cgroup)
    config.update(report_fd=files["report"].fileno(), status_fd=files["status"].fileno())
    pass_fds = [files["report"].fileno(), files["status"].fileno()]
    if judge_input is not None:
      files["judge"].write(judge_input)
      files["judge"].seek(0)
      config["judge_fd"] = files["judge"].fileno()
      pass_fds.append(files["judge"].fileno())
    files["config"].write(marshal.dumps(config))
    files["config"].seek(0)
    # -S: no site-packages scan at start-up (a third of Python's start time here); -B: the
    # sandbox writes no bytecode (`_compile_sandbox_modules` did, once).
    _compile_sandbox_modules(python)
    command = [python, "-I", "-S", "-B", "-c", _BOOTSTRAP.format(directory=repr(_HERE))]
    if isolation.namespaces:
      command = _namespace_command(isolation.unshare, isolation.user_namespace) + command
    launcher = subprocess.Popen(
        command, stdin=files["config"], stdout=files["stdout"], stderr=files["stderr"],
        pass_fds=pass_fds, cwd="/", env={"PATH": _PATH, "LANG": "C.UTF-8"},
        start_new_session=True)
    timed_out = not _wait_for_exit(launcher, limits.wall_seconds)
    # Also after a normal exit: nothing the program started may outlive the run.
    _kill_everything(launcher, uids or ())
    launcher.wait()
    if uids is not None and not isolation.namespaces:
      removed = _remove_files_of(uids[0], keep=workdir)
      if removed:
        notes += (f"removed {len(removed)} entries left in shared directories",)
    if cgroup and cgroups.oom_kills(cgroup):
      notes += (f"the memory limit ({limits.memory_bytes} bytes) killed "
                f"{cgroups.oom_kills(cgroup)} process(es)",)
    exit_code, cpu_seconds, launcher_notes = _parse_status(_read_file(files["status"], 1 << 16))
    notes = launcher_notes + notes
    if exit_code is None and not timed_out:
      notes += (f"launcher exited with {launcher.returncode} without a status",)
    return SandboxResult(
        exit_code=None if timed_out else exit_code,
        timed_out=timed_out,
        stdout=_read_file(files["stdout"], limits.output_chars),
        stderr=_read_file(files["stderr"], limits.output_chars),
        report=_read_file(files["report"], 1 << 20),
        seconds=time.monotonic() - start,
        cpu_seconds=cpu_seconds,
        notes=notes)
  finally:
    if launcher is not None and launcher.returncode is None:
      _kill_everything(launcher, uids or ())
      launcher.wait()
    for f in files.values():
      f.close()
    if cgroup:
      cgroups.remove(cgroup)
    shutil.rmtree(workdir, ignore_errors=True)

"""Runs inside the sandbox: isolates itself, then runs one untrusted Python program.

Started by `bonjax.verifiers.sandbox` as `python -I -S -B -c <bootstrap>`, which imports this
file (and `sandbox_judge` and `sandbox_values` beside it) as a top-level module from its
cached bytecode and calls `main`; usually as PID 1 of fresh PID, network, mount and IPC
namespaces made by `unshare`. Standard library only: it must not import bonjax (whose package
may pull in JAX); it imports little (no re, enum, json or traceback up front), because
Python start-up time is most of a short check's cost. Its standard input is a
`marshal`-encoded config dict:

  source         the program text
  workdir        the private working directory (also HOME and TMPDIR)
  env            the program's complete environment
  limits         cpu_seconds, memory_bytes (RLIMIT_AS of each process), file_bytes,
                 max_processes (RLIMIT_NPROC), open_files
  uid            a private uid to drop to (when started as real root), or null
  judge_uid      the judge's private uid (judged runs, real root), or null
  isolate_mounts true inside a new mount namespace: build a new root (see `build_root`)
  tmpfs_bytes    size of the /tmp tmpfs (bounds everything the program can write)
  expose_paths   host paths visible, read-only, in the new root (system directories and the
                 interpreter's standard library); nothing else of the host is
  hide_paths     directories inside exposed ones to cover with an empty tmpfs (site-packages)
  cgroup_procs   cgroup.procs file of the run's cgroup v2 (memory bound of all the program's
                 processes together), or null
  block_network  true when no network namespace is available: disable sockets in Python
  site_packages  true: add site-packages (the launcher starts with -S) before the program
  report_fd      descriptor the program (plain run) or the judge (judged run) sees as fd 3
  status_fd      descriptor for this launcher's status lines (never given to the program)
  judge_fd       judged runs only: descriptor holding the judge's input (the tests), which
                 only the judge reads; absent for a plain run
  judge_memory_bytes  RLIMIT_AS of the judge
  wall_seconds   the launcher kills the program after this long even if the host is gone

A plain run forks one child that sets its limits, drops privileges and executes the source in
a fresh `__main__` namespace. A judged run (see `sandbox_judge`) forks the judge, which reads
the tests, and then, at the judge's request over a socket, candidate processes that load the
program and answer calls; this launcher never reads the tests, so no candidate (forked from
it) has them in memory. The launcher reaps every orphan as PID 1 must, writes "cpu <seconds>"
and "exit <code>" lines (or "note <why>" when isolation failed) to the status descriptor and
exits; as PID 1 its exit makes the kernel kill whatever is left in the namespace. Without a
PID namespace it is a child subreaper instead, and kills and reaps every descendant (and every
process of the private uids) before it exits.
"""

import _signal  # The C module: `signal` would import enum.
import _socket
import ctypes
import fcntl
import marshal
import os
import resource
import sys
import time

import sandbox_judge  # Beside this file; imported before the mounts change.

REPORT_FD = 3

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MNT_DETACH = 2
# statvfs f_flag bit -> mount flag: a remount inside a user namespace must keep these.
_STATVFS_TO_MS = ((1, _MS_RDONLY), (2, _MS_NOSUID), (4, _MS_NODEV), (8, _MS_NOEXEC),
                  (1024, _MS_NOATIME), (2048, _MS_NODIRATIME), (4096, _MS_RELATIME))
_PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203,
                       "s390x": 217}
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_CAPABILITY_VERSION_3 = 0x20080522
_SIGKILL = 9  # Literal: the signal module costs an enum import.
_EACCES = 13
_DEVICES = ("null", "zero", "full", "random", "urandom")
_STAGING = "/tmp"  # Mount point of the new root while it is built (every host has /tmp).
_CGROUP_FD = 9  # Where a program process finds its cgroup.procs until it has joined.

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
  if result != 0:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None):
  """mount(2); raises OSError on failure."""
  enc = lambda s: s.encode() if s is not None else None
  _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
         f"mount {target}")


def _mount_points():
  """Mount points of this mount namespace, shallowest first."""
  points = []
  with open("/proc/self/mountinfo") as f:
    for line in f:
      raw = line.split()[4]
      # mountinfo escapes space, tab, newline and backslash as octal.
      for escaped, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"),
                            ("\\134", "\\")):
        raw = raw.replace(escaped, char)
      points.append(raw)
  return sorted(set(points), key=lambda p: p.count("/"))


def _remount_read_only(path):
  flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
  for vfs_bit, ms_bit in _STATVFS_TO_MS:
    if os.statvfs(path).f_flag & vfs_bit:
      flags |= ms_bit
  _mount(None, path, None, flags)


def _bind_read_only(source, target):
  """Binds `source` (with its submounts) at `target`, every one of those mounts read-only."""
  _mount(source, target, None, _MS_BIND | _MS_REC)
  for path in _mount_points():
    if path == target or path.startswith(target + "/"):
      _remount_read_only(path)


def _make_target(root, path):
  """Creates the mount point for host `path` inside `root`: a directory or an empty file."""
  target = root + path
  if os.path.isdir(path):
    os.makedirs(target, mode=0o755, exist_ok=True)
  else:
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if not os.path.exists(target):
      os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
  return target


def _pivot_root(root):
  """Makes `root` the root directory and detaches the host's tree entirely."""
  os.chdir(root)
  number = _PIVOT_ROOT_SYSCALL.get(os.uname().machine)
  if number is None:
    raise OSError(0, f"pivot_root: unknown syscall number on {os.uname().machine}")
  _check(_libc.syscall(ctypes.c_long(number), b".", b"."), "pivot_root")
  _check(_libc.umount2(b".", _MNT_DETACH), "umount old root")
  os.chdir("/")


def build_root(config):
  """A new root holding only what a program needs; the rest of the host does not exist.

  The root is an empty tmpfs with, read-only: the `expose_paths` (system directories, the
  interpreter's standard library; top-level symlinks such as /bin -> usr/bin are copied as
  links), the device nodes null, zero, full, random and urandom, and a fresh /proc; writable:
  a fresh /tmp of `tmpfs_bytes` and a 1 MiB /dev/shm. Site-packages directories in the
  exposed trees (`hide_paths`) are covered by empty tmpfs. So the repository, datasets, home
  directories and the sandbox's own files are out of reach, read-only or not.

  Raises:
    OSError: any step failed; the program must not run then.
  """
  _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
  root = _STAGING
  _mount("tmpfs", root, "tmpfs", _MS_NOSUID, "size=1048576,mode=0755")
  for path in config.get("expose_paths", []):
    if os.path.islink(path) and os.path.dirname(path) == "/":
      os.symlink(os.readlink(path), root + path)
    elif os.path.exists(path):
      _bind_read_only(path, _make_target(root, path))
  for path in config.get("hide_paths", []):
    if os.path.isdir(root + path):
      _mount("tmpfs", root + path, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_RDONLY, "size=4096")
  os.makedirs(root + "/dev", mode=0o755, exist_ok=True)
  for name in _DEVICES:
    _mount(f"/dev/{name}", _make_target(root, f"/dev/{name}"), None, _MS_BIND)
  for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
    os.symlink(target, f"{root}/dev/{name}")
  for path, flags, options in (
      ("/tmp", _MS_NOSUID | _MS_NODEV, f"size={int(config['tmpfs_bytes'])},mode=1777"),
      ("/dev/shm", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=1048576,mode=1777")):
    os.makedirs(root + path, mode=0o755, exist_ok=True)
    _mount("tmpfs", root + path, "tmpfs", flags, options)
  os.makedirs(root + "/proc", mode=0o555, exist_ok=True)
  _mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
  _pivot_root(root)
  _mount(None, "/", None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID)


def _block_network():
  """Fallback without a network namespace: no socket can be made from Python code.

  Best effort only (ctypes can still reach libc); the namespace is the real barrier.
  """
  import socket  # pylint: disable=import-outside-toplevel

  def refuse(*args, **kwargs):
    del args, kwargs
    raise PermissionError(_EACCES, "network access is disabled in the sandbox")

  class RefusedSocket:
    def __init__(self, *args, **kwargs):
      refuse()

  for module in (socket, _socket):
    for name in ("socket", "SocketType"):
      if hasattr(module, name):
        setattr(module, name, RefusedSocket)
    for name in ("socketpair", "create_connection", "create_server", "fromfd",
                 "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
      if hasattr(module, name):
        setattr(module, name, refuse)


def _set_limits(limits):
  def cap(kind, value):
    resource.setrlimit(kind, (value, value))

  cpu = int(limits["cpu_seconds"])
  # SIGXCPU at the soft limit, SIGKILL one second later.
  resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
  cap(resource.RLIMIT_AS, int(limits["memory_bytes"]))
  cap(resource.RLIMIT_FSIZE, int(limits["file_bytes"]))
  cap(resource.RLIMIT_NOFILE, int(limits["open_files"]))
  cap(resource.RLIMIT_CORE, 0)
  # RLIMIT_NPROC counts the threads of every process of the real uid: with a uid of our own
  # it is the program's budget; with the caller's uid the host added what already runs.
  if limits.get("max_processes") is not None:
    cap(resource.RLIMIT_NPROC, int(limits["max_processes"]))


def _drop_capabilities():
  """Empties every capability set and the bounding set, so that nothing can regain them.

  Needed when the process keeps uid 0 of a user namespace: that uid's capabilities would
  let it remount the read-only tree or trace the launcher and the judge.
  """
  for cap in range(64):
    _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL past the last capability: fine.
  header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
  data = (ctypes.c_uint32 * 6)()
  _check(_libc.capset(header, data), "capset")


def _become(limits, uid, cgroup_fd=None):
  """Limits, cgroup, identity: what a sandboxed process does before running anything."""
  _set_limits(limits)
  if cgroup_fd is not None:
    os.write(cgroup_fd, b"0\n")  # "0": the writing process joins the cgroup.
    os.close(cgroup_fd)
  if uid is not None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
  else:
    _drop_capabilities()
  # Set-uid binaries (su, ping, ...) must not regain what was dropped.
  _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
  # Set after the uid change, which clears it: die with the launcher.
  _libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)


def _keep_fds(mapping):
  """Moves each `source: target` descriptor to its target, then closes every other one above 2.

  Sources are first copied above every target, so that no dup2 overwrites a source.
  """
  spare = max([*mapping, *mapping.values(), 2]) + 1
  copies = {fcntl.fcntl(source, fcntl.F_DUPFD, spare): target
            for source, target in mapping.items()}
  for copy, target in copies.items():
    os.dup2(copy, target)
  for fd in range(3, spare):
    if fd not in copies.values():
      try:
        os.close(fd)
      except OSError:
        pass
  os.closerange(spare, 1 << 16)


def _print_exception():
  try:
    import traceback  # pylint: disable=import-outside-toplevel
    traceback.print_exc()
    sys.stderr.flush()
  except BaseException:  # pylint: disable=broad-except
    pass


def _enter_program(config, fds):
  """Child side, before the untrusted code: limits, identity, environment."""
  # The launcher's own deadline handler must not run in the program.
  _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)
  cgroup_fd = config.get("cgroup_fd")
  if cgroup_fd is not None:
    fds = {**fds, cgroup_fd: _CGROUP_FD}
  _keep_fds(fds)
  _become(config["limits"], config.get("uid"), None if cgroup_fd is None else _CGROUP_FD)
  os.chdir(config["workdir"])
  os.environ.clear()
  os.environ.update(config["env"])
  if config.get("site_packages"):
    import site  # pylint: disable=import-outside-toplevel
    site.main()
  if config.get("block_network"):
    _block_network()
  sys.argv = ["main.py"]
  sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]


def run_program(config):
  """Plain run, child side: the untrusted source with fd 3 as its report channel."""
  try:
    _enter_program(config, {int(config["report_fd"]): REPORT_FD})
    code = compile(config["source"], "main.py", "exec")
  except BaseException:  # pylint: disable=broad-except
    _print_exception()
    os._exit(125)
  status = 0
  try:
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})  # pylint: disable=exec-used
  except SystemExit as e:
    status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  except BaseException:  # pylint: disable=broad-except
    _print_exception()
    status = 1
  try:
    sys.stdout.flush()
    sys.stderr.flush()
  except BaseException:  # pylint: disable=broad-except
    pass
  os._exit(status & 0xFF)


def _leftovers(uids, keep=()):
  """Live processes to end: our descendants (as a child subreaper, orphans are re-parented to
  us, so the chain of parents cannot be broken) and anything of `uids`, except `keep`."""
  me = os.getpid()
  children, owned = {}, []
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat", "rb") as f:
        data = f.read()
      owner = os.stat(f"/proc/{name}").st_uid
    except OSError:
      continue
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
      continue  # Already dead: only reaping is left.
    children.setdefault(int(fields[1]), []).append(int(name))
    if owner in uids:
      owned.append(int(name))
  found, frontier = set(owned), [me]
  while frontier:
    for child in children.get(frontier.pop(), ()):
      if child not in keep:
        found.add(child)
        frontier.append(child)
  return found - {me} - set(keep)


class _Reaper:
  """Reaps children, remembering the exit status of the ones we care about."""

  def __init__(self):
    self.statuses = {}

  def reap(self, block):
    while True:
      try:
        pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
      except ChildProcessError:
        return
      except InterruptedError:
        continue
      if pid == 0:
        return
      self.statuses[pid] = os.waitstatus_to_exitcode(status)

  def end(self, uids, keep=(), wait_for=None, grace=0.0):
    """Kills and reaps every leftover (see `_leftovers`) until none is left.

    Args:
      uids: private uids whose processes die too.
      keep: pids to spare (the judge).
      wait_for: a pid whose own exit we would rather see than cause.
      grace: seconds to give `wait_for` to exit by itself first.
    """
    end = time.monotonic() + grace
    while wait_for is not None and wait_for not in self.statuses and time.monotonic() < end:
      self.reap(block=False)
      time.sleep(0.001)
    for _ in range(500):
      victims = _leftovers(uids, keep)
      for pid in victims:
        try:
          os.kill(pid, _SIGKILL)
        except OSError:
          pass
      self.reap(block=False)
      if not victims:
        break
      time.sleep(0.001)
    if wait_for is not None and wait_for not in self.statuses:
      try:  # Killed above: its status is a moment away.
        _, status = os.waitpid(wait_for, 0)
        self.statuses[wait_for] = os.waitstatus_to_exitcode(status)
      except ChildProcessError:
        pass


def _describe_end(code):
  if code is None:
    return "none"
  if code < 0:
    return {-9: "killed (signal 9)", -24: "cpu time limit (signal 24)",
            -11: "segmentation fault (signal 11)"}.get(code, f"signal {-code}")
  return f"exit {code}"


def _start_candidate(config):
  """Forks a candidate process; returns (pid, judge's request fd, judge's reply fd)."""
  request_r, request_w = os.pipe()
  reply_r, reply_w = os.pipe()
  pid = os.fork()
  if pid == 0:
    try:
      _enter_program(config, {request_r: sandbox_judge.CANDIDATE_REQUEST_FD,
                              reply_w: sandbox_judge.CANDIDATE_REPLY_FD})
    except BaseException:  # pylint: disable=broad-except
      _print_exception()
      os._exit(125)
    try:
      sandbox_judge.serve_candidate(config["source"])
    finally:
      os._exit(1)  # Whatever the program raised, this process never runs launcher code.
  os.close(request_r)
  os.close(reply_w)
  return pid, request_w, reply_r


def _start_judge(config, control):
  """Forks the judge: its own uid and limits, the report channel, the tests, no output."""
  pid = os.fork()
  if pid != 0:
    return pid
  try:
    _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    _keep_fds({devnull: 1, int(config["report_fd"]): sandbox_judge.JUDGE_REPORT_FD,
               control.fileno(): sandbox_judge.JUDGE_CONTROL_FD,
               int(config["judge_fd"]): sandbox_judge.JUDGE_INPUT_FD})
    os.dup2(1, 2)
    limits = dict(config["limits"], memory_bytes=config["judge_memory_bytes"],
                  max_processes=1 if config.get("judge_uid") is not None else None)
    _become(limits, config.get("judge_uid"))
    # Non-dumpable: no process of the same uid may trace it or open its /proc files.
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.chdir("/")
  except BaseException:  # pylint: disable=broad-except
    os._exit(125)
  try:
    sandbox_judge.judge_main()
  finally:
    os._exit(1)


def run_judged(config, reaper):
  """Judged run, launcher side: start the judge, then candidates whenever it asks.

  Returns:
    the judge's exit code (None if it did not exit).
  """
  control, judge_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
  judge = _start_judge(config, judge_end)
  judge_end.close()
  # Nothing forked from here on may hold the tests or the report channel.
  os.close(int(config["judge_fd"]))
  os.close(int(config["report_fd"]))
  uids = {config.get("uid")} - {None}
  candidate = None
  while True:
    try:
      request = control.recv(16)
    except InterruptedError:
      continue
    except OSError:
      break
    if request not in (sandbox_judge.START, sandbox_judge.END):
      break  # b"": the judge is gone.
    reaper.end(uids, keep=(judge,), wait_for=candidate, grace=0.02)
    ended = _describe_end(reaper.statuses.pop(candidate, None) if candidate else None)
    candidate = None
    if request == sandbox_judge.END:
      control.send(ended.encode())
      continue
    candidate, request_w, reply_r = _start_candidate(config)
    control.sendmsg([ended.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                        sandbox_judge.pack_fds([request_w, reply_r]))])
    os.close(request_w)
    os.close(reply_r)
  control.close()
  reaper.end(uids, keep=(judge,))
  if judge not in reaper.statuses:
    try:
      _, status = os.waitpid(judge, 0)
      reaper.statuses[judge] = os.waitstatus_to_exitcode(status)
    except ChildProcessError:
      pass
  return reaper.statuses.get(judge)


def run_plain(config, reaper):
  """Plain run, launcher side: one program; returns (exit code, its CPU seconds)."""
  child = os.fork()
  if child == 0:
    run_program(config)
  os.close(int(config["report_fd"]))
  # Every orphan becomes our child: reap them all, remember the program's status.
  while True:
    try:
      pid, wait_status, usage = os.wait4(-1, 0)
    except ChildProcessError:
      return None, 0.0
    except InterruptedError:
      continue
    if pid == child:
      return os.waitstatus_to_exitcode(wait_status), usage.ru_utime + usage.ru_stime


def main():
  config = marshal.loads(sys.stdin.buffer.read())
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.close(devnull)
  status_fd = int(config["status_fd"])
  if config.get("uid") is None:
    # Same uid as the program (no private uid): nothing may trace us or read our /proc files.
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
  if config.get("cgroup_procs"):
    # Opened before the host's tree disappears; each program process writes itself into it.
    config["cgroup_fd"] = os.open(config["cgroup_procs"], os.O_WRONLY)
  if config.get("isolate_mounts"):
    try:
      build_root(config)
    except OSError as e:
      # Half-isolated is not isolated: report and run nothing.
      os.write(status_fd, f"note mount isolation failed: {e}\nexit None\n".encode())
      os._exit(1)
  workdir = config["workdir"]
  os.makedirs(workdir, mode=0o700, exist_ok=True)
  uid = config.get("uid")
  if uid is not None:
    os.chown(workdir, uid, uid)
  sys.stdout.flush()
  sys.stderr.flush()
  init = os.getpid() == 1
  if not init:
    # Orphans of the program come to us instead of the host's init, so none can hide.
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

  def deadline(signum, frame):
    del signum, frame
    for pid in _leftovers({config.get("uid"), config.get("judge_uid")} - {None}):
      try:
        os.kill(pid, _SIGKILL)
      except OSError:
        pass

  # Backstop for a host that died without killing us: the host's own deadline comes first.
  _signal.signal(_signal.SIGALRM, deadline)
  _signal.setitimer(_signal.ITIMER_REAL, float(config["wall_seconds"]))
  reaper = _Reaper()
  if config.get("judge_fd") is not None:
    exit_code, cpu_seconds = run_judged(config, reaper), 0.0
  else:
    exit_code, cpu_seconds = run_plain(config, reaper)
  _signal.setitimer(_signal.ITIMER_REAL, 0)
  if not init:
    reaper.end({config.get("uid"), config.get("judge_uid")} - {None})
    reaper.reap(block=True)
  os.write(status_fd, f"cpu {cpu_seconds:.3f}\nexit {exit_code}\n".encode())
  os._exit(0)


if __name__ == "__main__":
  main()

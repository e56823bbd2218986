"""Runs inside the sandbox: isolates itself, then runs one untrusted Python program.

Started by `bonjax.verifiers.sandbox` as `python -I -S -B sandbox_launcher.py`, usually as PID 1 of
fresh PID, network, mount and IPC namespaces made by `unshare`. Standard library only: it must
not import bonjax (whose package may pull in JAX); it imports little (no json, re, enum or
traceback up front), because Python start-up time is most of a short check's cost. Its
standard input is a `marshal`-encoded config dict:

  source         the program text
  workdir        the private working directory (also HOME and TMPDIR)
  env            the program's complete environment
  limits         cpu_seconds, memory_bytes, file_bytes, max_processes (RLIMIT_NPROC), open_files
  uid            a private uid to drop to (when started as real root), or null
  isolate_mounts true inside a new mount namespace: remount everything read-only, put fresh
                 tmpfs on /tmp and /dev/shm, cover `hide_paths` with empty read-only tmpfs
  tmpfs_bytes    size of the /tmp tmpfs (bounds everything the program can write)
  hide_paths     directories to cover (the user's home, /root)
  expose_paths   trees inside hidden ones that stay visible, read-only (the Python installation)
  block_network  true when no network namespace is available: disable sockets in Python
  site_packages  true: add site-packages (the launcher starts with -S) before the program
  report_fd      descriptor the program sees as fd 3 (its structured result channel)
  status_fd      descriptor for this launcher's status lines (never given to the program)
  wall_seconds   the launcher kills the program after this long even if the host is gone

The program runs in a forked child (the launcher stays single-threaded, so forking is safe):
limits are set, privileges dropped, then the source is executed in a fresh `__main__`
namespace. The launcher waits for it, reaping orphans as PID 1 must, writes "cpu <seconds>"
and "exit <code>" lines (or "note <why>" when isolation failed) to the status descriptor and
exits; as PID 1 its exit makes the kernel kill whatever the program left behind in the
namespace. Without a PID namespace it is a child subreaper instead, and kills and reaps every
descendant (and every process of the private uid) before it exits.
"""

import _signal  # The C module: `signal` would import enum.
import ctypes
import marshal
import os
import resource
import sys
import time

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
_MS_RELATIME = 1 << 21
# statvfs f_flag bit -> mount flag: a remount inside a user namespace must keep these.
_STATVFS_TO_MS = ((1, _MS_RDONLY), (2, _MS_NOSUID), (4, _MS_NODEV), (8, _MS_NOEXEC),
                  (1024, _MS_NOATIME), (2048, _MS_NODIRATIME), (4096, _MS_RELATIME))
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SIGKILL = 9  # Literal: the signal module costs an enum import.
_EACCES = 13

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source, target, fstype, flags, data=None):
  """mount(2); raises OSError on failure."""
  enc = lambda s: s.encode() if s is not None else None
  if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
    err = ctypes.get_errno()
    raise OSError(err, f"mount {target}: {os.strerror(err)}")


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


def isolate_mounts(config):
  """Read-only view of the host, writable only on fresh tmpfs mounts that die with us.

  Raises:
    OSError: any step failed; the program must not run then.
  """
  _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
  for path in _mount_points():
    if path == "/proc" or path.startswith("/proc/"):
      continue
    _remount_read_only(path)
  tmp_options = f"size={int(config['tmpfs_bytes'])},mode=1777"
  _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, tmp_options)
  if os.path.isdir("/dev/shm"):
    _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
           "size=1048576,mode=1777")
  for path in config.get("hide_paths", []):
    # A path inside one hidden earlier no longer exists: it is covered already.
    if os.path.isdir(path) and not path.startswith("/tmp"):
      _hide(path, [p for p in config.get("expose_paths", []) if p.startswith(path + "/")])


def _hide(path, exposed):
  """Covers `path` with an empty read-only tmpfs, keeping the `exposed` subtrees visible.

  The exposed trees (the Python installation, when it lives in a home directory) are opened
  before the cover goes on, then bound back through /proc/self/fd, read-only.
  """
  handles = [(target, os.open(target, os.O_PATH)) for target in exposed if os.path.isdir(target)]
  try:
    _mount("tmpfs", path, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=65536,mode=0755")
    for target, handle in handles:
      os.makedirs(target, mode=0o755, exist_ok=True)
      _mount(f"/proc/self/fd/{handle}", target, None, _MS_BIND | _MS_REC)
      _remount_read_only(target)
    _mount(None, path, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
  finally:
    for _, handle in handles:
      os.close(handle)


def _block_network():
  """Fallback without a network namespace: no socket can be made from Python code.

  Best effort only (ctypes can still reach libc); the namespace is the real barrier.
  """
  import _socket  # pylint: disable=import-outside-toplevel
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
  cap(resource.RLIMIT_NPROC, int(limits["max_processes"]))


def _drop_privileges(uid):
  os.setgroups([])
  os.setgid(uid)
  os.setuid(uid)


def _print_exception():
  try:
    import traceback  # pylint: disable=import-outside-toplevel
    traceback.print_exc()
    sys.stderr.flush()
  except BaseException:  # pylint: disable=broad-except
    pass


def run_program(config):
  """Child side: limits, identity, environment, then the untrusted source. Never returns."""
  try:
    # The launcher's own deadline handler must not run in the program.
    _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)
    os.dup2(int(config["report_fd"]), REPORT_FD)
    os.closerange(REPORT_FD + 1, 1 << 16)
    uid = config.get("uid")
    _set_limits(config["limits"])
    if uid is not None:
      _drop_privileges(uid)
    # Set-uid binaries (su, ping, ...) must not regain what was dropped.
    _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # Set after the uid change, which clears it: die with the launcher.
    _libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
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


def _leftovers(uid):
  """Live processes the program left: our descendants (as a child subreaper, orphans are
  re-parented to us, so the chain of parents cannot be broken) and anything of its uid."""
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
    if uid is not None and owner == uid:
      owned.append(int(name))
  found, frontier = set(owned), [me]
  while frontier:
    for child in children.get(frontier.pop(), ()):
      found.add(child)
      frontier.append(child)
  found.discard(me)
  return found


def _reap_all(block):
  while True:
    try:
      pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
    except ChildProcessError:
      return
    except InterruptedError:
      continue
    if pid == 0:
      return


def _end_leftovers(uid):
  """Without a PID namespace: kill and reap whatever the program left, until nothing is."""
  for _ in range(500):
    victims = _leftovers(uid)
    for pid in victims:
      try:
        os.kill(pid, _SIGKILL)
      except OSError:
        pass
    _reap_all(block=False)
    if not victims:
      break
    time.sleep(0.001)
  _reap_all(block=True)


def main():
  config = marshal.loads(sys.stdin.buffer.read())
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.close(devnull)
  status_fd = int(config["status_fd"])
  if config.get("isolate_mounts"):
    try:
      isolate_mounts(config)
    except OSError as e:
      # Half-isolated is not isolated: report and run nothing.
      os.write(status_fd, f"note mount isolation failed: {e}\nexit None\n".encode())
      os._exit(1)
  workdir = config["workdir"]
  os.makedirs(workdir, mode=0o700, exist_ok=True)
  uid = config.get("uid")
  if uid is not None:
    os.chown(workdir, uid, uid)
  with open(os.path.join(workdir, "main.py"), "w") as f:
    f.write(config["source"])
  if uid is not None:
    os.chown(os.path.join(workdir, "main.py"), uid, uid)
  sys.stdout.flush()
  sys.stderr.flush()
  init = os.getpid() == 1
  if not init:
    # Orphans of the program come to us instead of the host's init, so none can hide.
    _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
  child = os.fork()
  if child == 0:
    run_program(config)

  def deadline(signum, frame):
    del signum, frame
    os.kill(child, _SIGKILL)

  # Backstop for a host that died without killing us: the host's own deadline comes first.
  _signal.signal(_signal.SIGALRM, deadline)
  _signal.setitimer(_signal.ITIMER_REAL, float(config["wall_seconds"]))
  exit_code, cpu_seconds = None, 0.0
  # Every orphan becomes our child: reap them all, remember the program's status.
  while True:
    try:
      pid, wait_status, usage = os.wait4(-1, 0)
    except ChildProcessError:
      break
    except InterruptedError:
      continue
    if pid == child:
      exit_code = os.waitstatus_to_exitcode(wait_status)
      cpu_seconds = usage.ru_utime + usage.ru_stime
      break
  _signal.setitimer(_signal.ITIMER_REAL, 0)
  if not init:
    _end_leftovers(config.get("uid"))
  os.write(status_fd, f"cpu {cpu_seconds:.3f}\nexit {exit_code}\n".encode())
  os._exit(0)


if __name__ == "__main__":
  main()

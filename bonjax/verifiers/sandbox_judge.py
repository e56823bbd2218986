"""Runs inside the sandbox: the judge that runs the tests, and the candidate that answers calls.

Two kinds of process, both forked by `sandbox_launcher` (which imports this file as a
top-level module, so: standard library only):

* the candidate (`serve_candidate`, under the program's uid and limits) compiles and loads
  the completion, then answers calls: it reads (function name, arguments) requests on fd 3
  and writes each result, canonically encoded (`sandbox_values`), on fd 4. It has no other
  channel: no report descriptor, no test source in its memory or on its filesystem.
* the judge (`judge_main`, under a uid of its own, non-dumpable) reads the tests from fd 5,
  runs them in its own interpreter, where the function under test is a proxy that sends the
  call to the candidate and decodes the reply into fresh builtin objects, and writes one
  record per test step to the report channel (fd 3), which only it holds. It asks the
  launcher (socket on fd 4) for a fresh candidate whenever the current one stopped answering
  (timed out, died, broke the protocol), so one hang costs one case, not the rest.

Report records (one line each, fields separated by one space, details without newlines):
  syntax_error <why> | load_error <why> | load_timeout | loaded | suite_error <why> |
  step <index> pass | step <index> fail <why> | done
"""

import builtins
import marshal
import os
import _signal
import _socket
import sys

import sandbox_values

CANDIDATE_REQUEST_FD = 3
CANDIDATE_REPLY_FD = 4
JUDGE_REPORT_FD = 3
JUDGE_CONTROL_FD = 4
JUDGE_INPUT_FD = 5
# Requests to the launcher: start a fresh candidate (ending the current one) / end it.
START = b"S"
END = b"E"
_DETAIL_CHARS = 300
_HEADER = 5  # One kind byte, four length bytes.
# Reply kinds, candidate -> judge.
_COMPILED, _SYNTAX_ERROR, _READY, _LOAD_ERROR = b"c", b"s", b"r", b"l"
_VALUE, _RAISED, _NOT_PLAIN = b"v", b"e", b"u"


_FD_BYTES = 4  # sizeof(int): descriptors in SCM_RIGHTS messages.


def pack_fds(fds):
  return b"".join(fd.to_bytes(_FD_BYTES, sys.byteorder, signed=True) for fd in fds)


def unpack_fds(data):
  return [int.from_bytes(data[i:i + _FD_BYTES], sys.byteorder, signed=True)
          for i in range(0, len(data) - len(data) % _FD_BYTES, _FD_BYTES)]


def describe(error):
  """One line naming an exception, at most _DETAIL_CHARS characters."""
  try:
    text = type(error).__name__ + ": " + str(error)
  except BaseException:  # pylint: disable=broad-except
    text = type(error).__name__
  return " ".join(text.split())[:_DETAIL_CHARS]


def write_frame(fd, kind, payload=b""):
  data = kind + len(payload).to_bytes(4, "big") + payload
  while data:
    data = data[os.write(fd, data):]


def _read_exactly(fd, count):
  chunks, missing = [], count
  while missing:
    chunk = os.read(fd, min(missing, 1 << 20))
    if not chunk:
      return None
    chunks.append(chunk)
    missing -= len(chunk)
  return b"".join(chunks)


def read_frame(fd, limit=sandbox_values.MAX_BYTES):
  """(kind, payload), or None at end of file.

  Raises:
    ValueError: the announced payload is longer than `limit`.
  """
  header = _read_exactly(fd, _HEADER)
  if header is None:
    return None
  size = int.from_bytes(header[1:], "big")
  if size > limit:
    raise ValueError(f"frame of {size} bytes, over the {limit}-byte limit")
  payload = _read_exactly(fd, size)
  return None if payload is None else (header[:1], payload)


# Candidate side. Everything here runs in the candidate's process, so the candidate can change
# any of it; the judge trusts none of what it sends beyond "these bytes decode to plain data".

def serve_candidate(source):
  """Compiles and loads the program, then answers calls until the judge closes fd 3."""
  request_fd, reply_fd = CANDIDATE_REQUEST_FD, CANDIDATE_REPLY_FD
  try:
    code = compile(source, "solution.py", "exec")
  except BaseException as error:  # pylint: disable=broad-except
    write_frame(reply_fd, _SYNTAX_ERROR, describe(error).encode())
    os._exit(0)
  write_frame(reply_fd, _COMPILED)
  namespace = {"__name__": "__solution__", "__builtins__": builtins}
  try:
    exec(code, namespace)  # pylint: disable=exec-used
  except BaseException as error:  # pylint: disable=broad-except
    write_frame(reply_fd, _LOAD_ERROR, describe(error).encode())
    os._exit(0)
  write_frame(reply_fd, _READY)
  while True:
    frame = read_frame(request_fd)
    if frame is None:
      os._exit(0)
    try:
      name, args, kwargs = sandbox_values.decode(frame[1])
      function = namespace.get(name)
      if function is None:
        raise NameError(f"name {name!r} is not defined")
      result = function(*args, **kwargs)
    except BaseException as error:  # pylint: disable=broad-except
      write_frame(reply_fd, _RAISED, sandbox_values.encode([type(error).__name__,
                                                             describe(error)]))
      continue
    try:
      write_frame(reply_fd, _VALUE, sandbox_values.encode(result))
    except sandbox_values.EncodeError as error:
      write_frame(reply_fd, _NOT_PLAIN, str(error)[:_DETAIL_CHARS].encode())


# Judge side.

class CaseTimeout(BaseException):
  """The step's time is up (a BaseException: test code's `except Exception` misses it)."""


class SuiteError(BaseException):
  """The tests themselves cannot run here (e.g. they pass a function to the program)."""


class ProgramError(Exception):
  """The program failed a call in a way that is not a builtin exception."""


def _builtin_exception(name, message):
  """The builtin Exception subclass called `name`, else ProgramError, carrying `message`."""
  kind = getattr(builtins, name, None) if type(name) is str else None
  if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
    try:
      return kind(message)
    except BaseException:  # pylint: disable=broad-except
      pass
  return ProgramError(f"{name}: {message}")


class _Candidate:
  """The judge's handle of one candidate process."""

  def __init__(self, request_fd, reply_fd):
    self.request_fd = request_fd
    self.reply_fd = reply_fd
    self.idle = True  # False while a call is outstanding (its reply may still come).

  def close(self):
    for fd in (self.request_fd, self.reply_fd):
      try:
        os.close(fd)
      except OSError:
        pass


class Judge:
  """Runs one test suite against candidate processes; see the module docstring."""

  def __init__(self, config, control, report_fd):
    self.config = config
    self.control = control
    self.report_fd = report_fd
    self.case_seconds = float(config["case_seconds"])
    self.candidate = None
    self.ended = ""  # How the last candidate ended, for the failure detail.

  def report(self, *fields):
    try:
      os.write(self.report_fd, (" ".join(fields) + "\n").encode("utf-8", "replace"))
    except OSError:
      pass

  # Candidate lifecycle, through the launcher.

  def _ask_launcher(self, request):
    """One request/answer with the launcher: (how the previous candidate ended, fds).

    SIGALRM is blocked meanwhile: a case timeout must not cut the exchange in half.
    """
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGALRM})
    try:
      self.control.send(request)
      message, ancillary, _, _ = self.control.recvmsg(64, _socket.CMSG_SPACE(2 * _FD_BYTES))
    finally:
      _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {_signal.SIGALRM})
    fds = []
    for level, kind, data in ancillary:
      if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
        fds += unpack_fds(data)
    return message.decode("ascii", "replace"), fds

  def end_candidate(self):
    """Ends the current candidate (if any); remembers how it ended."""
    if self.candidate is not None:
      self.candidate.close()
      self.candidate = None
      self.ended, _ = self._ask_launcher(END)

  def _load(self, candidate):
    """Waits (the step's time at most) for the candidate to compile and load the program.

    Returns:
      (first frame, second frame); None for a frame that did not come.
    """
    first = second = None
    _signal.setitimer(_signal.ITIMER_REAL, self.case_seconds)
    try:
      first = read_frame(candidate.reply_fd, 1 << 16)
      if first == (_COMPILED, b""):
        second = read_frame(candidate.reply_fd, 1 << 16)
    except ValueError:
      pass
    finally:
      _signal.setitimer(_signal.ITIMER_REAL, 0)
    return first, second

  def start_candidate(self):
    """Starts a fresh candidate (ending the current one) and waits until it is ready.

    Returns:
      None when it is ready, else the report fields saying why not.
    """
    if self.candidate is not None:
      self.candidate.close()
      self.candidate = None
    self.ended, fds = self._ask_launcher(START)
    if len(fds) != 2:
      return ("load_error", "the sandbox could not start the program")
    self.candidate = _Candidate(*fds)
    try:
      first, second = self._load(self.candidate)
    except CaseTimeout:
      self.end_candidate()
      return ("load_timeout",)
    if second == (_READY, b""):
      return None
    self.end_candidate()
    # The first frame is written before any code of the program runs: it can be trusted.
    if first is not None and first[0] == _SYNTAX_ERROR:
      return ("syntax_error", first[1].decode("utf-8", "replace"))
    if second is not None and second[0] == _LOAD_ERROR:
      return ("load_error", second[1].decode("utf-8", "replace"))
    return ("load_error", f"the program ended while loading ({self.ended})")

  # Calls.

  def call(self, name, args, kwargs):
    """Calls `name(*args, **kwargs)` in the candidate; returns its result as plain data."""
    try:
      request = sandbox_values.encode([name, list(args), kwargs])
    except sandbox_values.EncodeError as error:
      raise SuiteError(f"the test passes a value the program cannot receive: {error}") from None
    candidate = self.candidate
    if candidate is None or not candidate.idle:
      raise ProgramError(f"the program is not running ({self.ended or 'stopped'})")
    candidate.idle = False
    try:
      write_frame(candidate.request_fd, b"q", request)
      reply = read_frame(candidate.reply_fd)
    except (OSError, ValueError) as error:
      self.end_candidate()
      raise ProgramError(f"the program broke the protocol ({describe(error)})") from None
    if reply is None:
      self.end_candidate()
      raise ProgramError(f"the program ended during the call ({self.ended})")
    candidate.idle = True
    kind, payload = reply
    try:
      if kind == _VALUE:
        return sandbox_values.decode(payload)
      if kind == _RAISED:
        exception_name, message = sandbox_values.decode(payload)
        raise _builtin_exception(exception_name, message)
      if kind == _NOT_PLAIN:
        raise ProgramError("the result is not plain data: "
                           + payload.decode("utf-8", "replace")[:_DETAIL_CHARS])
    except sandbox_values.DecodeError as error:
      raise ProgramError(f"malformed result: {error}") from None
    except (TypeError, ValueError) as error:  # A reply of the wrong shape.
      raise ProgramError(f"malformed reply: {describe(error)}") from None
    raise ProgramError(f"unexpected reply kind {kind!r}")

  def proxy(self, name):
    """The function tests call in place of the program's `name`."""
    def remote(*args, **kwargs):
      return self.call(name, args, kwargs)
    remote.__name__ = remote.__qualname__ = name
    return remote

  # Tests.

  def _bind_missing_names(self, code, namespace):
    """Names the code reads that nothing defines are the program's: bind them to proxies."""
    pending = [code]
    while pending:
      current = pending.pop()
      for name in current.co_names:
        if name not in namespace and not hasattr(builtins, name):
          namespace[name] = self.proxy(name)
      pending.extend(c for c in current.co_consts if type(c) is type(code))

  def run_source(self, source, namespace, filename):
    """Compiles and runs trusted test code with the step's time limit."""
    code = compile(source, filename, "exec")
    self._bind_missing_names(code, namespace)
    _signal.setitimer(_signal.ITIMER_REAL, self.case_seconds)
    try:
      exec(code, namespace)  # pylint: disable=exec-used
    finally:
      _signal.setitimer(_signal.ITIMER_REAL, 0)

  def run(self):
    """Loads the program, runs every step, reports."""
    failure = self.start_candidate()
    if failure is not None:
      self.report(*failure)
      return
    self.report("loaded")
    config = self.config
    namespace = {"__name__": "__tests__", "__builtins__": builtins}
    try:
      if config.get("trusted"):
        self.run_source(config["trusted"], namespace, "prompt.py")
      entry_point = config.get("entry_point")
      if entry_point:
        namespace[entry_point] = self.proxy(entry_point)
        namespace[config["parameter"]] = namespace[entry_point]
      self.run_source(config["prelude"], namespace, "tests.py")
    except BaseException as error:  # pylint: disable=broad-except
      self.report("suite_error", "test set-up failed: " + describe(error))
      return
    for index, (_, source) in enumerate(config["steps"]):
      if self.candidate is None or not self.candidate.idle:
        failure = self.start_candidate()
        if failure is not None:
          self.report("step", str(index), "fail", "could not restart the program: "
                      + " ".join(failure))
          continue
      try:
        self.run_source(source, namespace, "tests.py")
        outcome = ("pass",)
      except CaseTimeout:
        outcome = ("fail", "case timed out")
      except SuiteError as error:
        self.report("suite_error", describe(error))
        return
      except BaseException as error:  # pylint: disable=broad-except
        outcome = ("fail", describe(error))
      self.report("step", str(index), *outcome)
    self.report("done")


def _alarm(signum, frame):
  del signum, frame
  raise CaseTimeout()


def judge_main():
  """Judge process entry point (fds prepared by the launcher). Never returns."""
  code = 0
  try:
    _signal.signal(_signal.SIGALRM, _alarm)
    with os.fdopen(JUDGE_INPUT_FD, "rb") as f:
      config = marshal.loads(f.read())
    control = _socket.socket(fileno=JUDGE_CONTROL_FD)
    Judge(config, control, JUDGE_REPORT_FD).run()
  except BaseException as error:  # pylint: disable=broad-except
    try:
      os.write(JUDGE_REPORT_FD, f"judge_error {describe(error)}\n".encode())
    except OSError:
      pass
    code = 1
  os._exit(code)

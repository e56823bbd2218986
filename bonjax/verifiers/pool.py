"""A process pool that runs a verifier's check function with hard deadlines.

Model output can make any checker hang (a 10**10**10 in sympy, a parser's exponential case) or
crash (a segfault, an out-of-memory kill). The pool runs the check function in separate worker
processes, one task at a time each, and owns the clock:

* every task has a deadline, every batch optionally one more; a worker that misses its
  deadline is SIGKILLed together with everything it spawned, and a fresh one takes its place;
* a worker that dies (crash, OOM) costs only its task, scored as ERROR;
* workers are recycled after `max_tasks_per_worker` tasks, so slow leaks cannot pile up;
* a check that raises becomes an ERROR result; nothing model-driven propagates as an exception.

Workers start with `forkserver` or `spawn`, never `fork`: the parent runs JAX, whose threads make
a forked child unsafe. The check function must be a module-level function (it is pickled by
reference and imported once per worker), taking one picklable item and returning a
`VerifierResult`.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import resource
import signal
import time
from typing import Any, Callable, Sequence

from bonjax.verifiers import processes
from bonjax.verifiers.base import Status, VerifierResult

CheckFn = Callable[[Any], VerifierResult]

_START_METHODS = ("forkserver", "spawn")
_DETAIL_CHARS = 500


def timeout_result(seconds: float, detail: str) -> VerifierResult:
  """The scored failure a check gets when it runs out of time."""
  return VerifierResult(score=0.0, correct=False, status=Status.TIMEOUT, seconds=seconds,
                        detail=detail)


def error_result(seconds: float, detail: str) -> VerifierResult:
  """The scored failure a check gets when it raised or its worker died."""
  return VerifierResult(score=0.0, correct=False, status=Status.ERROR, seconds=seconds,
                        detail=detail[:_DETAIL_CHARS])


def result_metrics(results: Sequence[VerifierResult]) -> dict[str, float]:
  """Counts of each status plus timing summaries, for the training metrics.

  Args:
    results: verdicts of one batch.

  Returns:
    {"ok", "unparseable", "timeout", "error": counts, "count", "correct": count of correct,
    "check_seconds_mean", "check_seconds_max"}.
  """
  metrics = {status.value: 0.0 for status in Status}
  for result in results:
    metrics[Status(result.status).value] += 1.0
  seconds = [result.seconds for result in results]
  metrics["count"] = float(len(results))
  metrics["correct"] = float(sum(result.correct for result in results))
  metrics["check_seconds_mean"] = sum(seconds) / len(seconds) if seconds else 0.0
  metrics["check_seconds_max"] = max(seconds) if seconds else 0.0
  return metrics


def _run_check(check_fn: CheckFn, item: Any) -> VerifierResult:
  """Calls the check function, turning any exception or bad return into an ERROR result."""
  start = time.perf_counter()
  try:
    result = check_fn(item)
  except Exception as e:  # pylint: disable=broad-except
    return error_result(time.perf_counter() - start, f"{type(e).__name__}: {e}")
  except RecursionError as e:
    return error_result(time.perf_counter() - start, f"RecursionError: {e}")
  if not isinstance(result, VerifierResult):
    return error_result(time.perf_counter() - start,
                        f"check returned {type(result).__name__}, not VerifierResult")
  if not result.seconds:
    result = dataclasses.replace(result, seconds=time.perf_counter() - start)
  return result


def _worker_main(conn, check_fn: CheckFn, initializer: Callable[[], None] | None,
                 memory_bytes: int | None) -> None:
  """Worker loop: announce readiness, then answer (index, item) messages until None or EOF."""
  # Ctrl-C goes to the whole process group; the parent decides when workers stop.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  if memory_bytes:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
  try:
    if initializer is not None:
      initializer()
  except Exception as e:  # pylint: disable=broad-except
    conn.send(("init_error", f"{type(e).__name__}: {e}"[:_DETAIL_CHARS]))
    return
  conn.send(("ready", os.getpid()))
  while True:
    try:
      message = conn.recv()
    except (EOFError, OSError):
      return
    if message is None:
      return
    index, item = message
    result = _run_check(check_fn, item)
    try:
      conn.send((index, result))
    except Exception as e:  # pylint: disable=broad-except
      # An unpicklable or oversized result must not kill the worker.
      conn.send((index, error_result(result.seconds, f"result not sendable: {e}")))


@dataclasses.dataclass
class _Worker:
  """Parent-side handle of one worker process."""

  process: Any
  conn: Any
  started: float
  ready: bool = False
  task: int | None = None
  task_started: float = 0.0
  deadline: float = 0.0
  tasks_done: int = 0


class VerifierPool:
  """Process-isolated workers running `check_fn(item) -> VerifierResult` under deadlines.

  Use as a context manager (or call `close`), so that no worker outlives the pool:

    with VerifierPool(check_math_item, num_workers=2, task_timeout_s=5.0) as pool:
      results = pool.map(items)
      print(pool.last_metrics)

  Args:
    check_fn: module-level function of one picklable item.
    num_workers: worker processes (one task each at a time).
    task_timeout_s: wall-clock seconds one task may take once a ready worker has it.
    batch_timeout_s: wall-clock seconds a whole `map` call may take, or None; tasks not
      finished by then (running or still queued) are TIMEOUT.
    max_tasks_per_worker: a worker is replaced after this many tasks.
    start_method: "forkserver" (default) or "spawn".
    initializer: optional module-level function each worker runs once before its first task.
    worker_memory_bytes: optional RLIMIT_AS for each worker.
    startup_timeout_s: seconds a new worker may take to import and initialise.
  """

  def __init__(self, check_fn: CheckFn, *, num_workers: int = 2, task_timeout_s: float = 10.0,
               batch_timeout_s: float | None = None, max_tasks_per_worker: int = 1000,
               start_method: str = "forkserver",
               initializer: Callable[[], None] | None = None,
               worker_memory_bytes: int | None = None, startup_timeout_s: float = 120.0):
    if num_workers < 1:
      raise ValueError(f"num_workers={num_workers}: must be >= 1")
    if task_timeout_s <= 0:
      raise ValueError(f"task_timeout_s={task_timeout_s}: must be > 0")
    if batch_timeout_s is not None and batch_timeout_s <= 0:
      raise ValueError(f"batch_timeout_s={batch_timeout_s}: must be > 0 or None")
    if max_tasks_per_worker < 1:
      raise ValueError(f"max_tasks_per_worker={max_tasks_per_worker}: must be >= 1")
    if start_method not in _START_METHODS:
      raise ValueError(f"start_method={start_method!r}: must be one of {_START_METHODS} "
                       "(fork is unsafe once JAX threads run in the parent)")
    self.check_fn = check_fn
    self.num_workers = num_workers
    self.task_timeout_s = task_timeout_s
    self.batch_timeout_s = batch_timeout_s
    self.max_tasks_per_worker = max_tasks_per_worker
    self.initializer = initializer
    self.worker_memory_bytes = worker_memory_bytes
    self.startup_timeout_s = startup_timeout_s
    self._context = multiprocessing.get_context(start_method)
    self._workers: list[_Worker] = []
    self._closed = False
    self.totals: collections.Counter = collections.Counter()
    self.last_metrics: dict[str, float] = {}

  # Worker lifecycle.

  def _start_worker(self) -> _Worker:
    parent_conn, child_conn = self._context.Pipe(duplex=True)
    process = self._context.Process(
        target=_worker_main, name="bonjax-verifier",
        args=(child_conn, self.check_fn, self.initializer, self.worker_memory_bytes),
        daemon=True)
    try:
      process.start()
    except (pickle.PicklingError, AttributeError, TypeError) as e:
      parent_conn.close()
      child_conn.close()
      raise ValueError(f"check_fn {self.check_fn!r} cannot be sent to a worker: it must be a "
                       f"module-level function ({type(e).__name__}: {e})") from e
    child_conn.close()  # The worker holds the only other end: its death reads as EOF here.
    worker = _Worker(process=process, conn=parent_conn, started=time.monotonic())
    self._workers.append(worker)
    self.totals["workers_started"] += 1
    return worker

  def _kill_worker(self, worker: _Worker) -> None:
    """SIGKILLs the worker and everything it spawned (e.g. a sandboxed program)."""
    if worker.process.pid is not None:
      processes.kill_tree(worker.process.pid)
    worker.process.join(timeout=5.0)
    worker.conn.close()
    if worker in self._workers:
      self._workers.remove(worker)

  def _retire_worker(self, worker: _Worker) -> None:
    """Stops an idle worker politely, falling back to a kill."""
    try:
      worker.conn.send(None)
    except (OSError, ValueError):
      pass
    worker.process.join(timeout=2.0)
    if worker.process.is_alive():
      self._kill_worker(worker)
      return
    worker.conn.close()
    self._workers.remove(worker)

  def _fill(self) -> None:
    while len(self._workers) < self.num_workers:
      self._start_worker()

  def close(self) -> None:
    """Stops every worker; idempotent."""
    for worker in list(self._workers):
      try:
        worker.conn.send(None)
      except (OSError, ValueError):
        pass
    end = time.monotonic() + 2.0
    for worker in list(self._workers):
      worker.process.join(timeout=max(0.0, end - time.monotonic()))
      self._kill_worker(worker)
    self._closed = True

  def __enter__(self) -> VerifierPool:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def worker_pids(self) -> list[int]:
    """Pids of the live workers (for tests and monitoring)."""
    return [w.process.pid for w in self._workers if w.process.pid is not None]

  # Batches.

  def map(self, items: Sequence[Any]) -> list[VerifierResult]:
    """Checks every item; always returns one result per item, in order.

    Args:
      items: the check function's inputs.

    Returns:
      the verdicts; timed-out tasks are TIMEOUT results with score 0, crashed ones ERROR.
    """
    if self._closed:
      raise RuntimeError("VerifierPool is closed")
    start = time.monotonic()
    batch_deadline = start + self.batch_timeout_s if self.batch_timeout_s else None
    results: list[VerifierResult | None] = [None] * len(items)
    queue = collections.deque(range(len(items)))
    restarts = recycles = 0
    while queue or any(w.task is not None for w in self._workers):
      self._fill()
      now = time.monotonic()
      if batch_deadline is not None and now >= batch_deadline:
        restarts += self._expire_batch(results, queue, now, start)
        break
      self._dispatch(items, results, queue, now)
      self._wait(batch_deadline)
      finished_recycles, died = self._collect(results)
      recycles += finished_recycles
      restarts += died
      restarts += self._expire_tasks(results, time.monotonic())
      self._check_startup(time.monotonic())
    final = [r if r is not None else error_result(0.0, "no result") for r in results]
    self.totals.update(worker_restarts=restarts, worker_recycles=recycles)
    metrics = result_metrics(final)
    for status in Status:
      self.totals[status.value] += int(metrics[status.value])
    wall = time.monotonic() - start
    metrics.update(batch_seconds=wall, worker_restarts=float(restarts),
                   worker_recycles=float(recycles),
                   checks_per_second=len(final) / wall if wall > 0 else 0.0)
    self.last_metrics = metrics
    return final

  def map_with_metrics(self, items: Sequence[Any]) -> tuple[list[VerifierResult],
                                                            dict[str, float]]:
    """`map` plus the batch's metrics (status counts, timings, restarts)."""
    results = self.map(items)
    return results, dict(self.last_metrics)

  def _dispatch(self, items, results, queue, now: float) -> None:
    for worker in list(self._workers):
      if not queue:
        return
      if not worker.ready or worker.task is not None:
        continue
      index = queue.popleft()
      try:
        worker.conn.send((index, items[index]))
      except (BrokenPipeError, EOFError, ConnectionError):
        queue.appendleft(index)  # The worker died idle: its replacement takes the task.
        self._kill_worker(worker)
        continue
      except Exception as e:  # pylint: disable=broad-except
        results[index] = error_result(0.0, f"item not sendable: {type(e).__name__}: {e}")
        continue
      worker.task, worker.task_started = index, now
      worker.deadline = now + self.task_timeout_s

  def _wait(self, batch_deadline: float | None) -> None:
    waiting = [w for w in self._workers if not w.ready or w.task is not None]
    if not waiting:
      return
    deadlines = [w.deadline for w in waiting if w.task is not None]
    deadlines += [w.started + self.startup_timeout_s for w in waiting if not w.ready]
    if batch_deadline is not None:
      deadlines.append(batch_deadline)
    timeout = max(0.0, min(deadlines) - time.monotonic())
    multiprocessing.connection.wait([w.conn for w in waiting], timeout=timeout)

  def _collect(self, results) -> tuple[int, int]:
    """Reads every message that has arrived; returns (recycled, died) worker counts."""
    recycled = died = 0
    for worker in list(self._workers):
      try:
        if not worker.conn.poll():
          continue
        message = worker.conn.recv()
      except (EOFError, OSError):
        if not worker.ready:
          worker.process.join(timeout=5.0)
          code = worker.process.exitcode
          self._kill_worker(worker)
          raise RuntimeError(f"verifier worker exited during start-up (exit code {code}); "
                             "is check_fn a module-level function importable in a fresh "
                             "interpreter?")
        died += 1
        if worker.task is not None:
          elapsed = time.monotonic() - worker.task_started
          code = worker.process.exitcode
          results[worker.task] = error_result(elapsed, f"worker died (exit code {code})")
        self._kill_worker(worker)
        continue
      if message[0] == "ready":
        worker.ready = True
      elif message[0] == "init_error":
        self._kill_worker(worker)
        raise RuntimeError(f"verifier worker initializer failed: {message[1]}")
      else:
        index, result = message
        if index == worker.task:
          results[index] = result
          worker.task = None
          worker.tasks_done += 1
          if worker.tasks_done >= self.max_tasks_per_worker:
            self._retire_worker(worker)
            recycled += 1
    return recycled, died

  def _expire_tasks(self, results, now: float) -> int:
    killed = 0
    for worker in list(self._workers):
      if worker.task is not None and now >= worker.deadline:
        results[worker.task] = timeout_result(
            now - worker.task_started, f"check exceeded {self.task_timeout_s:g} s")
        self._kill_worker(worker)
        killed += 1
    return killed

  def _expire_batch(self, results, queue, now: float, start: float) -> int:
    killed = 0
    for worker in list(self._workers):
      if worker.task is not None:
        results[worker.task] = timeout_result(
            now - worker.task_started, f"batch exceeded {self.batch_timeout_s:g} s")
        self._kill_worker(worker)
        killed += 1
    while queue:
      results[queue.popleft()] = timeout_result(
          0.0, f"batch exceeded {self.batch_timeout_s:g} s before the check started "
          f"({now - start:.2f} s)")
    return killed

  def _check_startup(self, now: float) -> None:
    for worker in list(self._workers):
      if not worker.ready and now - worker.started > self.startup_timeout_s:
        self._kill_worker(worker)
        raise RuntimeError(f"verifier worker did not start within {self.startup_timeout_s:g} s")

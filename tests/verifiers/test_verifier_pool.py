"""VerifierPool: deadlines, kill-and-rebuild, crashes, recycling, metrics, clean shutdown."""

import time

import psutil
import pytest

from bonjax.verifiers import processes
from bonjax.verifiers.base import Status, VerifierResult
from bonjax.verifiers.pool import VerifierPool, result_metrics
from tests.verifiers import pool_check_fns as fns


def _alive(pids):
  return [p for p in pids if processes.is_alive(p)]


def test_results_in_order_with_imports_once_per_worker():
  with VerifierPool(fns.echo, num_workers=2, task_timeout_s=10.0) as pool:
    results = pool.map(list(range(12)))
    assert [r.answer for r in results] == [str(i) for i in range(12)]
    assert [r.correct for r in results] == [i % 2 == 0 for i in range(12)]
    assert all(r.status == Status.OK for r in results)
    workers = {r.detail.split(":")[0] for r in results}
    assert workers <= {str(p) for p in pool.worker_pids()}
    # One import per worker: every result from one pid carries the same import stamp, and
    # that worker's call counter runs 1, 2, 3, ...
    by_pid = {}
    for r in results:
      pid, stamp, calls = r.detail.split(":")
      by_pid.setdefault(pid, []).append((stamp, int(calls)))
    for seen in by_pid.values():
      assert len({stamp for stamp, _ in seen}) == 1
      assert sorted(calls for _, calls in seen) == list(range(1, len(seen) + 1))
    assert pool.last_metrics["ok"] == 12 and pool.last_metrics["correct"] == 6
    assert pool.last_metrics["worker_restarts"] == 0


def test_task_timeout_kills_and_rebuilds_the_worker_while_the_batch_scores():
  items = [(0.0, 0), (60.0, 1), (0.0, 2), (0.0, 4), (60.0, 5), (0.0, 6)]
  with VerifierPool(fns.sleep_then_echo, num_workers=2, task_timeout_s=0.5) as pool:
    pool.map([(0.0, 0)])  # Workers are up: their start-up is not part of the timing below.
    before = set(pool.worker_pids())
    start = time.monotonic()
    results = pool.map(items)
    elapsed = time.monotonic() - start
    assert [r.status for r in results] == [Status.OK, Status.TIMEOUT, Status.OK, Status.OK,
                                           Status.TIMEOUT, Status.OK]
    for i in (1, 4):
      assert results[i] == VerifierResult(score=0.0, correct=False, status=Status.TIMEOUT,
                                          seconds=results[i].seconds,
                                          detail="check exceeded 0.5 s")
      assert 0.5 <= results[i].seconds < 2.0
    assert [results[i].correct for i in (0, 2, 3, 5)] == [True] * 4
    assert elapsed < 4.0
    metrics = pool.last_metrics
    assert metrics["timeout"] == 2 and metrics["ok"] == 4 and metrics["worker_restarts"] == 2
    assert not _alive(before - set(pool.worker_pids()))  # The hung workers are gone.
    assert pool.totals["timeout"] == 2


def test_timeout_kills_what_the_check_spawned():
  marker = "4321.125"
  with VerifierPool(fns.spawn_sleeper_and_hang, num_workers=1, task_timeout_s=1.0) as pool:
    results = pool.map([marker])
  assert results[0].status == Status.TIMEOUT
  time.sleep(0.1)
  leftovers = [p for p in psutil.process_iter(["cmdline"])
               if marker in " ".join(p.info["cmdline"] or [])]
  assert leftovers == []


def test_batch_deadline_times_out_running_and_queued_tasks():
  items = [(0.0, 0)] + [(60.0, i) for i in range(1, 3)] + [(0.0, 8), (0.0, 10)]
  with VerifierPool(fns.sleep_then_echo, num_workers=2, task_timeout_s=30.0,
                    batch_timeout_s=1.0) as pool:
    pool.map([(0.0, 0)])
    start = time.monotonic()
    results = pool.map(items)
    assert time.monotonic() - start < 3.0
    assert results[0].status == Status.OK
    assert [r.status for r in results[1:]] == [Status.TIMEOUT] * 4
    assert all(r.score == 0.0 and not r.correct for r in results[1:])
    # The pool still works after a blown batch.
    assert [r.answer for r in pool.map([(0.0, 3)])] == ["3"]


def test_raising_and_badly_typed_checks_become_errors():
  with VerifierPool(fns.raise_value_error, num_workers=1) as pool:
    (result,) = pool.map([7])
  assert result.status == Status.ERROR and not result.correct and result.score == 0.0
  assert result.detail == "ValueError: bad item 7"
  with VerifierPool(fns.return_wrong_type, num_workers=1) as pool:
    (result,) = pool.map([7])
  assert result.status == Status.ERROR and result.detail.startswith("check returned int")


def test_dead_worker_costs_only_its_task():
  with VerifierPool(fns.die_hard, num_workers=2, task_timeout_s=10.0) as pool:
    results = pool.map([1, 2, 3])
    assert [r.status for r in results] == [Status.ERROR] * 3
    assert all("worker died" in r.detail for r in results)
    assert pool.last_metrics["worker_restarts"] == 3
  with VerifierPool(fns.echo, num_workers=1) as pool:
    assert pool.map([2])[0].correct


def test_worker_memory_limit_turns_a_huge_allocation_into_an_error():
  with VerifierPool(fns.allocate, num_workers=1, worker_memory_bytes=1 << 30) as pool:
    big, small = pool.map([50 << 30, 1000])
  assert big.status == Status.ERROR and big.detail.startswith("MemoryError")
  assert small.status == Status.OK


def test_workers_are_recycled_after_max_tasks():
  with VerifierPool(fns.echo, num_workers=1, max_tasks_per_worker=3) as pool:
    results = pool.map(list(range(7)))
    pids = [r.detail.split(":")[0] for r in results]
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert pids[3] == pids[4] == pids[5] != pids[6]
    assert pool.last_metrics["worker_recycles"] == 2


def test_close_leaves_no_process_behind():
  me = psutil.Process()
  pool = VerifierPool(fns.echo, num_workers=2)
  pool.map([1, 2, 3])
  workers = pool.worker_pids()
  assert len(_alive(workers)) == 2
  pool.close()
  assert _alive(workers) == []
  assert not any(p.pid in workers for p in me.children(recursive=True))
  with pytest.raises(RuntimeError):
    pool.map([1])


def test_unimportable_check_function_fails_loudly():
  def local_check(item):
    return item
  with VerifierPool(local_check, num_workers=1) as pool:
    with pytest.raises(ValueError, match="must be a module-level function"):
      pool.map([1])


def test_validation_names_the_field():
  with pytest.raises(ValueError, match="num_workers=0"):
    VerifierPool(fns.echo, num_workers=0)
  with pytest.raises(ValueError, match="start_method='fork'"):
    VerifierPool(fns.echo, start_method="fork")
  with pytest.raises(ValueError, match="task_timeout_s=0"):
    VerifierPool(fns.echo, task_timeout_s=0)


def test_result_metrics_counts_exactly():
  results = [VerifierResult(1.0, True, Status.OK, seconds=0.5),
             VerifierResult(0.0, False, Status.TIMEOUT, seconds=2.0),
             VerifierResult(0.0, False, Status.UNPARSEABLE, seconds=0.1),
             VerifierResult(0.0, False, Status.OK, seconds=0.2)]
  metrics = result_metrics(results)
  assert metrics.pop("check_seconds_mean") == pytest.approx(0.7, rel=1e-12)
  assert metrics == {"ok": 2.0, "unparseable": 1.0, "timeout": 1.0, "error": 0.0,
                     "unscored": 0.0, "count": 4.0, "correct": 1.0, "check_seconds_max": 2.0}

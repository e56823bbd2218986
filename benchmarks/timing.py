"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
  """(first call seconds incl. compile, median seconds of `repeats` further calls).

  `fn` must block until its work is done (e.g. end in `jax.block_until_ready`).
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def xla_flops(compiled) -> float:
  """XLA's FLOP count of a compiled computation (a scanned body counts once)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", float("nan")))

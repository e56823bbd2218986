"""Markdown pieces of the protocol report: tables of means, of paired differences with their
intervals, of diagnostics and of co-scaling fits. Pure formatting of already computed values."""

from __future__ import annotations

import re
from typing import Mapping, Sequence

READING_START = "<!-- reading:start -->"
READING_END = "<!-- reading:end -->"
_READING = re.compile(re.escape(READING_START) + r".*?" + re.escape(READING_END), re.S)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def mean_std(values: Sequence[float], digits: int = 3) -> str:
  """"m ± s" over seeds (population std), "m" for one value."""
  import numpy as np
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def difference_cell(d: Mapping[str, float]) -> str:
  """"+0.012 [+0.004, +0.020]", in bold when the interval excludes zero."""
  text = f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
  return f"**{text}**" if d["excludes_zero"] else text


def difference_table(diffs: Mapping[str, Mapping[str, Mapping[int, Mapping[str, float]]]],
                     columns: Sequence[tuple[str, int]]) -> str:
  """One row per arm, one column per (metric, k): difference and 95% interval.

  Args:
    diffs: {arm: {metric: {k: Difference.to_dict()}}}.
    columns: (metric, k) pairs.
  """
  header = ["arm"] + [metric.replace("@k", f"@{k}") for metric, k in columns]
  rows = [[arm] + [difference_cell(d[metric][k]) for metric, k in columns]
          for arm, d in diffs.items()]
  return table(header, rows)


def findings(diffs: Mapping[str, Mapping[str, Mapping[int, Mapping[str, float]]]],
             against: str) -> list[str]:
  """One sentence per arm: where its interval against `against` is above / below zero."""
  out = []
  for arm, by_metric in diffs.items():
    above, below = [], []
    for metric, by_k in by_metric.items():
      for k, d in by_k.items():
        name = metric.replace("@k", f"@{k}")
        if d["excludes_zero"]:
          (above if d["diff"] > 0 else below).append(f"{name} ({d['diff']:+.3f})")
    parts = []
    if above:
      parts.append("above " + against + " at " + ", ".join(above))
    if below:
      parts.append("below at " + ", ".join(below))
    out.append(f"- **{arm}**: " + ("; ".join(parts) if parts else
                                    f"no difference from {against} excludes zero"))
  return out


def fit_table(fits: Mapping[str, Mapping[str, object]], ns: Sequence[int]) -> str:
  """Co-scaling fits: one row per (model, temperature) with a, b, RMSE and residuals per N."""
  header = ["model", "T", "a", "b", "RMSE"] + [f"res N={n}" for n in ns]
  rows = []
  for label, by_t in fits.items():
    for t, fit in by_t.items():
      if fit is None:
        rows.append([label, t, "n/a", "n/a", "n/a"] + ["" for _ in ns])
        continue
      residuals = ["" if r != r else f"{r:+.3f}" for r in fit["residuals"]]  # r != r: NaN
      rows.append([label, t, f"{fit['a']:.3f}", f"{fit['b']:.3f}", f"{fit['rmse']:.4f}"]
                  + residuals)
  return table(header, rows)


def keep_reading(new_text: str, old_text: str | None) -> str:
  """`new_text` with its reading section replaced by the one of `old_text` (hand-written
  interpretation survives regeneration)."""
  if not old_text:
    return new_text
  match = _READING.search(old_text)
  return _READING.sub(lambda _: match.group(0), new_text) if match else new_text

"""Scalar metrics to JSONL and TensorBoard event files (process 0 only)."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import numpy as np


def _to_float(value: Any) -> float:
  return float(np.asarray(value))


class MetricsWriter:
  """Appends `{"step": s, **metrics}` lines to `<workdir>/metrics.jsonl` and writes the same
  scalars to TensorBoard under `<workdir>/tensorboard`.

  Args:
    workdir: run directory.
    resume_step: the step the run starts from (0 for a fresh start): lines with a later step
      (written after the checkpoint the run resumes from) are dropped, so the file reads as
      one uninterrupted run; None keeps every line.
  """

  def __init__(self, workdir: str, resume_step: int | None = None):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if resume_step is not None and os.path.exists(self.path):
      self._truncate_after(resume_step)
    from tensorboardX import SummaryWriter  # Heavy import, only where we write.
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _truncate_after(self, step: int) -> None:
    """Keeps the rows up to `step`; a line cut short by a killed run is dropped too. The file
    is replaced atomically, so a kill during the rewrite loses nothing."""
    kept = []
    with open(self.path, encoding="utf-8") as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        if row.get("step", 0) <= step:
          kept.append(line if line.endswith("\n") else line + "\n")
    partial = self.path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(partial, self.path)

  def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
    """Writes scalar `metrics` at `step`; names get `prefix` (e.g. "eval/")."""
    if not self.enabled:
      return
    scalars = {f"{prefix}{k}": _to_float(v) for k, v in metrics.items()}
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps({"step": int(step), **scalars}) + "\n")
    for name, value in scalars.items():
      # TensorBoard tags allow no "@": pass@k is written as pass_at_k (JSONL keeps pass@k).
      self._tb.add_scalar(name.replace("@", "_at_"), value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """All records of `<workdir>/metrics.jsonl`, in file order."""
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

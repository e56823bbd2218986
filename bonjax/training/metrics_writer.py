"""Scalar metrics to JSONL, TensorBoard event files and, optionally, Weights & Biases
(process 0 only).

W&B is switched on by the config's `logging` section (`logging.wandb=True`, with
`logging.wandb_project` and `logging.wandb_run_name`); the run's config is logged with it and
every BoN evaluation adds its curve (a table and a line plot). The package is an extra
(`pip install "bonjax[wandb]"`); `WANDB_MODE=offline` keeps everything on disk.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from bonjax.training.config_validation import ConfigError

WANDB_INSTALL = "pip install \"bonjax[wandb]\""
# Holds the W&B run id, so a resumed training run keeps logging to the same W&B run.
WANDB_ID_FILE = "wandb_run_id"


def _to_float(value: Any) -> float:
  return float(np.asarray(value))


def wandb_enabled(config: ml_collections.ConfigDict | None) -> bool:
  """Whether `config` asks for W&B logging (`logging.wandb`; configs without a `logging`
  section log to JSONL and TensorBoard only)."""
  section = None if config is None else config.get("logging")
  return bool(section is not None and section.get("wandb", False))


def import_wandb() -> Any:
  """The wandb module.

  Raises:
    ConfigError: wandb is not installed; the message names the extra that installs it.
  """
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(f"logging.wandb=True: the wandb package is not installed; install the "
                      f"extra: {WANDB_INSTALL}") from None
  return wandb


def check_logging_config(config: ml_collections.ConfigDict) -> None:
  """Fails at start-up, before anything is written, when W&B is asked for but missing."""
  if wandb_enabled(config):
    import_wandb()


def _wandb_run_id(workdir: str) -> str:
  """The workdir's W&B run id, made (and stored) on the first start."""
  path = os.path.join(workdir, WANDB_ID_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return f.read().strip()
  run_id = secrets.token_hex(6)  # W&B run ids: lower-case letters and digits.
  with open(path, "w", encoding="utf-8") as f:
    f.write(run_id + "\n")
  return run_id


def start_wandb_run(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """Starts (or, for a resumed workdir, continues) the W&B run of `config`, logging the config.

  Args:
    config: the run config; `logging.wandb_project` and `logging.wandb_run_name` ("" names
      the run after the workdir) name the W&B run.
    workdir: run directory; W&B's local files go under `<workdir>/wandb`.

  Returns:
    The wandb Run.
  """
  wandb = import_wandb()
  section = config.logging
  name = section.get("wandb_run_name") or os.path.basename(os.path.abspath(workdir))
  return wandb.init(project=section.get("wandb_project") or "bonjax", name=name,
                    dir=workdir, config=config.to_dict(), id=_wandb_run_id(workdir),
                    resume="allow")


def bon_curve_table(curve: Mapping[str, Any]) -> tuple[list[str], list[list[float | None]]]:
  """A BoN curve as table columns and rows: k, then each metric's mean and standard error."""
  metrics = list(curve["metrics"])
  columns = ["k"] + [c for m in metrics for c in (m, f"{m}_stderr")]
  rows = [[int(k)] + [v for m in metrics for v in (curve["metrics"][m]["mean"][i],
                                                    curve["metrics"][m]["stderr"][i])]
          for i, k in enumerate(curve["ks"])]
  return columns, rows


class MetricsWriter:
  """Appends `{"step": s, **metrics}` lines to `<workdir>/metrics.jsonl` and writes the same
  scalars to TensorBoard under `<workdir>/tensorboard` (and to W&B when the config asks).

  Args:
    workdir: run directory.
    resume_step: the step the run starts from (0 for a fresh start): lines with a later step
      (written after the checkpoint the run resumes from) are dropped, so the file reads as
      one uninterrupted run; None keeps every line.
    config: the run config; its `logging` section switches W&B on (None: off).
  """

  def __init__(self, workdir: str, resume_step: int | None = None,
               config: ml_collections.ConfigDict | None = None):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    self._wandb_run = None
    if not self.enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if resume_step is not None and os.path.exists(self.path):
      self._truncate_after(resume_step)
    from tensorboardX import SummaryWriter  # Heavy import, only where we write.
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    if wandb_enabled(config):
      self._wandb_run = start_wandb_run(config, workdir)

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
    if self._wandb_run is not None:
      self._wandb_run.log(scalars, step=int(step))

  def write_bon_curve(self, step: int, curve: Mapping[str, Any], prefix: str = "eval/") -> None:
    """Logs a BoN curve (`bonjax.bon.bon_curve`) to W&B as a table and a line plot of each
    metric against k (JSONL and TensorBoard hold its points as scalars already)."""
    if not self.enabled or self._wandb_run is None:
      return
    import wandb  # pylint: disable=g-import-not-at-top
    columns, rows = bon_curve_table(curve)
    metrics = list(curve["metrics"])
    plot = wandb.plot.line_series(
        xs=[int(k) for k in curve["ks"]], ys=[curve["metrics"][m]["mean"] for m in metrics],
        keys=metrics, title=f"BoN curve at step {int(step)}", xname="k")
    self._wandb_run.log({f"{prefix}bon_curve": wandb.Table(columns=columns, data=rows),
                         f"{prefix}bon_curve_plot": plot}, step=int(step))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._wandb_run is not None:
      self._wandb_run.finish()
      self._wandb_run = None


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """All records of `<workdir>/metrics.jsonl`, in file order."""
  path = os.path.join(workdir, "metrics.jsonl")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]

"""Sampling the temperature x N co-scaling grid of a checkpoint: one evaluation pass of n_max
samples per prompt at each temperature (paired across temperatures and models through
`eval.common_seed`), then `bonjax.bon.coscaling` turns the per-prompt arrays into surfaces."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from bonjax.bon import coscaling, curves
from bonjax.training import evaluation
from bonjax.training.run_setup import build_run_setup


def temperature_name(temperature: float) -> str:
  """File stem of one temperature's evaluation, e.g. "T0.7"."""
  return f"T{temperature:g}"


def grid_config(config: ml_collections.ConfigDict, temperature: float, num_prompts: int,
                num_samples: int, common_seed: int) -> ml_collections.ConfigDict:
  """`config` with its evaluation set to one grid pass (no KL, curves up to n)."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.eval.temperature = float(temperature)
  c.eval.num_prompts = int(num_prompts)
  c.eval.num_samples = int(num_samples)
  c.eval.common_seed = int(common_seed)
  c.eval.max_k = 0
  return c


def sample_grid(config: ml_collections.ConfigDict, params: Any, step: int,
                temperatures: Sequence[float], num_prompts: int, num_samples: int,
                out_dir: str, common_seed: int = 0) -> dict[float, dict[str, np.ndarray]]:
  """Evaluates `params` at every temperature, reusing finished passes in `out_dir`.

  Args:
    config: the run config (model, task, verifier).
    params: the checkpoint's parameters.
    step: its step (recorded in the reports).
    temperatures: sampling temperatures (> 0).
    num_prompts: held-out prompts.
    num_samples: n_max samples per prompt (the largest N of the grid).
    out_dir: where `T<t>.json` / `T<t>.npz` go.
    common_seed: evaluation random numbers (the same for every model compared).

  Returns:
    temperature -> per-prompt arrays.
  """
  arrays = {}
  setup = None
  for t in temperatures:
    path = os.path.join(out_dir, f"{temperature_name(t)}.npz")
    if not os.path.exists(path):
      setup = build_run_setup(grid_config(config, t, num_prompts, num_samples, common_seed))
      report = evaluation.evaluate_bon(setup, params, step, progress=False)
      evaluation.write_report(report, out_dir, temperature_name(t))
    with np.load(path) as data:
      arrays[float(t)] = {k: data[k] for k in data.files}
  return arrays


def grid_summary(arrays: dict[float, dict[str, np.ndarray]], out_dir: str) -> dict:
  """Co-scaling summary for N = 1, 2, 4, ..., n_max; written to `<out_dir>/coscaling.json`."""
  n_max = next(iter(arrays.values()))["correct"].shape[1]
  summary = coscaling.coscaling_summary(arrays, curves.default_ks(n_max))
  with open(os.path.join(out_dir, "coscaling.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  return summary

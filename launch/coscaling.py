r"""Temperature x N co-scaling grid of one checkpoint: pass@N and Best-of-N accuracy for every
(T, N), the best temperature T*(N), and the fit pass@N ~ exp(a * N^b) per temperature.

  python -m launch.coscaling --config=experiments/arith3_arms.py:pkpo \
      --checkpoint=workdir/protocol/arms/pkpo/seed_0 --out=workdir/coscaling_pkpo \
      --temperatures=0.1,0.4,0.7,1.0,1.3,1.5 --num_prompts=300 --num_samples=64

One sampling pass of --num_samples per prompt at each temperature serves every N <= it
(unbiased estimators). Writes <out>/T<t>.json + .npz (per temperature), coscaling.json
(surfaces, T*(N), fits with residuals) and heatmap_pass.png / heatmap_bon_acc.png.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)

import numpy as np  # noqa: E402

from bonjax.training import coscaling_grid, loop  # noqa: E402
from bonjax.training.run_setup import build_run_setup  # noqa: E402
from launch import protocol_figures  # noqa: E402
from launch.logging_setup import quiet_library_logs  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_REPO_ROOT, "experiments", "arith3_sft.py"),
    "Config of the checkpoint's run (model, task, verifier).", lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Workdir whose latest checkpoint is gridded.")
_OUT = flags.DEFINE_string("out", "workdir/coscaling", "Output directory.")
_TEMPERATURES = flags.DEFINE_list("temperatures", ["0.1", "0.4", "0.7", "1.0", "1.3", "1.5"],
                                  "Sampling temperatures (> 0).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 300, "Held-out prompts.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 64, "Samples per prompt (the largest N).")
_COMMON_SEED = flags.DEFINE_integer("common_seed", 0, "Evaluation random numbers (the same "
                                    "for every model compared).")


def write_heatmaps(summary: dict, out_dir: str, title: str) -> list[str]:
  """heatmap_<metric>.png with T*(N) for pass@N and bon_acc@N; returns the paths."""
  paths = []
  for metric, stem in (("pass@k", "pass"), ("bon_acc@k", "bon_acc")):
    path = os.path.join(out_dir, f"heatmap_{stem}.png")
    protocol_figures.plot_heatmap(np.asarray(summary["surfaces"][metric]),
                                  summary["temperatures"], summary["ns"],
                                  summary["best_temperature"][metric], path,
                                  f"{title}: {metric.replace('@k', '@N')}")
    paths.append(path)
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _CHECKPOINT.value:
    raise app.UsageError("--checkpoint is required (a workdir with a checkpoint)")
  quiet_library_logs()
  config = _CONFIG.value
  temps = [float(t) for t in _TEMPERATURES.value]
  if any(t <= 0 for t in temps):
    raise app.UsageError(f"--temperatures={_TEMPERATURES.value}: each must be > 0")
  params, step = loop.restore_params(build_run_setup(config), _CHECKPOINT.value)
  os.makedirs(_OUT.value, exist_ok=True)
  arrays = coscaling_grid.sample_grid(config, params, step, temps, _NUM_PROMPTS.value,
                                      _NUM_SAMPLES.value, _OUT.value, _COMMON_SEED.value)
  summary = coscaling_grid.grid_summary(arrays, _OUT.value)
  write_heatmaps(summary, _OUT.value, os.path.basename(os.path.normpath(_CHECKPOINT.value)))
  print("N:        " + " ".join(f"{n:>5d}" for n in summary["ns"]))
  for metric in ("pass@k", "bon_acc@k"):
    print(f"T*(N) {metric}: " + " ".join(f"{t:>5g}" for t in summary["best_temperature"][metric]))
  for t, fit in summary["fits"].items():
    text = "undefined" if fit is None else f"a={fit['a']:.3f} b={fit['b']:.3f} rmse={fit['rmse']:.4f}"
    print(f"T={t}: pass@N ~ exp(a N^b): {text}")
  print(f"wrote {_OUT.value}/coscaling.json and heatmaps")


if __name__ == "__main__":
  app.run(main)

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
import types

from absl import app, flags
from ml_collections import config_flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)


from bonjax.training import coscaling_grid, loop  # noqa: E402
from bonjax.training.run_setup import build_run_setup  # noqa: E402
from launch import protocol_figures  # noqa: E402
from launch.logging_setup import quiet_library_logs  # noqa: E402

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> types.SimpleNamespace:
  """Defines this entry point's flags; called only when it runs, since absl flags are
  process-global and other entry points define some of the same names (e.g. --config)."""
  define = lambda kind, *args: getattr(flags, "DEFINE_" + kind)(*args, flag_values=flag_values)
  return types.SimpleNamespace(
      config=config_flags.DEFINE_config_file(
          "config", os.path.join(_REPO_ROOT, "experiments", "arith3_sft.py"),
          "Config of the checkpoint's run (model, task, verifier).", lock_config=False,
          flag_values=flag_values),
      checkpoint=define("string", "checkpoint", None,
                        "Workdir whose latest checkpoint is gridded."),
      out=define("string", "out", "workdir/coscaling", "Output directory."),
      temperatures=define("list", "temperatures", ["0.1", "0.4", "0.7", "1.0", "1.3", "1.5"],
                          "Sampling temperatures (> 0)."),
      num_prompts=define("integer", "num_prompts", 300, "Held-out prompts."),
      num_samples=define("integer", "num_samples", 64, "Samples per prompt (the largest N)."),
      common_seed=define("integer", "common_seed", 0,
                         "Evaluation random numbers (the same for every model compared)."),
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS.checkpoint.value:
    raise app.UsageError("--checkpoint is required (a workdir with a checkpoint)")
  quiet_library_logs()
  config = FLAGS.config.value
  temps = [float(t) for t in FLAGS.temperatures.value]
  if any(t <= 0 for t in temps):
    raise app.UsageError(f"--temperatures={FLAGS.temperatures.value}: each must be > 0")
  params, step = loop.restore_params(build_run_setup(config), FLAGS.checkpoint.value)
  os.makedirs(FLAGS.out.value, exist_ok=True)
  arrays = coscaling_grid.sample_grid(config, params, step, temps, FLAGS.num_prompts.value,
                                      FLAGS.num_samples.value, FLAGS.out.value,
                                      FLAGS.common_seed.value)
  summary = coscaling_grid.grid_summary(arrays, FLAGS.out.value)
  protocol_figures.write_heatmaps(summary, FLAGS.out.value,
                                  os.path.basename(os.path.normpath(FLAGS.checkpoint.value)))
  print("N:        " + " ".join(f"{n:>5d}" for n in summary["ns"]))
  for metric in ("pass@k", "bon_acc@k"):
    print(f"T*(N) {metric}: " + " ".join(f"{t:>5g}" for t in summary["best_temperature"][metric]))
  for t, fit in summary["fits"].items():
    text = ("undefined" if fit is None
            else f"a={fit['a']:.3f} b={fit['b']:.3f} rmse={fit['rmse']:.4f}")
    print(f"T={t}: pass@N ~ exp(a N^b): {text}")
  print(f"wrote {FLAGS.out.value}/coscaling.json and heatmaps")


if __name__ == "__main__":
  FLAGS = define_flags()
  app.run(main)

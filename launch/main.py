r"""bonjax entry point: train, evaluate or sample, from an ml_collections config file.

With no flags it runs the quickstart (SFT of the tiny model on arithmetic, then a BoN
evaluation) into ./workdir/quickstart:

  python -m launch.main

Any config field can be overridden:

  python -m launch.main --config=experiments/quickstart.py --workdir=/tmp/run \
      --config.train.num_steps=500 --config.eval.num_samples=32

Modes: train (resumes from the latest checkpoint in --workdir, evaluates at the end), eval
(BoN evaluation of the latest checkpoint), sample (prints completions of a few prompts).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:  # Lets `python launch/main.py` import bonjax and experiments.
  sys.path.insert(0, _REPO_ROOT)

from bonjax.training import loop  # noqa: E402
from launch.logging_setup import quiet_library_logs  # noqa: E402
from bonjax.training.config_validation import ConfigError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_REPO_ROOT, "experiments", "quickstart.py"),
    "Experiment config file (a Python file with get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory for checkpoints, metrics and reports "
    "(default: ./workdir/<config file name>).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")

_MODES = {"train": loop.train, "eval": loop.evaluate, "sample": loop.sample}


def default_workdir(config_path: str) -> str:
  name = os.path.splitext(os.path.basename(config_path.split(":")[0]))[0]
  return os.path.join("workdir", name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_library_logs()
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].config_filename)
  logging.info("mode=%s workdir=%s", _MODE.value, os.path.abspath(workdir))
  try:
    result = _MODES[_MODE.value](_CONFIG.value, workdir)
  except (ConfigError, FileNotFoundError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if _MODE.value in ("train", "eval") and "curve" in result:
    curve = result["curve"]
    print(json.dumps({"step": result["step"], "ks": curve["ks"],
                      **{m: [round(v, 4) for v in d["mean"]] for m, d in curve["metrics"].items()}},
                     indent=1))
    print(f"report: {os.path.join(workdir, 'eval.json')}  plot: {os.path.join(workdir, 'bon_curve.png')}")


if __name__ == "__main__":
  app.run(main)

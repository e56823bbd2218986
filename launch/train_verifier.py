r"""Trains a learned verifier (outcome reward model) on a policy's own samples and reports it
as a Best-of-N selector against oracle and random selection.

With no flags it trains the ORM of experiments/learned_verifier.py on the quickstart policy
(run `python -m launch.main` first) into ./workdir/learned_verifier:

  python -m launch.train_verifier
  python -m launch.train_verifier --config.reward_model.train.num_steps=200 --workdir=/tmp/orm

Writes reward_model.json + params/ (use with --config.verifier.kind=learned
--config.verifier.checkpoint=<workdir>), verifier_report.json (AUC, BoN curves),
bon_selection.png and metrics (JSONL, TensorBoard).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)

from bonjax.training import reward_model  # noqa: E402
from bonjax.training.config_validation import ConfigError  # noqa: E402
from launch import multihost  # noqa: E402
from launch.logging_setup import quiet_library_logs  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_REPO_ROOT, "experiments", "learned_verifier.py"),
    "Experiment config file with a reward_model section.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "workdir/learned_verifier",
                               "Directory of the trained reward model and its report.")
multihost.define_flags()


def _summary(report: dict) -> str:
  rows = ["| k | learned | oracle (pass@k) | random |", "|---|---|---|---|"]
  curves = report["curves"]
  for i, k in enumerate(curves["learned"]["ks"]):
    cells = [f"{curves[s]['metrics']['bon_acc@k']['mean'][i]:.3f}"
             for s in ("learned", "oracle", "random")]
    rows.append(f"| {k} | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  multihost.initialize(multihost.flag_values_of())
  quiet_library_logs()
  try:
    report = reward_model.train_reward_model(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, FileNotFoundError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if not multihost.is_writer():  # Process 0 reports.
    return
  auc, within = (("undefined" if v is None else f"{v:.3f}")
                 for v in (report["auc"], report["within_prompt_auc"]))
  print(f"AUC {auc} (within prompts {within})  accuracy {report['accuracy']:.3f}  "
        f"(held-out positive rate {report['positive_rate']:.3f})")
  print("BoN accuracy@k by selection:\n" + _summary(report))
  print(f"wrote {os.path.join(_WORKDIR.value, 'verifier_report.json')} and bon_selection.png")


if __name__ == "__main__":
  app.run(main)

r"""Sweep of BoN-aware fine-tuning algorithms x seeds on the arithmetic task, with a comparison
table (markdown) and plots.

Every algorithm starts from the same SFT checkpoint (`init_from` of experiments/bon_common.py,
by default the quickstart's), so run the main job first:

  python -m launch.main                       # SFT checkpoint in workdir/quickstart
  python -m launch.sweep --seeds=0,1          # all algorithms, 2 seeds each
  python -m launch.sweep --algorithms=rl_s,bon_rl_s --seeds=0 --num_steps=50

A comparison protocol (warm start, verifier, arms x seeds, paired held-out evaluations,
co-scaling grid and docs/results.md; see experiments/arith3_protocol.py):

  python -m launch.sweep --protocol=experiments/arith3_protocol.py:one_hour \
      --root=workdir/protocol --report_dir=docs
  python -m launch.sweep --protocol=experiments/math_jsonl_protocol.py:accelerator \
      --root=workdir/math_protocol --report_dir=workdir/math_protocol/report   # MATH, SmolLM2

SIGTERM (preemption) checkpoints the run in progress and stops the sweep with status 3;
rerunning the same command resumes it.

An entry of --algorithms is an experiments/ module, optionally with its config argument after
":" (as `--config=experiments/<module>.py:<argument>`), e.g. the SmolLM2 comparison:

  python -m launch.sweep --root=workdir/smollm2_sweep --seeds=0 \
      --algorithms=smollm2_finetune:rl_s,smollm2_finetune:bon_rl_s

Finished runs are skipped, so an interrupted sweep continues where it stopped. Writes, under
--root: <algorithm>/seed_<s>/ (each run), start/eval.json (the shared starting checkpoint,
evaluated the same way), results.md, pass_at_k.png, bon_acc_at_k.png, reward_vs_kl.png.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from absl import app, flags, logging

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
  sys.path.insert(0, _REPO_ROOT)

import numpy as np  # noqa: E402

from bonjax.training import evaluation, loop  # noqa: E402
from bonjax.training.run_setup import build_run_setup  # noqa: E402
from launch import multihost, protocol_run  # noqa: E402
from launch.logging_setup import quiet_library_logs  # noqa: E402

# Experiment files of the sweep, baselines first.
ALGORITHMS = ("sft", "rft", "sft_best_of_n", "rl_s", "rl_v", "bon_sft", "bon_rl_s", "bon_rl_v",
              "bon_rlb", "bon_rlb_p", "pkpo", "loo_passk", "vbon", "bond", "j_bond")
DISTILLATION = ("vbon", "bond", "j_bond")

_ROOT = flags.DEFINE_string("root", "workdir/sweep", "Directory of the sweep's runs and reports.")
_ALGORITHMS = flags.DEFINE_list("algorithms", list(ALGORITHMS),
                                "Experiments to run: <module of experiments/>[:<config argument>].")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Seeds per algorithm.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", None, "Override train.num_steps of every run.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only aggregate finished runs.")
multihost.define_flags()
_PROTOCOL = flags.DEFINE_string(
    "protocol", None, "Run a comparison protocol instead, e.g. "
    "experiments/arith3_protocol.py:one_hour (see launch/protocol_run.py).")
_SKIP_ARMS = flags.DEFINE_list("skip_arms", [], "--protocol: arms left out of this run.")
_STAGES = flags.DEFINE_list("stages", [], "--protocol: run only these stages (default: all of "
                            "launch/protocol_run.STAGES), e.g. arms.")
_REPORT_DIR = flags.DEFINE_string("report_dir", None, "--protocol: where results.md and its "
                                  "PNGs go (default: --root).")


def experiment_config(name: str, seed: int):
  """The config of experiments/<module>.py (`name` = "<module>[:<argument>]") with `seed` (and
  the step override)."""
  module, _, argument = name.partition(":")
  get_config = importlib.import_module(f"experiments.{module}").get_config
  config = get_config(argument) if argument else get_config()
  config.seed = seed
  if _NUM_STEPS.value is not None:
    config.train.num_steps = _NUM_STEPS.value
  return config


def run_dir(name: str, seed: int) -> str:
  return os.path.join(_ROOT.value, name.replace(":", "_"), f"seed_{seed}")


def load_report(workdir: str) -> dict | None:
  path = os.path.join(workdir, "eval.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def evaluate_start(name: str) -> dict:
  """Evaluates the shared starting checkpoint with the sweep's evaluation settings."""
  workdir = os.path.join(_ROOT.value, "start")
  report = load_report(workdir)
  if report is None:
    config = experiment_config(name, 0)
    setup = build_run_setup(config)
    params, step = loop.restore_params(setup, config.init_from)
    report = evaluation.evaluate_bon(setup, params, step)
    if multihost.is_writer():
      evaluation.write_report(report, workdir)
  return report


def metric_at(report: dict, metric: str, k: int) -> float:
  curve = report["curve"]
  return curve["metrics"][metric]["mean"][curve["ks"].index(k)]


def summary_row(reports: list[dict], n: int) -> dict[str, tuple[float, float]]:
  """Mean and standard deviation over seeds of the table's columns."""
  columns = {
      "pass@1": lambda r: metric_at(r, "pass@k", 1),
      f"pass@{n}": lambda r: metric_at(r, "pass@k", n),
      f"bon_acc@{n}": lambda r: metric_at(r, "bon_acc@k", n),
      f"maj@{n}": lambda r: metric_at(r, "maj@k", n),
      "KL to start": lambda r: r["diversity"].get("kl_to_reference", 0.0),
      "entropy/token": lambda r: r["diversity"]["entropy_per_token"],
      "distinct answers": lambda r: r["diversity"]["distinct_answers_per_prompt"],
  }
  return {name: (float(np.mean([f(r) for r in reports])),
                 float(np.std([f(r) for r in reports]))) for name, f in columns.items()}


def markdown_table(rows: dict[str, dict[str, tuple[float, float]]],
                   runs: dict[str, int]) -> str:
  """One line per algorithm: mean ± std over its `runs[algorithm]` runs (the mean alone for
  one run)."""
  names = list(next(iter(rows.values())))
  lines = [f"| algorithm | runs | {' | '.join(names)} |", "|---" * (len(names) + 2) + "|"]
  for algorithm, row in rows.items():
    several = runs[algorithm] > 1
    cells = [f"{m:.3f} ± {s:.3f}" if several else f"{m:.3f}" for m, s in row.values()]
    lines.append(f"| {algorithm} | {runs[algorithm]} | {' | '.join(cells)} |")
  return "\n".join(lines)


def plot_metric_curves(results: dict[str, list[dict]], metric: str, path: str) -> None:
  """Mean over seeds of `metric` vs k, one line per algorithm."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  figure = Figure(figsize=(8, 5), dpi=120)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  for i, (algorithm, reports) in enumerate(results.items()):
    ks = reports[0]["curve"]["ks"]
    mean = np.mean([r["curve"]["metrics"][metric]["mean"] for r in reports], axis=0)
    style = "--" if algorithm == "start" else "-"
    axes.plot(ks, mean, style, marker="o", markersize=3, color=f"C{i % 10}", label=algorithm)
  axes.set_xscale("log", base=2)
  axes.set_xlabel("k")
  axes.set_ylabel(metric)
  axes.set_title(f"{metric} on held-out arithmetic (mean over seeds)")
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7, ncol=2)
  figure.savefig(path)


def plot_reward_vs_kl(results: dict[str, list[dict]], path: str) -> None:
  """Single-sample reward (pass@1) vs KL to the starting policy, one point per run."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  figure = Figure(figsize=(7, 5), dpi=120)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  for i, (algorithm, reports) in enumerate(results.items()):
    kl = [r["diversity"].get("kl_to_reference", 0.0) for r in reports]
    reward = [metric_at(r, "pass@k", 1) for r in reports]
    marker = "*" if algorithm in DISTILLATION else ("s" if algorithm == "start" else "o")
    axes.scatter(kl, reward, marker=marker, s=90 if marker == "*" else 30, color=f"C{i % 10}",
                 label=algorithm)
  axes.set_xlabel("KL(policy || start) per sequence (nats)")
  axes.set_ylabel("reward of one sample (pass@1)")
  axes.set_title("Reward vs KL (stars: BoN distillation methods)")
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7, ncol=2)
  figure.savefig(path)


def main(argv):
  del argv
  multihost.initialize(multihost.flag_values_of())
  quiet_library_logs()
  if _PROTOCOL.value:
    from launch import protocol_report
    protocol = protocol_run.load_protocol(_PROTOCOL.value)
    protocol.arms = tuple(a for a in protocol.arms if a not in _SKIP_ARMS.value)
    if not _REPORT_ONLY.value:
      try:
        protocol_run.run(protocol, _ROOT.value, _STAGES.value or None)
      except protocol_run.Preempted as e:
        print(f"preempted: {e}", file=sys.stderr)
        sys.exit(3)  # launch.main's status for a preempted run.
      if _STAGES.value:
        return
    # The command that regenerates the report from scratch (a --report_only rerun included).
    command = "python -m launch.sweep " + " ".join(
        a for a in sys.argv[1:] if a not in ("--report_only", "--report_only=true"))
    path = protocol_report.write_report(protocol, _ROOT.value, _REPORT_DIR.value or _ROOT.value,
                                        command)
    print(f"wrote {path}")
    return
  seeds = [int(s) for s in _SEEDS.value]
  for name in _ALGORITHMS.value:
    try:
      experiment_config(name, 0)
    except (ImportError, ValueError) as e:
      raise app.UsageError(f"--algorithms: {name!r}: {e}; the sweep's own: {ALGORITHMS}")
  results: dict[str, list[dict]] = {"start": [evaluate_start(_ALGORITHMS.value[0])]}
  for name in _ALGORITHMS.value:
    for seed in seeds:
      workdir = run_dir(name, seed)
      report = load_report(workdir)
      if report is None and not _REPORT_ONLY.value:
        logging.info("Running %s seed %d in %s", name, seed, workdir)
        try:
          report = protocol_run.train(experiment_config(name, seed), workdir)
        except protocol_run.Preempted as e:
          print(f"preempted: {e}", file=sys.stderr)
          sys.exit(3)  # launch.main's status for a preempted run.
      if report is not None:
        results.setdefault(name, []).append(report)
  n = results["start"][0]["curve"]["ks"][-1]
  rows = {name: summary_row(reports, n) for name, reports in results.items()}
  table = markdown_table(rows, {name: len(reports) for name, reports in results.items()})
  if not multihost.is_writer():  # Process 0 writes the sweep's report and plots.
    return
  os.makedirs(_ROOT.value, exist_ok=True)
  with open(os.path.join(_ROOT.value, "results.md"), "w", encoding="utf-8") as f:
    f.write(f"Held-out arithmetic, {results['start'][0]['num_prompts']} prompts, n = {n} samples "
            f"per prompt; mean ± std over the runs (seeds {seeds}).\n\n{table}\n")
  plot_metric_curves(results, "pass@k", os.path.join(_ROOT.value, "pass_at_k.png"))
  plot_metric_curves(results, "bon_acc@k", os.path.join(_ROOT.value, "bon_acc_at_k.png"))
  plot_reward_vs_kl(results, os.path.join(_ROOT.value, "reward_vs_kl.png"))
  print(table)
  print(f"\nwrote {_ROOT.value}/results.md and plots")


if __name__ == "__main__":
  app.run(main)

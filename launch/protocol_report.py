"""The protocol report: reads what launch/protocol_run.py wrote under the root and writes
results.md with its PNGs (tables of held-out metrics, paired differences against the baseline
with 95% bootstrap intervals, BoN curves with bands, dev-set training curves, diagnostics, the
temperature x N co-scaling heatmaps and fits, and the measured wall time).

A hand-written reading between the markers of protocol_markdown survives regeneration.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import ml_collections
import numpy as np

from bonjax.bon import paired_stats
from bonjax.training.metrics_writer import read_metrics
from launch import protocol_figures as figures
from launch import protocol_markdown as md
from launch import protocol_run

METRICS = ("pass@k", "bon_acc@k", "maj@k")
# Training metrics averaged over the logged steps of each run, when the objective logs them.
DIAGNOSTICS = ("frac_zero_signal_groups", "mean_abs_weight", "weight_std", "ppo_clip_frac",
               "weight_clip_frac", "kl", "grad_norm")


def _load_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _load_npz(path: str) -> dict[str, np.ndarray]:
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


class ProtocolData:
  """Evaluations of every model of a finished protocol, with cached per-prompt values."""

  def __init__(self, protocol: ml_collections.ConfigDict, root: str):
    self.protocol, self.root = protocol, root
    self.models = protocol_run.models(protocol, root)
    self._values: dict[tuple, np.ndarray] = {}

  def report(self, label: str, t: float) -> dict:
    return _load_json(os.path.join(self.models[label], f"{protocol_run.heldout_name(t)}.json"))

  def arrays(self, label: str, t: float) -> dict[str, np.ndarray]:
    return _load_npz(os.path.join(self.models[label], f"{protocol_run.heldout_name(t)}.npz"))

  def labels(self, arm: str) -> list[str]:
    return ["start"] if arm == "start" else [f"{arm}/seed_{s}" for s in self.protocol.seeds]

  def values(self, arm: str, t: float, metric: str, k: int) -> np.ndarray:
    """[seeds, prompts] per-prompt estimates of `metric` at k."""
    key = (arm, t, metric, k)
    if key not in self._values:
      self._values[key] = np.stack([paired_stats.per_prompt_values(self.arrays(l, t), metric, k)
                                    for l in self.labels(arm)])
    return self._values[key]

  def difference(self, arm: str, other: str, t: float, metric: str, k: int) -> dict:
    e = self.protocol.eval
    d = paired_stats.paired_difference(self.values(arm, t, metric, k),
                                       self.values(other, t, metric, k),
                                       e.bootstrap_resamples, seed=0)
    return d.to_dict()


def table_ks(protocol: ml_collections.ConfigDict) -> list[int]:
  """The k columns of the difference tables: 1, N (the training target) and max_k."""
  return sorted(k for k in {1, protocol.target_n, protocol.eval.max_k} if k <= protocol.eval.max_k)


def difference_columns(protocol: ml_collections.ConfigDict) -> list[tuple[str, int]]:
  """(metric, k) columns of the difference tables: pass@k at every table k, bon_acc@k for
  k > 1 (bon_acc@1 is pass@1), maj@N only (the exact maj@k estimator costs seconds per
  model, so the report computes it at the training target alone)."""
  ks = table_ks(protocol)
  n = min(protocol.target_n, protocol.eval.max_k)
  return ([("pass@k", k) for k in ks] + [("bon_acc@k", k) for k in ks if k > 1]
          + [("maj@k", n)])


def metrics_table(data: ProtocolData, t: float, ks: Sequence[int]) -> str:
  """Held-out metrics per arm: mean ± std over seeds."""
  header = ["arm", "seeds"] + [m.replace("@k", f"@{k}") for m in METRICS for k in ks] + [
      "KL to start", "entropy/token", "distinct answers"]
  rows = []
  for arm in ("start",) + tuple(data.protocol.arms):
    reports = [data.report(l, t) for l in data.labels(arm)]
    row = [arm, str(len(reports))]
    for metric in METRICS:
      for k in ks:
        row.append(md.mean_std([r["curve"]["metrics"][metric]["mean"][r["curve"]["ks"].index(k)]
                                for r in reports]))
    for key in ("kl_to_reference", "entropy_per_token", "distinct_answers_per_prompt"):
      row.append(md.mean_std([r["diversity"].get(key, 0.0) for r in reports]))
    rows.append(row)
  return md.table(header, rows)


def differences(data: ProtocolData, arms: Sequence[str], against: str, t: float,
                columns: Sequence[tuple[str, int]]) -> dict[str, dict[str, dict[int, dict]]]:
  """{arm: {metric: {k: difference}}} of arm − `against` at every column."""
  out: dict[str, dict[str, dict[int, dict]]] = {}
  for arm in arms:
    out[arm] = {}
    for metric, k in columns:
      out[arm].setdefault(metric, {})[k] = data.difference(arm, against, t, metric, k)
  return out


def bands(data: ProtocolData, t: float, metric: str) -> tuple[list[int], dict[str, dict]]:
  """Mean and 95% bootstrap band (prompts and seeds) of `metric` at every k, per arm."""
  ks = data.report("start", t)["curve"]["ks"]
  out = {}
  for arm in ("start",) + tuple(data.protocol.arms):
    cells = [paired_stats.mean_with_interval(data.values(arm, t, metric, k),
                                             data.protocol.eval.bootstrap_resamples)
             for k in ks]
    out[arm] = {"mean": [c.diff for c in cells], "low": [c.low for c in cells],
                "high": [c.high for c in cells]}
  return ks, out


def dev_rows(data: ProtocolData, arm: str, seed: int) -> dict[int, dict]:
  """Step -> the dev-set evaluation row of one run (its metrics.jsonl rows with eval/*)."""
  return {r["step"]: r for r in read_metrics(protocol_run.arm_dir(data.root, arm, seed))
          if "eval/pass@1" in r}


def training_curves(data: ProtocolData, metrics: Sequence[str]) -> dict[str, dict]:
  """Dev-set metrics vs step per arm (mean over seeds, at the steps where every seed logged
  every metric: the SFT trainer's dev evaluations carry no KL before its last one)."""
  out = {}
  for arm in data.protocol.arms:
    per_seed = [{step: r for step, r in dev_rows(data, arm, seed).items()
                 if all(f"eval/{m}" in r for m in metrics)} for seed in data.protocol.seeds]
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    out[arm] = {"step": steps}
    for m in metrics:
      out[arm][m] = [float(np.mean([s[step][f"eval/{m}"] for s in per_seed])) for step in steps]
  return out


def matched_kl_table(data: ProtocolData, metric: str) -> str:
  """Each paired comparison at matched KL on the dev set: the arm's last evaluation (KL to
  the start, `metric`) beside its reference arm's `metric` interpolated at that KL along the
  reference's own training curve (same seed), mean ± std over seeds. A seed whose KL lies
  outside the reference's range has no matched value (counted in the last column)."""
  rows = []
  for arm, other in data.protocol.pairs:
    if arm not in data.protocol.arms or other not in data.protocol.arms:
      continue
    kls, own, matched = [], [], []
    for seed in data.protocol.seeds:
      mine, theirs = ([r for _, r in sorted(dev_rows(data, a, seed).items())
                       if "eval/kl_to_reference" in r] for a in (arm, other))
      last = mine[-1]
      kl = last["eval/kl_to_reference"]
      kls.append(kl)
      own.append(last[f"eval/{metric}"])
      points = sorted((r["eval/kl_to_reference"], r[f"eval/{metric}"]) for r in theirs)
      if points and points[0][0] <= kl <= points[-1][0]:
        matched.append(float(np.interp(kl, [p[0] for p in points], [p[1] for p in points])))
    rows.append([f"{arm} vs {other}", md.mean_std(kls), md.mean_std(own),
                 md.mean_std(matched) if matched else "—",
                 f"{len(matched)} of {len(data.protocol.seeds)}"])
  return md.table(["pair", "KL of the arm (last step)", f"arm dev {metric}",
                   f"reference arm dev {metric} at that KL", "seeds matched"], rows)


def kl_frontiers(data: ProtocolData, metric: str) -> dict[str, dict]:
  """Arm -> {"kl": [...], metric: [...]}: the dev curves of `training_curves` against KL."""
  curves = training_curves(data, [metric, "kl_to_reference"])
  return {arm: {"kl": c["kl_to_reference"], metric: c[metric]} for arm, c in curves.items()}


def diagnostics_table(data: ProtocolData) -> str:
  """Training diagnostics per arm, averaged over logged steps and seeds."""
  found: dict[str, dict[str, float]] = {}
  for arm in data.protocol.arms:
    rows = [r for seed in data.protocol.seeds
            for r in read_metrics(protocol_run.arm_dir(data.root, arm, seed)) if "loss" in r]
    found[arm] = {m: float(np.mean([r[m] for r in rows if m in r]))
                  for m in DIAGNOSTICS if any(m in r for r in rows)}
  names = [m for m in DIAGNOSTICS if any(m in v for v in found.values())]
  return md.table(["arm"] + names, [[arm] + [f"{v[m]:.4f}" if m in v else "—" for m in names]
                                    for arm, v in found.items()])


def coscaling_section(protocol: ml_collections.ConfigDict, root: str, out_dir: str) -> str:
  """Heatmaps (PNG), T*(N) and the power-law fits of every co-scaling model."""
  base = os.path.join(root, "coscaling")
  labels = sorted(os.listdir(base)) if os.path.isdir(base) else []
  parts, fits = [], {}
  ns = None
  for label in labels:
    path = os.path.join(base, label, "coscaling.json")
    if not os.path.exists(path):
      continue
    s = _load_json(path)
    ns = s["ns"]
    for metric, stem in (("pass@k", "pass"), ("bon_acc@k", "bon")):
      png = f"coscaling_{label}_{stem}.png"
      figures.plot_heatmap(np.asarray(s["surfaces"][metric]), s["temperatures"], ns,
                           s["best_temperature"][metric], os.path.join(out_dir, png),
                           f"{label}: {metric.replace('@k', '@N')} over T x N "
                           f"({protocol.coscaling.num_prompts} prompts)")
      parts.append(f"![{label} {metric}]({png})")
    parts.append(md.table(["N"] + [str(n) for n in ns],
                          [[f"{label} T*(N), {m.replace('@k', '@N')}"] +
                           [f"{t:g}" for t in s["best_temperature"][m]]
                           for m in ("pass@k", "bon_acc@k")]))
    fits[label] = dict(s["fits"], envelope=s["envelope_fit"])
  if ns is not None:
    parts.append("Fit of pass@N ≈ exp(a·N^b) per temperature (and of the upper envelope "
                 "max_T pass@N), least squares on log(−log pass@N) over the N with "
                 "0 < pass@N < 1; residuals = observed − fitted:\n\n" + md.fit_table(fits, ns))
  return "\n\n".join(parts)


def _wall_time(root: str) -> str:
  path = os.path.join(root, "timings.json")
  if not os.path.exists(path):
    return "not measured"
  timings = _load_json(path)
  total = sum(timings.values())
  rows = [[stage, f"{seconds / 60:.1f}"] for stage, seconds in timings.items()]
  return (f"{total / 60:.1f} minutes in all (sum of the stages' wall time):\n\n"
          + md.table(["stage", "minutes"], rows + [["total", f"{total / 60:.1f}"]]))


def _reused_evaluations(root: str) -> str:
  """The evaluations copied between models with bit-identical parameters (protocol_run)."""
  path = os.path.join(root, protocol_run.REUSED)
  if not os.path.exists(path):
    return ""
  by_source: dict[str, list[str]] = {}
  for target, source in _load_json(path).items():
    by_source.setdefault(source, []).append(target)
  lines = [f"- {source}: also {', '.join(sorted(targets))}"
           for source, targets in sorted(by_source.items())]
  return ("Models whose parameters are bit-identical to an evaluated model's share its "
          "evaluation (same parameters and evaluation random numbers give the same samples; "
          "the SHA-256 of the parameters is compared):\n\n" + "\n".join(lines))


def build_markdown(protocol: ml_collections.ConfigDict, root: str, out_dir: str,
                   command: str) -> str:
  """The whole report (also writes its PNGs into `out_dir`)."""
  data = ProtocolData(protocol, root)
  e, ks = protocol.eval, table_ks(protocol)
  base = protocol.baseline
  others = [a for a in protocol.arms if a != base]
  columns = difference_columns(protocol)
  sections = [
      f"# {protocol.title} ({protocol.scale} scale)",
      f"Regenerate everything here (numbers and plots) from scratch with\n\n    {command}\n",
      f"Setup: warm start = {protocol.start_description}; arms from that one start, each "
      f"{protocol.train.num_steps} steps of {protocol.train.batch_size} prompts x "
      f"N = {protocol.target_n} samples (lr {protocol.train.learning_rate:g}); seeds "
      f"{list(protocol.seeds)}; held-out evaluation {e.num_prompts} prompts x "
      f"{e.num_samples} samples with the same evaluation random numbers for every model "
      f"(eval.common_seed={e.common_seed}), unbiased estimators, k up to {e.max_k}; "
      f"bon_acc ranks by the {'learned' if protocol.verifier.argument else 'imperfect'} "
      f"verifier. Intervals: 95% percentile bootstrap ({e.bootstrap_resamples} replicates) over "
      f"prompts (paired: one draw for both models) and over each arm's seeds.",
      f"Measured wall time: {_wall_time(root)}",
  ]
  reused = _reused_evaluations(root)
  if reused:
    sections.append(reused)
  for t in e.temperatures:
    diffs = differences(data, others, base, t, columns)
    from_start = differences(data, protocol.arms, "start", t, columns)
    sections += [
        f"## Held-out metrics at T = {t:g} (mean ± std over seeds)\n\n" + metrics_table(data, t, ks),
        f"## Differences against {base} at T = {t:g}\n\n"
        f"arm − {base}, 95% interval; {len(protocol.seeds)} seeds per arm, {e.num_prompts} "
        f"prompts x {e.num_samples} samples; bold: the interval excludes 0.\n\n"
        + md.difference_table(diffs, columns),
        f"Where the intervals exclude zero (T = {t:g}):\n\n" + "\n".join(md.findings(diffs, base)),
        f"## Change from the warm start at T = {t:g}\n\n"
        + md.difference_table(from_start, columns),
    ]
    pairs = {f"{a} − {b}": differences(data, [a], b, t, columns)[a]
             for a, b in protocol.pairs if a in protocol.arms and b in protocol.arms}
    if pairs:
      sections.append(f"## Paired comparisons at T = {t:g} (BoN-SFT vs SFT; vBoN vs "
                      f"KL-regularised RL, whose KLs are in the metrics table)\n\n"
                      + md.difference_table(pairs, columns))
  t0 = e.temperatures[0]
  for metric, stem in (("pass@k", "pass"), ("bon_acc@k", "bon_acc")):
    ks_all, arm_bands = bands(data, t0, metric)
    png = f"bon_curves_{stem}.png"
    figures.plot_bon_bands(arm_bands, ks_all, metric, os.path.join(out_dir, png),
                           f"held-out {metric} at T={t0:g}, mean and 95% band")
    sections.append(f"![{metric} per arm]({png})")
  n = protocol.target_n
  dev_metrics = ["pass@1", f"pass@{min(n, protocol.dev.num_samples)}",
                 f"pass@{protocol.dev.num_samples}"]
  curves = training_curves(data, dev_metrics)
  figures.plot_training_curves(curves, dev_metrics, os.path.join(out_dir, "training_curves.png"),
                               f"dev set ({protocol.dev.num_prompts} held-out prompts x "
                               f"{protocol.dev.num_samples} samples), mean over seeds")
  frontier_metric = dev_metrics[1]
  figures.plot_kl_frontier(kl_frontiers(data, frontier_metric), frontier_metric,
                           os.path.join(out_dir, "kl_frontier.png"),
                           f"dev {frontier_metric} against KL to the start over training, "
                           f"mean over seeds")
  sections += ["## Training curves\n\n![training curves](training_curves.png)",
               "## Against KL to the start (dev set)\n\nThe paired comparisons at matched KL: "
               "the reference arm's training curve interpolated at the arm's final KL (dev set "
               f"of {protocol.dev.num_prompts} prompts x {protocol.dev.num_samples} samples, "
               "evaluated every "
               f"{protocol.train.eval_every} steps).\n\n"
               + matched_kl_table(data, frontier_metric)
               + "\n\n![dev metric against KL](kl_frontier.png)",
               "## Training diagnostics (mean over logged steps and seeds)\n\n"
               + diagnostics_table(data),
               "## Temperature x N co-scaling\n\n" + coscaling_section(protocol, root, out_dir),
               f"## Reading\n\n{md.READING_START}\n(no reading written yet)\n{md.READING_END}"]
  return "\n\n".join(sections) + "\n"


def write_report(protocol: ml_collections.ConfigDict, root: str, out_dir: str,
                 command: str) -> str:
  """Writes `<out_dir>/results.md` and its PNGs; returns the markdown's path."""
  os.makedirs(out_dir, exist_ok=True)
  protocol = ml_collections.ConfigDict(protocol.to_dict())
  protocol.arms = protocol_run.finished_arms(protocol, root)
  text = build_markdown(protocol, root, out_dir, command)
  path = os.path.join(out_dir, "results.md")
  old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
  with open(path, "w", encoding="utf-8") as f:
    f.write(md.keep_reading(text, old))
  return path

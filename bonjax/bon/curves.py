"""Best-of-N curves: each metric as a function of k, averaged over prompts; JSON and PNG output.

A curve is a plain JSON-ready dict:

    {"ks": [1, 2, 4, ...],
     "num_prompts": B, "num_samples": n,
     "selection": "verifier" | "oracle",
     "metrics": {"pass@k": {"mean": [...], "stderr": [...]}, "bon_acc@k": {...}, ...},
     "mean_reward": {"mean": float, "stderr": float | None}}

`stderr` is the standard error of the per-prompt values across prompts (sample standard
deviation / sqrt(B)); it is None for a single prompt, where it is undefined.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

from bonjax.bon import metrics


@dataclasses.dataclass(frozen=True)
class _Samples:
  """The per-sample data of B prompts x n samples a curve is computed from."""

  correct: np.ndarray  # [B, n] float
  scores: np.ndarray  # [B, n] selection scores (the correctness itself under oracle selection)
  answers: Sequence[Sequence[Hashable | None]] | None  # B lists of n
  rewards: np.ndarray | None  # [B, n] continuous rewards


def _pass_at_k(s: _Samples, k: int) -> np.ndarray:
  return metrics.pass_at_k_from_correct(s.correct, k)


def _bon_acc_at_k(s: _Samples, k: int) -> np.ndarray:
  return metrics.bon_accuracy_at_k(s.scores, s.correct, k)


def _maj_at_k(s: _Samples, k: int) -> np.ndarray:
  return np.array([metrics.maj_at_k(a, c, k) for a, c in zip(s.answers, s.correct)])


def _max_at_k(s: _Samples, k: int) -> np.ndarray:
  return metrics.max_at_k(s.rewards, k)


# Metric name -> (per-prompt values at k, whether the samples carry what it needs).
CURVE_METRICS: dict[str, tuple[Callable[[_Samples, int], np.ndarray],
                               Callable[[_Samples], bool]]] = {
    "pass@k": (_pass_at_k, lambda s: True),
    "bon_acc@k": (_bon_acc_at_k, lambda s: True),
    "maj@k": (_maj_at_k, lambda s: s.answers is not None),
    "max@k": (_max_at_k, lambda s: s.rewards is not None),
}


def default_ks(n: int) -> list[int]:
  """Powers of two up to n, plus n itself when it is not one.

  Args:
    n: samples per prompt (>= 1).

  Returns:
    increasing list of k values.
  """
  if n < 1:
    raise ValueError(f"n={n}: must be >= 1")
  ks = [2**i for i in range(n.bit_length()) if 2**i <= n]
  return ks if ks[-1] == n else ks + [n]


def _mean_and_stderr(values: np.ndarray) -> tuple[float, float | None]:
  """Mean over prompts and its standard error (None for one prompt)."""
  mean = float(np.mean(values))
  if values.size < 2:
    return mean, None
  return mean, float(np.std(values, ddof=1) / np.sqrt(values.size))


def bon_curve(correct: np.ndarray, scores: np.ndarray | None = None,
              answers: Sequence[Sequence[Hashable | None]] | None = None,
              ks: Sequence[int] | None = None,
              rewards: np.ndarray | None = None) -> dict[str, Any]:
  """Computes pass@k, BoN accuracy@k, maj@k (and max@k) for every k, averaged over prompts.

  Args:
    correct: [B, n] correctness of every sample (booleans or 0/1).
    scores: [B, n] verifier scores for Best-of-k selection; None selects by correctness
      (an oracle verifier, so bon_acc@k equals pass@k).
    answers: B lists of n extracted answers (None where unparseable) for maj@k; None skips it.
    ks: the k values; default `default_ks(n)`.
    rewards: optional [B, n] continuous rewards: adds max@k and is what mean_reward averages
      (otherwise the correctness is).

  Returns:
    the curve dict described in the module docstring.
  """
  correct = np.asarray(correct, dtype=np.float64)
  if correct.ndim != 2 or correct.shape[1] < 1:
    raise ValueError(f"correct has shape {correct.shape}: must be [B, n] with n >= 1")
  num_prompts, n = correct.shape
  selection = "oracle" if scores is None else "verifier"
  scores = correct if scores is None else np.asarray(scores, dtype=np.float64)
  if scores.shape != correct.shape:
    raise ValueError(f"scores has shape {scores.shape}: must equal correct's {correct.shape}")
  if answers is not None:
    if len(answers) != num_prompts or any(len(a) != n for a in answers):
      raise ValueError(f"answers: must be {num_prompts} lists of {n} answers each")
  if rewards is not None:
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != correct.shape:
      raise ValueError(f"rewards has shape {rewards.shape}: must equal correct's {correct.shape}")
  ks = default_ks(n) if ks is None else [int(k) for k in ks]
  for k in ks:
    if not 1 <= k <= n:
      raise ValueError(f"ks contains {k}: every k must satisfy 1 <= k <= n={n}")

  samples = _Samples(correct, scores, answers, rewards)
  curve_metrics = {}
  for name, (per_prompt, available) in CURVE_METRICS.items():
    if not available(samples):
      continue
    stats = [_mean_and_stderr(per_prompt(samples, k)) for k in ks]
    curve_metrics[name] = {"mean": [m for m, _ in stats], "stderr": [e for _, e in stats]}
  reward_mean, reward_stderr = _mean_and_stderr(
      metrics.mean_reward(correct if rewards is None else rewards))
  return {
      "ks": ks,
      "num_prompts": num_prompts,
      "num_samples": n,
      "selection": selection,
      "metrics": curve_metrics,
      "mean_reward": {"mean": reward_mean, "stderr": reward_stderr},
  }


def write_curve_json(curve: Mapping[str, Any], path: str | os.PathLike) -> None:
  """Writes a curve as strict JSON (no NaN), creating parent directories.

  Args:
    curve: a dict from `bon_curve`.
    path: destination file.
  """
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(curve, f, indent=2, allow_nan=False)
    f.write("\n")


def read_curve_json(path: str | os.PathLike) -> dict[str, Any]:
  """Reads a curve written by `write_curve_json`."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


_LINE_STYLES = {"pass@k": "-", "bon_acc@k": "--", "maj@k": ":", "max@k": "-."}


def plot_bon_curve(curves: Mapping[str, Mapping[str, Any]], path: str | os.PathLike,
                   title: str = "Best-of-N curves") -> None:
  """Plots metric vs k (log2 axis) for several labelled curves and writes a PNG.

  One colour per label, one line style per metric, a shaded band of +-1 standard error.
  Uses the Agg canvas directly, so it neither needs a display nor changes pyplot's backend.

  Args:
    curves: label (e.g. a checkpoint or method name) -> curve dict from `bon_curve`.
    path: destination .png file.
    title: figure title.
  """
  # Imported here so that computing curves never pays for (or depends on) matplotlib.
  from matplotlib import ticker
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  if not curves:
    raise ValueError("curves={}: need at least one curve to plot")
  figure = Figure(figsize=(7.0, 4.5), dpi=120)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot(1, 1, 1)
  colors = [f"C{i % 10}" for i in range(len(curves))]
  for color, (label, curve) in zip(colors, curves.items()):
    ks = np.asarray(curve["ks"], dtype=np.float64)
    for metric, values in curve["metrics"].items():
      mean = np.asarray(values["mean"], dtype=np.float64)
      axes.plot(ks, mean, _LINE_STYLES.get(metric, "-"), color=color, marker="o",
                markersize=3, label=f"{label}: {metric}")
      if all(e is not None for e in values["stderr"]):
        stderr = np.asarray(values["stderr"], dtype=np.float64)
        axes.fill_between(ks, mean - stderr, mean + stderr, color=color, alpha=0.12, lw=0)
  axes.set_xscale("log", base=2)
  all_ks = sorted({int(k) for curve in curves.values() for k in curve["ks"]})
  axes.xaxis.set_major_locator(ticker.FixedLocator(all_ks))  # a tick at every evaluated k
  axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  axes.xaxis.set_minor_locator(ticker.NullLocator())
  axes.set_xlabel("k (samples per prompt)")
  axes.set_ylabel("accuracy / reward")
  axes.set_title(title)
  axes.grid(True, which="both", alpha=0.3)
  axes.legend(fontsize="small", loc="best")
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  figure.savefig(path, format="png")

"""Figures of the protocol report: BoN curves per arm with 95% bands, training curves on the
dev set, dev metric against KL to the start, and the temperature x N heatmap with T*(N). Agg
canvas only (no display needed)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np


def _figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  figure = Figure(figsize=(width, height), dpi=110)
  FigureCanvasAgg(figure)
  return figure


def _finish(figure, axes, xlabel: str, ylabel: str, title: str, path: str) -> None:
  """Labels, title, grid and legend of a one-panel figure; saves it to `path`."""
  axes.set_xlabel(xlabel)
  axes.set_ylabel(ylabel)
  axes.set_title(title, fontsize=9)
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7, ncol=2)
  figure.savefig(path)


def plot_bon_bands(bands: Mapping[str, Mapping[str, Sequence[float]]], ks: Sequence[int],
                   metric: str, path: str, title: str) -> None:
  """`metric` vs k per arm: the mean over seeds and prompts and its 95% bootstrap band.

  Args:
    bands: arm -> {"mean": [len(ks)], "low": [...], "high": [...]}.
    ks: the k values.
    metric: y-axis label.
    path: PNG path.
    title: figure title.
  """
  figure = _figure(7.5, 4.8)
  axes = figure.add_subplot(1, 1, 1)
  for i, (arm, band) in enumerate(bands.items()):
    color, style = f"C{i % 10}", "--" if arm == "start" else "-"
    axes.plot(ks, band["mean"], style, color=color, marker="o", markersize=3, label=arm)
    axes.fill_between(ks, band["low"], band["high"], color=color, alpha=0.15, lw=0)
  axes.set_xscale("log", base=2)
  axes.set_xticks(list(ks), [str(k) for k in ks])
  _finish(figure, axes, "k", metric, title, path)


def plot_training_curves(curves: Mapping[str, Mapping[str, Sequence[float]]],
                         metrics: Sequence[str], path: str, title: str) -> None:
  """Dev-set metrics vs training step, one panel per metric, mean over seeds per arm.

  Args:
    curves: arm -> {"step": [...], <metric>: [...]}.
    metrics: metric names (panels).
    path: PNG path.
    title: figure title.
  """
  figure = _figure(4.2 * len(metrics), 4.0)
  for j, metric in enumerate(metrics):
    axes = figure.add_subplot(1, len(metrics), j + 1)
    for i, (arm, curve) in enumerate(curves.items()):
      if metric in curve:
        axes.plot(curve["step"], curve[metric], color=f"C{i % 10}", marker="o", markersize=2,
                  label=arm)
    axes.set_xlabel("step")
    axes.set_ylabel(f"dev {metric}")
    axes.grid(alpha=0.3)
    if j == 0:
      axes.legend(fontsize=6, ncol=2)
  figure.suptitle(title, fontsize=9)
  figure.savefig(path)


def plot_kl_frontier(frontiers: Mapping[str, Mapping[str, Sequence[float]]], metric: str,
                     path: str, title: str) -> None:
  """Dev-set `metric` against KL to the start over training, one line per arm (mean over
  seeds at each evaluated step): arms compared at matched KL read off one vertical line.

  Args:
    frontiers: arm -> {"kl": [...], metric: [...]} in step order.
    metric: y-axis metric.
    path: PNG path.
    title: figure title.
  """
  figure = _figure(7.5, 4.8)
  axes = figure.add_subplot(1, 1, 1)
  for i, (arm, curve) in enumerate(frontiers.items()):
    axes.plot(curve["kl"], curve[metric], color=f"C{i % 10}", ls="-" if i < 10 else "--",
              marker="o", markersize=3, label=arm)
  _finish(figure, axes, "KL(policy || start) per sequence", f"dev {metric}", title, path)


def plot_heatmap(values: np.ndarray, temperatures: Sequence[float], ns: Sequence[int],
                 best: Sequence[float], path: str, title: str) -> None:
  """A temperature x N heatmap of a metric with T*(N) marked in each column.

  Args:
    values: [len(temperatures), len(ns)].
    temperatures: rows, increasing.
    ns: columns.
    best: T*(N) per column.
    path: PNG path.
    title: figure title.
  """
  values = np.asarray(values)
  figure = _figure(1.0 + 0.7 * len(ns), 1.2 + 0.45 * len(temperatures))
  axes = figure.add_subplot(1, 1, 1)
  image = axes.imshow(values, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
  for r in range(values.shape[0]):
    for c in range(values.shape[1]):
      axes.text(c, r, f"{values[r, c]:.2f}", ha="center", va="center", fontsize=6,
                color="white" if values[r, c] < 0.6 else "black")
  rows = [list(temperatures).index(t) for t in best]
  axes.plot(range(len(ns)), rows, "r*-", markersize=9, label="T*(N)")
  axes.set_xticks(range(len(ns)), [str(n) for n in ns])
  axes.set_yticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
  axes.set_xlabel("N")
  axes.set_ylabel("temperature")
  axes.set_title(title, fontsize=9)
  axes.legend(fontsize=7, loc="upper left")
  figure.colorbar(image, ax=axes)
  figure.savefig(path)


def write_heatmaps(summary: dict, out_dir: str, title: str) -> list[str]:
  """heatmap_<metric>.png with T*(N) for pass@N and bon_acc@N; returns the paths."""
  paths = []
  for metric, stem in (("pass@k", "pass"), ("bon_acc@k", "bon_acc")):
    path = os.path.join(out_dir, f"heatmap_{stem}.png")
    plot_heatmap(np.asarray(summary["surfaces"][metric]),
                                  summary["temperatures"], summary["ns"],
                                  summary["best_temperature"][metric], path,
                                  f"{title}: {metric.replace('@k', '@N')}")
    paths.append(path)
  return paths

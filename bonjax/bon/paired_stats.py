"""Paired comparisons of two models' Best-of-N metrics: bootstrap over prompts (and seeds).

Both models are evaluated on the same held-out prompts with the same evaluation random numbers
(`eval.common_seed`), so per-prompt values are paired: a prompt that is hard for one model is
hard for the other, and most of the prompt-to-prompt variance cancels in the difference. The
interval of a difference therefore resamples *prompts jointly* for both models (one prompt
draw per replicate, applied to both) and, when there are several training seeds, each model's
seeds independently (training seeds of different arms are different runs).

Every replicate is a weighted mean: multinomial prompt counts w (sum P) and seed counts u_a,
u_b (sums S_a, S_b) give  diff = u_a^T A w / (S_a P) - u_b^T B w / (S_b P)  for per-seed,
per-prompt value matrices A [S_a, P], B [S_b, P].
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from bonjax.bon import metrics


def _maj(arrays: Mapping[str, np.ndarray], k: int) -> np.ndarray:
  ids, correct = arrays["answer_ids"], arrays["correct"]
  return np.array([metrics.maj_at_k([None if a < 0 else int(a) for a in row_ids], row_correct, k)
                   for row_ids, row_correct in zip(ids, correct)])


# Metric name -> per-prompt unbiased estimate at k from the evaluation's per-prompt arrays
# (`bonjax.training.evaluation.per_prompt_arrays`).
PER_PROMPT_METRICS: dict[str, Callable[[Mapping[str, np.ndarray], int], np.ndarray]] = {
    "pass@k": lambda a, k: metrics.pass_at_k_from_correct(a["correct"], k),
    "bon_acc@k": lambda a, k: metrics.bon_accuracy_at_k(a["scores"], a["correct"], k),
    "maj@k": _maj,
}


def per_prompt_values(arrays: Mapping[str, np.ndarray], metric: str, k: int) -> np.ndarray:
  """Per-prompt estimate of `metric` at k.

  Args:
    arrays: "correct" [P, n] (and "scores", "answer_ids" for bon_acc / maj).
    metric: a key of PER_PROMPT_METRICS.
    k: 1 <= k <= n.

  Returns:
    float64 [P].
  """
  if metric not in PER_PROMPT_METRICS:
    raise ValueError(f"metric={metric!r}: must be one of {sorted(PER_PROMPT_METRICS)}")
  return np.asarray(PER_PROMPT_METRICS[metric](arrays, k), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Difference:
  """A - B with its bootstrap interval.

  Attributes:
    diff: the plain difference of means (seeds, then prompts).
    low, high: percentile bootstrap interval at `level`.
    stderr: standard deviation of the bootstrap replicates.
    level: interval coverage (e.g. 0.95).
    num_prompts, seeds_a, seeds_b: what the estimate averages over.
  """

  diff: float
  low: float
  high: float
  stderr: float
  level: float
  num_prompts: int
  seeds_a: int
  seeds_b: int

  @property
  def excludes_zero(self) -> bool:
    return self.low > 0 or self.high < 0

  def to_dict(self) -> dict[str, float | int | bool]:
    return dict(dataclasses.asdict(self), excludes_zero=self.excludes_zero)


def bootstrap_replicates(a: np.ndarray, b: np.ndarray, num_resamples: int,
                         seed: int) -> np.ndarray:
  """Replicates of mean(A) - mean(B) under the paired prompt / independent seed bootstrap.

  Args:
    a: [S_a, P] per-seed, per-prompt values of model A (a [P] vector is one seed).
    b: [S_b, P] the same for model B, on the same prompts in the same order.
    num_resamples: number of replicates R.
    seed: numpy RNG seed (the result is a pure function of the inputs).

  Returns:
    float64 [R].
  """
  a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"a has {a.shape[1]} prompts but b has {b.shape[1]}: must be paired")
  rng = np.random.default_rng(seed)
  num_prompts = a.shape[1]
  w = rng.multinomial(num_prompts, np.full(num_prompts, 1.0 / num_prompts),
                      size=num_resamples) / num_prompts
  seed_weights = lambda s: (np.ones((num_resamples, 1)) if s == 1 else
                            rng.multinomial(s, np.full(s, 1.0 / s), size=num_resamples) / s)
  u_a, u_b = seed_weights(a.shape[0]), seed_weights(b.shape[0])
  return np.einsum("rs,sp,rp->r", u_a, a, w) - np.einsum("rs,sp,rp->r", u_b, b, w)


def paired_difference(a: np.ndarray, b: np.ndarray, num_resamples: int = 2000, seed: int = 0,
                      level: float = 0.95) -> Difference:
  """mean(A) - mean(B) with a percentile bootstrap interval (see `bootstrap_replicates`).

  Args:
    a: [S_a, P] or [P] values of model A.
    b: [S_b, P] or [P] values of model B on the same prompts.
    num_resamples: bootstrap replicates.
    seed: RNG seed of the replicates.
    level: interval coverage in (0, 1).

  Returns:
    Difference.
  """
  if not 0 < level < 1:
    raise ValueError(f"level={level}: must be in (0, 1)")
  a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
  reps = bootstrap_replicates(a, b, num_resamples, seed)
  tail = (1 - level) / 2
  low, high = np.quantile(reps, [tail, 1 - tail])
  return Difference(diff=float(a.mean() - b.mean()), low=float(low), high=float(high),
                    stderr=float(reps.std(ddof=1)), level=level, num_prompts=a.shape[1],
                    seeds_a=a.shape[0], seeds_b=b.shape[0])


def compare(arrays_a: Sequence[Mapping[str, np.ndarray]],
            arrays_b: Sequence[Mapping[str, np.ndarray]], metric_names: Sequence[str],
            ks: Sequence[int], num_resamples: int = 2000, seed: int = 0,
            level: float = 0.95) -> dict[str, dict[int, Difference]]:
  """Differences A - B of every metric at every k.

  Args:
    arrays_a: per-prompt evaluation arrays of A, one mapping per training seed.
    arrays_b: the same for B (same prompts, same evaluation random numbers).
    metric_names: keys of PER_PROMPT_METRICS.
    ks: the k values (each <= the samples per prompt).
    num_resamples, seed, level: as `paired_difference`.

  Returns:
    {metric: {k: Difference}}.
  """
  out: dict[str, dict[int, Difference]] = {}
  for metric in metric_names:
    out[metric] = {}
    for k in ks:
      values = lambda runs: np.stack([per_prompt_values(r, metric, k) for r in runs])
      out[metric][k] = paired_difference(values(arrays_a), values(arrays_b), num_resamples,
                                         seed, level)
  return out


def mean_with_interval(values: np.ndarray, num_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> Difference:
  """Mean of [S, P] values with its bootstrap interval (the difference against zero)."""
  values = np.atleast_2d(np.asarray(values, np.float64))
  return paired_difference(values, np.zeros((1, values.shape[1])), num_resamples, seed, level)

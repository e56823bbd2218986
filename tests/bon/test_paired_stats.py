"""Paired bootstrap of metric differences: exact cases and a known-distribution case."""

import numpy as np
import pytest

from bonjax.bon import paired_stats


def test_constant_per_prompt_difference_has_a_point_interval():
  rng = np.random.default_rng(0)
  b = rng.uniform(size=(1, 50))
  d = paired_stats.paired_difference(b + 0.25, b, num_resamples=300, seed=1)
  assert d.diff == pytest.approx(0.25, abs=1e-12)
  assert (d.low, d.high) == pytest.approx((0.25, 0.25), abs=1e-12)
  assert d.excludes_zero and d.num_prompts == 50 and (d.seeds_a, d.seeds_b) == (1, 1)


def test_difference_is_the_plain_difference_and_replicates_center_on_it():
  rng = np.random.default_rng(1)
  a, b = rng.uniform(size=(3, 400)), rng.uniform(size=(2, 400))
  d = paired_stats.paired_difference(a, b, num_resamples=4000, seed=0)
  assert d.diff == pytest.approx(a.mean() - b.mean(), abs=1e-12)
  reps = paired_stats.bootstrap_replicates(a, b, 4000, seed=0)
  assert abs(reps.mean() - d.diff) < 4 * reps.std() / np.sqrt(4000)


def test_pairing_removes_the_shared_prompt_variance():
  # Per-prompt values share a large prompt effect (sd 1); the paired difference has sd 0.5, so
  # its standard error is 0.5 / sqrt(P), far below the unpaired sqrt(1 + 1.25) / sqrt(P).
  rng = np.random.default_rng(2)
  num_prompts = 2000
  a = rng.normal(0.3, 1.0, size=num_prompts)
  b = a - rng.normal(0.1, 0.5, size=num_prompts)
  d = paired_stats.paired_difference(a, b, num_resamples=4000, seed=3)
  expected = np.std(a - b, ddof=1) / np.sqrt(num_prompts)
  assert d.stderr == pytest.approx(expected, rel=0.06)
  assert d.low < 0.1 < d.high


def test_seed_resampling_draws_whole_seeds():
  # Two seeds of A at 0 and 1 on every prompt, B at 0: a replicate averages two seeds drawn
  # with replacement, so it is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4.
  a = np.stack([np.zeros(20), np.ones(20)])
  reps = paired_stats.bootstrap_replicates(a, np.zeros((1, 20)), 4000, seed=0)
  values, counts = np.unique(np.round(reps, 12), return_counts=True)
  assert values.tolist() == [0.0, 0.5, 1.0]
  assert counts / 4000 == pytest.approx([0.25, 0.5, 0.25], abs=0.03)


def test_per_prompt_values_of_each_metric():
  arrays = {"correct": np.array([[1, 0, 0, 0], [1, 1, 0, 0]], bool),
            "scores": np.array([[0.9, 0.1, 0.2, 0.3], [0.1, 0.2, 0.9, 0.3]]),
            "answer_ids": np.array([[0, 1, 1, -1], [0, 0, 1, 2]])}
  # pass@2 = 1 - C(n - c, 2) / C(4, 2): 1 - 3/6 and 1 - 1/6.
  assert paired_stats.per_prompt_values(arrays, "pass@k", 2) == pytest.approx([0.5, 5 / 6])
  # Best-of-4 picks the highest score: correct in row 0, wrong in row 1.
  assert paired_stats.per_prompt_values(arrays, "bon_acc@k", 4) == pytest.approx([1.0, 0.0])
  # Majority of all 4: row 0 votes answer 1 (wrong), row 1 answer 0 (right).
  assert paired_stats.per_prompt_values(arrays, "maj@k", 4) == pytest.approx([0.0, 1.0])
  with pytest.raises(ValueError, match="metric="):
    paired_stats.per_prompt_values(arrays, "mean", 1)


def test_compare_tabulates_every_metric_and_k():
  a = {"correct": np.array([[1, 1], [1, 0]], bool), "scores": np.zeros((2, 2)),
       "answer_ids": np.array([[0, 0], [0, 1]])}
  b = dict(a, correct=np.array([[0, 0], [1, 0]], bool))
  out = paired_stats.compare([a], [b], ["pass@k"], [1, 2], num_resamples=50)
  assert out["pass@k"][1].diff == pytest.approx(0.5)  # (1 + 0.5)/2 - (0 + 0.5)/2
  assert out["pass@k"][2].diff == pytest.approx(0.5)

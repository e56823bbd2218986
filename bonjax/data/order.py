"""Deterministic, resumable example order: the batch at step s is a pure function of (seed, s)."""

from __future__ import annotations

import numpy as np


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """Returns the example order of `epoch` (a fresh permutation per epoch).

  Args:
    seed: data seed of the run.
    epoch: 0-based epoch number.
    num_examples: dataset size (> 0).

  Returns:
    int64 array, a permutation of range(num_examples).
  """
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(seed: int, step: int, batch_size: int, num_examples: int) -> np.ndarray:
  """Returns the dataset indices of the batch consumed at training `step`.

  Consecutive steps walk through per-epoch permutations without repeats inside an epoch, so a
  run resumed at step s sees exactly the batches an uninterrupted run would have seen.

  Args:
    seed: data seed of the run.
    step: 0-based step number.
    batch_size: examples per step.
    num_examples: dataset size (> 0).

  Returns:
    int64 array of shape [batch_size].
  """
  flat = np.arange(step * batch_size, (step + 1) * batch_size)
  epochs, offsets = np.divmod(flat, num_examples)
  out = np.empty(batch_size, dtype=np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = epoch_permutation(seed, int(epoch), num_examples)[offsets[sel]]
  return out

"""Deterministic resumable data order."""

import numpy as np

from bonjax.data.order import batch_indices


def test_each_epoch_is_a_permutation():
  seen = np.concatenate([batch_indices(3, s, 5, 20) for s in range(4)])
  assert sorted(seen.tolist()) == list(range(20))


def test_batches_are_a_pure_function_of_seed_and_step():
  a = [batch_indices(0, s, 7, 30).tolist() for s in range(10)]
  b = [batch_indices(0, s, 7, 30).tolist() for s in range(10)]
  assert a == b
  assert a != [batch_indices(1, s, 7, 30).tolist() for s in range(10)]


def test_batches_straddling_epochs():
  # 7 * 3 = 21 > 20: the third batch takes one example from the second epoch's permutation.
  batch = batch_indices(0, 2, 7, 20)
  assert len(batch) == 7
  first_epoch = np.concatenate([batch_indices(0, s, 7, 20) for s in range(2)])
  assert len(set(first_epoch.tolist()) | set(batch[:6].tolist())) == 20

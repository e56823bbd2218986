"""The resumable feed: batches are a pure function of (seed, step)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bonjax.data.example import TaskExample
from bonjax.data.feed import batch_at, iterate_batches
from bonjax.data.order import batch_indices

EXAMPLES = [TaskExample(id=f"t/{i}", prompt=f"prompt {i}", answer=str(i)) for i in range(10)]


def ids(batches):
  return [[e.id for e in b.examples] for b in batches]


def test_batches_follow_order_batch_indices_exactly():
  batches = list(iterate_batches(EXAMPLES, seed=7, batch_size=4, num_steps=6))
  assert [b.step for b in batches] == list(range(6))
  for batch in batches:
    expected = batch_indices(7, batch.step, 4, 10)
    np.testing.assert_array_equal(batch.indices, expected)
    assert [e.id for e in batch.examples] == [f"t/{i}" for i in expected]


def test_each_epoch_visits_every_example_once():
  flat = np.concatenate([b.indices for b in iterate_batches(EXAMPLES, seed=1, batch_size=4,
                                                            num_steps=10)])
  for epoch in range(4):  # 40 draws = 4 epochs of 10
    assert sorted(flat[epoch * 10:(epoch + 1) * 10]) == list(range(10))
  assert not np.array_equal(flat[:10], flat[10:20])  # a fresh permutation per epoch


@pytest.mark.parametrize("restart_step", [0, 1, 2, 5, 11])
def test_resumed_feed_sees_exactly_the_same_batches(restart_step):
  full = list(iterate_batches(EXAMPLES, seed=123, batch_size=3, num_steps=15))
  resumed = list(iterate_batches(EXAMPLES, seed=123, batch_size=3, start_step=restart_step,
                                 num_steps=15 - restart_step))
  assert ids(resumed) == ids(full[restart_step:])
  assert [b.step for b in resumed] == list(range(restart_step, 15))


def test_batch_at_matches_the_iterator_and_seed_changes_the_order():
  endless = iterate_batches(EXAMPLES, seed=5, batch_size=4, start_step=3)
  first_three = list(itertools.islice(endless, 3))
  assert ids(first_three) == ids([batch_at(EXAMPLES, seed=5, step=s, batch_size=4)
                                  for s in (3, 4, 5)])
  other_seed = [batch_at(EXAMPLES, seed=6, step=s, batch_size=4) for s in (3, 4, 5)]
  assert ids(other_seed) != ids(first_three)


def test_batch_larger_than_dataset_spans_epochs():
  batch = batch_at(EXAMPLES[:3], seed=0, step=0, batch_size=7)
  np.testing.assert_array_equal(batch.indices, batch_indices(0, 0, 7, 3))
  assert sorted(batch.indices[:3]) == [0, 1, 2]


class CountingSource:
  """A sequence that records whether it was read in one batched call."""

  def __init__(self, examples):
    self.examples = examples
    self.batched_calls = 0

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, index):
    raise AssertionError("per-item reads should not be used when __getitems__ exists")

  def __getitems__(self, indices):
    self.batched_calls += 1
    return [self.examples[i] for i in indices]


def test_uses_batched_reads_when_available():
  source = CountingSource(EXAMPLES)
  batch = batch_at(source, seed=2, step=9, batch_size=5)
  assert source.batched_calls == 1
  assert [e.id for e in batch.examples] == [f"t/{i}" for i in batch_indices(2, 9, 5, 10)]


def test_bad_arguments_fail_at_call_time():
  with pytest.raises(ValueError, match="num_examples=0"):
    iterate_batches([], seed=0, batch_size=1)
  with pytest.raises(ValueError, match="batch_size=0"):
    iterate_batches(EXAMPLES, seed=0, batch_size=0)
  with pytest.raises(ValueError, match="step=-1"):
    iterate_batches(EXAMPLES, seed=0, batch_size=2, start_step=-1)
  with pytest.raises(ValueError, match="num_steps=-2"):
    iterate_batches(EXAMPLES, seed=0, batch_size=2, num_steps=-2)

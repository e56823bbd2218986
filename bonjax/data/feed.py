"""A deterministic, resumable feed of TaskExample batches.

The batch at step s is a pure function of (seed, s, batch size, dataset size) through
`order.batch_indices`, so a run resumed at step s (from its checkpointed step counter) sees
exactly the batches an uninterrupted run would have seen from s on; no iterator state needs
checkpointing.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from bonjax.data.example import TaskExample
from bonjax.data.order import batch_indices


@dataclasses.dataclass(frozen=True)
class FeedBatch:
  """The examples consumed at one training step.

  Attributes:
    step: 0-based training step.
    indices: int64 [batch_size] dataset indices, in batch order.
    examples: the examples at those indices.
  """

  step: int
  indices: np.ndarray
  examples: tuple[TaskExample, ...]


def _check_feed_args(num_examples: int, batch_size: int, step: int) -> None:
  if num_examples < 1:
    raise ValueError(f"num_examples={num_examples}: the dataset must hold >= 1 example")
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}: must be >= 1")
  if step < 0:
    raise ValueError(f"step={step}: must be >= 0")


def _gather(source: Sequence[TaskExample], indices: np.ndarray) -> tuple[TaskExample, ...]:
  """Reads `indices`, in one batched call when the source supports it (TFDS sources do)."""
  getitems = getattr(source, "__getitems__", None)
  if getitems is not None:
    return tuple(getitems([int(i) for i in indices]))
  return tuple(source[int(i)] for i in indices)


def batch_at(source: Sequence[TaskExample], *, seed: int, step: int,
             batch_size: int) -> FeedBatch:
  """The batch consumed at `step`.

  Args:
    source: random-access examples (a list, a LoadedDataset, a TfdsExampleSource).
    seed: data seed of the run.
    step: 0-based training step.
    batch_size: examples per step.

  Returns:
    the FeedBatch of `step`.
  """
  _check_feed_args(len(source), batch_size, step)
  indices = batch_indices(seed, step, batch_size, len(source))
  return FeedBatch(step=step, indices=indices, examples=_gather(source, indices))


def iterate_batches(source: Sequence[TaskExample], *, seed: int, batch_size: int,
                    start_step: int = 0, num_steps: int | None = None) -> Iterator[FeedBatch]:
  """Iterates over the batches of steps start_step, start_step + 1, ...

  Epochs roll over without a gap: each epoch is a fresh permutation and a batch may span the
  end of one epoch and the start of the next.

  Args:
    source: random-access examples.
    seed: data seed of the run.
    batch_size: examples per step.
    start_step: first step to yield (the checkpointed step when resuming).
    num_steps: how many batches to yield; None for an endless feed.

  Returns:
    an iterator of FeedBatch, one per step.

  Raises:
    ValueError: empty source, batch_size < 1, start_step < 0 or num_steps < 0 (raised here,
      not at the first `next`).
  """
  _check_feed_args(len(source), batch_size, start_step)
  if num_steps is not None and num_steps < 0:
    raise ValueError(f"num_steps={num_steps}: must be >= 0 or None")

  def batches() -> Iterator[FeedBatch]:
    step = start_step
    while num_steps is None or step < start_step + num_steps:
      yield batch_at(source, seed=seed, step=step, batch_size=batch_size)
      step += 1

  return batches()

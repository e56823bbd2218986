"""Train / test split selection for tasks read from data: a seeded split or a split field."""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def seeded_split(items: Sequence[T], num_test: int, num_train: int,
                 seed: int) -> tuple[list[T], list[T]]:
  """Splits `items` at random: `num_test` held out, up to `num_train` of the rest for training.

  The split depends only on `seed` and the number of items (not on `num_train`), so runs that
  train on different amounts still evaluate on the same held-out items.

  Args:
    items: all examples, in source order.
    num_test: held-out examples.
    num_train: at most this many training examples.
    seed: split seed (`task.seed`).

  Returns:
    (train, test), each in source order.

  Raises:
    ValueError: `num_test` leaves no training example, naming `task.num_test`.
  """
  if num_test >= len(items):
    raise ValueError(f"task.num_test={num_test}: the source has only {len(items)} examples; "
                     f"hold out fewer so that some remain for training")
  order = np.random.default_rng(seed).permutation(len(items))
  test_idx = np.sort(order[:num_test])
  train_idx = np.sort(order[num_test:])[:num_train]
  return [items[i] for i in train_idx], [items[i] for i in test_idx]


def cap_split(items: Sequence[T], limit: int, split: str, field: str) -> list[T]:
  """The first `limit` items of a split given by the data.

  Raises:
    ValueError: the split is empty, naming the split field and value.
  """
  if not items:
    raise ValueError(f"task.split_field={field!r}: no row has the value {split!r}")
  return list(items[:limit])

"""The run's random streams live in one module, are distinct, and keep their values (a changed
value would change that stream's samples in every run, and break bit-identical resumes of
runs started before the change)."""

import jax
import numpy as np

from bonjax.training import rng_streams


def test_streams_are_distinct_and_fixed():
  assert rng_streams.ALL == {
      "TRAIN": 0x7A1, "ANCHOR": 0x7A2, "REFERENCE": 0x4EF, "EVAL": 0x5EED,
      "VERIFIER_TRAIN_HARVEST": 0x0A11, "VERIFIER_HELDOUT_HARVEST": 0x0A12,
      "VERIFIER_RANDOM_SELECTION": 0x0A13}
  assert len(set(rng_streams.ALL.values())) == len(rng_streams.ALL)


def test_stream_key_folds_the_stream_into_the_seed():
  got = jax.random.key_data(rng_streams.stream_key(3, rng_streams.EVAL))
  want = jax.random.key_data(jax.random.fold_in(jax.random.key(3), 0x5EED))
  np.testing.assert_array_equal(got, want)
  other = jax.random.key_data(rng_streams.stream_key(3, rng_streams.TRAIN))
  assert not np.array_equal(got, other)

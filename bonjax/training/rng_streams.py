"""The run's random streams: one constant per consumer, all in one place.

Every stream is `fold_in(key(config.seed), STREAM)` (or seeds a numpy generator with it), so
each consumer draws independent randomness from the one run seed, and adding or changing one
consumer never changes what another samples (evaluating never changes training's samples).
The values are fixed: changing one changes that stream's samples in every run.
"""

from __future__ import annotations

import jax

TRAIN = 0x7A1  # The on-policy training sampler (and its numpy picks of reference subsets).
ANCHOR = TRAIN + 1  # J-BOND's fresh anchor samples.
REFERENCE = 0x4EF  # Cached reference-policy samples (vBoN / BOND reward CDF).
EVAL = 0x5EED  # BoN evaluation.
VERIFIER_TRAIN_HARVEST = 0x0A11  # Learned verifier: labelled samples of training prompts.
VERIFIER_HELDOUT_HARVEST = 0x0A12  # Learned verifier: labelled samples of held-out prompts.
VERIFIER_RANDOM_SELECTION = 0x0A13  # Learned verifier report: the random-selection baseline.

ALL: dict[str, int] = {name: value for name, value in globals().items()
                       if name.isupper() and isinstance(value, int)}


def stream_key(seed: int, stream: int) -> jax.Array:
  """The base key of `stream` for run seed `seed`."""
  return jax.random.fold_in(jax.random.key(seed), stream)

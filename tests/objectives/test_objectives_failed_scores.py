"""The NaN rule in the objectives (group_stats and the objectives built on it): a valid sample
whose verifier score or reward failed (NaN) is never the BoN pick, ranks below every
reference score, and is never correct."""

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.objectives import ObjectiveInputs, get_objective, group_stats

NAN = np.nan


def test_group_stats_pick_rank_and_correctness():
  scores = jnp.array([[NAN, 0.2, 0.7, 0.7], [NAN, NAN, NAN, NAN], [0.1, NAN, 0.3, NAN]])
  mask = jnp.array([[True] * 4, [True] * 4, [True, True, True, False]])
  np.testing.assert_array_equal(group_stats.first_argmax_onehot(scores, mask),
                                [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]])
  index, has_other = group_stats.first_argmax_excluding_each(scores, mask)
  np.testing.assert_array_equal(index[0], [2, 2, 3, 2])
  np.testing.assert_array_equal(index[2, :3], [2, 2, 0])
  assert not bool(has_other[2, 3])  # a masked slot has no peers
  np.testing.assert_array_equal(group_stats.is_correct(scores, mask, 0.5),
                                [[0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
  # CDF: a failed sample is below every reference; a failed reference is below every sample.
  refs = jnp.array([[0.0, NAN, 0.5]] * 3)
  counts, num_refs = group_stats.reference_counts(scores, refs, None, strict=True)
  np.testing.assert_array_equal(counts[0], [0, 2, 3, 3])
  np.testing.assert_array_equal(counts[2, :3], [2, 0, 2])
  np.testing.assert_array_equal(num_refs, [3, 3, 3])


def _grads(name, rewards, scores, **options):
  spec = get_objective(name)
  cfg = spec.make_config(**options)

  def loss(logp):
    return spec.fn(ObjectiveInputs.create(logp, jnp.asarray(rewards), scores=jnp.asarray(scores)),
                   cfg)[0]
  return np.asarray(jax.grad(loss)(jnp.log(jnp.full((1, 4), 0.25))))


def test_objectives_never_reward_a_failed_score():
  # sft_best_of_n: the NaN-scored sample is not the pick even though NaN "compares" oddly.
  g = _grads("sft_best_of_n", [[1.0, 0, 0, 0]], [[NAN, 0.1, 0.9, 0.3]])
  np.testing.assert_allclose(g, [[0, 0, -1, 0]])
  # bon_rlb / rft: a NaN reward is incorrect, the same as a 0 reward.
  for name in ("bon_rlb", "rft"):
    with_nan = _grads(name, [[NAN, 1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0]])
    with_zero = _grads(name, [[0.0, 1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_allclose(with_nan, with_zero)
    assert np.abs(with_zero).sum() > 0

"""At N' = N = k with 0/1 rewards the unbiased pass@N estimators are one estimator: BoN-RLB
(leave-one-out), BoN-RLB(P) (leave-one-out form), PKPO (k = N) and the leave-one-out pass@k
gradient give every sample the same weight in every outcome group. The comparison protocol
(docs/results.md) trains the four arms to bit-identical policies for this reason."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import ObjectiveInputs, get_objective


def _weights(name: str, options: dict, rewards: np.ndarray) -> np.ndarray:
  """Per-sample weights -d loss / d logprob of objective `name` on groups `rewards` [B, n]."""
  spec = get_objective(name)
  cfg = spec.make_config(**options)
  rewards = jnp.asarray(rewards, jnp.float32)

  def loss(logprobs):
    inputs = ObjectiveInputs.create(logprobs, rewards, scores=rewards,
                                    mask=jnp.ones(rewards.shape, bool))
    return spec.fn(inputs, cfg)[0]

  return -np.asarray(jax.grad(loss)(jnp.zeros(rewards.shape, jnp.float32)))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_unbiased_pass_at_n_estimators_coincide_at_full_group(n):
  groups = np.array(list(itertools.product([0.0, 1.0], repeat=n)))  # Every outcome group.
  reference = _weights("bon_rlb", dict(bon_n=n), groups)
  assert np.abs(reference).max() > 0  # Groups with mixed outcomes carry signal.
  for name, options in (("bon_rlb_p", dict(bon_n=n)),
                        ("pkpo", dict(k=n, transform="s_loo_minus_one")),
                        ("loo_passk", dict(signal="env"))):
    np.testing.assert_allclose(_weights(name, options, groups), reference, rtol=1e-6,
                               atol=1e-9, err_msg=name)


def test_the_family_differs_below_the_group_size():
  """With N < N' the estimators are different functions of the group (same expectation)."""
  groups = np.array(list(itertools.product([0.0, 1.0], repeat=4)))
  bon_rlb = _weights("bon_rlb", dict(bon_n=2), groups)
  pkpo = _weights("pkpo", dict(k=2, transform="s_loo_minus_one"), groups)
  assert np.abs(bon_rlb - pkpo).max() > 1e-3

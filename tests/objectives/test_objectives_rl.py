"""rl: REINFORCE with LOO baseline, KL regularisers and PPO clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import (ObjectiveInputs, RLConfig, get_objective, loo_advantages,
                               rl_weights)
from tests.objectives import objectives_oracle as oracle

PI_REF = jnp.asarray([0.3, 0.1, 0.2, 0.2, 0.2])


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


CASES = {
    "env_loo": ("rl", RLConfig(signal="env", baseline="loo")),
    "verifier_none": ("rl", RLConfig(signal="verifier", baseline="none")),
    "k1": ("rl", RLConfig(signal="verifier", kl_coef=0.7, kl_estimator="k1")),
    "k3": ("rl", RLConfig(signal="verifier", kl_coef=0.7, kl_estimator="k3")),
    "ppo_on_policy": ("rl", RLConfig(signal="verifier", ppo_clip=0.2)),
}


@pytest.fixture(scope="module")
def expected():
  """Expected loss gradients of every case by enumeration over all 5^3 groups (one compile)."""
  with jax.enable_x64(True):
    def build(theta, group):
      return oracle.row_inputs(theta, group, oracle.REWARDS, oracle.VALUES,
                               ref_logprobs=jnp.log(PI_REF.astype(theta.dtype))[group][None])
    theta = oracle.theta0()
    groups, probs = oracle.enumerate_groups(theta, 3)
    return theta, oracle.expected_grads(CASES, build, theta, groups, probs)


def _value_grad(fn, theta):
  return jax.grad(lambda t: fn(jax.nn.softmax(t)))(theta)


@pytest.mark.parametrize("case,reward", [("env_loo", oracle.REWARDS),
                                         ("verifier_none", oracle.VALUES)])
def test_rl_expected_gradient_is_exact(expected, case, reward):
  """LOO and no baseline are both unbiased: E[grad loss] = -grad E_pi[reward]."""
  theta, got = expected
  np.testing.assert_allclose(got[case], -_value_grad(lambda pi: (pi * reward).sum(), theta),
                             atol=1e-12)


def test_rl_with_k1_kl_is_exact_gradient_of_kl_regularised_objective(expected):
  theta, got = expected
  want = -_value_grad(lambda pi: (pi * oracle.VALUES).sum() - 0.7 * oracle.kl(pi, PI_REF), theta)
  np.testing.assert_allclose(got["k1"], want, atol=1e-12)


def test_rl_with_k3_kl_has_forward_kl_gradient(expected):
  """The GRPO-style k3 penalty's expected gradient is that of KL(pi_ref || pi), not KL(pi ||
  pi_ref): the test pins down which divergence the option regularises."""
  theta, got = expected
  want = -_value_grad(lambda pi: (pi * oracle.VALUES).sum() - 0.7 * oracle.kl(PI_REF, pi), theta)
  np.testing.assert_allclose(got["k3"], want, atol=1e-12)
  reverse = _value_grad(lambda pi: oracle.kl(pi, PI_REF), theta)
  forward = _value_grad(lambda pi: oracle.kl(PI_REF, pi), theta)
  assert np.abs(reverse - forward).max() > 1e-2  # the two really differ here


def test_ppo_on_policy_gradient_is_the_policy_gradient(expected):
  """With samples from the current policy every ratio is 1 (inside the clip range), so the
  clipped surrogate has the REINFORCE gradient: exact for E_pi[reward]."""
  theta, got = expected
  np.testing.assert_allclose(got["ppo_on_policy"],
                             -_value_grad(lambda pi: (pi * oracle.VALUES).sum(), theta),
                             atol=1e-12)


def test_ppo_clipping_by_hand():
  """Ratios 1.5 (A > 0: clipped, no gradient), 0.5 (A > 0: unclipped, grad = A rho), 1.5 with
  A < 0 (unclipped: min picks the unclipped, more pessimistic term)."""
  logp = jnp.log(jnp.array([[0.3, 0.1, 0.3]]))
  sampler = jnp.log(jnp.array([[0.2, 0.2, 0.2]]))
  rewards = jnp.array([[2.0, 2.0, -1.0]])
  spec = get_objective("rl")
  cfg = spec.make_config(baseline="none", ppo_clip=0.2)

  def loss(lp):
    return spec.fn(ObjectiveInputs.create(lp, rewards, sampler_logprobs=sampler), cfg)
  (value, metrics), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(logp)
  w = rewards / 3  # baseline "none": w = R / n
  np.testing.assert_allclose(grad, [[0.0, -w[0, 1] * 0.5, -w[0, 2] * 1.5]], atol=1e-12)
  np.testing.assert_allclose(value, -(w[0, 0] * 1.2 + w[0, 1] * 0.5 + w[0, 2] * 1.5),
                             atol=1e-12)
  np.testing.assert_allclose(metrics["ppo_clip_frac"], 1 / 3)


def test_loo_advantages_by_hand_and_shift_invariance():
  values = jnp.array([[1.0, 0.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0], [5.0, 1.0, 7.0, 0.0]])
  mask = jnp.array([[True] * 4, [True] * 4, [True, True, False, False]])
  adv = oracle.jit_call(loo_advantages, values, mask)
  np.testing.assert_allclose(adv, [[0.0, -4 / 3, -4 / 3, 8 / 3], [0, 0, 0, 0], [4, -4, 0, 0]],
                             atol=1e-12)
  np.testing.assert_allclose(oracle.jit_call(loo_advantages, values + 13.25, mask), adv,
                             atol=1e-12)
  np.testing.assert_allclose(oracle.jit_call(rl_weights, values, mask, baseline="loo"),
                             adv / jnp.array([[4], [4], [2]]),
                             atol=1e-12)


def test_rl_group_of_one_is_masked_with_loo_and_plain_without():
  inputs = ObjectiveInputs.create(jnp.log(jnp.array([[0.5], [0.25]])), jnp.array([[1.0], [0.0]]))
  run = jax.jit(get_objective("rl").fn, static_argnums=1)
  loss, metrics = run(inputs, get_objective("rl").make_config())
  assert float(loss) == 0.0 and float(metrics["frac_zero_signal_groups"]) == 1.0
  loss, metrics = run(inputs, get_objective("rl").make_config(baseline="none"))
  np.testing.assert_allclose(loss, -np.log(0.5) * 1.0 / 2)  # mean over 2 rows of -R log pi
  np.testing.assert_allclose(metrics["frac_zero_signal_groups"], 0.5)

"""bon_sft and the KL-matched lambda_N (T13, T14)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import (bon_sft_weights, get_objective, group_win_rates,
                               kl_matched_lambda, tilt_kl, tilt_win_rate)
from tests.objectives import objectives_oracle as oracle


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


@pytest.mark.parametrize("n,lam,win", [(2, 2.2886, 0.6759), (4, 4.9169, 0.8040),
                                       (8, 9.0545, 0.8897), (16, 17.0319, 0.9413),
                                       (32, 33.0158, 0.9697)])
def test_kl_matched_lambda_table(n, lam, win):
  root = kl_matched_lambda(n)
  assert abs(root - lam) < 5e-5
  assert abs(tilt_win_rate(root) - win) < 5e-5
  assert abs(tilt_kl(root) - (math.log(n) - (n - 1) / n)) < 1e-10


def test_tilt_kl_closed_form_against_quadrature():
  """KL of the tilt of Uniform(0, 1) by numerical integration (independent of the formula)."""
  lam = 3.7
  q = (np.arange(200000) + 0.5) / 200000
  density = lam * np.exp(lam * q) / np.expm1(lam)
  assert abs(np.mean(density * np.log(density)) - tilt_kl(lam)) < 1e-8
  assert abs(np.mean(density * q) - tilt_win_rate(lam)) < 1e-8


def test_default_lambda_is_kl_matched_for_group_size_and_n_plus_one_rule():
  spec = get_objective("bon_sft")
  assert spec.make_config().resolved_lambda(8) == kl_matched_lambda(8)
  assert spec.make_config(bon_n=4).resolved_lambda(8) == kl_matched_lambda(4)
  assert spec.make_config(lambda_rule="n_plus_one", bon_n=16).resolved_lambda(8) == 17.0
  assert spec.make_config(lambda_n=2.5).resolved_lambda(8) == 2.5


def _row_loss(cfg):
  spec = get_objective("bon_sft")

  def row_loss(theta, payload):
    group, expert = payload[:-1], payload[-1]
    inputs = oracle.row_inputs(
        theta, group, oracle.REWARDS, oracle.SCORES,
        expert_logprobs=jax.nn.log_softmax(theta)[expert][None],
        expert_scores=jnp.asarray(oracle.SCORES, theta.dtype)[expert][None])
    return spec.fn(inputs, cfg)[0]
  return row_loss


def _bon_pick_expectation(cfg, lam, n, data):
  """(E[grad loss] by enumeration, theta) for the bon_pick estimator on the shared problem."""
  theta = oracle.theta0()
  pi = jax.nn.softmax(theta)
  groups = oracle.all_groups(5, n)
  payload = np.concatenate([np.repeat(groups, 5, axis=0),
                            np.tile(np.arange(5), len(groups))[:, None]], axis=1)
  probs = jnp.repeat(oracle.group_probs(pi, groups), 5) * jnp.tile(data, len(groups))
  return oracle.expected_grad(_row_loss(cfg), theta, payload, probs), theta


@pytest.mark.parametrize("n", [2, 3, 4])
def test_bon_pick_expectation_by_enumeration(n):
  """omega = one-hot BoN pick, grad-Q term from leave-one-out picks: E[grad] =
  -grad[E_data(log pi(y_e) + lam Q(y_e)) - sum_y sg(P_bon,n(y)) log pi(y)
        - lam sum_y sg(P_bon,n-1(y)) Q(y)]
  exactly (the section 3.2 / T13 gradient with the tilt's expectations taken under exact BoN
  policies, T2, verifier ties included). Without the -lam E[grad Q] term (the previous
  estimator) the gradient is measurably different."""
  lam = 2.5
  data = jnp.asarray([0.3, 0.1, 0.2, 0.25, 0.15])
  cfg = get_objective("bon_sft").make_config(lambda_n=lam, omega="bon_pick")
  got, theta = _bon_pick_expectation(cfg, lam, n, data)
  pi = jax.nn.softmax(theta)
  bon_n = jax.lax.stop_gradient(oracle.bon_probs(pi, oracle.SCORES, n))
  bon_others = jax.lax.stop_gradient(oracle.bon_probs(pi, oracle.SCORES, n - 1))

  def target(t, with_q_term=True):
    logp = jax.nn.log_softmax(t)
    q = oracle.cdf_le(jax.nn.softmax(t), oracle.SCORES)
    value = (data * (logp + lam * q)).sum() - (bon_n * logp).sum()
    return value - lam * (bon_others * q).sum() if with_q_term else value
  want = -jax.grad(target)(theta)
  np.testing.assert_allclose(got, want, atol=1e-12)
  dropped = -jax.grad(lambda t: target(t, False))(theta)
  assert np.abs(dropped - want).max() > 1e-2 * np.abs(want).max()


def test_softmax_omega_is_exact_t13_gradient_at_population_limit():
  """When the group's empirical distribution equals pi (a stratified group), Q_hat = F_<= and
  the softmax weights are the tilt's weights, so the self-normalised estimator equals the exact
  gradient of log mu(y_e), mu = pi exp(lam F_<=) / Z (T13), with ties in the verifier."""
  lam = 4.0
  pi0 = np.array([0.1, 0.2, 0.3, 0.2, 0.2])
  group = oracle.stratified_group(pi0, 10)
  theta = jnp.log(jnp.asarray(pi0))
  cfg = get_objective("bon_sft").make_config(lambda_n=lam, omega="softmax")
  cfg_no_q = get_objective("bon_sft").make_config(lambda_n=lam, include_q_terms=False)
  estimator = jax.jit(jax.grad(_row_loss(cfg)))
  without_q = jax.jit(jax.grad(_row_loss(cfg_no_q)))
  exact = jax.grad(lambda t, e: -jnp.log(oracle.tilt(jax.nn.softmax(t), oracle.SCORES, lam)[e]))
  for expert in (0, 1, 3):  # ranks: middle, tied top, second lowest
    payload = jnp.asarray(np.append(group, expert))
    want = exact(theta, expert)
    np.testing.assert_allclose(estimator(theta, payload), want, atol=1e-12)
    # Without the lambda bracket the estimator misses the grad-Q terms: not the T13 gradient.
    assert np.abs(without_q(theta, payload) - want).max() > 1e-2


def test_bon_sft_weights_by_hand():
  scores = jnp.array([[1.0, 3.0, 2.0, 3.0]])
  mask = jnp.ones((1, 4), bool)
  np.testing.assert_allclose(oracle.jit_call(group_win_rates, scores, mask),
                             [[0.25, 1.0, 0.5, 1.0]])
  lam = 2.0
  # bon_pick: omega on index 1; the pick of the others is index 3 (score 3) for j = 1 and
  # index 1 (score 3) otherwise, so 1{v(pick_-j) >= v_j} = 1 for every j, and
  # w_j = -omega_j + (lam / 4) (1{r_e >= v_j} - 1) with r_e = 2.
  w = oracle.jit_call(bon_sft_weights, scores, mask, jnp.array([2.0]), lambda_n=lam,
                      omega="bon_pick")
  np.testing.assert_allclose(w, [[0.0, -1.0 - 0.5, 0.0, -0.5]], atol=1e-12)
  # A unique best sample: without it the pick of the others (score 2) loses to it, so the
  # best sample's own comparison term is 0 (the old estimator used 1 here).
  unique = jnp.array([[1.0, 3.0, 2.0, 0.5]])
  w = oracle.jit_call(bon_sft_weights, unique, mask, jnp.array([2.0]), lambda_n=lam,
                      omega="bon_pick")
  np.testing.assert_allclose(w, [[0.5 * (1 - 1), -1.0 + 0.5 * (0 - 0), 0.5 * (1 - 1),
                                  0.5 * (1 - 1)]], atol=1e-12)
  # softmax: omega proportional to exp(lam Q_hat).
  e = np.exp(lam * np.array([0.25, 1.0, 0.5, 1.0]))
  omega = e / e.sum()
  picked = np.array([omega.sum(), omega[1] + omega[3], omega[1] + omega[2] + omega[3],
                     omega[1] + omega[3]])
  want = -omega + lam / 4 * (np.array([1.0, 0.0, 1.0, 0.0]) - picked)
  np.testing.assert_allclose(oracle.jit_call(bon_sft_weights, scores, mask, jnp.array([2.0]),
                                             lambda_n=lam), [want],
                             atol=1e-12)

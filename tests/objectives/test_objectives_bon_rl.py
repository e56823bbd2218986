"""bon_rl, bon_rlb, bon_rlb_p: exact gradients (T9, T10, T11) and what the biased plug-in
estimators do exactly (their expectation given p)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import (BoNRLBConfig, BoNRLBPConfig, BoNRLConfig, bon_rl_weights,
                               bon_rlb_coefficients, bon_rlb_p_weights, bon_rlb_weights,
                               get_objective)
from bonjax.objectives.loss_terms import clip_weights
from tests.objectives import objectives_oracle as oracle


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


def _cases(group):
  """(objective, config) cases checked on groups of `group` samples."""
  rl = {"signal": "env", "selection": "env"}
  cases = {
      "mean_env_env": ("bon_rl", BoNRLConfig(estimator="selected_mean", **rl)),
      "rlbp_group_mean": ("bon_rlb_p", BoNRLBPConfig(bon_n={3: 3, 4: 2}[group],
                                                     form="group_mean")),
      "rlbp_selected": ("bon_rlb_p", BoNRLBPConfig(bon_n={3: 3, 4: 2}[group], form="selected")),
  }
  if group == 3:
    cases.update({
        "loo_verifier_verifier": ("bon_rl", BoNRLConfig(estimator="loo", signal="verifier")),
        "loo_env_env": ("bon_rl", BoNRLConfig(estimator="loo", **rl)),
    })
  else:
    cases["loo_env_verifier"] = ("bon_rl", BoNRLConfig(estimator="loo", signal="env"))
  return cases


@pytest.fixture(scope="module")
def expected():
  """{group size: (theta, {case: expected loss gradient})}, one compilation per group size."""
  with jax.enable_x64(True):
    def build(theta, group):
      return oracle.row_inputs(theta, group, oracle.REWARDS, oracle.SCORES)
    theta = oracle.theta0()
    out = {}
    for group in (3, 4):
      payload, probs = oracle.enumerate_groups(theta, group)
      out[group] = theta, oracle.expected_grads(_cases(group), build, theta, payload, probs)
    return out


def _binomial(n, c, s):
  return math.comb(n, c) * s ** c * (1 - s) ** (n - c)


def _e_plus(theta):
  """E_{pi(.|correct)}[grad log pi] = grad s / s, s = P(correct)."""
  s = float(oracle.pass_at(jax.nn.softmax(theta), oracle.REWARDS, 1))
  return jax.grad(lambda t: oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, 1))(theta) / s, s


def test_t9_pass_at_n_gradient_closed_form():
  """d pass@N / d theta_j = N p^(N-1) pi_j (1{j correct} - s), and (1 - p) E_+ + p E_- = 0."""
  theta = oracle.theta0()
  pi = np.asarray(jax.nn.softmax(theta))
  correct = oracle.REWARDS > 0
  s = pi[correct].sum()
  p = 1 - s
  score = np.eye(5) - pi[None, :]  # row y: grad log pi_y
  e_plus = (pi[correct, None] * score[correct]).sum(0) / s
  e_minus = (pi[~correct, None] * score[~correct]).sum(0) / p
  np.testing.assert_allclose((1 - p) * e_plus + p * e_minus, 0.0, atol=1e-15)
  for n in (1, 3, 6):
    got = jax.grad(lambda t: oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, n))(theta)
    np.testing.assert_allclose(got, n * p ** (n - 1) * pi * (correct - s), atol=1e-14)
    np.testing.assert_allclose(got, n * p ** (n - 1) * (1 - p) * e_plus, atol=1e-14)
    np.testing.assert_allclose(got, -n * p ** n * e_minus, atol=1e-14)


# ----------------------------------------------------------------------------- bon_rl


@pytest.mark.parametrize("case,signal,selection,n", [
    ("loo_env_verifier", "env", "verifier", 4),
    ("loo_verifier_verifier", "verifier", "verifier", 3),
    ("loo_env_env", "env", "env", 3)])
def test_bon_rl_loo_is_exact_gradient_of_bon_reward(expected, case, signal, selection, n):
  """T11 with verifier ties: E[sum_i A_i grad log pi] = grad sum_y R_y P_bon,v(y)."""
  theta, got = expected[n]
  values = oracle.REWARDS if signal == "env" else oracle.SCORES
  selector = oracle.REWARDS if selection == "env" else oracle.SCORES
  want = jax.grad(lambda t: -oracle.bon_value(jax.nn.softmax(t), values, selector, n))(theta)
  np.testing.assert_allclose(got[case], want, atol=1e-12)


@pytest.mark.parametrize("n", [3, 4])
def test_bon_rl_selected_mean_binary_expectation(expected, n):
  """Chow's practical estimator (A = R_pick - mean R on the pick), binary reward selected by
  itself: E = (p - p^N) E_+ = grad pass@N (p - p^N) / (N p^(N-1) (1 - p)): the pass@N direction
  with a per-prompt rescaling, not grad pass@N itself."""
  theta, got = expected[n]
  e_plus, s = _e_plus(theta)
  p = 1 - s
  np.testing.assert_allclose(got["mean_env_env"], -(p - p ** n) * e_plus, atol=1e-12)
  grad_pass = jax.grad(lambda t: oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, n))(theta)
  ratio = (p - p ** n) / (n * p ** (n - 1) * (1 - p))
  np.testing.assert_allclose(got["mean_env_env"], -ratio * grad_pass, atol=1e-12)
  assert abs(ratio - 1) > 1e-3


def test_bon_rl_weights_by_hand():
  values = jnp.array([[0.0, 1.0, 0.5, 1.0], [0.2, 0.7, 0.7, 0.1]])
  scores = jnp.array([[0.1, 0.9, 0.9, 0.3], [5.0, 1.0, 2.0, 0.0]])
  mask = jnp.ones((2, 4), bool)
  # Row 0: the pick is index 1 (first of the tie at 0.9); without it the pick is index 2
  # (value 0.5), so A_1 = 1.0 - 0.5. Row 1: pick 0, then index 2: A_0 = 0.2 - 0.7.
  np.testing.assert_allclose(oracle.jit_call(bon_rl_weights, values, scores, mask,
                                             estimator="loo"),
                             [[0, 0.5, 0, 0], [0.2 - 0.7, 0, 0, 0]], atol=1e-12)
  np.testing.assert_allclose(oracle.jit_call(bon_rl_weights, values, scores, mask,
                                             estimator="selected_mean"),
                             [[0, 1.0 - 0.625, 0, 0], [0.2 - 0.425, 0, 0, 0]], atol=1e-12)


# ----------------------------------------------------------------------------- bon_rlb


@pytest.mark.parametrize("n,p,g_plus,g_minus,g_bar", [(4, 0.5, 0.533333, 4.0, 0.266667),
                                                      (32, 0.9, 1.264277, 288.0, 0.126428),
                                                      (8, 0.99, 96.517938, 792.0, 0.965179)])
def test_t10_reference_weights(n, p, g_plus, g_minus, g_bar):
  got = oracle.jit_call(bon_rlb_coefficients, jnp.asarray(p), n=n)
  np.testing.assert_allclose(got, (g_plus, g_minus, g_bar), rtol=5e-6)


def test_t10_identities_with_true_p():
  """Under the exact BoN policy of a perfect verifier: g+/g- (plus sign) give grad pass@N, the
  minus sign gives grad pass@N (1 + p)/(1 - p), gbar+ alone gives grad pass@N, -N on the
  negatives alone gives grad pass@N; 0 <= gbar+ <= 1 and gbar+ = 1 at N = 1."""
  theta = oracle.theta0()
  pi = jax.nn.softmax(theta)
  correct = jnp.asarray(oracle.REWARDS)
  p = 1 - float((pi * correct).sum())
  score = jax.jit(jax.jacobian(jax.nn.log_softmax))(theta)  # [K outcomes, K params]
  for n in (1, 2, 5):
    bon = oracle.bon_probs(pi, oracle.REWARDS, n)
    grad_pass = jax.grad(lambda t: oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, n))(theta)
    g_plus, g_minus, g_bar = oracle.jit_call(bon_rlb_coefficients, jnp.asarray(p), n=n)

    def expect(weight_correct, weight_wrong):
      w = jnp.where(correct > 0, weight_correct, weight_wrong)
      return jnp.einsum("y,yk->k", bon * w, score)
    np.testing.assert_allclose(expect(g_plus, g_minus), grad_pass, atol=1e-12)
    np.testing.assert_allclose(expect(g_plus, -g_minus), grad_pass * (1 + p) / (1 - p),
                               atol=1e-12)
    np.testing.assert_allclose(expect(g_bar, 0.0), grad_pass, atol=1e-12)
    np.testing.assert_allclose(expect(0.0, -float(n)), grad_pass, atol=1e-12)
    assert 0 <= float(g_bar) <= 1
  np.testing.assert_allclose(oracle.jit_call(bon_rlb_coefficients, jnp.asarray(0.37), n=1)[2],
                             1.0)


@pytest.mark.parametrize("form,group,n", [("group_mean", 3, 3), ("group_mean", 4, 2),
                                          ("selected", 3, 3), ("selected", 4, 2)])
def test_bon_rlb_p_plugin_expectation_given_p(expected, form, group, n):
  """group_mean: kappa = sum_c Binom(c) (N/n') p_hat^(N-1) c; selected (gbar+ on the first
  correct sample, which is pi(.|correct)-distributed given c): kappa = sum_c Binom(c)
  gbar+(p_hat), gbar+(p) = N p^(N-1) (1 - p) / (1 - p^N)."""
  theta, got = expected[group]
  e_plus, s = _e_plus(theta)
  kappa = 0.0
  for c in range(1, group + 1):
    p_hat = (group - c) / group
    if form == "group_mean":
      term = n / group * p_hat ** (n - 1) * c
    else:
      term = n * p_hat ** (n - 1) * (1 - p_hat) / (1 - p_hat ** n)
    kappa += _binomial(group, c, s) * term
  np.testing.assert_allclose(got[f"rlbp_{form}"], -kappa * e_plus, atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_group_form_is_exact_at_population_limit(n):
  """With a group whose empirical distribution is pi, p_hat = p and the group means are E_+ and
  E_-: BoN-RLB (+) and BoN-RLB(P) give grad pass@N exactly, BoN-RLB (-) gives grad pass@N
  (1 + p)/(1 - p) (T10b, section 3.5 item 3)."""
  pi0 = np.array([0.1, 0.2, 0.3, 0.2, 0.2])
  group = oracle.stratified_group(pi0, 10)
  theta = jnp.log(jnp.asarray(pi0))
  p = 1 - float((pi0 * oracle.REWARDS).sum())
  grad_pass = jax.grad(lambda t: oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, n))(theta)

  cases = {"plus": ("bon_rlb", BoNRLBConfig(bon_n=n, estimator="plugin_plus")),
           "minus": ("bon_rlb", BoNRLBConfig(bon_n=n, estimator="plugin_minus")),
           "positives": ("bon_rlb_p", BoNRLBPConfig(bon_n=n, form="group_mean"))}
  losses = oracle.stacked_losses(
      cases, lambda t, g: oracle.row_inputs(t, g, oracle.REWARDS, oracle.SCORES))
  plus, minus, positives = jax.jit(jax.jacrev(losses))(theta, jnp.asarray(group))
  np.testing.assert_allclose(plus, -grad_pass, atol=1e-12)
  np.testing.assert_allclose(minus, -grad_pass * (1 + p) / (1 - p), atol=1e-12)
  np.testing.assert_allclose(positives, -grad_pass, atol=1e-12)


def test_bon_rlb_weights_by_hand_degenerate_and_clip():
  correct = jnp.array([[True, False, False, False], [False] * 4, [True] * 4,
                       [True, False, True, True]])
  mask = jnp.array([[True] * 4, [True] * 4, [True] * 4, [True, True, False, True]])
  w = oracle.jit_call(bon_rlb_weights, correct, mask, n=4, estimator="plugin_plus",
                      dtype=jnp.float64)
  p = 0.75  # row 0: c = 1 of 4
  np.testing.assert_allclose(w[0], [4 * p ** 3, 4 * p ** 4, 4 * p ** 4, 4 * p ** 4])
  np.testing.assert_array_equal(w[1], 0.0)   # no correct sample: no signal
  np.testing.assert_array_equal(w[2], 0.0)   # all correct: p_hat = 0
  p = 1 / 3  # row 3: 3 valid, c = 2 (the masked correct sample does not count)
  np.testing.assert_allclose(w[3], [4 * p ** 3 / 2, 4 * p ** 4 / 2, 0, 4 * p ** 3 / 2])
  wm = oracle.jit_call(bon_rlb_weights, correct, mask, n=4, estimator="plugin_minus",
                       dtype=jnp.float64)
  wm, clip_metrics = oracle.jit_call(clip_weights, wm, mask, clip=1.5)
  np.testing.assert_allclose(wm[0], [1.5, -1.265625, -1.265625, -1.265625])
  # Row 0 loses 4 * 0.75^3 - 1.5 = 0.1875 of its |w|; the other rows are within the bound.
  total = 4 * 0.75 ** 3 + 3 * 1.265625 + 4 * (1 / 3) ** 3 / 2 * 2 + 4 * (1 / 3) ** 4 / 2
  np.testing.assert_allclose(clip_metrics["weight_clip_frac"], 1 / 15)
  np.testing.assert_allclose(clip_metrics["weight_clipped_mass"], 0.1875 / total)
  wp = oracle.jit_call(bon_rlb_p_weights, correct, mask, n=4, form="group_mean",
                       dtype=jnp.float64)
  np.testing.assert_allclose(wp[0], [4 / 4 * 0.75 ** 3, 0, 0, 0])
  ws = oracle.jit_call(bon_rlb_p_weights, correct, mask, n=4, form="selected",
                       dtype=jnp.float64)
  g_bar = float(oracle.jit_call(bon_rlb_coefficients, jnp.asarray(1 / 3), n=4)[2])
  np.testing.assert_allclose(ws[3], [g_bar, 0, 0, 0])

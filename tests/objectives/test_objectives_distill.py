"""vbon, bond, j_bond: exact gradients of the distillation objectives (T20, section 5)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import (BONDConfig, JBONDConfig, VBoNConfig, bond_log_ratio,
                               empirical_cdf, ema_anchor_update, vbon_rewards)
from tests.objectives import objectives_oracle as oracle

PI_REF = np.array([0.1, 0.2, 0.3, 0.2, 0.2])
DISTINCT_SCORES = np.array([2.0, 3.0, 2.5, 1.0, 0.0])  # vBoN's formula assumes no ties


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


def _reference_sample(scores, pad=2):
  """Scores of an exact sample of PI_REF (M = 10) plus `pad` masked garbage entries, shuffled."""
  refs = np.asarray(scores)[oracle.stratified_group(PI_REF, 10)]
  refs = np.concatenate([refs, np.full(pad, -7.0)])
  mask = np.concatenate([np.ones(10, bool), np.zeros(pad, bool)])
  order = np.random.default_rng(0).permutation(len(refs))
  return refs[order][None], mask[order][None]


def test_t20_add_one_cdf_reference_values():
  refs = jnp.array([[0.8, -1.2, 2.0, 0.1, 0.3, 99.0]])  # unsorted, one masked entry
  mask = jnp.array([[True, True, True, True, True, False]])
  got = oracle.jit_call(empirical_cdf, jnp.array([[-2.0, 0.2, 0.8, 3.0]]), refs, mask)
  np.testing.assert_allclose(got, [[1 / 6, 3 / 6, 4 / 6, 1.0]], atol=1e-15)
  weak = oracle.jit_call(empirical_cdf, jnp.array([[0.8]]), refs, mask, strict=False,
                         cdf="plain")
  np.testing.assert_allclose(weak, [[4 / 5]], atol=1e-15)


def _builder(scores, refs, ref_mask, with_expert):
  def build(theta, payload):
    group = payload[:-1] if with_expert else payload
    log_ref = jnp.log(jnp.asarray(PI_REF, theta.dtype))[group][None]
    extra = {"ref_logprobs": log_ref, "anchor_logprobs": log_ref,
             "ref_scores": jnp.asarray(refs, theta.dtype), "ref_mask": jnp.asarray(ref_mask)}
    if with_expert:
      extra["expert_logprobs"] = jax.nn.log_softmax(theta)[payload[-1]][None]
    return oracle.row_inputs(theta, group, oracle.REWARDS, scores, **extra)
  return build


# ----------------------------------------------------------------------------- vbon

VBON_CASES = {
    "exact_plain_n2": ("vbon", VBoNConfig(bon_n=2, cdf="plain", reward_scale=1.0, kl_coef=1.0)),
    "exact_plain_n4": ("vbon", VBoNConfig(bon_n=4, cdf="plain", reward_scale=1.0, kl_coef=1.0)),
    "default_exact": ("vbon", VBoNConfig(bon_n=4, reward="exact")),
    "default_l1": ("vbon", VBoNConfig(bon_n=4, reward="l1")),
}


@pytest.fixture(scope="module")
def vbon_expected():
  """theta -> {case: expected loss gradient} over all groups of 3 (one compilation)."""
  refs, ref_mask = _reference_sample(DISTINCT_SCORES)
  losses = oracle.stacked_losses(VBON_CASES, _builder(DISTINCT_SCORES, refs, ref_mask, False))

  def at(theta):
    groups, probs = oracle.enumerate_groups(theta, 3)
    return dict(zip(VBON_CASES, oracle.expected_jacobian(losses, theta, groups, probs)))
  return at, refs, ref_mask


@pytest.mark.parametrize("n", [2, 4])
def test_vbon_exact_reward_is_exact_gradient_of_minus_kl_to_bon(vbon_expected, n):
  """Plain CDF on an exact reference sample, reward scale 1 and beta = 1: the estimator's
  expectation is grad of -KL(pi || pi_bon), pi_bon = sum_i C(N,i) F_<^(N-i) pi_ref^i (T20)."""
  at, _, _ = vbon_expected
  pi_ref = jnp.asarray(PI_REF)
  bon = oracle.bon_probs_binomial(pi_ref, oracle.cdf_lt(pi_ref, DISTINCT_SCORES), n)
  np.testing.assert_allclose(bon.sum(), 1.0, atol=1e-14)
  theta = oracle.theta0()
  want = jax.grad(lambda t: oracle.kl(jax.nn.softmax(t), bon))(theta)
  np.testing.assert_allclose(at(theta)[f"exact_plain_n{n}"], want, atol=1e-12)
  # At pi = pi_bon the objective is maximal (0) and the expected gradient vanishes.
  np.testing.assert_allclose(at(jnp.log(bon))[f"exact_plain_n{n}"], 0.0, atol=1e-12)
  assert float(oracle.kl(jax.nn.softmax(theta), bon)) > 0.05


@pytest.mark.parametrize("reward", ["exact", "l1"])
def test_vbon_default_scaling_matches_closed_form(vbon_expected, reward):
  """Defaults (add-one CDF, scale 1/N for exact or 1 for l1, beta = 1/(N-1)): the expectation is
  grad[scale E_pi R(y) - beta KL(pi || pi_ref)] with R computed here from the counts."""
  n = 4
  at, refs, ref_mask = vbon_expected
  valid_refs = refs[ref_mask]
  f_hat = np.array([(1 + (valid_refs < s).sum()) / (len(valid_refs) + 1)
                    for s in DISTINCT_SCORES])
  if reward == "exact":
    bon = sum(math.comb(n, i) * f_hat ** (n - i) * PI_REF ** i for i in range(1, n + 1))
    per_outcome = (np.log(bon) - np.log(PI_REF)) / n
  else:
    per_outcome = np.log(f_hat)
  theta = oracle.theta0()

  def objective(t):
    pi = jax.nn.softmax(t)
    return (pi * per_outcome).sum() - oracle.kl(pi, jnp.asarray(PI_REF)) / (n - 1)
  np.testing.assert_allclose(at(theta)[f"default_{reward}"], -jax.grad(objective)(theta),
                             atol=1e-12)


def test_vbon_rewards_invariant_to_monotone_score_transforms():
  scores = jnp.array([[0.3, -1.0, 2.2, 0.9]])
  refs = jnp.array([[0.1, 0.9, -0.5, 1.7, 2.5, 0.3]])
  ref_logp = jnp.array([[-3.0, -1.0, -2.0, -4.0]])
  for reward in ("exact", "l1"):
    rewards = jax.jit(functools.partial(vbon_rewards, ref_mask=None, ref_logprobs=ref_logp,
                                        n=4, reward=reward, cdf="add_one"))
    base = rewards(scores, refs)
    shifted = rewards(scores + 5.0, refs + 5.0)
    squashed = rewards(jnp.tanh(scores), jnp.tanh(refs))
    np.testing.assert_allclose(shifted, base, atol=1e-14)
    np.testing.assert_allclose(squashed, base, atol=1e-14)


# ----------------------------------------------------------------------------- bond


BOND_CASES = {
    "backward": ("bond", BONDConfig(bon_n=3, mode="backward", cdf="plain")),
    "forward": ("bond", BONDConfig(bon_n=3, mode="forward", cdf="plain")),
    "jeffreys": ("bond", BONDConfig(bon_n=3, mode="jeffreys", beta=0.3, cdf="plain")),
    "backward_no_tie_correction": ("bond", BONDConfig(bon_n=3, mode="backward", cdf="plain",
                                                      tie_correction=False)),
    "j_bond": ("j_bond", JBONDConfig(beta=0.4, cdf="plain")),
}


@pytest.fixture(scope="module")
def bond_expected():
  """{case: expected loss gradient} over all groups of 3 and expert outcomes, the expert drawn
  from Best-of-3 (bond) or Best-of-2 (j_bond) of PI_REF (one compilation)."""
  with jax.enable_x64(True):
    refs, ref_mask = _reference_sample(oracle.SCORES)
    losses = oracle.stacked_losses(BOND_CASES, _builder(oracle.SCORES, refs, ref_mask, True))
    theta = oracle.theta0()
    bon = {n: oracle.bon_probs(jnp.asarray(PI_REF), oracle.SCORES, n) for n in (2, 3)}
    payload, probs3 = oracle.enumerate_groups(theta, 3, expert_probs=bon[3])
    _, probs2 = oracle.enumerate_groups(theta, 3, expert_probs=bon[2])
    probs = jnp.stack([probs2 if name == "j_bond" else probs3 for name in BOND_CASES])
    got = oracle.expected_jacobian(losses, theta, payload, probs)
    return theta, bon, dict(zip(BOND_CASES, got))


@pytest.mark.parametrize("case,forward,backward", [("backward", 0.0, 1.0), ("forward", 1.0, 0.0),
                                                   ("jeffreys", 0.7, 0.3)])
def test_bond_is_exact_gradient_of_jeffreys_divergence(bond_expected, case, forward, backward):
  """Plain CDF on an exact reference sample with the tie correction (scores with ties): the
  expectation is grad[(1-b) KL(pi_bon || pi) + b KL(pi || pi_bon)] with pi_bon from T2, the
  forward term's expert drawn from pi_bon."""
  theta, bon, got = bond_expected

  def divergence(t):
    pi = jax.nn.softmax(t)
    return forward * oracle.kl(bon[3], pi) + backward * oracle.kl(pi, bon[3])
  np.testing.assert_allclose(got[case], jax.grad(divergence)(theta), atol=1e-12)


def test_bond_without_tie_correction_is_biased_under_ties(bond_expected):
  theta, bon, got = bond_expected
  want = jax.grad(lambda t: oracle.kl(jax.nn.softmax(t), bon[3]))(theta)
  assert np.abs(got["backward_no_tie_correction"] - want).max() > 1e-3


def test_j_bond_is_bond_with_n_2_against_the_anchor(bond_expected):
  """J-BOND = Jeffreys divergence to Best-of-2 of the anchor: anchor log-probs replace the
  reference ones and ref_scores hold the anchor samples' scores."""
  theta, bon, got = bond_expected

  def divergence(t):
    pi = jax.nn.softmax(t)
    return 0.6 * oracle.kl(bon[2], pi) + 0.4 * oracle.kl(pi, bon[2])
  np.testing.assert_allclose(got["j_bond"], jax.grad(divergence)(theta), atol=1e-12)


def test_bond_log_ratio_by_hand():
  refs = jnp.array([[0.0, 1.0, 1.0, 2.0]])
  got = oracle.jit_call(bond_log_ratio, jnp.array([[1.0, 3.0]]), refs, None, n=3, cdf="plain")
  # score 1: p_<= = 3/4, p_< = 1/4: 2 log(3/4) + log(1 + 1/3 + 1/9); score 3: p = 1, sum = 3.
  np.testing.assert_allclose(got, [[2 * np.log(0.75) + np.log(13 / 9), np.log(3.0)]],
                             atol=1e-14)


def test_ema_anchor_update():
  anchor = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(4.0)}
  params = {"w": jnp.array([3.0, 0.0]), "b": jnp.array(0.0)}
  new = ema_anchor_update(anchor, params, 0.25)
  np.testing.assert_allclose(new["w"], [1.5, 1.5])
  np.testing.assert_allclose(new["b"], 3.0)
  with pytest.raises(ValueError, match="eta"):
    ema_anchor_update(anchor, params, 1.5)

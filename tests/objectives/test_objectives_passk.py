"""pkpo and loo_passk: reference values (T16-T18), subset definitions, exact gradients."""

import functools
import itertools
import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.objectives import (get_objective, loo_max_advantages, max_at_k, pkpo_s,
                               pkpo_s_loo_minus_one, pkpo_weights)
from tests.objectives import objectives_oracle as oracle

G_REF = [0.2, 0.9, 0.5, 0.1]


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


TRANSFORMS = ("binary", "s", "s_loo", "s_loo_minus_one")


@functools.partial(jax.jit, static_argnames=("k",))
def _all_transforms(values, mask, k):
  # One compilation per (k, shape) for all four transforms.
  return {t: pkpo_weights(values, mask, k, t) for t in TRANSFORMS}


def _weights(values, mask, k, transform):
  return _all_transforms(values, mask, k)[transform]


def _one(values, k, transform, width=6):
  """Transform of one group; padded with masked slots to a fixed width so that every call with
  the same k reuses one compilation."""
  n = len(values)
  padded = jnp.asarray([list(values) + [0.0] * (width - n)], jnp.float64)
  mask = jnp.asarray([[True] * n + [False] * (width - n)])
  out = np.asarray(_weights(padded, mask, k, transform))[0]
  assert np.all(out[n:] == 0.0)
  return out[:n]


# ----------------------------------------------------------------------------- reference values


def test_t16_t17_reference_values():
  g = jnp.asarray([G_REF])
  mask = jnp.ones((1, 4), bool)
  np.testing.assert_allclose(oracle.jit_call(max_at_k, g, mask, k=2), [0.65], atol=1e-14)
  np.testing.assert_allclose(_one(G_REF, 2, "s"), [4 / 15, 0.45, 19 / 60, 4 / 15], atol=1e-14)
  np.testing.assert_allclose(_one(G_REF, 2, "s_loo_minus_one"), [1 / 60, 19 / 60, 7 / 60, 0],
                             atol=1e-14)
  np.testing.assert_allclose(_one([1.0, 0.0, 0.0, 1.0], 2, "binary"), [0.5, 1 / 3, 1 / 3, 0.5],
                             atol=1e-14)
  np.testing.assert_allclose(_one(G_REF, 2, "s").sum(), 2 * 0.65, atol=1e-14)


def test_k_equal_1_and_k_equal_n_limits():
  np.testing.assert_allclose(_one(G_REF, 1, "s"), np.array(G_REF) / 4, atol=1e-14)
  np.testing.assert_allclose(_one(G_REF, 4, "s"), [0.9] * 4, atol=1e-14)
  np.testing.assert_allclose(_one([0.0, 1.0, 0.0, 1.0], 1, "binary"), [0, 0.25, 0, 0.25])
  np.testing.assert_allclose(_one([0.0, 1.0, 0.0, 0.0], 4, "binary"), [1.0] * 4)
  np.testing.assert_allclose(_one([0.0] * 4, 4, "binary"), [0.0] * 4)
  # k = 1 s_loo_minus_one is the LOO-centred reward / n.
  g = np.array(G_REF)
  np.testing.assert_allclose(_one(G_REF, 1, "s_loo_minus_one"),
                             (g - (g.sum() - g) / 3) / 4, atol=1e-14)
  # k = n: s_loo falls back to s (no k-subset of the other n - 1 samples).
  np.testing.assert_allclose(_one(G_REF, 4, "s_loo"), _one(G_REF, 4, "s"), atol=1e-14)


def _subset_definitions(g, k):
  """Direct subset sums with exact fractions: s, s_loo, s_loo_minus_one (PKPO definitions)."""
  g = [Fraction(x).limit_denominator(10 ** 6) for x in g]
  n = len(g)

  def big_s(i, members):  # S(i, k, X) = (1 / C(|X|, k)) sum_{I subset X, |I| = k, i in I} max g_I
    subsets = [c for c in itertools.combinations(members, k) if i in c]
    total = math.comb(len(members), k)
    return sum((max(g[j] for j in c) for c in subsets), Fraction(0)) / total if total else 0

  everyone = tuple(range(n))
  s = [big_s(i, everyone) for i in everyone]
  s_loo = []
  for i in everyone:
    rest = tuple(j for j in everyone if j != i)
    s_loo.append(s[i] - sum((big_s(j, rest) for j in rest), Fraction(0)) / (n - 1))
  s_loo_m1 = []
  for i in everyone:
    total = Fraction(0)
    for c in itertools.combinations(everyone, k):
      if i in c:
        others = [g[j] for j in c if j != i]
        total += max(g[j] for j in c) - (max(others) if others else 0)
    s_loo_m1.append(total / math.comb(n, k))
  return [np.array([float(x) for x in v]) for v in (s, s_loo, s_loo_m1)]


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_transforms_match_subset_definitions_with_ties(k):
  g = [0.3, -1.0, 0.7, 0.3, 2.0, 0.7]
  s, s_loo, s_loo_m1 = _subset_definitions(g, k)
  np.testing.assert_allclose(_one(g, k, "s"), s, atol=1e-12)
  np.testing.assert_allclose(_one(g, k, "s_loo"), s_loo, atol=1e-12)
  if k >= 2:
    np.testing.assert_allclose(_one(g, k, "s_loo_minus_one"), s_loo_m1, atol=1e-12)
  # The binary transform is s on 0/1 rewards.
  f = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
  np.testing.assert_allclose(_one(f, k, "binary"), _one(f, k, "s"), atol=1e-12)


def test_masked_samples_behave_like_a_smaller_group():
  values = jnp.asarray([[0.3, 99.0, 0.7, -1.0, 0.2, np.nan]])
  mask = jnp.asarray([[True, False, True, True, True, False]])
  for transform in ("s", "s_loo", "s_loo_minus_one"):
    got = np.asarray(_weights(jnp.nan_to_num(values), mask, 3, transform))[0]
    np.testing.assert_allclose(got[[0, 2, 3, 4]], _one([0.3, 0.7, -1.0, 0.2], 3, transform),
                               atol=1e-14)
    np.testing.assert_array_equal(got[[1, 5]], 0.0)


def test_large_n_float32_accuracy():
  """n = 64, k = 32 in float32 against exact rational arithmetic: C(64, 32) ~ 1.8e18 overflows
  nothing here because every coefficient is a ratio tabulated from log-factorials."""
  n, k = 64, 32
  g = np.random.default_rng(1).uniform(size=n).round(3)
  order = np.argsort(g, kind="stable")
  gs = [Fraction(float(x)).limit_denominator(10 ** 4) for x in g[order]]
  total = math.comb(n, k)
  exact_s = np.empty(n)
  for t in range(n):  # s_(t) = [C(t, k-1) g_(t) + sum_{u>t} C(u-1, k-2) g_(u)] / C(n, k)
    value = math.comb(t, k - 1) * gs[t] + sum((math.comb(u - 1, k - 2) * gs[u]
                                               for u in range(t + 1, n)), Fraction(0))
    exact_s[order[t]] = float(value / total)
  with jax.enable_x64(False):
    got = np.asarray(oracle.jit_call(pkpo_s, jnp.asarray([g], jnp.float32),
                                     jnp.ones((1, n), bool), k=k))[0]
    m1 = np.asarray(oracle.jit_call(pkpo_s_loo_minus_one, jnp.asarray([g], jnp.float32),
                                    jnp.ones((1, n), bool), k=k))[0]
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, exact_s, rtol=2e-5, atol=1e-7)
  assert np.all(np.isfinite(m1)) and abs(m1.sum()) < 1.0


def test_shift_invariance_and_permutation_equivariance():
  g = np.array([0.3, -1.0, 0.7, 0.3, 2.0])
  perm = np.array([3, 0, 4, 1, 2])
  for k in (1, 3):
    base = _one(g, k, "s_loo_minus_one")
    np.testing.assert_allclose(_one(g + 3.5, k, "s_loo_minus_one"), base, atol=1e-12)
    for transform in ("s", "s_loo", "s_loo_minus_one"):
      np.testing.assert_allclose(_one(g[perm], k, transform), _one(g, k, transform)[perm],
                                 atol=1e-12)
  np.testing.assert_array_equal(_one([0.4] * 5, 3, "s_loo_minus_one"), 0.0)


# ----------------------------------------------------------------------------- exact gradients


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pkpo_is_exact_gradient_of_pass_at_k_and_max_at_k(k):
  """From n = 4 samples plus a masked padding slot holding garbage, for every transform:
  E[sum_i w_i grad log pi] = grad E[max of k draws of g] (continuous g with a tie; T16/T17) and
  the binary transform gives grad pass@k (T9). One compilation checks all four transforms."""
  spec = get_objective("pkpo")
  # The binary transform reads correctness from the rewards, the others g from the scores.
  configs = [spec.make_config(k=k, transform=t, signal="env" if t == "binary" else "verifier")
             for t in TRANSFORMS]

  def row_losses(theta, group):
    inputs = _padded(oracle.row_inputs(theta, group, oracle.REWARDS, oracle.VALUES))
    return jnp.stack([spec.fn(inputs, cfg)[0] for cfg in configs])
  theta = oracle.theta0()
  groups = oracle.all_groups(5, 4)
  got = oracle.expected_jacobian(row_losses, theta, groups,
                                 oracle.group_probs(jax.nn.softmax(theta), groups))
  max_k = jax.grad(lambda t: -oracle.expected_max(jax.nn.softmax(t), oracle.VALUES, k))(theta)
  pass_k = jax.grad(lambda t: -oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, k))(theta)
  for row, transform in enumerate(TRANSFORMS):
    np.testing.assert_allclose(got[row], pass_k if transform == "binary" else max_k, atol=1e-12,
                               err_msg=transform)


def _padded(inputs):
  """Appends one masked slot with garbage values (-inf log-prob, NaN reward, huge score)."""
  def pad(x, value):
    return jnp.concatenate([x, jnp.full((x.shape[0], 1), value, x.dtype)], axis=1)
  return inputs.replace(
      logprobs=pad(inputs.logprobs, -jnp.inf), sampler_logprobs=pad(inputs.sampler_logprobs, 0),
      rewards=pad(inputs.rewards, jnp.nan), scores=pad(inputs.scores, 1e9),
      mask=pad(inputs.mask, False), num_tokens=pad(inputs.num_tokens, 1))


def _expected(name, cfg, n, rewards, scores):
  spec = get_objective(name)
  theta = oracle.theta0()

  def row_loss(theta, group):
    return spec.fn(oracle.row_inputs(theta, group, rewards, scores), cfg)[0]
  groups = oracle.all_groups(5, n)
  return theta, oracle.expected_grad(row_loss, theta, groups,
                                     oracle.group_probs(jax.nn.softmax(theta), groups))


# ----------------------------------------------------------------------------- loo_passk


def test_t18_examples():
  values = jnp.asarray([[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.2, 0.9, 0.5, 0.1]])
  np.testing.assert_allclose(oracle.jit_call(loo_max_advantages, values, jnp.ones((3, 4), bool)),
                             [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0.4, 0, 0]], atol=1e-14)


@pytest.mark.parametrize("signal", ["env", "verifier"])
def test_loo_passk_is_exact_gradient_of_expected_max(signal):
  """T11 / Tang et al. with f = max: binary -> grad pass@n, continuous -> grad E[max of n]."""
  cfg = get_objective("loo_passk").make_config(signal=signal)
  theta, got = _expected("loo_passk", cfg, 3, oracle.REWARDS, oracle.VALUES)
  values = oracle.REWARDS if signal == "env" else oracle.VALUES
  want = jax.grad(lambda t: -oracle.expected_max(jax.nn.softmax(t), values, 3))(theta)
  np.testing.assert_allclose(got, want, atol=1e-12)
  if signal == "env":
    np.testing.assert_allclose(
        want, jax.grad(lambda t: -oracle.pass_at(jax.nn.softmax(t), oracle.REWARDS, 3))(theta),
        atol=1e-14)

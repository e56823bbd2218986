"""Exact ground truth for objective tests on a categorical single-token policy pi = softmax(theta).

Two independent pieces:
* enumeration: the expected gradient of an estimator, sum over all K^N sample tuples of
  P(tuple) * grad_theta loss(tuple) (no sampling error at all);
* closed forms of algorithms.md sections 2 and 13 (BoN probabilities with index tie-breaking,
  pass@N, expected maximum, the variational tilt), written directly in jnp so that jax.grad
  gives their exact gradients.
None of this imports the estimators' weight code.

Tolerances: the enumerations are exact sums in float64, so estimator and closed form agree to
rounding (about 1e-15 here); tests use atol 1e-12 against gradient entries of order 1e-2, so a
wrong sign, a missing factor (1/N, N, (1 + p)/(1 - p), ...) or a biased weight fails by many
orders of magnitude. No Monte Carlo is needed: every case is small enough to enumerate.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.objectives import ObjectiveInputs, get_objective


# ----------------------------------------------------------------------------- enumeration


def all_groups(num_outcomes: int, group_size: int) -> np.ndarray:
  """Every ordered tuple of outcomes: [K^N, N] int."""
  return np.array(list(itertools.product(range(num_outcomes), repeat=group_size)),
                  dtype=np.int32).reshape(-1, group_size)


def group_probs(pi: jax.Array, groups: np.ndarray) -> jax.Array:
  """P(tuple) = prod_j pi[y_j] for i.i.d. draws: [T]."""
  return jnp.prod(pi[groups], axis=-1)


def expected_grad(row_loss: Callable[[jax.Array, jax.Array], jax.Array], theta: jax.Array,
                  groups: np.ndarray, probs: jax.Array) -> jax.Array:
  """sum_t probs[t] * grad_theta row_loss(theta, groups[t]).

  Args:
    row_loss: (theta, one tuple [N] or any per-row payload) -> scalar loss of a batch of one.
    theta: [K] logits at which to differentiate.
    groups: [T, ...] payload per enumerated outcome.
    probs: [T] their probabilities (constants).

  Returns:
    [K] expected gradient.
  """
  grads = _batched_grad(row_loss)(theta, jnp.asarray(groups))
  return jnp.einsum("t,tk->k", jax.lax.stop_gradient(probs), grads)


@functools.lru_cache(maxsize=64)
def _batched_grad(row_loss: Callable) -> Callable:
  # Cached per loss function so repeated enumerations in one test compile once.
  return jax.jit(jax.vmap(jax.grad(row_loss), in_axes=(None, 0)))


def expected_jacobian(row_losses: Callable[[jax.Array, jax.Array], jax.Array],
                      theta: jax.Array, groups: np.ndarray, probs: jax.Array) -> jax.Array:
  """Like `expected_grad` for a loss function returning a vector of losses (several
  configurations checked with one compilation): [num_losses, K]. `probs` is [T], or
  [num_losses, T] when the cases draw their payload from different distributions."""
  jac = _batched_jacobian(row_losses)(theta, jnp.asarray(groups))
  probs = jax.lax.stop_gradient(probs)
  if probs.ndim == 2:
    return jnp.einsum("ot,tok->ok", probs, jac)
  return jnp.einsum("t,tok->ok", probs, jac)


@functools.lru_cache(maxsize=64)
def _batched_jacobian(row_losses: Callable) -> Callable:
  return jax.jit(jax.vmap(jax.jacrev(row_losses), in_axes=(None, 0)))


def stacked_losses(cases: dict[str, tuple[str, Any]],
                   build_inputs: Callable[[jax.Array, jax.Array], ObjectiveInputs]) -> Callable:
  """A row loss returning the losses of several (objective name, config) cases, in order."""
  fns = [(get_objective(name).fn, cfg) for name, cfg in cases.values()]

  def row_losses(theta, payload):
    inputs = build_inputs(theta, payload)
    return jnp.stack([fn(inputs, cfg)[0] for fn, cfg in fns])
  return row_losses


def expected_grads(cases: dict[str, tuple[str, Any]],
                   build_inputs: Callable[[jax.Array, jax.Array], ObjectiveInputs],
                   theta: jax.Array, payload: np.ndarray, probs: jax.Array
                   ) -> dict[str, jax.Array]:
  """Expected loss gradient of every case, by enumeration, in one compilation."""
  jac = expected_jacobian(stacked_losses(cases, build_inputs), theta, payload, probs)
  return dict(zip(cases, jac))


def enumerate_groups(theta: jax.Array, group_size: int, expert_probs: jax.Array | None = None
                     ) -> tuple[np.ndarray, jax.Array]:
  """All groups of `group_size` i.i.d. draws from softmax(theta), with their probabilities.

  With `expert_probs`, every group is paired with every expert outcome e (an independent draw
  from expert_probs); the payload is then [group..., e].
  """
  num_outcomes = theta.shape[0]
  groups = all_groups(num_outcomes, group_size)
  probs = group_probs(jax.nn.softmax(theta), groups)
  if expert_probs is None:
    return groups, probs
  payload = np.concatenate([np.repeat(groups, num_outcomes, axis=0),
                            np.tile(np.arange(num_outcomes), len(groups))[:, None]], axis=1)
  return payload, jnp.repeat(probs, num_outcomes) * jnp.tile(expert_probs, len(groups))


def row_inputs(theta: jax.Array, group: jax.Array, rewards: np.ndarray, scores: np.ndarray,
               **extra) -> ObjectiveInputs:
  """A batch of one prompt whose group is `group` (outcome ids), for a policy softmax(theta).

  Args:
    theta: [K] logits.
    group: [N] outcome ids.
    rewards: [K] environment reward per outcome.
    scores: [K] verifier score per outcome.
    **extra: optional ObjectiveInputs fields, already shaped for a batch of one.
  """
  logp = jax.nn.log_softmax(theta)
  dtype = logp.dtype
  return ObjectiveInputs.create(
      logp[group][None], jnp.asarray(rewards, dtype)[group][None],
      scores=jnp.asarray(scores, dtype)[group][None], **extra)


# ----------------------------------------------------------------------------- closed forms


def cdf_le(pi: jax.Array, r: np.ndarray) -> jax.Array:
  """F_<=(y) = sum_{y': r_y' <= r_y} pi_y'."""
  r = np.asarray(r)
  return (pi[None, :] * jnp.asarray(r[None, :] <= r[:, None], pi.dtype)).sum(-1)


def cdf_lt(pi: jax.Array, r: np.ndarray) -> jax.Array:
  """F_<(y) = sum_{y': r_y' < r_y} pi_y'."""
  r = np.asarray(r)
  return (pi[None, :] * jnp.asarray(r[None, :] < r[:, None], pi.dtype)).sum(-1)


def bon_probs(pi: jax.Array, r: np.ndarray, n: int) -> jax.Array:
  """T2: P_bon(y) = pi_y sum_{i=1..N} F_<^(i-1) F_<=^(N-i) (index tie-breaking)."""
  le, lt = cdf_le(pi, r), cdf_lt(pi, r)
  return pi * sum(lt ** (i - 1) * le ** (n - i) for i in range(1, n + 1))


def bon_probs_binomial(pi_ref: jax.Array, f_lt: jax.Array, n: int) -> jax.Array:
  """T4 / vBoN form: sum_{i=1..N} C(N, i) pi^i F_<^(N-i) (no ties)."""
  return sum(math.comb(n, i) * pi_ref ** i * f_lt ** (n - i) for i in range(1, n + 1))


def bon_value(pi: jax.Array, values: np.ndarray, selection: np.ndarray, n: int) -> jax.Array:
  """E[value of the BoN pick by `selection`] = sum_y value_y P_bon(y)."""
  return (jnp.asarray(values, pi.dtype) * bon_probs(pi, selection, n)).sum()


def expected_max(pi: jax.Array, g: np.ndarray, k: int) -> jax.Array:
  """T8: E[max of k draws of g] = sum over levels v (F_<=(v)^k - F_<(v)^k) v, via T2."""
  return bon_value(pi, g, g, k)


def pass_at(pi: jax.Array, correct: np.ndarray, n: int) -> jax.Array:
  """T9: 1 - p^N, p = P(incorrect)."""
  p = 1.0 - (pi * jnp.asarray(correct, pi.dtype)).sum()
  return 1.0 - p ** n


def tilt(pi: jax.Array, r: np.ndarray, lam: float) -> jax.Array:
  """Variational BoN: mu(y) proportional to pi_y exp(lam F_<=(y))."""
  unnorm = pi * jnp.exp(lam * cdf_le(pi, r))
  return unnorm / unnorm.sum()


def kl(p: jax.Array, q: jax.Array) -> jax.Array:
  """KL(p || q) over a finite set (0 log 0 = 0)."""
  return jnp.where(p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - jnp.log(q)), 0.0).sum()


def stratified_group(pi: np.ndarray, size: int) -> np.ndarray:
  """A group whose empirical distribution is exactly pi (pi * size must be integers)."""
  counts = np.asarray(pi) * size
  assert np.allclose(counts, np.round(counts)), "pi * size must be integral"
  return np.repeat(np.arange(len(pi)), np.round(counts).astype(int)).astype(np.int32)


# ----------------------------------------------------------------------------- shared problem

# A 5-outcome problem with an imperfect verifier: outcomes 1 and 2 tie for the best verifier
# score but are incorrect; the continuous reward G has a tie too.
PI0 = np.array([0.15, 0.25, 0.10, 0.30, 0.20])
REWARDS = np.array([1.0, 0.0, 0.0, 1.0, 0.0])
SCORES = np.array([2.0, 3.0, 3.0, 1.0, 0.0])
VALUES = np.array([0.2, 0.9, 0.5, 0.5, 0.1])


def theta0(dtype=None) -> jax.Array:
  """Logits of PI0 perturbed off the simplex's symmetric points (any logits would do)."""
  return jnp.asarray(np.log(PI0) + np.array([0.3, -0.2, 0.1, 0.0, -0.4]), dtype)


def jit_call(fn: Callable, *args, **static):
  """fn(*args, **static) compiled as one program (`static` are hashable options)."""
  return jax.jit(functools.partial(fn, **static))(*args)

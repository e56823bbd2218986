"""Token-level sampling: exactness of the two-stage sampler, top-k, top-p, greedy, logprobs.

Distribution checks are chi-square goodness-of-fit tests with fixed seeds at significance
ALPHA = 1e-3: with a correct sampler a given seed fails with probability 0.001, and because the
seeds are fixed the outcome is deterministic. Each check also shows power: the same counts
are rejected against a slightly perturbed distribution.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bonjax.sampling import token_sampling

ALPHA = 1e-3
DRAWS = 100_000


def _chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
  """Goodness of fit of `counts` to `probs`, pooling cells with expected count < 5."""
  expected = probs * counts.sum()
  order = np.argsort(expected)
  small = np.cumsum(expected[order]) < 5.0
  pooled_expected = np.append(expected[order][~small], expected[order][small].sum())
  pooled_counts = np.append(counts[order][~small], counts[order][small].sum())
  if pooled_expected[-1] == 0.0:
    pooled_expected, pooled_counts = pooled_expected[:-1], pooled_counts[:-1]
  return stats.chisquare(pooled_counts, pooled_expected).pvalue


@functools.partial(jax.jit, static_argnames=("draws", "temperature", "top_k", "top_p",
                                             "block_size"))
def _draw_many(logits, seed, *, draws, temperature=1.0, top_k=0, top_p=1.0, block_size=256):
  """`draws` independent tokens from one row of logits (one key per draw)."""
  keys = jax.random.split(jax.random.key(seed), draws)
  rows = jnp.broadcast_to(logits, (draws, logits.shape[-1]))
  return token_sampling.sample_tokens(rows, keys, temperature=temperature, top_k=top_k,
                                      top_p=top_p, block_size=block_size)


def _softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max())
  return e / e.sum()


def _spread_logits(vocab: int, seed: int = 0) -> jnp.ndarray:
  # A wide range of probabilities: some ids near 1e-2, most far smaller.
  return jnp.asarray(np.random.default_rng(seed).normal(size=vocab) * 2.0, jnp.float32)


def test_two_stage_sampler_matches_softmax():
  vocab, block = 1000, 64  # 16 blocks, the last one partial
  logits = _spread_logits(vocab)
  tokens, _ = _draw_many(logits, 0, draws=DRAWS, block_size=block)
  counts = np.bincount(np.asarray(tokens), minlength=vocab)
  probs = _softmax(logits)
  assert _chi_square_pvalue(counts, probs) > ALPHA
  # Power: a 15% shift of mass between two halves of the vocabulary is detected.
  tilted = probs * np.where(np.arange(vocab) < vocab // 2, 1.15, 0.85)
  assert _chi_square_pvalue(counts, tilted / tilted.sum()) < ALPHA


def test_temperature_is_applied_before_sampling():
  vocab = 300
  logits = _spread_logits(vocab, seed=1)
  tokens, logp = _draw_many(logits, 1, draws=DRAWS, temperature=0.6, block_size=32)
  counts = np.bincount(np.asarray(tokens), minlength=vocab)
  assert _chi_square_pvalue(counts, _softmax(logits / 0.6)) > ALPHA
  assert _chi_square_pvalue(counts, _softmax(logits)) < ALPHA
  expected = np.log(_softmax(logits / 0.6))[np.asarray(tokens)]
  np.testing.assert_allclose(logp, expected, rtol=1e-5, atol=1e-5)


def test_zero_probability_ids_are_never_drawn():
  logits = jnp.full((300,), -jnp.inf).at[jnp.array([3, 130, 299])].set(jnp.array([0., 1., 2.]))
  tokens, _ = _draw_many(logits, 2, draws=20_000, block_size=64)
  assert set(np.unique(np.asarray(tokens))) == {3, 130, 299}


def test_top_k_draws_only_the_k_most_likely():
  vocab, k = 200, 7
  logits = _spread_logits(vocab, seed=3)
  tokens, logp = _draw_many(logits, 3, draws=DRAWS, top_k=k, temperature=0.8)
  top = np.argsort(-np.asarray(logits))[:k]
  assert set(np.unique(np.asarray(tokens))) <= set(top.tolist())
  counts = np.bincount(np.asarray(tokens), minlength=vocab)[top]
  assert _chi_square_pvalue(counts, _softmax(np.asarray(logits)[top] / 0.8)) > ALPHA
  # Reported log-probabilities are those of the untruncated temperature-0.8 policy.
  np.testing.assert_allclose(logp, np.log(_softmax(logits / 0.8))[np.asarray(tokens)],
                             rtol=1e-5, atol=1e-5)


def test_nucleus_mask_keeps_smallest_prefix_reaching_top_p():
  sorted_logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  expected = {0.4: [1, 0, 0, 0], 0.5: [1, 0, 0, 0], 0.75: [1, 1, 0, 0], 0.85: [1, 1, 1, 0],
              0.99: [1, 1, 1, 1], 1.0: [1, 1, 1, 1]}
  for top_p, keep in expected.items():
    np.testing.assert_array_equal(token_sampling.nucleus_mask(sorted_logits, top_p)[0],
                                  np.array(keep, bool), err_msg=f"top_p={top_p}")


def test_top_p_draws_from_the_nucleus_in_proportion():
  probs = np.array([0.05, 0.3, 0.15, 0.5])  # nucleus at 0.75 is {3, 1}
  logits = jnp.log(jnp.asarray(probs, jnp.float32))
  tokens, logp = _draw_many(logits, 4, draws=DRAWS, top_p=0.75)
  counts = np.bincount(np.asarray(tokens), minlength=4)
  assert counts[0] == 0 and counts[2] == 0
  assert _chi_square_pvalue(counts[[3, 1]], np.array([0.5, 0.3]) / 0.8) > ALPHA
  assert _chi_square_pvalue(counts[[3, 1]], np.array([0.52, 0.28]) / 0.8) < ALPHA
  np.testing.assert_allclose(logp, np.log(probs)[np.asarray(tokens)], rtol=1e-5)


def test_top_k_then_top_p():
  probs = np.array([0.4, 0.3, 0.2, 0.1])
  logits = jnp.log(jnp.asarray(probs, jnp.float32))
  # Top 2 renormalised is (4/7, 3/7); top_p 0.5 keeps only the first.
  tokens, _ = _draw_many(logits, 5, draws=2_000, top_k=2, top_p=0.5)
  assert set(np.unique(np.asarray(tokens))) == {0}
  tokens, _ = _draw_many(logits, 5, draws=2_000, top_k=2, top_p=0.6)
  assert set(np.unique(np.asarray(tokens))) == {0, 1}


def test_greedy_picks_first_maximum_and_reports_untempered_logprob():
  logits = jnp.array([[0.0, 2.0, 2.0, 1.0], [5.0, -1.0, 0.0, 5.0]])
  keys = jax.random.split(jax.random.key(0), 2)
  tokens, logp = token_sampling.sample_tokens(logits, keys, temperature=0.0, top_k=1)
  np.testing.assert_array_equal(tokens, [1, 0])
  np.testing.assert_allclose(logp, jax.nn.log_softmax(logits)[jnp.arange(2), tokens], rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 1), (3, 17), (2, 1000)])
def test_first_argmax_equals_argmax(shape):
  x = jax.random.randint(jax.random.key(1), shape, 0, 4).astype(jnp.float32)  # many ties
  np.testing.assert_array_equal(token_sampling.first_argmax(x), jnp.argmax(x, axis=-1))


def test_rows_depend_only_on_their_own_key_and_logits():
  logits = jax.random.normal(jax.random.key(2), (6, 500))
  keys = jax.random.split(jax.random.key(3), 6)
  sample = jax.jit(functools.partial(token_sampling.sample_tokens, temperature=1.0,
                                     block_size=64))
  tokens, _ = sample(logits, keys)
  permutation = jnp.array([4, 2, 0, 5, 1, 3])
  permuted, _ = sample(logits[permutation], keys[permutation])
  np.testing.assert_array_equal(permuted, tokens[permutation])

"""Drawing one token per row from output logits: greedy, full-vocabulary, or top-k / top-p.

Every strategy returns the drawn tokens and their log-probabilities under the temperature-T
policy before truncation, log_softmax(logits / T)[token], computed by
`bonjax.models.logprobs.tempered_log_softmax`, the function the trainer's log-probabilities use
(the full-vocabulary draw takes the log-normaliser from its block sums instead: the same value
up to float32 rounding, about 1e-6).
Greedy decoding (T = 0) reports the untempered (T = 1) log-probabilities, the model's own.

Sampling from the full vocabulary uses an exact two-stage draw: a block of `block_size`
consecutive ids is drawn with probability equal to the block's total probability, then an id
inside the block proportionally to its probability. The product of the two stages is exactly
the softmax probability, but each row draws only V / block_size + block_size Gumbel variates
and takes two short argmaxes instead of an argmax over V (for V = 49,152 a Gumbel-max over the
full row costs more than the model's forward pass). Both stages use the Gumbel-max rule, so a
zero-probability id can never be drawn.

Argmaxes are written as max then the smallest index attaining it: a plain vectorised max and
min, where XLA's fused argmax reduction is much slower on CPU. Ties resolve to the lowest id,
as with jnp.argmax.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from bonjax.models.logprobs import policy_temperature, tempered_log_softmax


def first_argmax(x: jax.Array) -> jax.Array:
  """Index of the first maximum over the last axis (int32), same as jnp.argmax without NaN."""
  n = x.shape[-1]
  is_max = x == jnp.max(x, axis=-1, keepdims=True)
  index = jnp.min(jnp.where(is_max, jnp.arange(n, dtype=jnp.int32), n), axis=-1)
  return jnp.minimum(index, n - 1)


def _gumbel_rows(keys: jax.Array, n: int) -> jax.Array:
  """[R, n] standard Gumbel variates, row r drawn from keys[r] alone."""
  return jax.vmap(lambda key: jax.random.gumbel(key, (n,), jnp.float32))(keys)


def _two_stage(logp: jax.Array, keys: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array]:
  """`two_stage_categorical`, also returning the log-sum-exp of each row ([R])."""
  rows, vocab = logp.shape
  block_size = min(block_size, vocab)
  num_blocks = -(-vocab // block_size)
  padded = jnp.pad(logp, ((0, 0), (0, num_blocks * block_size - vocab)),
                   constant_values=-jnp.inf).reshape(rows, num_blocks, block_size)
  # One stream of variates per row; its two disjoint parts drive the two stages.
  noise = _gumbel_rows(keys, num_blocks + block_size)
  block_logp = jax.nn.logsumexp(padded, axis=-1)
  block = first_argmax(block_logp + noise[:, :num_blocks])
  inside = jnp.take_along_axis(padded, block[:, None, None], axis=1)[:, 0]
  offset = first_argmax(inside + noise[:, num_blocks:])
  return block * block_size + offset, jax.nn.logsumexp(block_logp, axis=-1)


def two_stage_categorical(logp: jax.Array, keys: jax.Array, block_size: int) -> jax.Array:
  """Exact draw from softmax(logp) per row: a block by its total mass, then an id inside it.

  Args:
    logp: [R, V] unnormalised or normalised log-probabilities (-inf for excluded ids).
    keys: [R] PRNG keys, one per row.
    block_size: ids per block; V need not be a multiple of it.

  Returns:
    [R] int32 ids.
  """
  return _two_stage(logp, keys, block_size)[0]


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
  return jnp.take_along_axis(x, index[:, None], axis=-1)[:, 0]


def _greedy(logits, keys, *, temperature, top_k, top_p, block_size):
  del keys, temperature, top_k, top_p, block_size
  tokens = first_argmax(logits)
  return tokens, _gather(tempered_log_softmax(logits, policy_temperature(0.0)), tokens)


def _full_vocabulary(logits, keys, *, temperature, top_k, top_p, block_size):
  del top_k, top_p
  # The draw needs only the tempered logits; the log-normaliser comes from its block sums, so
  # the [R, V] log-softmax is never written (half the time of the draw at V = 262,144).
  scaled = logits.astype(jnp.float32) / temperature
  tokens, log_normaliser = _two_stage(scaled, keys, block_size)
  return tokens, _gather(scaled, tokens) - log_normaliser


def nucleus_mask(sorted_logits: jax.Array, top_p: float) -> jax.Array:
  """Keeps the smallest prefix of descending `sorted_logits` whose probability reaches top_p.

  A candidate is kept when the mass strictly before it is below top_p, so the most likely one
  is always kept.

  Args:
    sorted_logits: [R, K] tempered logits sorted in descending order.
    top_p: in (0, 1].

  Returns:
    [R, K] bool.
  """
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  return mass_before < top_p


def _truncated(logits, keys, *, temperature, top_k, top_p, block_size):
  del block_size
  logp = tempered_log_softmax(logits, temperature)
  # Candidates in descending order: the top k, or every id (a full sort) for top-p alone.
  num_candidates = min(top_k, logits.shape[-1]) if top_k > 0 else logits.shape[-1]
  candidate_logits, candidate_ids = jax.lax.top_k(logits.astype(jnp.float32) / temperature,
                                                  num_candidates)
  if top_p < 1.0:
    candidate_logits = jnp.where(nucleus_mask(candidate_logits, top_p), candidate_logits,
                                 -jnp.inf)
  choice = first_argmax(candidate_logits + _gumbel_rows(keys, num_candidates))
  tokens = _gather(candidate_ids, choice)
  return tokens, _gather(logp, tokens)


TokenSampler = Callable[..., tuple[jax.Array, jax.Array]]

STRATEGIES: dict[str, TokenSampler] = {
    "greedy": _greedy,
    "full_vocabulary": _full_vocabulary,
    "truncated": _truncated,
}


def strategy_name(temperature: float, top_k: int, top_p: float) -> str:
  """The strategy the (static) sampling settings select."""
  if temperature == 0.0:
    return "greedy"
  if top_k > 0 or top_p < 1.0:
    return "truncated"
  return "full_vocabulary"


def sample_tokens(logits: jax.Array, keys: jax.Array, *, temperature: float, top_k: int = 0,
                  top_p: float = 1.0, block_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """Draws one token per row.

  Args:
    logits: [R, V] output logits (after the final soft-cap).
    keys: [R] PRNG keys; row r's draw depends on keys[r] and logits[r] only.
    temperature: 0 for greedy, else > 0 (logits are divided by it before softmax).
    top_k: 0 for no limit, else draw only among the k most likely ids.
    top_p: 1.0 for no limit, else draw only from the nucleus (after top-k) whose tempered
      probability mass reaches top_p.
    block_size: block width of the two-stage full-vocabulary sampler.

  Returns:
    (tokens [R] int32, log p_T(token) [R] float32 of the untruncated temperature-T policy;
     T = 1 when greedy).
  """
  sampler = STRATEGIES[strategy_name(temperature, top_k, top_p)]
  return sampler(logits, keys, temperature=temperature, top_k=top_k, top_p=top_p,
                 block_size=block_size)

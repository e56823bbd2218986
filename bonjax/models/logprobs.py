"""The one log-probability function, shared by the trainer and the sampler.

log p_T(y | context) = log_softmax(logits / T)[y], where logits are the model's output logits
after the final soft-cap and T is the sampling temperature: the log-probability under the
temperature-T policy, before any top-k / top-p truncation. The sampler reports exactly this
quantity for the tokens it draws (`tempered_log_softmax` on `logits_from_hidden`, the same code
as the unchunked path of `token_logprobs`), and the trainer's `sequence_logprobs` computes it
for given tokens, so the two agree up to float rounding.

For large vocabularies `token_logprobs(..., vocab_chunk=C)` never materialises [B, T, V]: it
scans over vocabulary chunks of C rows of the output head with a running logsumexp, and the
scan body is rematerialised so the backward pass also holds only one [B, T, C] chunk at a time.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from bonjax.models import layers
from bonjax.models import transformer
from bonjax.models.config import ModelConfig

Params = transformer.Params


def policy_temperature(sampling_temperature: float) -> float:
  """The temperature of the policy whose log-probs describe samples drawn at
  `sampling_temperature`: T itself for T > 0, and 1 for greedy decoding (T = 0), where the
  sampler reports the untempered log-probs of the argmax tokens. The ONE convention: the
  sampler, the on-policy trainer and the evaluation KL all use it.

  Args:
    sampling_temperature: >= 0 (0 is greedy).

  Returns:
    A temperature > 0.
  """
  if sampling_temperature < 0:
    raise ValueError(f"temperature={sampling_temperature}: must be >= 0 (0 is greedy)")
  return 1.0 if sampling_temperature == 0 else float(sampling_temperature)


def tempered_log_softmax(logits: jax.Array, temperature: float | jax.Array) -> jax.Array:
  """log_softmax(logits / temperature) over the last axis, in float32.

  Args:
    logits: [..., V] output logits.
    temperature: > 0.
  """
  return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def _gather_last(x: jax.Array, index: jax.Array) -> jax.Array:
  return jnp.take_along_axis(x, index[..., None], axis=-1)[..., 0]


def _unchunked_token_logprobs(params: Params, cfg: ModelConfig, h: jax.Array,
                              targets: jax.Array, temperature) -> jax.Array:
  logp = tempered_log_softmax(transformer.logits_from_hidden(params, cfg, h), temperature)
  return _gather_last(logp, targets)


def _chunked_token_logprobs(params: Params, cfg: ModelConfig, h: jax.Array, targets: jax.Array,
                            temperature, chunk: int) -> jax.Array:
  head = transformer.output_embedding(params, cfg)
  vocab = head.shape[0]
  chunk = min(chunk, vocab)
  num_chunks = -(-vocab // chunk)

  def body(carry, index):
    running_max, running_sum, target_logit = carry
    # The last chunk is shifted back to fit inside the vocabulary (no padded copy of the
    # head); columns already covered by the previous chunk are masked out.
    start = jnp.minimum(index * chunk, vocab - chunk)
    rows = jax.lax.dynamic_slice_in_dim(head, start, chunk, axis=0)
    logits = layers.soft_cap(layers.dense(h, rows, "...d,vd->...v"), cfg.final_softcap)
    logits = logits / temperature
    column = start + jnp.arange(chunk)
    fresh = column >= index * chunk
    logits = jnp.where(fresh, logits, -jnp.inf)
    # The running max only stabilises the exponentials; its gradient contribution cancels.
    new_max = jax.lax.stop_gradient(jnp.maximum(running_max, jnp.max(logits, axis=-1)))
    running_sum = (running_sum * jnp.exp(running_max - new_max)
                   + jnp.sum(jnp.exp(logits - new_max[..., None]), axis=-1))
    hit = fresh & (column == targets[..., None])
    target_logit = target_logit + jnp.sum(jnp.where(hit, logits, 0.0), axis=-1)
    return (new_max, running_sum, target_logit), None

  shape = targets.shape
  init = (jnp.full(shape, -jnp.inf, jnp.float32), jnp.zeros(shape, jnp.float32),
          jnp.zeros(shape, jnp.float32))
  body = jax.checkpoint(body, prevent_cse=False)
  (running_max, running_sum, target_logit), _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
  return target_logit - (running_max + jnp.log(running_sum))


def token_logprobs(params: Params, cfg: ModelConfig, h: jax.Array, targets: jax.Array, *,
                   temperature: float | jax.Array = 1.0,
                   vocab_chunk: int | None = None) -> jax.Array:
  """log p_T(targets | h): log softmax of logits / temperature, gathered at the targets.

  Args:
    params: model params.
    cfg: model configuration.
    h: [B, T, D] final hidden states (from `hidden_states`).
    targets: [B, T] int32 token ids in [0, V).
    temperature: > 0; logits (after the final soft-cap) are divided by it.
    vocab_chunk: None computes the full [B, T, V] logits; an int scans over vocabulary chunks of
      that many ids and never holds more than [B, T, vocab_chunk] logits, forward or backward.

  Returns:
    [B, T] float32 log-probabilities.
  """
  if vocab_chunk is None:
    return _unchunked_token_logprobs(params, cfg, h, targets, temperature)
  if vocab_chunk < 1:
    raise ValueError(f"vocab_chunk={vocab_chunk}: must be None or >= 1")
  return _chunked_token_logprobs(params, cfg, h, targets, temperature, vocab_chunk)


def sequence_chunked_logprobs(params: Params, cfg: ModelConfig, h: jax.Array,
                              targets: jax.Array, chunk_tokens: int | None, *,
                              temperature: float | jax.Array = 1.0,
                              vocab_chunk: int | None = None) -> jax.Array:
  """`token_logprobs` computed over sequence chunks of about `chunk_tokens` tokens.

  Each chunk takes max(1, chunk_tokens // B) positions of every row (the batch axis stays
  whole, so its sharding is untouched); the chunk body is rematerialised, so neither the forward
  nor the backward pass holds more than one chunk's [B, positions, V] logits.

  Args:
    params, cfg, temperature, vocab_chunk: see `token_logprobs`.
    h: [B, T, D] final hidden states.
    targets: [B, T] int32.
    chunk_tokens: tokens per chunk; None (or >= B * T) computes everything at once.

  Returns:
    [B, T] float32 log-probabilities (equal to `token_logprobs` up to float rounding).
  """
  fn = lambda h_, t_: token_logprobs(params, cfg, h_, t_, temperature=temperature,
                                     vocab_chunk=vocab_chunk)
  batch, length = targets.shape
  span = length if chunk_tokens is None else max(1, chunk_tokens // batch)
  if span >= length:
    return fn(h, targets)
  num = -(-length // span)
  pad = num * span - length
  h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
  targets = jnp.pad(targets, ((0, 0), (0, pad)))
  h_chunks = jnp.swapaxes(h.reshape(batch, num, span, h.shape[-1]), 0, 1)
  target_chunks = jnp.swapaxes(targets.reshape(batch, num, span), 0, 1)
  body = jax.checkpoint(lambda carry, xs: (carry, fn(*xs)), prevent_cse=False)
  _, out = jax.lax.scan(body, None, (h_chunks, target_chunks))
  return jnp.swapaxes(out, 0, 1).reshape(batch, num * span)[:, :length]


def sequence_logprobs(params: Params, cfg: ModelConfig, tokens: jax.Array, valid: jax.Array,
                      target_mask: jax.Array, *, temperature: float | jax.Array = 1.0,
                      compute_dtype: Any = jnp.float32, vocab_chunk: int | None = None,
                      remat: bool | str | None = None) -> tuple[jax.Array, jax.Array]:
  """Log-probabilities of the target tokens of whole sequences (teacher forcing).

  Position t is scored by the hidden state at t - 1, so position 0 is never a target.

  Args:
    params: model params.
    cfg: model configuration.
    tokens: [B, T] int32, e.g. a left-padded prompt followed by a right-padded completion.
    valid: [B, T] bool, real (non-pad) tokens; positions are cumsum(valid) - 1.
    target_mask: [B, T] bool, tokens whose log-probability counts (e.g. completion tokens).
    temperature: > 0, see `token_logprobs`.
    compute_dtype: matmul input dtype.
    vocab_chunk: see `token_logprobs`.
    remat: rematerialisation of the layers (`transformer.REMAT_POLICIES`); None: cfg.remat.

  The output layer runs over sequence chunks of cfg.logits_chunk tokens
  (`sequence_chunked_logprobs`).

  Returns:
    ([B] sum of log p over target positions, [B, T] per-token log p, 0 where not a target).
  """
  positions = transformer.positions_from_valid(valid)
  h = transformer.hidden_states(params, cfg, tokens, positions, valid,
                                compute_dtype=compute_dtype, remat=remat)
  predicted = sequence_chunked_logprobs(params, cfg, h[:, :-1], tokens[:, 1:],
                                        cfg.logits_chunk, temperature=temperature,
                                        vocab_chunk=vocab_chunk)
  per_token = jnp.pad(predicted, ((0, 0), (1, 0)))
  per_token = jnp.where(target_mask, per_token, 0.0)
  return jnp.sum(per_token, axis=-1), per_token

"""The sampler: N completions per prompt, jit-compiled, with per-token log-probabilities.

`sample` prefills every prompt once, keeps that prompt cache once per prompt, and decodes the
N samples of each prompt against it plus a per-sample completion cache (see
`bonjax.models.kv_cache`). Decoding is a `lax.while_loop` over completion slots that stops
as soon as every sample has emitted EOS, or after `max_new_tokens`.

Randomness is a pure function of (rng, step, prompt id, sample index, token index):

  sample key  = fold_in(fold_in(fold_in(rng, step), prompt_ids[b]), n)
  token key   = fold_in(sample key, t)

and every computation is row-wise, so a prompt id yields the same samples wherever it sits in
the batch and whatever else the batch holds.

Log-probabilities are those of the temperature-T policy before top-k / top-p truncation (see
`bonjax.models.logprobs`); greedy decoding (T = 0) reports the T = 1 log-probabilities.

Each call first copies the weights once into the layout decoding reads fastest
(`kv_cache.decoding_params`: cast to the compute dtype, one buffer per layer; fsdp-sharded
weights are gathered once per call, not once per layer and step). The caches are created inside
the compiled function and live in the loop carry, which XLA updates in place, so no buffer
donation is needed at the call boundary; params are not donated (the caller keeps them). No
device placement is forced: sharded params and prompts keep their shardings and XLA partitions
the computation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from bonjax.models import kv_cache
from bonjax.models import transformer
from bonjax.models.config import ModelConfig
from bonjax.sampling import token_sampling


@flax.struct.dataclass
class Rollout:
  """N sampled completions per prompt.

  Attributes:
    tokens: [B, N, L] int32 completion tokens; pad_id after the stop token (which is kept).
    logprobs: [B, N, L] float32 log p_T(token), 0 where mask is False.
    mask: [B, N, L] bool generated tokens (including the EOS that stopped the sample).
    lengths: [B, N] int32 number of generated tokens.
    finished: [B, N] bool, the sample stopped at EOS (within L tokens).
    decode_steps: int32 scalar, completion slots the loop ran (max of lengths; below L when
      every sample stopped early).
  """

  tokens: jax.Array
  logprobs: jax.Array
  mask: jax.Array
  lengths: jax.Array
  finished: jax.Array
  decode_steps: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """Static sampling settings (a change recompiles the sampler).

  Attributes:
    num_samples: N completions per prompt.
    max_new_tokens: L, completion length (the stop token included).
    temperature: 0 for greedy, else > 0.
    top_k: 0 for off, else draw among the k most likely tokens.
    top_p: 1.0 for off, else nucleus sampling on the tempered (and top-k) distribution.
      Without top_k this sorts the whole vocabulary at every step: bound it with top_k.
    eos_id: stop token, or a tuple of them (any one stops, e.g. Llama 3's <|eot_id|> and
      <|end_of_text|>); None never stops early.
    pad_id: written after the stop token.
    block_size: block width of the exact two-stage full-vocabulary sampler.
    prefill_per_sample: prefill each prompt N times (one row per sample) instead of once per
      prompt; same samples, N times the prefill work. A reference path for tests.
  """

  num_samples: int = 1
  max_new_tokens: int = 32
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  eos_id: int | tuple[int, ...] | None = 2
  pad_id: int = 0
  block_size: int = 256
  prefill_per_sample: bool = False

  def __post_init__(self):
    rules = [
        ("num_samples", self.num_samples >= 1, "must be >= 1"),
        ("max_new_tokens", self.max_new_tokens >= 1, "must be >= 1"),
        ("temperature", self.temperature >= 0.0, "must be >= 0 (0 is greedy)"),
        ("top_k", self.top_k >= 0, "must be >= 0 (0 is off)"),
        ("top_p", 0.0 < self.top_p <= 1.0, "must be in (0, 1] (1 is off)"),
        ("block_size", self.block_size >= 1, "must be >= 1"),
    ]
    for name, ok, rule in rules:
      if not ok:
        raise ValueError(f"sampling.{name}={getattr(self, name)!r}: {rule}")


def sample_keys(rng: jax.Array, step: int | jax.Array, prompt_ids: jax.Array,
                num_samples: int) -> jax.Array:
  """Per-sample keys [B, N]: fold_in(fold_in(fold_in(rng, step), prompt_ids[b]), n).

  Args:
    rng: PRNG key (typed, or a raw uint32 key).
    step: training step or any int distinguishing calls.
    prompt_ids: [B] int32 stable ids of the prompts.
    num_samples: N.

  Returns:
    [B, N] typed PRNG keys.
  """
  if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng)
  base = jax.random.fold_in(rng, step)
  per_prompt = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, prompt_ids)
  samples = jnp.arange(num_samples, dtype=jnp.int32)
  return jax.vmap(jax.vmap(jax.random.fold_in, in_axes=(None, 0)), in_axes=(0, None))(
      per_prompt, samples)


def _draw(logits: jax.Array, keys: jax.Array, index: jax.Array,
          sampling: SamplingParams) -> tuple[jax.Array, jax.Array]:
  """Token `index` of every sample from logits [B, N, V] with sample keys [B, N]."""
  b, n, v = logits.shape
  token_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys.reshape(b * n), index)
  tokens, logprobs = token_sampling.sample_tokens(
      logits.reshape(b * n, v), token_keys, temperature=sampling.temperature,
      top_k=sampling.top_k, top_p=sampling.top_p, block_size=sampling.block_size)
  return tokens.reshape(b, n), logprobs.reshape(b, n)


@flax.struct.dataclass
class _LoopState:
  index: jax.Array  # next completion slot to fill
  hidden: jax.Array  # [B, N, D] final hidden state that predicts token `index`
  tokens: jax.Array  # [B, N, L]
  logprobs: jax.Array  # [B, N, L]
  done: jax.Array  # [B, N] stopped at EOS
  lengths: jax.Array  # [B, N]
  cache: kv_cache.CompletionCache


def _record(state: _LoopState, tokens: jax.Array, logprobs: jax.Array,
            sampling: SamplingParams) -> _LoopState:
  """Writes slot state.index for samples still running and advances the slot."""
  alive = ~state.done
  t = state.index
  stop_ids = () if sampling.eos_id is None else np.atleast_1d(sampling.eos_id).tolist()
  stopped = functools.reduce(jnp.logical_or, [tokens == i for i in stop_ids], False)
  return state.replace(
      index=t + 1,
      tokens=state.tokens.at[:, :, t].set(jnp.where(alive, tokens, sampling.pad_id)),
      logprobs=state.logprobs.at[:, :, t].set(jnp.where(alive, logprobs, 0.0)),
      done=state.done | (alive & stopped),
      lengths=state.lengths + alive.astype(jnp.int32))


def _generate(params: transformer.Params, cfg: ModelConfig, sampling: SamplingParams,
              prompt_tokens: jax.Array, prompt_valid: jax.Array, keys: jax.Array,
              dtype: Any) -> Rollout:
  """Samples keys.shape[1] completions for each prompt row, sharing the row's prompt cache."""
  batch, num_samples = keys.shape
  length = sampling.max_new_tokens
  params = kv_cache.decoding_params(params, dtype)
  last_hidden, prompt_cache = kv_cache.prefill(params, cfg, prompt_tokens, prompt_valid,
                                               compute_dtype=dtype)
  shape = (batch, num_samples)
  state = _LoopState(
      index=jnp.zeros((), jnp.int32),
      hidden=jnp.broadcast_to(last_hidden[:, None], shape + last_hidden.shape[-1:]),
      tokens=jnp.full(shape + (length,), sampling.pad_id, jnp.int32),
      logprobs=jnp.zeros(shape + (length,), jnp.float32),
      done=jnp.zeros(shape, bool),
      lengths=jnp.zeros(shape, jnp.int32),
      cache=kv_cache.init_completion_cache(cfg, batch, num_samples, length, dtype))

  def running(state: _LoopState) -> jax.Array:
    return (state.index < length) & ~jnp.all(state.done)

  def draw_and_decode(state: _LoopState) -> _LoopState:
    # Draws token `index` from the hidden state before it, then runs that token through the
    # model for the next draw unless the loop ends here.
    index = state.index
    logits = transformer.logits_from_hidden(params, cfg, state.hidden)
    tokens, logprobs = _draw(logits, keys, index, sampling)
    state = _record(state, tokens, logprobs, sampling)

    def decode(state: _LoopState) -> tuple[jax.Array, kv_cache.CompletionCache]:
      return kv_cache.decode_step(params, cfg, prompt_cache, state.cache, tokens, index,
                                  compute_dtype=dtype)

    hidden, cache = jax.lax.cond(running(state), decode, lambda s: (s.hidden, s.cache), state)
    return state.replace(hidden=hidden, cache=cache)

  state = jax.lax.while_loop(running, draw_and_decode, state)
  mask = jnp.arange(length) < state.lengths[..., None]
  return Rollout(tokens=state.tokens, logprobs=state.logprobs, mask=mask, lengths=state.lengths,
                 finished=state.done, decode_steps=state.index)


@functools.partial(jax.jit, static_argnames=("model_cfg", "sampling", "compute_dtype"))
def sample(params: transformer.Params, model_cfg: ModelConfig, sampling: SamplingParams,
           prompt_tokens: jax.Array, prompt_valid: jax.Array, prompt_ids: jax.Array,
           rng: jax.Array, step: int | jax.Array, *,
           compute_dtype: Any = jnp.float32) -> Rollout:
  """Samples `sampling.num_samples` completions for every prompt.

  Compiled once per (model_cfg, sampling, compute_dtype) and input shapes (B, P); new params,
  prompts, rng or step reuse the compilation.

  Args:
    params: model params (float32; cast to compute_dtype once per call).
    model_cfg: model configuration (static).
    sampling: sampling settings (static).
    prompt_tokens: [B, P] int32 prompts, LEFT-padded (each ends at index P - 1).
    prompt_valid: [B, P] bool real prompt tokens (at least one per row).
    prompt_ids: [B] int32 stable prompt ids (they seed the samples).
    rng: PRNG key.
    step: int or int32 scalar (e.g. the training step).
    compute_dtype: matmul input and cache dtype (static).

  Returns:
    Rollout with [B, N, L] completions.
  """
  num_samples = sampling.num_samples
  keys = sample_keys(rng, step, prompt_ids, num_samples)
  if not sampling.prefill_per_sample:
    return _generate(params, model_cfg, sampling, prompt_tokens, prompt_valid, keys,
                     compute_dtype)
  batch = prompt_tokens.shape[0]
  rows = _generate(params, model_cfg, sampling, jnp.repeat(prompt_tokens, num_samples, axis=0),
                   jnp.repeat(prompt_valid, num_samples, axis=0),
                   keys.reshape(batch * num_samples, 1), compute_dtype)
  return jax.tree.map(lambda x: x.reshape((batch, num_samples) + x.shape[2:]) if x.ndim else x,
                      rows)

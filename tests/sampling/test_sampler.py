"""The sampler: agreement with the trainer's log-probabilities, prefix sharing, RNG, stopping."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bonjax.models import logprobs
from bonjax.models import transformer
from bonjax.parallel import sharding as sharding_lib
from bonjax.sampling import sampler
from tests.models import model_fixtures as fx

CFG = fx.GEMMA_LIKE  # sliding window 3 < prompt + completion, soft-caps, untied head
PROMPT_LENGTHS = (7, 3, 1, 5)  # four prompts: the batch splits over 4 devices
PROMPT_LEN = 7
EOS = 5
SAMPLED = sampler.SamplingParams(num_samples=4, max_new_tokens=8, temperature=0.7, eos_id=EOS,
                                 pad_id=0)
GREEDY = sampler.SamplingParams(num_samples=4, max_new_tokens=8, temperature=0.0, eos_id=None)


def _prompts(seed=0, lengths=PROMPT_LENGTHS):
  tokens, valid = fx.left_padded_prompts(lengths, PROMPT_LEN, CFG.vocab_size, seed=seed,
                                         low=6)  # no EOS inside prompts
  return jnp.asarray(tokens), jnp.asarray(valid)


def _run(sampling, tokens, valid, ids, seed=0, step=0, params=None):
  params = fx.random_params(CFG) if params is None else params
  return sampler.sample(params, CFG, sampling, tokens, valid, jnp.asarray(ids, jnp.int32),
                        jax.random.key(seed), step)


@pytest.fixture(scope="module")
def sampled():
  tokens, valid = _prompts()
  return tokens, valid, _run(SAMPLED, tokens, valid, [10, 11, 12, 13])


def _teacher_forced(rollout, prompt_tokens, prompt_valid):
  """Flattened [B*N, P+L] sequences (prompt + completion) and masks for the trainer."""
  b, n, length = rollout.tokens.shape
  repeat = lambda x: jnp.repeat(x, n, axis=0)
  tokens = jnp.concatenate([repeat(prompt_tokens), rollout.tokens.reshape(b * n, length)], 1)
  valid = jnp.concatenate([repeat(prompt_valid), rollout.mask.reshape(b * n, length)], 1)
  target = jnp.concatenate([jnp.zeros_like(repeat(prompt_valid)),
                            rollout.mask.reshape(b * n, length)], 1)
  return tokens, valid, target


@jax.jit
def _full_logits(params, tokens, valid):
  h = transformer.hidden_states(params, CFG, tokens, transformer.positions_from_valid(valid),
                                valid)
  return transformer.logits_from_hidden(params, CFG, h)


@pytest.mark.parametrize("vocab_chunk", [None, 16])
def test_sampler_logprobs_equal_trainer_logprobs(sampled, vocab_chunk):
  prompt_tokens, prompt_valid, rollout = sampled
  tokens, valid, target = _teacher_forced(rollout, prompt_tokens, prompt_valid)
  score = jax.jit(logprobs.sequence_logprobs, static_argnums=1,
                  static_argnames=("vocab_chunk",))
  total, per_token = score(fx.random_params(CFG), CFG, tokens, valid, target,
                           temperature=SAMPLED.temperature, vocab_chunk=vocab_chunk)
  b, n, length = rollout.tokens.shape
  np.testing.assert_allclose(per_token[:, PROMPT_LEN:].reshape(b, n, length), rollout.logprobs,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(total.reshape(b, n), rollout.logprobs.sum(-1), rtol=1e-5, atol=1e-5)
  assert np.all(np.asarray(rollout.logprobs)[np.asarray(rollout.mask)] < 0.0)


def test_stopping_masks_and_lengths(sampled):
  _, _, rollout = sampled
  tokens, mask = np.asarray(rollout.tokens), np.asarray(rollout.mask)
  lengths, finished = np.asarray(rollout.lengths), np.asarray(rollout.finished)
  length = SAMPLED.max_new_tokens
  for b in range(tokens.shape[0]):
    for n in range(tokens.shape[1]):
      row = tokens[b, n]
      eos_at = np.flatnonzero(row == EOS)
      stop = eos_at[0] + 1 if eos_at.size else length
      assert lengths[b, n] == stop
      assert finished[b, n] == bool(eos_at.size)
      np.testing.assert_array_equal(mask[b, n], np.arange(length) < stop)
      np.testing.assert_array_equal(row[stop:], SAMPLED.pad_id)
      np.testing.assert_array_equal(np.asarray(rollout.logprobs)[b, n, stop:], 0.0)
  assert finished.any() and not finished.all()  # both cases are exercised
  assert int(rollout.decode_steps) == length


def test_prefix_sharing_equals_prefilling_every_sample(sampled):
  prompt_tokens, prompt_valid, rollout = sampled
  per_sample = _run(dataclasses.replace(SAMPLED, prefill_per_sample=True),
                    prompt_tokens, prompt_valid, [10, 11, 12, 13])
  np.testing.assert_array_equal(per_sample.tokens, rollout.tokens)
  np.testing.assert_array_equal(per_sample.mask, rollout.mask)
  np.testing.assert_allclose(per_sample.logprobs, rollout.logprobs, rtol=1e-5, atol=1e-5)


def test_samples_depend_on_prompt_id_not_batch_position(sampled):
  prompt_tokens, prompt_valid, rollout = sampled
  others, others_valid = _prompts(seed=5, lengths=(2, 6, 4, 7))
  # Prompt id 10 moves from row 0 to row 1 with different neighbours.
  tokens = others.at[1].set(prompt_tokens[0])
  valid = others_valid.at[1].set(prompt_valid[0])
  moved = _run(SAMPLED, tokens, valid, [20, 10, 21, 22])
  np.testing.assert_array_equal(moved.tokens[1], rollout.tokens[0])
  np.testing.assert_allclose(moved.logprobs[1], rollout.logprobs[0], rtol=1e-6, atol=1e-6)
  # The seeds matter: another step, or another id for the same prompt, draws other samples.
  other_step = _run(SAMPLED, prompt_tokens, prompt_valid, [10, 11, 12, 13], step=1)
  assert not np.array_equal(other_step.tokens[0], rollout.tokens[0])
  renamed = _run(SAMPLED, tokens, valid, [20, 14, 21, 22])
  assert not np.array_equal(renamed.tokens[1], rollout.tokens[0])
  # The N samples of a prompt are different draws.
  assert len({tuple(row) for row in np.asarray(rollout.tokens[0])}) > 1


def test_recompiles_only_for_new_shapes(sampled):
  prompt_tokens, prompt_valid, _ = sampled
  before = sampler.sample._cache_size()
  _run(SAMPLED, prompt_tokens[::-1], prompt_valid[::-1], [3, 4, 5, 6], seed=9, step=7,
       params=fx.random_params(CFG, seed=3))
  assert sampler.sample._cache_size() == before


def test_greedy_is_deterministic_and_follows_the_argmax():
  tokens, valid = _prompts(seed=2)
  params = fx.random_params(CFG)
  first = _run(GREEDY, tokens, valid, [0, 1, 2, 3], seed=0)
  second = _run(GREEDY, tokens, valid, [7, 8, 9, 10], seed=1, step=3)
  np.testing.assert_array_equal(first.tokens, second.tokens)
  for n in range(1, GREEDY.num_samples):
    np.testing.assert_array_equal(first.tokens[:, 0], first.tokens[:, n])
  full_tokens, full_valid, _ = _teacher_forced(first, tokens, valid)
  logits = _full_logits(params, full_tokens, full_valid)[:, PROMPT_LEN - 1:-1]
  np.testing.assert_array_equal(jnp.argmax(logits, -1).reshape(first.tokens.shape), first.tokens)
  # T = 0 reports the model's own (T = 1) log-probabilities.
  expected = jnp.take_along_axis(jax.nn.log_softmax(logits), full_tokens[:, PROMPT_LEN:, None],
                                 -1)[..., 0]
  np.testing.assert_allclose(expected.reshape(first.tokens.shape), first.logprobs, rtol=1e-5,
                             atol=1e-5)


def test_loop_exits_when_every_sample_has_stopped():
  # Identical prompts under greedy decoding all start with the same token; make it the EOS.
  tokens, valid = _prompts(seed=2, lengths=(4, 4, 4, 4))
  tokens = jnp.broadcast_to(tokens[:1], tokens.shape)
  first_token = int(_run(GREEDY, tokens, valid, [0, 1, 2, 3]).tokens[0, 0, 0])
  stopping = dataclasses.replace(GREEDY, eos_id=first_token)
  rollout = _run(stopping, tokens, valid, [0, 1, 2, 3])
  assert int(rollout.decode_steps) == 1
  np.testing.assert_array_equal(rollout.lengths, 1)
  assert bool(rollout.finished.all())
  np.testing.assert_array_equal(rollout.tokens[..., 0], first_token)
  np.testing.assert_array_equal(rollout.tokens[..., 1:], stopping.pad_id)


def test_top_k_samples_stay_in_the_top_k():
  top_k = sampler.SamplingParams(num_samples=4, max_new_tokens=8, temperature=1.5, top_k=3,
                                 eos_id=None)
  tokens, valid = _prompts(seed=4)
  rollout = _run(top_k, tokens, valid, [0, 1, 2, 3])
  full_tokens, full_valid, _ = _teacher_forced(rollout, tokens, valid)
  logits = _full_logits(fx.random_params(CFG), full_tokens, full_valid)[:, PROMPT_LEN - 1:-1]
  top3 = np.argsort(-np.asarray(logits), axis=-1)[..., :3]
  drawn = np.asarray(rollout.tokens).reshape(-1, top_k.max_new_tokens)
  assert np.all((top3 == drawn[..., None]).any(-1))
  assert len(np.unique(drawn)) > 3  # the top 3 changes with the context


def test_sampling_params_validation():
  with pytest.raises(ValueError, match=r"sampling.num_samples=0: must be >= 1"):
    sampler.SamplingParams(num_samples=0)
  with pytest.raises(ValueError, match=r"sampling.top_p=0.0"):
    sampler.SamplingParams(top_p=0.0)


@pytest.mark.devices(8)
def test_sharded_inputs_give_the_same_samples(sampled):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
  tokens, valid, expected = sampled
  params = fx.random_params(CFG)
  ids = jnp.array([10, 11, 12, 13], jnp.int32)
  shardings = sharding_lib.tree_shardings(transformer.param_logical_axes(CFG), params, mesh)
  batch = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
  sharded = _run(SAMPLED, jax.device_put(tokens, batch), jax.device_put(valid, batch),
                 jax.device_put(ids, batch), params=jax.device_put(params, shardings))
  assert len(sharded.tokens.sharding.device_set) == 8
  np.testing.assert_array_equal(sharded.tokens, expected.tokens)
  np.testing.assert_allclose(sharded.logprobs, expected.logprobs, rtol=1e-5, atol=1e-5)

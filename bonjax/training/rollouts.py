"""Rollouts: sample N completions per prompt with the sampler, decode and verify them; score
them again under any parameters (the trainer's and the reference's log-probabilities)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from bonjax.data.batching import encode_prompts, padded_chunks
from bonjax.data.example import TaskExample
from bonjax.models.config import ModelConfig
from bonjax.models.logprobs import sequence_logprobs
from bonjax.parallel.distributed import fetch_to_host
from bonjax.sampling import sampler as sampler_lib
from bonjax.training.run_setup import RunSetup
from bonjax.verifiers.base import Status

_ROLLOUT_FIELDS = ("tokens", "logprobs", "mask", "lengths")


@dataclasses.dataclass
class ScoredSamples:
  """n scored completions for each of B prompts.

  Attributes:
    completions: B lists of n completion texts.
    correct: bool [B, n] environment reward as correctness.
    rewards: float [B, n] environment reward R (continuous when the verifier gives one,
      else `correct` as 0/1).
    scores: float [B, n] verifier scores.
    answers: B lists of n extracted answers (None when unparseable).
    statuses: B lists of n verifier statuses.
    lengths: int [B, n] generated tokens.
    logprobs: float [B, n] sequence log-probabilities under the sampling policy.
    prompt_tokens: int32 [B, P] left-padded prompts (one bucket width for all).
    prompt_valid: bool [B, P].
    completion_tokens: int32 [B, n, L].
    completion_mask: bool [B, n, L] generated tokens (EOS included).
  """

  completions: list[list[str]]
  correct: np.ndarray
  rewards: np.ndarray
  scores: np.ndarray
  answers: list[list[str | None]]
  statuses: list[list[str]]
  lengths: np.ndarray
  logprobs: np.ndarray
  prompt_tokens: np.ndarray
  prompt_valid: np.ndarray
  completion_tokens: np.ndarray
  completion_mask: np.ndarray


def sample_and_score(setup: RunSetup, params: Any, examples: Sequence[TaskExample],
                     prompt_ids: Sequence[int], sampling: sampler_lib.SamplingParams,
                     rng: jax.Array, step: int, prompt_batch_size: int,
                     progress: bool = False) -> ScoredSamples:
  """Samples `sampling.num_samples` completions per example and verifies them.

  Prompts go through the sampler in fixed-size chunks (the last one padded by repeating its
  first prompt) so every call has the same shape and compiles once; decoding and verifying
  happen on the host, after sampling.

  Args:
    setup: the run's model, tokenizer, task and mesh.
    params: model parameters.
    examples: prompts to sample for.
    prompt_ids: stable id of each example (seeds its samples; see the sampler).
    sampling: sampler settings.
    rng: base key.
    step: step number folded into the sample keys.
    prompt_batch_size: prompts per sampler call.
    progress: show a progress bar.

  Returns:
    ScoredSamples for all examples, in order.
  """
  tok = setup.tokenizer
  prompt_tokens, prompt_valid = encode_prompts(tok, [setup.format_prompt(e) for e in examples],
                                               setup.prompt_buckets)
  ids = np.asarray(prompt_ids, dtype=np.int32)
  parts = []
  chunks = padded_chunks(len(examples), prompt_batch_size)
  for take, padded in tqdm.tqdm(chunks, desc="sampling", disable=not progress, leave=False,
                                total=-(-len(examples) // prompt_batch_size)):
    rollout = setup.sample(params, sampling, prompt_tokens[padded], prompt_valid[padded],
                           ids[padded], rng, step)
    rollout = fetch_to_host(rollout)  # Split over hosts in a multi-process run.
    parts.append({f: np.asarray(getattr(rollout, f))[:len(take)] for f in _ROLLOUT_FIELDS})
  rollout = {f: np.concatenate([p[f] for p in parts]) for f in _ROLLOUT_FIELDS}
  texts = [[tok.decode(sample_tokens) for sample_tokens in row] for row in rollout["tokens"]]
  n = sampling.num_samples
  flat_examples = [e for e in examples for _ in range(n)]
  results = setup.task.verify_examples(flat_examples, [t for row in texts for t in row])
  grid = lambda f: [[f(r) for r in results[i * n:(i + 1) * n]] for i in range(len(examples))]
  return ScoredSamples(
      completions=texts,
      correct=np.asarray(grid(lambda r: r.correct), dtype=bool).reshape(len(examples), n),
      rewards=np.asarray(grid(lambda r: r.env_reward), dtype=np.float64).reshape(len(examples), n),
      scores=np.asarray(grid(lambda r: r.score), dtype=np.float64).reshape(len(examples), n),
      answers=grid(lambda r: r.answer),
      statuses=grid(lambda r: Status(r.status).value),
      lengths=rollout["lengths"],
      logprobs=rollout["logprobs"].sum(-1),
      prompt_tokens=prompt_tokens,
      prompt_valid=prompt_valid,
      completion_tokens=rollout["tokens"],
      completion_mask=rollout["mask"])


def group_logprobs(params: Any, prompt_tokens: jax.Array, prompt_valid: jax.Array,
                   completions: jax.Array, completion_mask: jax.Array, *, model_cfg: ModelConfig,
                   temperature: float, compute_dtype: Any) -> tuple[jax.Array, jax.Array]:
  """Sequence log-probabilities of N completions per prompt (teacher forcing).

  Args:
    params: model parameters.
    prompt_tokens: int32 [B, P] left-padded prompts.
    prompt_valid: bool [B, P].
    completions: int32 [B, N, L].
    completion_mask: bool [B, N, L] scored tokens.
    model_cfg: architecture.
    temperature: the policy's temperature (the sampler's, so ratios to the sampler are exact).
    compute_dtype: activation dtype.

  Returns:
    ([B, N] summed log-probabilities, [B, N] token counts).
  """
  b, n, length = completions.shape
  repeat = lambda x: jnp.repeat(x, n, axis=0)
  tokens = jnp.concatenate([repeat(prompt_tokens), completions.reshape(b * n, length)], axis=1)
  valid = jnp.concatenate([repeat(prompt_valid), completion_mask.reshape(b * n, length)], axis=1)
  target = jnp.concatenate([jnp.zeros_like(repeat(prompt_valid)),
                            completion_mask.reshape(b * n, length)], axis=1)
  seq, _ = sequence_logprobs(params, model_cfg, tokens, valid, target, temperature=temperature,
                             compute_dtype=compute_dtype)
  return seq.reshape(b, n), completion_mask.sum(-1).astype(jnp.float32)

"""Scored samples of a fixed reference policy, per prompt: the reward CDF of vBoN / BOND and
their Best-of-N targets.

The reference never changes during a run, so its samples are drawn once per prompt (lazily,
the first time a prompt is trained on) and cached. They are keyed by the prompt id with a
fixed step, so a resumed run rebuilds exactly the same cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np

from bonjax.data.example import TaskExample
from bonjax.sampling import sampler as sampler_lib
from bonjax.training.rollouts import sample_and_score
from bonjax.training import rng_streams
from bonjax.training.run_setup import RunSetup



@dataclasses.dataclass(frozen=True)
class PromptReference:
  """M scored reference completions of one prompt.

  Attributes:
    tokens: int32 [M, L] completions.
    mask: bool [M, L] generated tokens.
    scores: float [M] verifier scores.
  """

  tokens: np.ndarray
  mask: np.ndarray
  scores: np.ndarray


class ReferenceSampleCache:
  """Lazily filled map prompt id -> PromptReference for a frozen reference policy.

  Args:
    setup: the run.
    params: reference parameters (not modified).
    sampling: sampler settings of the reference samples (num_samples = M).
    seed: run seed.
    prompt_batch_size: prompts per sampler call when filling.
  """

  def __init__(self, setup: RunSetup, params: Any, sampling: sampler_lib.SamplingParams,
               seed: int, prompt_batch_size: int):
    self.setup, self.params, self.sampling = setup, params, sampling
    self.rng = rng_streams.stream_key(seed, rng_streams.REFERENCE)
    self.prompt_batch_size = prompt_batch_size
    self._cache: dict[int, PromptReference] = {}

  def __len__(self) -> int:
    return len(self._cache)

  def get(self, examples: Sequence[TaskExample], prompt_ids: Sequence[int]) -> list[PromptReference]:
    """References of `examples` (ids `prompt_ids`), sampling the ones not cached yet."""
    missing = [(e, i) for e, i in zip(examples, prompt_ids) if int(i) not in self._cache]
    missing = list({int(i): (e, int(i)) for e, i in missing}.values())
    if missing:
      samples = sample_and_score(self.setup, self.params, [e for e, _ in missing],
                                 [i for _, i in missing], self.sampling, self.rng, 0,
                                 self.prompt_batch_size)
      for row, (_, prompt_id) in enumerate(missing):
        self._cache[prompt_id] = PromptReference(tokens=samples.completion_tokens[row],
                                                 mask=samples.completion_mask[row],
                                                 scores=samples.scores[row])
    return [self._cache[int(i)] for i in prompt_ids]


def best_of_subset(reference: PromptReference, n: int, rng: np.random.Generator) -> int:
  """Index of the best (first-index ties) of `n` reference samples drawn without replacement.

  A fresh subset per call makes the result a draw from Best-of-n of the reference policy.
  """
  subset = np.sort(rng.choice(len(reference.scores), size=min(n, len(reference.scores)),
                              replace=False))
  return int(subset[np.argmax(reference.scores[subset])])

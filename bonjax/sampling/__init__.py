"""The sampler: N completions per prompt with per-token log-probabilities."""

from bonjax.sampling.sampler import Rollout, SamplingParams, sample, sample_keys
from bonjax.sampling.token_sampling import sample_tokens, two_stage_categorical

__all__ = ["Rollout", "SamplingParams", "sample", "sample_keys", "sample_tokens",
           "two_stage_categorical"]

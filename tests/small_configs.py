"""Experiment configs shrunk to a few fast steps of the tiny model, for tests."""

from __future__ import annotations

import ml_collections


def shrink(config: ml_collections.ConfigDict, *, num_train: int, num_test: int, batch_size: int,
           warmup_steps: int = 1, eval_samples: int | None = None) -> ml_collections.ConfigDict:
  """Shrinks `config` in place and returns it.

  Args:
    config: an experiment config (e.g. the quickstart's).
    num_train: training examples.
    num_test: held-out examples, all of them evaluated.
    batch_size: prompts per update.
    warmup_steps: learning-rate warm-up.
    eval_samples: samples per evaluation prompt (None keeps the config's).

  Returns:
    `config`, evaluated in sampler calls of 8 prompts (divisible by the 8 test devices).
  """
  config.task.num_train = num_train
  config.task.num_test = num_test
  config.train.batch_size = batch_size
  config.train.warmup_steps = warmup_steps
  config.eval.num_prompts = num_test
  config.eval.prompt_batch_size = 8
  if eval_samples is not None:
    config.eval.num_samples = eval_samples
  return config

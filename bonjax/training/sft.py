"""Supervised fine-tuning on gold answers: the batch, the loss (token-averaged NLL of the
completion), and the trainer that ties them together."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bonjax.data.batching import encode_supervised
from bonjax.data import feed
from bonjax.models.logprobs import sequence_logprobs
from bonjax.models.config import ModelConfig
from bonjax.objectives.sft import supervised_nll


def sft_loss(params: Any, batch: dict[str, jax.Array], rng: jax.Array, *,
             model_cfg: ModelConfig, compute_dtype: Any = jnp.float32
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Token-averaged NLL over `batch["target_mask"]` (prompt and padding are not scored).

  Args:
    params: model parameters.
    batch: `tokens` int32 [B, T], `valid` bool [B, T], `target_mask` bool [B, T] (see
      `bonjax.data.batching.encode_supervised`).
    rng: unused (SFT draws nothing); part of the common loss signature.
    model_cfg: architecture.
    compute_dtype: activation dtype.

  Returns:
    (loss, metrics) with `token_nll`, `sequence_nll` and `target_tokens`.
  """
  del rng
  seq_logp, _ = sequence_logprobs(params, model_cfg, batch["tokens"], batch["valid"],
                                 batch["target_mask"], compute_dtype=compute_dtype)
  rows = jnp.ones(seq_logp.shape, jnp.bool_)  # Padding rows have no targets: they add 0.
  loss = supervised_nll(seq_logp, rows, batch["target_mask"].sum(axis=-1), "token")
  num_targets = jnp.maximum(batch["target_mask"].sum(), 1)
  return loss, {"token_nll": loss, "sequence_nll": supervised_nll(seq_logp, rows, None, "sequence"),
                "target_tokens": num_targets.astype(jnp.float32)}


def supervised_batch(setup, step: int) -> dict[str, np.ndarray]:
  """The SFT batch of `step`: a pure function of (config, step), so resumes see the same data.

  Args:
    setup: the run (a `bonjax.training.run_setup.RunSetup`).
    step: 0-based step.

  Returns:
    The teacher-forcing batch of `encode_supervised` for the step's training examples.
  """
  train = setup.config.train
  examples = feed.batch_at(setup.task.train, seed=setup.config.seed, step=step,
                           batch_size=train.batch_size).examples
  return encode_supervised(setup.tokenizer, [setup.format_prompt(e) for e in examples],
                           [e.answer for e in examples], setup.prompt_buckets,
                           setup.completion_buckets)


@dataclasses.dataclass
class SupervisedTrainer:
  """Teacher forcing on the task's gold answers (`algorithm="sft"`): no sampling."""

  setup: Any

  @property
  def loss_fn(self):
    return functools.partial(sft_loss, model_cfg=self.setup.model_cfg,
                             compute_dtype=self.setup.compute_dtype)

  def init_aux(self, params: Any) -> None:
    del params

  def aux_update(self) -> None:
    return None

  def batch(self, state: Any, step: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    del state
    return supervised_batch(self.setup, step), {}

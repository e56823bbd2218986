"""On-policy training with any registered objective: sample N completions per prompt with the
current policy, verify them, weight them by the objective, update.

One step:
  prompts [B] -> sampler (current params, shared prompt prefill) -> completions [B, N, L]
  -> verifier (host) -> rewards R [B, N], scores r [B, N]
  -> (reference forward pass / reference samples / EMA anchor, when the objective needs them)
  -> jit train step: log pi_theta of every completion, objective loss, optimizer update.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bonjax.data.batching import encode_supervised
from bonjax.data import feed
from bonjax.models import lora
from bonjax.models.config import ModelConfig
from bonjax.objectives.bond import ema_anchor_update
from bonjax.objectives.inputs import ObjectiveInputs
from bonjax.objectives.registry import ObjectiveSpec, get_objective
from bonjax.parallel.distributed import fetch_to_host
from bonjax.training.reference_samples import ReferenceSampleCache, best_of_subset
from bonjax.models.logprobs import policy_temperature
from bonjax.training.rollouts import group_logprobs, sample_and_score
from bonjax.training import rng_streams
from bonjax.training.run_setup import RunSetup
from bonjax.training.state import TrainState



def on_policy_loss(params: Any, batch: dict[str, jax.Array], rng: jax.Array, *,
                   model_cfg: ModelConfig, spec: ObjectiveSpec, objective_cfg: Any,
                   temperature: float, compute_dtype: Any) -> tuple[jax.Array, dict]:
  """The objective's loss on one rollout batch (see `OnPolicyTrainer.batch` for the keys)."""
  del rng
  logp = functools.partial(group_logprobs, model_cfg=model_cfg, temperature=temperature,
                           compute_dtype=compute_dtype)
  logprobs, num_tokens = logp(params, batch["prompt_tokens"], batch["prompt_valid"],
                              batch["completions"], batch["completion_mask"])
  optional = {k: batch[k] for k in ("ref_logprobs", "ref_scores", "anchor_logprobs",
                                    "expert_scores") if k in batch}
  if "expert" in batch:
    expert_logprobs, _ = logp(params, batch["prompt_tokens"], batch["prompt_valid"],
                              batch["expert"][:, None], batch["expert_mask"][:, None])
    optional["expert_logprobs"] = expert_logprobs[:, 0]
  inputs = ObjectiveInputs(logprobs=logprobs, sampler_logprobs=batch["sampler_logprobs"],
                           rewards=batch["rewards"], scores=batch["scores"],
                           mask=jnp.ones(logprobs.shape, bool), num_tokens=num_tokens,
                           **optional)
  loss, metrics = spec.fn(inputs, objective_cfg)
  metrics = dict(metrics, reward=batch["rewards"].mean(), score=batch["scores"].mean(),
                 completion_tokens=num_tokens.mean(),
                 sampler_nll_per_token=-batch["sampler_logprobs"].sum() / jnp.maximum(
                     num_tokens.sum(), 1.0))
  return loss, metrics


@dataclasses.dataclass
class OnPolicyTrainer:
  """Builds rollout batches for one objective and holds what it needs besides the policy.

  Attributes:
    setup: the run.
    spec: the objective registry entry.
    objective_cfg: its validated config dataclass.
    reference_params: frozen initial policy (KL terms, vBoN/BOND), or None.
  """

  setup: RunSetup
  spec: ObjectiveSpec
  objective_cfg: Any
  reference_params: Any = None

  def __post_init__(self):
    config = self.setup.config
    self.needed = self.spec.required_inputs(self.objective_cfg)
    self.sampling = self.setup.sampling_params(config.sampling)
    self.temperature = policy_temperature(config.sampling.temperature)
    self._reference_cache = None
    if "ref_scores" in self.needed and not self.spec.needs_anchor:
      self._reference_cache = ReferenceSampleCache(
          self.setup, self.reference_params,
          self.setup.sampling_params(config.sampling, config.reference.num_samples),
          config.seed, config.train.batch_size)
    self._logprob_fn = jax.jit(functools.partial(
        group_logprobs, model_cfg=self.setup.model_cfg, temperature=self.temperature,
        compute_dtype=self.setup.compute_dtype))

  @property
  def loss_fn(self):
    return functools.partial(on_policy_loss, model_cfg=self.setup.model_cfg, spec=self.spec,
                             objective_cfg=self.objective_cfg, temperature=self.temperature,
                             compute_dtype=self.setup.compute_dtype)

  def init_aux(self, params: Any) -> Any:
    """J-BOND's anchor starts at the initial policy; other objectives keep no extra state."""
    return {"anchor": params} if self.spec.needs_anchor else None

  def aux_update(self):
    """Pure post-update of TrainState.aux (the anchor EMA), or None."""
    if not self.spec.needs_anchor:
      return None
    eta = self.setup.config.reference.anchor_ema
    return lambda aux, params: {"anchor": ema_anchor_update(aux["anchor"], params, eta)}

  def batch(self, state: TrainState, step: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Samples, verifies and assembles the rollout batch of `step`.

    Returns:
      (host batch of [B, ...] arrays, host-side metrics such as verifier status rates).
    """
    setup, config = self.setup, self.setup.config
    batch_feed = feed.batch_at(setup.task.train, seed=config.seed, step=step,
                               batch_size=config.train.batch_size)
    idx, examples = batch_feed.indices, list(batch_feed.examples)
    rng = rng_streams.stream_key(config.seed, rng_streams.TRAIN)
    samples = sample_and_score(setup, state.params, examples, idx, self.sampling, rng, step,
                               config.train.batch_size)
    batch = {
        "prompt_tokens": samples.prompt_tokens, "prompt_valid": samples.prompt_valid,
        "completions": samples.completion_tokens, "completion_mask": samples.completion_mask,
        "sampler_logprobs": samples.logprobs.astype(np.float32),
        "rewards": samples.rewards.astype(np.float32),
        "scores": samples.scores.astype(np.float32),
    }
    if "ref_logprobs" in self.needed:
      batch["ref_logprobs"] = self._logprobs(self.reference(state), batch)
    if self.spec.needs_anchor:
      self._add_anchor_terms(batch, state, examples, idx, step)
    elif self._reference_cache is not None:
      self._reference_cache.params = self.reference(state)  # Current buffers (LoRA base).
      self._add_reference_terms(batch, examples, idx, step)
    elif "expert_logprobs" in self.needed:
      self._add_gold_expert(batch, examples)
    statuses = [s for row in samples.statuses for s in row]
    host_metrics = {"unparseable_rate": statuses.count("unparseable") / len(statuses),
                    "unscored_rate": statuses.count("unscored") / len(statuses),
                    "distinct_answers": float(np.mean([len({a for a in row if a is not None})
                                                       for row in samples.answers]))}
    return batch, host_metrics

  def reference(self, state: TrainState) -> Any:
    """The frozen reference policy: the kept copy, or a LoRA run's base weights (adapters off,
    the train state's own buffers: no second copy)."""
    if self.reference_params is None and lora.has_adapters(state.params):
      return lora.without_adapters(state.params)
    return self.reference_params

  def _logprobs(self, params: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    sharded = self.setup.shard_batch({k: batch[k] for k in ("prompt_tokens", "prompt_valid",
                                                             "completions", "completion_mask")})
    logprobs, _ = self._logprob_fn(params, sharded["prompt_tokens"], sharded["prompt_valid"],
                                   sharded["completions"], sharded["completion_mask"])
    return np.asarray(fetch_to_host(logprobs), np.float32)

  def _add_gold_expert(self, batch: dict[str, np.ndarray], examples) -> None:
    """Expert = the task's gold answer; its verifier score is what BoN-SFT compares against."""
    setup = self.setup
    supervised = encode_supervised(setup.tokenizer, [setup.format_prompt(e) for e in examples],
                                   [e.answer for e in examples], setup.prompt_buckets,
                                   (batch["completions"].shape[-1],))
    width = batch["prompt_tokens"].shape[1]
    batch["expert"] = supervised["tokens"][:, width:]
    batch["expert_mask"] = supervised["target_mask"][:, width:]
    gold = setup.task.verify_examples(examples, [e.answer for e in examples])
    batch["expert_scores"] = np.asarray([r.score for r in gold], np.float32)

  def _set_bon_expert(self, batch, tokens_and_masks, scores) -> None:
    batch["expert"] = np.stack([t for t, _ in tokens_and_masks])
    batch["expert_mask"] = np.stack([m for _, m in tokens_and_masks])
    batch["expert_scores"] = np.asarray(scores, np.float32)

  def _add_reference_terms(self, batch, examples, idx, step) -> None:
    """vBoN / BOND: CDF from cached reference samples, BoN(reference) target for forward KL."""
    references = self._reference_cache.get(examples, idx)
    batch["ref_scores"] = np.stack([r.scores for r in references]).astype(np.float32)
    if "expert_logprobs" in self.needed:
      bon_n = getattr(self.objective_cfg, "bon_n", 2)
      rng = np.random.default_rng([self.setup.config.seed, step, rng_streams.TRAIN])
      picks = [best_of_subset(r, bon_n, rng) for r in references]
      self._set_bon_expert(batch, [(r.tokens[p], r.mask[p]) for r, p in zip(references, picks)],
                           [r.scores[p] for r, p in zip(references, picks)])

  def _add_anchor_terms(self, batch, state, examples, idx, step) -> None:
    """J-BOND: anchor log-probs of the policy samples, fresh anchor samples for the CDF, and
    Best-of-2 of the anchor as the forward-KL target."""
    setup, config = self.setup, self.setup.config
    anchor = state.aux["anchor"]
    batch["anchor_logprobs"] = self._logprobs(anchor, batch)
    sampling = setup.sampling_params(config.sampling, config.reference.num_samples)
    rng = rng_streams.stream_key(config.seed, rng_streams.ANCHOR)
    anchor_samples = sample_and_score(setup, anchor, examples, idx, sampling, rng, step,
                                      config.train.batch_size)
    batch["ref_scores"] = anchor_samples.scores.astype(np.float32)
    if "expert_logprobs" in self.needed:
      # Best of the first two anchor samples: a draw from Best-of-2 of the anchor.
      picks = np.argmax(anchor_samples.scores[:, :2], axis=1)
      rows = np.arange(len(picks))
      self._set_bon_expert(batch, list(zip(anchor_samples.completion_tokens[rows, picks],
                                           anchor_samples.completion_mask[rows, picks])),
                           anchor_samples.scores[rows, picks])


def build_on_policy_trainer(setup: RunSetup, reference_params: Any) -> OnPolicyTrainer:
  """The trainer for `config.algorithm`, with `config.objective` as the objective's options.

  Raises:
    ValueError: unknown algorithm or invalid objective options, naming the field.
  """
  config = setup.config
  try:
    spec = get_objective(config.algorithm)
  except KeyError as e:
    raise ValueError(f"algorithm={config.algorithm!r}: {e.args[0]}") from None
  options = config.get("objective", ml_collections.ConfigDict()).to_dict()
  try:
    objective_cfg = spec.make_config(**options)
  except (TypeError, ValueError) as e:
    raise ValueError(f"objective ({config.algorithm}): {e}") from None
  return OnPolicyTrainer(setup=setup, spec=spec, objective_cfg=objective_cfg,
                         reference_params=reference_params)

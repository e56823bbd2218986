"""Training and evaluating a learned verifier (outcome reward model) on a policy's own samples.

  policy checkpoint (config.init_from)
    -> sample reward_model.num_samples completions for reward_model.num_prompts training
       prompts, label each with the task's exact verifier (correct / not)
    -> binary cross-entropy on (prompt, completion, correct), backbone initialised from the
       policy and a zero scalar head
    -> on held-out prompts: AUC, and Best-of-k accuracy when the ORM selects, against oracle
       (environment reward) and random selection
    -> <workdir>/reward_model.json + params/ (loadable as verifier.kind="learned"),
       verifier_report.json, bon_selection.png, metrics.jsonl / TensorBoard.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from bonjax.bon import curves
from bonjax.data import batching
from bonjax.models import reward_model as orm_net
from bonjax.training import learned_verifier as learned
from bonjax.training import loop
from bonjax.training.config_validation import COMMON_RULES, ConfigError, Rule, validate_config
from bonjax.training.metrics_writer import MetricsWriter
from bonjax.training.rollouts import ScoredSamples, sample_and_score
from bonjax.training.run_setup import RunSetup, build_run_setup
from bonjax.training.state import TrainState, create_train_state, make_optimizer
from bonjax.training import rng_streams
from bonjax.training.step import jit_train_step, make_train_step
from bonjax.verifiers import reward_model as orm

_TRAIN_FIELDS = ("num_steps", "batch_size", "learning_rate", "lr_schedule", "warmup_steps",
                 "end_lr_fraction", "weight_decay", "b1", "b2", "grad_clip_norm", "log_every")


def harvest(setup: RunSetup, params: Any, split: str, num_prompts: int, stream: int,
            progress: bool = True) -> tuple[list[str], ScoredSamples]:
  """Samples `reward_model.num_samples` completions for the first `num_prompts` prompts of
  `split` ("train" or "test") and labels them with the task's exact verifier.

  Returns:
    (the B prompt texts, ScoredSamples with `correct` [B, n] as labels).
  """
  cfg = setup.config.reward_model
  examples = list(getattr(setup.task, split)[:num_prompts])
  # The eval section's length and the run's stop / pad ids; pure sampling at the harvest's own
  # temperature (no top-k / top-p truncation), so labels cover the policy's whole distribution.
  sampling = dataclasses.replace(setup.sampling_params(setup.config.eval, cfg.num_samples),
                                 temperature=cfg.temperature, top_k=0, top_p=1.0)
  rng = rng_streams.stream_key(setup.config.seed, stream)
  samples = sample_and_score(setup, params, examples, range(len(examples)), sampling, rng, 0,
                             setup.config.eval.prompt_batch_size, progress)
  return [e.prompt for e in examples], samples


def labelled_pairs(setup: RunSetup, prompts: list[str],
                   samples: ScoredSamples) -> dict[str, np.ndarray]:
  """Flattens a harvest into ORM inputs (`encode_pairs`) and float `labels` [B * n]."""
  n = samples.correct.shape[1]
  flat_prompts = [p for p in prompts for _ in range(n)]
  flat_completions = [c for row in samples.completions for c in row]
  cfg = setup.config.reward_model
  pairs = batching.encode_pairs(setup.tokenizer, flat_prompts, flat_completions,
                           cfg.prompt_buckets, cfg.completion_buckets)
  return {**pairs, "labels": samples.correct.reshape(-1).astype(np.float32)}


def _make_step(setup: RunSetup, optimizer: optax.GradientTransformation, state: TrainState,
               data: dict[str, np.ndarray]):
  """The jitted ORM update (the shared `make_train_step`); it keeps the layout of `state`, so
  the first step's outputs feed the next without a recompile."""
  loss_fn = lambda params, batch, rng: orm_net.orm_loss(params, setup.model_cfg, batch,
                                                         setup.compute_dtype)
  layout = jax.tree.map(lambda x: x.sharding, state)
  batch_shardings = {k: setup.batch_sharding(np.ndim(v)) for k, v in data.items()}
  return jit_train_step(make_train_step(loss_fn, optimizer), layout, batch_shardings,
                        setup.mesh)


def fit(setup: RunSetup, params: Any, data: dict[str, np.ndarray], writer: MetricsWriter | None,
        progress: bool = True) -> Any:
  """Trains ORM `params` on `data` for `reward_model.train.num_steps` steps of shuffled
  minibatches (a fresh permutation per epoch, seeded by `config.seed`).

  Returns:
    the trained parameters.
  """
  train_cfg = setup.config.reward_model.train
  optimizer = make_optimizer(train_cfg)
  if not setup.config.reward_model.get("train_backbone", True):
    # A probe: only the head learns; the policy's features stay as they are.
    optimizer = optax.multi_transform(
        {"train": optimizer, "freeze": optax.set_to_zero()},
        lambda tree: {"backbone": jax.tree.map(lambda _: "freeze", tree["backbone"]),
                      "head": jax.tree.map(lambda _: "train", tree["head"])})
  replicated = NamedSharding(setup.mesh, PartitionSpec())
  params = jax.device_put(params, {"backbone": setup.param_shardings(),
                                   "head": jax.tree.map(lambda _: replicated, params["head"])})
  state = jax.jit(lambda p: create_train_state(p, optimizer, setup.config.seed))(params)
  # Leaves created off the mesh (the optimizer's step count, the rng) are replicated over it.
  state = jax.tree.map(
      lambda x: x if x.sharding.device_set == replicated.device_set
      else jax.device_put(x, replicated), state)
  step_fn = _make_step(setup, optimizer, state, data)
  batch_size, size = train_cfg.batch_size, len(data["labels"])
  rng = np.random.default_rng(setup.config.seed)
  order = np.zeros((0,), np.int64)
  bar = tqdm.trange(train_cfg.num_steps, desc="reward model", disable=not progress)
  for step in bar:
    if len(order) < batch_size:
      order = np.concatenate([order, rng.permutation(size)])
    take, order = order[:batch_size], order[batch_size:]
    batch = setup.shard_batch({k: v[take] for k, v in data.items()})
    state, metrics = step_fn(state, batch)
    if (step + 1) % train_cfg.log_every == 0 or step + 1 == train_cfg.num_steps:
      metrics = jax.device_get(metrics)
      bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
      if writer is not None:
        writer.write(step + 1, metrics, prefix="reward_model/")
  return state.params


def selection_report(correct: np.ndarray, orm_scores: np.ndarray,
                     answers: list[list[str | None]], seed: int) -> dict[str, Any]:
  """AUC and Best-of-k curves of ORM, oracle and random selection on the same samples.

  Args:
    correct: bool [B, n] environment reward of the held-out samples.
    orm_scores: [B, n] ORM probabilities.
    answers: extracted answers (for maj@k).
    seed: seeds the random selection baseline.
  """
  random_scores = np.random.default_rng(seed).uniform(size=correct.shape)
  probs = orm_scores.reshape(-1)
  labels = correct.reshape(-1)
  return {
      "auc": orm.roc_auc(probs, labels),
      "within_prompt_auc": orm.within_prompt_auc(orm_scores, correct),
      "accuracy": float(((probs > 0.5) == labels).mean()),
      "brier": float(np.mean((probs - labels) ** 2)),
      "positive_rate": float(labels.mean()),
      "curves": {
          "learned": curves.bon_curve(correct, orm_scores, answers),
          "oracle": curves.bon_curve(correct, None, answers),
          "random": curves.bon_curve(correct, random_scores, answers),
      },
  }


def plot_selection(report: dict[str, Any], path: str) -> None:
  """BoN-accuracy@k of learned, oracle and random selection (oracle's equals pass@k)."""
  only_bon = {label: {**curve, "metrics": {"bon_acc@k": curve["metrics"]["bon_acc@k"]}}
              for label, curve in report["curves"].items()}
  auc = report["auc"]
  curves.plot_bon_curve(only_bon, path, title=f"Best-of-k selection on held-out samples "
                        f"(learned verifier AUC {auc if auc is None else round(auc, 3)})")


# The ORM's own optimizer section follows the rules of `train`.
RULES: tuple[Rule, ...] = tuple(
    Rule(f"reward_model.{r.path}", r.check, r.rule) for r in COMMON_RULES
    if r.path.startswith("train.") and r.path.split(".")[1] in _TRAIN_FIELDS) + (
    Rule("reward_model.num_prompts", lambda v: v >= 1, "must be >= 1"),
    Rule("reward_model.num_eval_prompts", lambda v: v >= 1, "must be >= 1"),
    Rule("reward_model.num_samples", lambda v: v >= 1, "must be >= 1"),
    Rule("reward_model.temperature", lambda v: v > 0, "must be > 0 (samples must vary)"),
    Rule("init_from", bool, "must name the trained policy whose samples the verifier learns "
         "from (e.g. workdir/quickstart, made by `python -m launch.main`)"),
)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates the run config plus its `reward_model` section.

  Raises:
    ConfigError: every violation, each naming field, value and rule.
  """
  validate_config(config, RULES)
  cfg, problems = config.reward_model, []
  if cfg.num_eval_prompts > config.task.num_test:
    problems.append(f"reward_model.num_eval_prompts={cfg.num_eval_prompts}: must be <= "
                    f"task.num_test={config.task.num_test}")
  if cfg.num_prompts > config.task.num_train:
    problems.append(f"reward_model.num_prompts={cfg.num_prompts}: must be <= "
                    f"task.num_train={config.task.num_train}")
  if max(cfg.completion_buckets) < config.eval.max_new_tokens + 1:
    problems.append(f"reward_model.completion_buckets={tuple(cfg.completion_buckets)}: the "
                    f"largest must hold eval.max_new_tokens + 1 (EOS) = "
                    f"{config.eval.max_new_tokens + 1} tokens")
  if problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def train_reward_model(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True) -> dict[str, Any]:
  """Harvests labelled samples of the `init_from` policy, trains the ORM, evaluates it as a
  selector on held-out prompts and saves it into `workdir`.

  Returns:
    the report written to `<workdir>/verifier_report.json`.
  """
  check_config(config)
  setup = build_run_setup(config)
  cfg = config.reward_model
  policy, policy_step = loop.restore_params(setup, config.init_from)
  logging.info("Harvesting %d x %d training samples of %s (step %d)", cfg.num_prompts,
               cfg.num_samples, config.init_from, policy_step)
  train_prompts, train_samples = harvest(setup, policy, "train", cfg.num_prompts,
                                         rng_streams.VERIFIER_TRAIN_HARVEST, progress)
  eval_prompts, eval_samples = harvest(setup, policy, "test", cfg.num_eval_prompts,
                                       rng_streams.VERIFIER_HELDOUT_HARVEST, progress)
  data = labelled_pairs(setup, train_prompts, train_samples)
  logging.info("%d training pairs, %.1f%% correct", len(data["labels"]),
               100 * data["labels"].mean())

  params = orm_net.init_reward_model(policy, setup.model_cfg)
  writer = MetricsWriter(workdir) if jax.process_index() == 0 else None
  try:
    params = fit(setup, params, data, writer, progress)
  finally:
    if writer is not None:
      writer.close()

  scores = learned.score_pairs(params, setup.model_cfg, setup.tokenizer,
                           [p for p in eval_prompts for _ in range(cfg.num_samples)],
                           [c for row in eval_samples.completions for c in row],
                           cfg.prompt_buckets, cfg.completion_buckets,
                           compute_dtype=setup.compute_dtype)
  report = selection_report(eval_samples.correct, scores.reshape(eval_samples.correct.shape),
                            eval_samples.answers,
                            rng_streams.VERIFIER_RANDOM_SELECTION)
  report.update({"policy": os.path.abspath(config.init_from), "policy_step": policy_step,
                 "num_train_pairs": int(len(data["labels"])),
                 "train_positive_rate": float(data["labels"].mean()),
                 "num_eval_prompts": cfg.num_eval_prompts, "num_samples": cfg.num_samples})
  if jax.process_index() == 0:
    meta = {"config": config.to_dict(), "prompt_buckets": list(cfg.prompt_buckets),
            "completion_buckets": list(cfg.completion_buckets),
            "policy": report["policy"], "policy_step": policy_step, "auc": report["auc"],
            # The policy's own architecture and tokenizer (an hf: checkpoint's, not a preset's).
            "model": dataclasses.asdict(setup.model_cfg.architecture())}
    learned.save_reward_model(workdir, jax.device_get(params), meta)
    if hasattr(setup.tokenizer, "save"):
      setup.tokenizer.save(workdir)
    curves.write_curve_json(report, os.path.join(workdir, "verifier_report.json"))
    plot_selection(report, os.path.join(workdir, "bon_selection.png"))
  return report

"""The training loop (SFT or on-policy with any objective), resumable from orbax checkpoints,
and the eval / sample entry points."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from bonjax.models import lora
from bonjax.models import transformer
from bonjax.objectives import registry as objective_registry
from bonjax.parallel import sharding as sharding_lib
from bonjax.training import evaluation
from bonjax.training import memory_budget
from bonjax.training import model_source
from bonjax.training.checkpointing import Checkpointer, abstract_like
from bonjax.training.metrics_writer import MetricsWriter, check_logging_config
from bonjax.training.nonfinite import NonFiniteGuard
from bonjax.training.resume_check import check_resume_config
from bonjax.training.run_setup import RunSetup, build_run_setup
from bonjax.training.config_validation import ConfigError
from bonjax.training.on_policy import build_on_policy_trainer
from bonjax.training.sft import SupervisedTrainer
from bonjax.training.state import TrainState, create_train_state, learning_rate_schedule, make_optimizer
from bonjax.training.step import jit_train_step, make_train_step
from bonjax.training.workdir import WorkdirLock, check_workdir


def state_shardings(setup: RunSetup, optimizer, with_anchor: bool = False) -> Any:
  """NamedShardings of the whole TrainState: optimizer moments (and an EMA anchor) follow
  their parameters' logical axes."""
  return sharding_lib.boxed_shardings(
      setup.abstract_train_state(optimizer, with_anchor, boxed=True), setup.mesh)


def initial_params(setup: RunSetup) -> Any:
  """Random parameters, or those of the latest checkpoint of `config.init_from`."""
  if setup.config.get("init_from"):
    params, step = restore_params(setup, setup.config.init_from)
    logging.info("Initialised from %s (step %d)", setup.config.init_from, step)
    # Fresh LoRA adapters on the loaded weights (or adapters merged for a run without LoRA).
    return lora.match_adapters(params, setup.model_cfg, jax.random.key(setup.config.seed))
  return setup.init_params(setup.config.seed)


def init_state(setup: RunSetup, optimizer, shardings: Any, params: Any,
               aux: Any = None) -> TrainState:
  """Fresh TrainState from `params`, created directly in its sharded layout."""
  create = lambda p, a: create_train_state(p, optimizer, setup.config.seed, a,
                                           lora.trainable_mask(p))
  return jax.jit(create, out_shardings=shardings)(params, aux)


def build_trainer(setup: RunSetup, reference_params: Any):
  """SFT on gold answers for `algorithm="sft"`, otherwise on-policy training with the objective
  registry entry of that name, with `reference_params` as the frozen reference policy."""
  if not objective_registry.trains_on_samples(setup.config.algorithm):
    return SupervisedTrainer(setup)
  return build_on_policy_trainer(setup, reference_params)


def reference_copy(setup: RunSetup, params: Any) -> Any:
  """A separate copy of the initial parameters (the train state's buffers get donated).

  Needed by objectives with a reference policy, and by the final evaluation's KL to the starting
  checkpoint when training starts from `init_from`; None otherwise.
  """
  if (not setup.config.get("init_from")
      and not objective_registry.trains_on_samples(setup.config.algorithm)):
    return None
  if lora.has_adapters(params):  # The base weights (adapters off) are the reference: no copy.
    return None
  # Kept in the compute dtype (norm weights float32): the forward pass casts weights to it
  # anyway, so reference log-probs are unchanged and a bfloat16 copy takes half the memory.
  return jax.jit(lambda p: jax.tree.map(jnp.copy, transformer.cast_params(
      p, setup.compute_dtype)))(params)


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
  """Yields an event set by SIGTERM (preemption), so the loop can checkpoint and exit cleanly."""
  event = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield event
    return
  previous = signal.signal(signal.SIGTERM, lambda *_: event.set())
  try:
    yield event
  finally:
    signal.signal(signal.SIGTERM, previous)


def _checkpoint_meta(setup: RunSetup, state: TrainState, step: int,
                     nonfinite_steps: int) -> dict[str, Any]:
  train = setup.config.train
  return {"step": step, "data_seed": setup.config.seed, "examples_seen": step * train.batch_size,
          "has_aux": state.aux is not None, "config": setup.config.to_dict(),
          "nonfinite_steps": nonfinite_steps}


@contextlib.contextmanager
def claim_workdir(workdir: str) -> Iterator[None]:
  """Holds `workdir`'s run lock (process 0) for the block; a workdir this call created is
  removed again when the block leaves it empty (a run refused at start-up leaves nothing)."""
  created = not os.path.exists(workdir)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  try:
    if lock is not None:
      lock.acquire()
    yield
  finally:
    if lock is not None:
      lock.release()
    if created and os.path.isdir(workdir) and not os.listdir(workdir):
      os.rmdir(workdir)


def train(config: ml_collections.ConfigDict, workdir: str,
          allow_config_change: bool = False) -> dict[str, Any]:
  """Trains `config.algorithm`, resuming from the latest checkpoint in `workdir`, then evaluates.

  Args:
    config: run config (validated here, before anything is written).
    workdir: run directory: checkpoints/, metrics.jsonl, tensorboard/, eval.json,
      bon_curve.png; held by this run alone (`run.lock`) while it trains.
    allow_config_change: resume a checkpoint made with another config (each change is
      logged) instead of refusing (see `bonjax.training.resume_check`).

  Returns:
    The final evaluation report (also written to `<workdir>/eval.json`), or
    `{"preempted_at": step}` when SIGTERM stopped the run after saving that step.

  Raises:
    ConfigError: an invalid config, or a checkpoint in `workdir` from another config.
    WorkdirError, WorkdirLockedError: the workdir is unusable or held by another run.
    NonFiniteError: a non-finite step under `train.on_nonfinite="stop"`.
    CheckpointError: a checkpoint cannot be written, or none reads back.
  """
  check_workdir(workdir)
  setup = build_run_setup(config)
  check_logging_config(config)
  with claim_workdir(workdir):
    return _train(setup, workdir, allow_config_change)


def _train(setup: RunSetup, workdir: str, allow_config_change: bool) -> dict[str, Any]:
  config, train_cfg = setup.config, setup.config.train
  optimizer = make_optimizer(train_cfg)
  params = initial_params(setup)
  reference = reference_copy(setup, params)
  try:
    trainer = build_trainer(setup, reference)
  except ValueError as e:
    raise ConfigError(f"invalid config:\n  {e}") from None
  aux = trainer.init_aux(params)
  shardings = state_shardings(setup, optimizer, with_anchor=aux is not None)
  checkpointer = Checkpointer(workdir, train_cfg.keep_checkpoints, train_cfg.async_checkpoints)
  state = init_state(setup, optimizer, shardings, params, aux)
  del params, aux
  check_config = lambda meta: check_resume_config(
      meta.get("config"), config, f"checkpoint {meta.get('step')} in {checkpointer.directory}",
      allow_config_change)
  try:
    restored = checkpointer.restore(abstract_like(state, shardings), check_meta=check_config)
  except BaseException:
    checkpointer.close()
    raise
  start = 0
  guard = NonFiniteGuard(train_cfg.on_nonfinite)
  if restored is not None:
    state, meta = restored
    start = int(meta["step"])
    guard.skipped = int(meta.get("nonfinite_steps", 0))
    logging.info("Resumed from step %d in %s", start, checkpointer.directory)
  # Rows after the step resumed from (a fresh start: all rows) belong to the interrupted run.
  writer = MetricsWriter(workdir, resume_step=start, config=config)
  step_fn = make_train_step(trainer.loss_fn, optimizer, learning_rate_schedule(train_cfg),
                            trainer.aux_update(), trainable=lora.trainable_mask(state.params),
                            grad_accum_steps=memory_budget.grad_accum_steps(config))
  step_fn = _LazilyShardedStep(step_fn, shardings, setup)

  try:
    with stop_on_sigterm() as preempted:
      state, done = _train_steps(setup, trainer, state, step_fn, start, checkpointer,
                                 writer, preempted, guard)
    if preempted.is_set():
      checkpointer.wait()
      logging.warning("SIGTERM: saved step %d; rerun the same command to resume.", done)
      return {"preempted_at": done}
    checkpointer.wait()
    reference = trainer_reference(trainer, state, reference)
    report = evaluation.evaluate_bon(setup, state.params, done, reference_params=reference)
    writer.write(done, evaluation.scalar_summary(report), prefix="eval/")
    writer.write_bon_curve(done, report["curve"])
    if jax.process_index() == 0:
      paths = evaluation.write_report(report, workdir)
      logging.info("Wrote %s and %s", *paths)
    return report
  finally:
    # Also on a crash: let in-flight checkpoint writes finish so the next run can resume.
    checkpointer.close()
    writer.close()


class _LazilyShardedStep:
  """The jit-compiled train step, built on the first batch (whose keys set the batch shardings:
  every array is split over the mesh along its leading prompt axis)."""

  def __init__(self, step_fn, state_shardings_: Any, setup: RunSetup):
    self._step_fn, self._state_shardings, self._setup = step_fn, state_shardings_, setup
    self._compiled = None

  def __call__(self, state: TrainState, batch: dict[str, np.ndarray]):
    if self._compiled is None:
      batch_shardings = {k: self._setup.batch_sharding(np.ndim(v)) for k, v in batch.items()}
      jitted = jit_train_step(self._step_fn, self._state_shardings, batch_shardings,
                              self._setup.mesh)
      sharded = self._setup.shard_batch(batch)
      self._compiled = jitted.lower(state, sharded).compile()
      memory_budget.log_compiled_memory(self._compiled, self._setup.memory_plan)
      return self._compiled(state, sharded)
    return self._compiled(state, self._setup.shard_batch(batch))


def trainer_reference(trainer, state: TrainState, reference: Any = None) -> Any:
  """The frozen reference policy: `reference` or the trainer's copy, or a LoRA run's base
  weights (its params without the adapters: no copy)."""
  if reference is None and lora.has_adapters(state.params):
    return lora.without_adapters(state.params)
  return reference if reference is not None else getattr(trainer, "reference_params", None)


def _train_steps(setup: RunSetup, trainer, state: TrainState, step_fn, start: int,
                 checkpointer: Checkpointer, writer: MetricsWriter,
                 preempted: threading.Event, guard: NonFiniteGuard) -> tuple[TrainState, int]:
  """Runs steps start..num_steps-1 with logging, checkpoints and periodic evaluation.

  Non-finite steps (never applied by the step function) are checked by `guard` at each
  metrics write and before each save.

  Returns:
    (state, number of steps done), stopping early after a checkpoint when `preempted` is set.
  """
  train_cfg = setup.config.train
  done = start
  progress = tqdm.tqdm(range(start, train_cfg.num_steps), initial=start,
                       total=train_cfg.num_steps, desc="train", disable=jax.process_index() != 0)
  window_start = time.perf_counter()
  for step in progress:
    batch, host_metrics = trainer.batch(state, step)
    state, metrics = step_fn(state, batch)
    done = step + 1
    guard.record(done, metrics)
    stop = preempted.is_set()  # Read once: a SIGTERM arriving later is seen after the next step.
    log = done % train_cfg.log_every == 0 or done == train_cfg.num_steps
    save = done % train_cfg.checkpoint_every == 0 or done == train_cfg.num_steps or stop
    if log or save:
      nonfinite_steps = guard.check(checkpointer.latest_step())
    if log:
      metrics = dict(jax.device_get(metrics), **host_metrics, nonfinite_steps=nonfinite_steps)
      del metrics["nonfinite"]
      steps_in_window = done - max(start, (done - 1) // train_cfg.log_every * train_cfg.log_every)
      metrics["seconds_per_step"] = (time.perf_counter() - window_start) / steps_in_window
      window_start = time.perf_counter()
      writer.write(done, metrics)
      progress.set_postfix(loss=f"{float(metrics['loss']):.4f}")
    if save:
      checkpointer.save(done, state, _checkpoint_meta(setup, state, done, nonfinite_steps),
                        force=True)
    if stop:
      break
    if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done < train_cfg.num_steps:
      report = evaluation.evaluate_bon(setup, state.params, done, progress=False,
                                       reference_params=trainer_reference(trainer, state))
      writer.write(done, evaluation.scalar_summary(report), prefix="eval/")
      writer.write_bon_curve(done, report["curve"])
  return state, done


def restore_params(setup: RunSetup, workdir: str) -> tuple[Any, int]:
  """Parameters and step of the latest checkpoint in `workdir`.

  The checkpoint's own config (saved beside it) rebuilds the optimizer-state structure, so the
  parameters of any run (SFT, or RL with other optimizer settings) can initialise this one.

  Raises:
    FileNotFoundError: no checkpoint, with the command that makes one.
    ConfigError: the checkpoint holds another architecture.
  """
  if model_source.is_weights_source(workdir):  # "pretrained:<name>" or "hf:<directory>"
    try:
      return model_source.load_params(setup, workdir), 0
    except ValueError as e:
      raise ConfigError(str(e)) from None
  checkpointer = Checkpointer(workdir, read_only=True)
  try:
    meta = checkpointer.newest_meta()
    if meta is None:
      raise FileNotFoundError(
          f"no checkpoint under {checkpointer.directory}; train first with "
          f"`python -m launch.main --mode=train --workdir={workdir}` (same --config)")
    saved = ml_collections.ConfigDict(meta["config"])
    if saved.model.preset != setup.config.model.preset:
      raise ConfigError(f"checkpoint {workdir} holds model.preset={saved.model.preset!r} but this "
                        f"run has model.preset={setup.config.model.preset!r}")
    optimizer = make_optimizer(saved.train)
    # The checkpoint's own layout: with LoRA adapters (and their optimizer state) or without.
    saved_setup = dataclasses.replace(setup, model_cfg=memory_budget.model_config(saved))
    with_anchor = bool(meta.get("has_aux", False))
    shardings = state_shardings(saved_setup, optimizer, with_anchor=with_anchor)
    abstract = saved_setup.abstract_train_state(optimizer, with_anchor)
    state, meta = checkpointer.restore(abstract_like(abstract, shardings))
  finally:
    checkpointer.close()
  return state.params, int(meta["step"])


def _has_checkpoint(workdir: str) -> bool:
  checkpointer = Checkpointer(workdir, read_only=True)
  try:
    return checkpointer.latest_step() is not None
  finally:
    checkpointer.close()


def params_source(config: ml_collections.ConfigDict, workdir: str) -> str:
  """`workdir`, or the pretrained / HF `init_from` weights when nothing was trained yet."""
  if not _has_checkpoint(workdir) and model_source.is_weights_source(config.init_from):
    logging.info("No checkpoint in %s: using %s", workdir, config.init_from)
    return config.init_from
  return workdir


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """BoN evaluation of the latest checkpoint in `workdir`; writes eval.json and the plot."""
  setup = build_run_setup(config)
  params, step = restore_params(setup, params_source(config, workdir))
  report = evaluation.evaluate_bon(setup, params, step)
  if jax.process_index() == 0:
    evaluation.write_report(report, workdir)
  return report


def sample(config: ml_collections.ConfigDict, workdir: str, num_prompts: int = 5) -> list[dict]:
  """Prints `sampling.num_samples` completions for a few held-out prompts, with verdicts."""
  setup = build_run_setup(config)
  params, step = restore_params(setup, workdir)
  sampling = setup.sampling_params(config.sampling)
  examples = list(setup.task.test[:num_prompts])
  samples = evaluation.sample_and_score(setup, params, examples, range(len(examples)), sampling,
                                        jax.random.key(config.seed), step,
                                        config.eval.prompt_batch_size)
  out = []
  for i, e in enumerate(examples):
    print(f"\n{e.prompt!r}  (gold {e.answer})")
    for text, ok in zip(samples.completions[i], samples.correct[i]):
      print(f"  {'+' if ok else '-'} {text!r}")
    out.append({"prompt": e.prompt, "gold": e.answer, "completions": samples.completions[i],
                "correct": samples.correct[i].tolist()})
  return out

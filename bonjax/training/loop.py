"""The training loop (SFT), resumable from orbax checkpoints, and the eval / sample entry points."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
import tqdm

from bonjax.data.batching import encode_supervised
from bonjax.data.order import batch_indices
from bonjax.models import transformer
from bonjax.parallel import sharding as sharding_lib
from bonjax.training import evaluation
from bonjax.training.checkpointing import Checkpointer, abstract_like
from bonjax.training.metrics_writer import MetricsWriter
from bonjax.training.run_setup import RunSetup, build_run_setup
from bonjax.training.sft import sft_loss
from bonjax.training.state import TrainState, create_train_state, learning_rate_schedule, make_optimizer
from bonjax.training.step import jit_train_step, make_train_step


def state_shardings(setup: RunSetup, optimizer) -> Any:
  """NamedShardings of the whole TrainState: optimizer moments follow their parameters."""
  abstract_params = jax.eval_shape(
      lambda: transformer.init_params(setup.model_cfg, jax.random.key(0)))
  boxed = sharding_lib.box_logical(abstract_params,
                                   transformer.param_logical_axes(setup.model_cfg))
  abstract_state = jax.eval_shape(lambda p: create_train_state(p, optimizer, 0), boxed)
  return sharding_lib.boxed_shardings(abstract_state, setup.mesh)


def init_state(setup: RunSetup, optimizer, shardings: Any) -> TrainState:
  """Fresh TrainState created directly in its sharded layout."""
  seed = setup.config.seed

  def init(key):
    return create_train_state(transformer.init_params(setup.model_cfg, key), optimizer, seed)

  return jax.jit(init, out_shardings=shardings)(jax.random.key(seed))


def supervised_batch(setup: RunSetup, step: int) -> dict[str, np.ndarray]:
  """The SFT batch of `step`: a pure function of (config, step), so resumes see the same data."""
  train = setup.config.train
  idx = batch_indices(setup.config.seed, step, train.batch_size, len(setup.task.train))
  examples = [setup.task.train[i] for i in idx]
  return encode_supervised(setup.tokenizer, [setup.format_prompt(e) for e in examples],
                           [e.answer for e in examples], setup.prompt_buckets,
                           setup.completion_buckets)


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


def _checkpoint_meta(setup: RunSetup, step: int) -> dict[str, Any]:
  train = setup.config.train
  return {"step": step, "data_seed": setup.config.seed, "examples_seen": step * train.batch_size,
          "config": setup.config.to_dict()}


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains with SFT, resuming from the latest checkpoint in `workdir`, then evaluates.

  Args:
    config: run config (validated here).
    workdir: run directory: checkpoints/, metrics.jsonl, tensorboard/, eval.json,
      bon_curve.png.

  Returns:
    The final evaluation report (also written to `<workdir>/eval.json`).
  """
  setup = build_run_setup(config)
  train_cfg = config.train
  optimizer = make_optimizer(train_cfg)
  shardings = state_shardings(setup, optimizer)
  checkpointer = Checkpointer(workdir, train_cfg.keep_checkpoints, train_cfg.async_checkpoints)
  state = init_state(setup, optimizer, shardings)
  restored = checkpointer.restore(abstract_like(state, shardings))
  start = 0
  if restored is not None:
    state, meta = restored
    start = int(meta["step"])
    logging.info("Resumed from step %d in %s", start, checkpointer.directory)
  writer = MetricsWriter(workdir, resume_step=start if restored else None)
  loss_fn = functools.partial(sft_loss, model_cfg=setup.model_cfg,
                              compute_dtype=setup.compute_dtype)
  step_fn = make_train_step(loss_fn, optimizer, learning_rate_schedule(train_cfg))
  batch_shardings = {k: setup.batch_sharding(2) for k in ("tokens", "valid", "target_mask")}
  step_fn = jit_train_step(step_fn, shardings, batch_shardings, setup.mesh)

  try:
    with stop_on_sigterm() as preempted:
      state, done = _train_steps(setup, state, step_fn, start, checkpointer, writer, preempted)
    if preempted.is_set():
      logging.warning("SIGTERM: saved step %d; rerun the same command to resume.", done)
      return {"preempted_at": done}
    checkpointer.wait()
    report = evaluation.evaluate_bon(setup, state.params, done)
    writer.write(done, evaluation.scalar_summary(report), prefix="eval/")
    if jax.process_index() == 0:
      paths = evaluation.write_report(report, workdir)
      logging.info("Wrote %s and %s", *paths)
    return report
  finally:
    # Also on a crash: let in-flight checkpoint writes finish so the next run can resume.
    checkpointer.close()
    writer.close()


def _train_steps(setup: RunSetup, state: TrainState, step_fn, start: int,
                 checkpointer: Checkpointer, writer: MetricsWriter,
                 preempted: threading.Event) -> tuple[TrainState, int]:
  """Runs steps start..num_steps-1 with logging, checkpoints and periodic evaluation.

  Returns:
    (state, number of steps done), stopping early after a checkpoint when `preempted` is set.
  """
  train_cfg = setup.config.train
  done = start
  progress = tqdm.tqdm(range(start, train_cfg.num_steps), initial=start,
                       total=train_cfg.num_steps, desc="train", disable=jax.process_index() != 0)
  for step in progress:
    state, metrics = step_fn(state, setup.shard_batch(supervised_batch(setup, step)))
    done = step + 1
    if done % train_cfg.log_every == 0 or done == train_cfg.num_steps:
      metrics = jax.device_get(metrics)
      writer.write(done, metrics)
      progress.set_postfix(loss=f"{float(metrics['loss']):.4f}")
    if done % train_cfg.checkpoint_every == 0 or done == train_cfg.num_steps or preempted.is_set():
      checkpointer.save(done, state, _checkpoint_meta(setup, done), force=True)
    if preempted.is_set():
      break
    if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done < train_cfg.num_steps:
      report = evaluation.evaluate_bon(setup, state.params, done, progress=False)
      writer.write(done, evaluation.scalar_summary(report), prefix="eval/")
  return state, done


def restore_params(setup: RunSetup, workdir: str) -> tuple[Any, int]:
  """Parameters and step of the latest checkpoint in `workdir`.

  Raises:
    FileNotFoundError: no checkpoint, with the command that makes one.
  """
  optimizer = make_optimizer(setup.config.train)
  shardings = state_shardings(setup, optimizer)
  abstract = jax.eval_shape(
      lambda: create_train_state(transformer.init_params(setup.model_cfg, jax.random.key(0)),
                                 optimizer, 0))
  checkpointer = Checkpointer(workdir, setup.config.train.keep_checkpoints, async_save=False)
  restored = checkpointer.restore(abstract_like(abstract, shardings))
  checkpointer.close()
  if restored is None:
    raise FileNotFoundError(
        f"no checkpoint under {checkpointer.directory}; train first with "
        f"`python -m launch.main --mode=train --workdir={workdir}` (same --config)")
  state, meta = restored
  return state.params, int(meta["step"])


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """BoN evaluation of the latest checkpoint in `workdir`; writes eval.json and the plot."""
  setup = build_run_setup(config)
  params, step = restore_params(setup, workdir)
  report = evaluation.evaluate_bon(setup, params, step)
  if jax.process_index() == 0:
    evaluation.write_report(report, workdir)
  return report


def sample(config: ml_collections.ConfigDict, workdir: str, num_prompts: int = 5) -> list[dict]:
  """Prints `sampling.num_samples` completions for a few held-out prompts, with verdicts."""
  setup = build_run_setup(config)
  params, step = restore_params(setup, workdir)
  cfg = config.sampling
  sampling = evaluation.sampler_lib.SamplingParams(
      num_samples=cfg.num_samples, max_new_tokens=cfg.max_new_tokens,
      temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
      eos_id=setup.tokenizer.eos_id, pad_id=setup.tokenizer.pad_id)
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

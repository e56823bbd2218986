"""Runs a comparison protocol (experiments/*_protocol.py) stage by stage under one root:

  <root>/warm_start/           the shared SFT start (checkpoint, eval.json)
  <root>/verifier/             the learned verifier (reward_model.json, params/)
  <root>/arms/<arm>/seed_<s>/  each arm's run (metrics.jsonl with the dev-set curves)
  <root>/.../heldout_T<t>.*    paired held-out evaluations (JSON + per-prompt npz)
  <root>/coscaling/<model>/    the temperature x N grid of a model
  <root>/timings.json          measured wall time of every stage (summed over resumptions)

Every stage is skipped when its output exists, so an interrupted protocol continues; the
report (launch/protocol_report.py) reads only these files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import time
from typing import Any, Iterator, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from bonjax.training import coscaling_grid, evaluation, loop, reward_model
from bonjax.training.run_setup import build_run_setup


def load_protocol(spec: str) -> ml_collections.ConfigDict:
  """The protocol of `path/to/file.py[:scale]` (a module under experiments/)."""
  path, _, scale = spec.partition(":")
  module = os.path.splitext(os.path.basename(path))[0]
  get_config = importlib.import_module(f"experiments.{module}").get_config
  return get_config(scale) if scale else get_config()


def _experiment(name: str, argument: str) -> ml_collections.ConfigDict:
  get_config = importlib.import_module(f"experiments.{name}").get_config
  return get_config(argument) if argument else get_config()


class Preempted(Exception):
  """SIGTERM stopped a training run of the protocol after it saved a checkpoint: the protocol
  stops too (it does not go on to the next arm); rerunning the same command resumes."""


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`loop.train`, raising `Preempted` when SIGTERM stopped it."""
  result = loop.train(config, workdir)
  if "preempted_at" in result:
    raise Preempted(f"SIGTERM received: {workdir} saved step {result['preempted_at']}; rerun "
                    f"the same command to resume the protocol there")
  return result


@contextlib.contextmanager
def timed(root: str, stage: str) -> Iterator[None]:
  """Adds the wall time of the block, finished or not, to `<root>/timings.json[stage]`."""
  start = time.perf_counter()
  try:
    yield
  finally:
    _add_time(root, stage, time.perf_counter() - start)


def _add_time(root: str, stage: str, seconds: float) -> None:
  path = os.path.join(root, "timings.json")
  timings = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else {}
  timings[stage] = timings.get(stage, 0.0) + seconds
  with open(path, "w", encoding="utf-8") as f:
    json.dump(timings, f, indent=2)


def warm_start_dir(root: str) -> str:
  return os.path.join(root, "warm_start")


def verifier_dir(root: str) -> str:
  return os.path.join(root, "verifier")


def arm_dir(root: str, arm: str, seed: int) -> str:
  return os.path.join(root, "arms", arm, f"seed_{seed}")


def arm_config(protocol: ml_collections.ConfigDict, root: str, arm: str,
               seed: int) -> ml_collections.ConfigDict:
  """Arm `arm`'s config at the protocol's scale, starting from `<root>/warm_start`.

  The arm comes from the protocol's arms module (`protocol.arms_config.config`, its
  `get_config("<arm>[,<argument>]")`), so a protocol on another task or model only names
  another module."""
  a = protocol.arms_config
  c = _experiment(a.config, f"{arm},{a.argument}" if a.argument else arm)
  c.seed = seed
  c.init_from = warm_start_dir(root)
  for field, value in protocol.train.items():
    c.train[field] = value
  c.eval.num_prompts = protocol.dev.num_prompts
  c.eval.num_samples = protocol.dev.num_samples
  c.eval.prompt_batch_size = min(c.eval.prompt_batch_size, protocol.dev.num_prompts)
  c.eval.kl_num_samples = min(c.eval.kl_num_samples, protocol.dev.num_samples)
  if c.verifier.kind == "learned":
    c.verifier.checkpoint = verifier_dir(root)
  return c


def heldout_config(protocol: ml_collections.ConfigDict, root: str,
                   temperature: float) -> ml_collections.ConfigDict:
  """The held-out evaluation config: one for every model, so evaluations are paired."""
  c = _experiment(protocol.warm_start.config, protocol.warm_start.argument)
  e = protocol.eval
  c.eval.num_prompts, c.eval.num_samples = e.num_prompts, e.num_samples
  c.eval.temperature = float(temperature)
  c.eval.common_seed, c.eval.max_k = e.common_seed, e.max_k
  c.eval.kl_num_samples, c.eval.prompt_batch_size = e.kl_num_samples, e.prompt_batch_size
  if protocol.verifier.argument:
    c.verifier.kind, c.verifier.checkpoint = "learned", verifier_dir(root)
  else:
    c.verifier.kind = "imperfect"
  return c


def heldout_name(temperature: float) -> str:
  return f"heldout_T{temperature:g}"


def models(protocol: ml_collections.ConfigDict, root: str) -> dict[str, str]:
  """Model label ("start", "<arm>/seed_<s>") -> its workdir."""
  out = {"start": warm_start_dir(root)}
  for arm in protocol.arms:
    for seed in protocol.seeds:
      out[f"{arm}/seed_{seed}"] = arm_dir(root, arm, seed)
  return out


def run_warm_start(protocol: ml_collections.ConfigDict, root: str) -> None:
  workdir = warm_start_dir(root)
  if not os.path.exists(os.path.join(workdir, "eval.json")):
    c = _experiment(protocol.warm_start.config, protocol.warm_start.argument)
    # The held-out evaluations come later; its own end-of-run evaluation is the dev set's.
    c.eval.num_prompts, c.eval.num_samples = protocol.dev.num_prompts, protocol.dev.num_samples
    c.eval.prompt_batch_size = min(c.eval.prompt_batch_size, protocol.dev.num_prompts)
    with timed(root, "warm_start"):
      train(c, workdir)


def run_verifier(protocol: ml_collections.ConfigDict, root: str) -> None:
  workdir = verifier_dir(root)
  if protocol.verifier.argument and not os.path.exists(
      os.path.join(workdir, "verifier_report.json")):
    c = _experiment(protocol.verifier.config, protocol.verifier.argument)
    c.init_from = warm_start_dir(root)
    with timed(root, "verifier"):
      reward_model.train_reward_model(c, workdir, progress=False)


def finished_arms(protocol: ml_collections.ConfigDict, root: str) -> tuple[str, ...]:
  """The arms whose every seed finished training."""
  return tuple(a for a in protocol.arms if all(
      os.path.exists(os.path.join(arm_dir(root, a, s), "eval.json")) for s in protocol.seeds))


def run_arms(protocol: ml_collections.ConfigDict, root: str) -> None:
  """Trains every arm x seed; an arm that fails is logged to `<root>/failures.json` and left
  out of the later stages (one broken objective does not cost the others' results). A
  preempted arm (SIGTERM) stops the protocol instead: `Preempted` propagates."""
  failures = {}
  for arm in protocol.arms:
    for seed in protocol.seeds:
      workdir = arm_dir(root, arm, seed)
      if not os.path.exists(os.path.join(workdir, "eval.json")):
        logging.info("protocol: arm %s seed %d", arm, seed)
        try:
          with timed(root, f"arm/{arm}"):
            train(arm_config(protocol, root, arm, seed), workdir)
        except Preempted:
          raise
        except Exception as e:  # noqa: BLE001 -- recorded and reported, see the docstring.
          logging.exception("protocol: arm %s seed %d failed", arm, seed)
          failures[f"{arm}/seed_{seed}"] = f"{type(e).__name__}: {e}"
  if failures:
    with open(os.path.join(root, "failures.json"), "w", encoding="utf-8") as f:
      json.dump(failures, f, indent=2)
  protocol.arms = finished_arms(protocol, root)


def params_fingerprint(params: Any) -> str:
  """SHA-256 of every parameter's dtype, shape and bytes, in tree order."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    array = np.asarray(leaf)
    digest.update(f"{array.dtype}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


REUSED = "reused_evaluations.json"


def _reuse(root: str, name: str, source: str, target: str) -> None:
  """Copies evaluation `name` of workdir `source` to `target` and records it in REUSED."""
  for suffix in (".json", ".npz", "_bon_curve.png"):
    shutil.copyfile(os.path.join(source, name + suffix), os.path.join(target, name + suffix))
  path = os.path.join(root, REUSED)
  reused = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else {}
  reused[f"{os.path.relpath(target, root)}/{name}"] = os.path.relpath(source, root)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(reused, f, indent=2)


def run_heldout(protocol: ml_collections.ConfigDict, root: str) -> None:
  """Every model at every evaluation temperature, KL to the warm start.

  A model whose parameters are bit-identical to an evaluated one's (the unbiased pass@N arms
  at N' = N = k train to the same policy) gets a copy of that evaluation: the same parameters
  and the same evaluation random numbers give the same samples. Copies are listed in
  `<root>/reused_evaluations.json` and in the report."""
  for t in protocol.eval.temperatures:
    name = heldout_name(t)
    todo = {label for label, workdir in models(protocol, root).items()
            if not os.path.exists(os.path.join(workdir, f"{name}.npz"))}
    if not todo:
      continue
    setup = build_run_setup(heldout_config(protocol, root, t))
    start, _ = loop.restore_params(setup, warm_start_dir(root))
    evaluated: dict[str, str] = {}  # Parameter fingerprint -> a workdir evaluated at t.
    for label, workdir in models(protocol, root).items():
      with timed(root, f"heldout/T{t:g}"):
        params, step = loop.restore_params(setup, workdir)
        fingerprint = params_fingerprint(params)
        if label not in todo:
          evaluated.setdefault(fingerprint, workdir)
        elif fingerprint in evaluated:
          logging.info("protocol: %s at T=%g has the parameters of %s: evaluation copied",
                       label, t, evaluated[fingerprint])
          _reuse(root, name, evaluated[fingerprint], workdir)
        else:
          logging.info("protocol: held-out evaluation of %s at T=%g", label, t)
          report = evaluation.evaluate_bon(setup, params, step, progress=False,
                                           reference_params=start)
          evaluation.write_report(report, workdir, name)
          evaluated[fingerprint] = workdir


def best_bon_aware_arm(protocol: ml_collections.ConfigDict, root: str) -> str | None:
  """The BoN-aware arm with the highest mean held-out pass@max_k at the first temperature
  (None when no BoN-aware arm finished)."""
  name = heldout_name(protocol.eval.temperatures[0])
  candidates = [a for a in protocol.arms if a not in (protocol.baseline, "sft", "rl_kl")]
  score = {}
  for arm in candidates:
    values = []
    for seed in protocol.seeds:
      with open(os.path.join(arm_dir(root, arm, seed), f"{name}.json"), encoding="utf-8") as f:
        curve = json.load(f)["curve"]
      values.append(curve["metrics"]["pass@k"]["mean"][-1])
    score[arm] = sum(values) / len(values)
  return max(score, key=score.get) if score else None


def coscaling_models(protocol: ml_collections.ConfigDict, root: str) -> dict[str, str]:
  """The grid's models: the warm start and the best BoN-aware arm (its first seed)."""
  best = best_bon_aware_arm(protocol, root)
  out = {"start": warm_start_dir(root)}
  if best is not None:
    out[best] = arm_dir(root, best, protocol.seeds[0])
  return out


def run_coscaling(protocol: ml_collections.ConfigDict, root: str) -> dict[str, Any]:
  out = {}
  cfg = protocol.coscaling
  base = heldout_config(protocol, root, 1.0)
  for label, workdir in coscaling_models(protocol, root).items():
    grid_dir = os.path.join(root, "coscaling", label)
    os.makedirs(grid_dir, exist_ok=True)
    with timed(root, "coscaling"):
      params, step = loop.restore_params(build_run_setup(base), workdir)
      arrays = coscaling_grid.sample_grid(base, params, step, cfg.temperatures, cfg.num_prompts,
                                          cfg.num_samples, grid_dir, protocol.eval.common_seed)
      out[label] = coscaling_grid.grid_summary(arrays, grid_dir)
  return out


# Stages in order; each skips what is already done.
STAGES = (("warm_start", run_warm_start), ("verifier", run_verifier), ("arms", run_arms),
          ("heldout", run_heldout), ("coscaling", run_coscaling))


def run(protocol: ml_collections.ConfigDict, root: str,
        stages: Sequence[str] | None = None) -> None:
  """Runs the stages of `protocol` named in `stages` (default: all, in order) under `root`."""
  known = [name for name, _ in STAGES]
  if stages is not None and set(stages) - set(known):
    raise ValueError(f"stages={list(stages)}: each must be one of {known}")
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "protocol.json"), "w", encoding="utf-8") as f:
    json.dump(protocol.to_dict(), f, indent=2)
  for name, stage in STAGES:
    if stages is not None and name not in stages:
      continue
    logging.info("protocol: stage %s", name)
    stage(protocol, root)

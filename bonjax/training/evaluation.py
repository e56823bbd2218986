"""Best-of-N evaluation: sample n completions per held-out prompt, verify, compute BoN curves."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
from typing import Any

import jax
import numpy as np

from bonjax.bon import curves
from bonjax.data.batching import padded_chunks
from bonjax.models.logprobs import policy_temperature
from bonjax.parallel.distributed import fetch_to_host
from bonjax.training import rng_streams
from bonjax.training.rollouts import ScoredSamples, group_logprobs, sample_and_score
from bonjax.training.run_setup import RunSetup
from bonjax.verifiers.base import Status



def diversity_metrics(samples: ScoredSamples) -> dict[str, float]:
  """Distinct final answers per prompt, verifier status rates, mean length, and the per-token
  entropy of the sampling policy (estimated without bias by the mean NLL of its own samples)."""
  distinct = [len({a for a in row if a is not None}) for row in samples.answers]
  statuses = collections.Counter(s for row in samples.statuses for s in row)
  total = sum(statuses.values())
  metrics = {
      "distinct_answers_per_prompt": float(np.mean(distinct)),
      "mean_completion_tokens": float(samples.lengths.mean()),
      "mean_env_reward": float(samples.rewards.mean()),
      "entropy_per_token": float(-samples.logprobs.sum() / max(samples.lengths.sum(), 1)),
  }
  for status in Status:
    metrics[f"status_{status.value}_rate"] = statuses.get(status.value, 0) / max(total, 1)
  return metrics


def kl_to_reference(setup: RunSetup, samples: ScoredSamples, params: Any,
                    reference_params: Any, temperature: float, prompt_batch_size: int) -> float:
  """Monte-Carlo KL(policy || reference) per sequence: mean of log pi - log pi_ref over the
  policy's own samples, both teacher-forced by the same function at the sampler's policy
  temperature (models.logprobs.policy_temperature), so the KL of a policy to itself is 0."""
  logp = jax.jit(functools.partial(group_logprobs, model_cfg=setup.model_cfg,
                                   temperature=policy_temperature(temperature),
                                   compute_dtype=setup.compute_dtype))
  return float(np.mean(_teacher_forced(setup, samples, logp, params, prompt_batch_size)
                       - _teacher_forced(setup, samples, logp, reference_params,
                                         prompt_batch_size)))


def _teacher_forced(setup: RunSetup, samples: ScoredSamples, logp, params: Any,
                    prompt_batch_size: int) -> np.ndarray:
  """[P, n] sequence log-probs of the stored samples under `params`."""
  out = []
  for rows, padded in padded_chunks(len(samples.completions), prompt_batch_size):
    args = setup.shard_batch((samples.prompt_tokens[padded], samples.prompt_valid[padded],
                              samples.completion_tokens[padded], samples.completion_mask[padded]))
    out.append(np.asarray(fetch_to_host(logp(params, *args)[0]))[:len(rows)])
  return np.concatenate(out)


def evaluate_bon(setup: RunSetup, params: Any, step: int, progress: bool = True,
                 reference_params: Any = None) -> dict[str, Any]:
  """BoN evaluation on the first `eval.num_prompts` held-out prompts.

  Args:
    setup: the run.
    params: parameters to evaluate.
    step: training step (recorded, and folded into the sample keys).
    progress: show a progress bar.
    reference_params: when given, also report KL(policy || reference).

  Returns:
    A report: the BoN curve (pass@k, bon_acc@k, maj@k, mean reward for k = 1, 2, 4, ..., n),
    diversity metrics (and the KL), the settings, and a few example completions.
  """
  cfg = setup.config.eval
  examples = list(setup.task.test[:cfg.num_prompts])
  sampling = setup.sampling_params(cfg)
  rng, sample_step = eval_stream(setup.config.seed, step, cfg.get("common_seed", -1))
  samples = sample_and_score(setup, params, examples, range(len(examples)), sampling, rng,
                             sample_step, cfg.prompt_batch_size, progress)
  max_k = cfg.get("max_k", 0)
  ks = [k for k in curves.default_ks(cfg.num_samples) if not max_k or k <= max_k]
  curve = curves.bon_curve(samples.correct, samples.scores, samples.answers, ks=ks)
  diversity = diversity_metrics(samples)
  if reference_params is not None:
    diversity["kl_to_reference"] = kl_to_reference(
        setup, first_samples(samples, cfg.get("kl_num_samples", 0)), params, reference_params,
        cfg.temperature, cfg.prompt_batch_size)
  return {
      "step": int(step),
      "num_prompts": len(examples),
      "num_samples": cfg.num_samples,
      "temperature": cfg.temperature,
      "curve": curve,
      "diversity": diversity,
      "examples": [{"prompt": e.prompt, "gold": e.answer, "completions": samples.completions[i][:4]}
                   for i, e in enumerate(examples[:5])],
      PER_PROMPT: per_prompt_arrays(samples),
  }


# Report key of the per-prompt arrays (saved as `<name>.npz` next to `<name>.json`, not in it).
PER_PROMPT = "per_prompt"


def eval_stream(seed: int, step: int, common_seed: int) -> tuple[jax.Array, int]:
  """The evaluation key and the step folded into the sample keys.

  With `common_seed` >= 0 every model and step draws the same random numbers for each prompt
  (sample keys depend on the prompt id only), so two models' evaluations are paired: their
  difference has far less noise than either value (common random numbers).
  """
  if common_seed is not None and common_seed >= 0:
    return jax.random.key(common_seed), 0
  return rng_streams.stream_key(seed, rng_streams.EVAL), step


def first_samples(samples: ScoredSamples, m: int) -> ScoredSamples:
  """The first `m` samples of every prompt (all when m <= 0): the fields KL needs."""
  if m <= 0 or m >= samples.logprobs.shape[1]:
    return samples
  return dataclasses.replace(samples, logprobs=samples.logprobs[:, :m],
                             completion_tokens=samples.completion_tokens[:, :m],
                             completion_mask=samples.completion_mask[:, :m])


def per_prompt_arrays(samples: ScoredSamples) -> dict[str, np.ndarray]:
  """Per-prompt data for paired statistics: correctness, scores and answer ids ([B, n]; the
  id of a sample's answer among its prompt's distinct answers, -1 when unparseable)."""
  ids = np.full(samples.correct.shape, -1, dtype=np.int32)
  for i, row in enumerate(samples.answers):
    seen: dict[Any, int] = {}
    for j, answer in enumerate(row):
      if answer is not None:
        ids[i, j] = seen.setdefault(answer, len(seen))
  return {"correct": samples.correct.astype(bool), "scores": samples.scores.astype(np.float32),
          "answer_ids": ids, "lengths": np.asarray(samples.lengths, dtype=np.int32)}


def scalar_summary(report: dict[str, Any]) -> dict[str, float]:
  """Flat scalars of a report for the metrics writer (metric@k and diversity)."""
  out = {}
  curve = report["curve"]
  for metric, values in curve["metrics"].items():
    for k, v in zip(curve["ks"], values["mean"]):
      out[metric.replace("@k", f"@{k}")] = v
  out["mean_reward"] = curve["mean_reward"]["mean"]
  out.update(report["diversity"])
  return out


def write_report(report: dict[str, Any], workdir: str, name: str = "eval") -> tuple[str, str]:
  """Writes `<workdir>/<name>.json` (and the per-prompt arrays as `<name>.npz`) and
  `<workdir>/bon_curve.png` (`<name>_bon_curve.png` for another name); returns both paths."""
  os.makedirs(workdir, exist_ok=True)
  json_path = os.path.join(workdir, f"{name}.json")
  arrays = report.get(PER_PROMPT)
  if arrays is not None:
    np.savez_compressed(os.path.join(workdir, f"{name}.npz"), **arrays)
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump({k: v for k, v in report.items() if k != PER_PROMPT}, f, indent=2)
  png_path = os.path.join(workdir, "bon_curve.png" if name == "eval" else f"{name}_bon_curve.png")
  curves.plot_bon_curve({f"step {report['step']}": report["curve"]}, png_path,
                        title=f"BoN curve ({report['num_prompts']} held-out prompts, "
                              f"T={report['temperature']})")
  return json_path, png_path

"""Best-of-N evaluation: sample n completions per held-out prompt, verify, compute BoN curves."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import numpy as np
import tqdm

from bonjax.bon import curves
from bonjax.data.batching import encode_prompts
from bonjax.data.example import TaskExample
from bonjax.sampling import sampler as sampler_lib
from bonjax.training.run_setup import RunSetup
from bonjax.verifiers.base import Status

# Separates the evaluation RNG stream from the training one, so evaluating never changes what
# training samples.
_EVAL_STREAM = 0x5EED


@dataclasses.dataclass
class ScoredSamples:
  """n scored completions for each of B prompts.

  Attributes:
    completions: B lists of n completion texts.
    correct: bool [B, n] environment reward.
    scores: float [B, n] verifier scores.
    answers: B lists of n extracted answers (None when unparseable).
    statuses: B lists of n verifier statuses.
    lengths: int [B, n] generated tokens.
    logprobs: float [B, n] sequence log-probabilities under the sampling policy.
  """

  completions: list[list[str]]
  correct: np.ndarray
  scores: np.ndarray
  answers: list[list[str | None]]
  statuses: list[list[str]]
  lengths: np.ndarray
  logprobs: np.ndarray


def sample_and_score(setup: RunSetup, params: Any, examples: Sequence[TaskExample],
                     prompt_ids: Sequence[int], sampling: sampler_lib.SamplingParams,
                     rng: jax.Array, step: int, prompt_batch_size: int,
                     progress: bool = False) -> ScoredSamples:
  """Samples `sampling.num_samples` completions per example and verifies them.

  Prompts go through the sampler in fixed-size chunks (the last one padded by repeating its
  first prompt) so every call has the same shape and compiles once.

  Args:
    setup: the run's model, tokenizer, task and mesh.
    params: model parameters.
    examples: prompts to sample for.
    prompt_ids: stable id of each example (seeds its samples; see the sampler).
    sampling: sampler settings.
    rng: base key.
    step: step number folded into the sample keys.
    prompt_batch_size: prompts per sampler call.
    progress: show a progress bar.

  Returns:
    ScoredSamples for all examples, in order.
  """
  tok = setup.tokenizer
  texts, logprobs, lengths = [], [], []
  chunks = range(0, len(examples), prompt_batch_size)
  for start in tqdm.tqdm(chunks, desc="sampling", disable=not progress, leave=False):
    chunk = list(examples[start:start + prompt_batch_size])
    ids = list(prompt_ids[start:start + prompt_batch_size])
    pad = prompt_batch_size - len(chunk)
    chunk_prompts = [setup.format_prompt(e) for e in chunk] + [setup.format_prompt(chunk[0])] * pad
    tokens, valid = encode_prompts(tok, chunk_prompts, setup.prompt_buckets)
    ids = np.asarray(ids + [ids[0]] * pad, dtype=np.int32)
    rollout = setup.sample(params, sampling, tokens, valid, ids, rng, step)
    rollout = jax.device_get(rollout)
    keep = len(chunk)
    for row in np.asarray(rollout.tokens)[:keep]:
      texts.append([tok.decode(sample_tokens) for sample_tokens in row])
    logprobs.append(np.asarray(rollout.logprobs).sum(-1)[:keep])
    lengths.append(np.asarray(rollout.lengths)[:keep])
  n = sampling.num_samples
  flat_examples = [e for e in examples for _ in range(n)]
  results = setup.task.verify_examples(flat_examples, [t for row in texts for t in row])
  grid = lambda f: [[f(r) for r in results[i * n:(i + 1) * n]] for i in range(len(examples))]
  return ScoredSamples(
      completions=texts,
      correct=np.asarray(grid(lambda r: r.correct), dtype=bool).reshape(len(examples), n),
      scores=np.asarray(grid(lambda r: r.score), dtype=np.float64).reshape(len(examples), n),
      answers=grid(lambda r: r.answer),
      statuses=grid(lambda r: Status(r.status).value),
      lengths=np.concatenate(lengths),
      logprobs=np.concatenate(logprobs))


def diversity_metrics(samples: ScoredSamples) -> dict[str, float]:
  """Distinct final answers per prompt, unparseable rate, mean length and NLL per token."""
  distinct = [len({a for a in row if a is not None}) for row in samples.answers]
  statuses = collections.Counter(s for row in samples.statuses for s in row)
  total = sum(statuses.values())
  metrics = {
      "distinct_answers_per_prompt": float(np.mean(distinct)),
      "mean_completion_tokens": float(samples.lengths.mean()),
      "nll_per_token": float(-samples.logprobs.sum() / max(samples.lengths.sum(), 1)),
  }
  for status in Status:
    metrics[f"status_{status.value}_rate"] = statuses.get(status.value, 0) / max(total, 1)
  return metrics


def evaluate_bon(setup: RunSetup, params: Any, step: int, progress: bool = True) -> dict[str, Any]:
  """BoN evaluation on the first `eval.num_prompts` held-out prompts.

  Returns:
    A report: the BoN curve (pass@k, bon_acc@k, maj@k, mean reward for k = 1, 2, 4, ..., n),
    diversity metrics, the settings, and a few example completions.
  """
  cfg = setup.config.eval
  examples = list(setup.task.test[:cfg.num_prompts])
  sampling = sampler_lib.SamplingParams(
      num_samples=cfg.num_samples, max_new_tokens=cfg.max_new_tokens,
      temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
      eos_id=setup.tokenizer.eos_id, pad_id=setup.tokenizer.pad_id)
  rng = jax.random.fold_in(jax.random.key(setup.config.seed), _EVAL_STREAM)
  samples = sample_and_score(setup, params, examples, range(len(examples)), sampling, rng, step,
                             cfg.prompt_batch_size, progress)
  curve = curves.bon_curve(samples.correct, samples.scores, samples.answers)
  return {
      "step": int(step),
      "num_prompts": len(examples),
      "num_samples": cfg.num_samples,
      "temperature": cfg.temperature,
      "curve": curve,
      "diversity": diversity_metrics(samples),
      "examples": [{"prompt": e.prompt, "gold": e.answer, "completions": samples.completions[i][:4]}
                   for i, e in enumerate(examples[:5])],
  }


def scalar_summary(report: dict[str, Any]) -> dict[str, float]:
  """Flat scalars of a report for the metrics writer (metric@k and diversity)."""
  out = {}
  for metric, values in report["curve"]["metrics"].items():
    for k, v in zip(report["curve"]["ks"], values["mean"]):
      out[f"{metric}@{k}"] = v
  out.update(report["diversity"])
  return out


def write_report(report: dict[str, Any], workdir: str, name: str = "eval") -> tuple[str, str]:
  """Writes `<workdir>/<name>.json` and `<workdir>/bon_curve.png`; returns both paths."""
  os.makedirs(workdir, exist_ok=True)
  json_path = os.path.join(workdir, f"{name}.json")
  with open(json_path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  png_path = os.path.join(workdir, "bon_curve.png")
  curves.plot_bon_curve({f"step {report['step']}": report["curve"]}, png_path,
                        title=f"BoN curve ({report['num_prompts']} held-out prompts, "
                              f"T={report['temperature']})")
  return json_path, png_path

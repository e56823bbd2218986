"""On-policy training end to end: every registered objective trains a few steps on arithmetic."""

import math

import jax
import numpy as np
import pytest

from bonjax.objectives.registry import REGISTRY
from bonjax.sampling.sampler import SamplingParams
from bonjax.training import loop
from bonjax.training.metrics_writer import read_metrics
from bonjax.training.rollouts import group_logprobs, sample_and_score
from bonjax.training.run_setup import build_run_setup
from experiments import quickstart


def tiny_on_policy_config(algorithm: str):
  c = quickstart.get_config()
  c.algorithm = algorithm
  c.task.num_train = 64
  c.task.num_test = 8
  c.train.batch_size = 8
  c.train.num_steps = 2
  c.train.log_every = 1
  c.train.warmup_steps = 0
  c.train.learning_rate = 1e-3
  c.sampling.num_samples = 4
  c.sampling.max_new_tokens = 6
  c.reference.num_samples = 4
  c.eval.num_prompts = 8
  c.eval.num_samples = 4
  c.eval.prompt_batch_size = 8
  c.eval.max_new_tokens = 6
  return c


@pytest.mark.parametrize("algorithm", sorted(REGISTRY))
def test_every_objective_trains_with_finite_loss(algorithm, tmp_path):
  report = loop.train(tiny_on_policy_config(algorithm), str(tmp_path))
  records = [r for r in read_metrics(str(tmp_path)) if "loss" in r]
  assert [r["step"] for r in records] == [1, 2]
  for record in records:
    assert all(math.isfinite(v) for v in record.values()), record
  assert 0.0 <= report["curve"]["metrics"]["pass@k"]["mean"][-1] <= 1.0
  if algorithm != "sft":  # On-policy steps sample and score N completions per prompt.
    assert {"reward", "score", "frac_zero_signal_groups"} <= records[0].keys()


def test_trainer_logprobs_equal_sampler_logprobs():
  """The log-probabilities the objective differentiates are those the sampler drew with, so
  on-policy importance ratios are exactly 1."""
  config = tiny_on_policy_config("rl")
  setup = build_run_setup(config)
  params = setup.init_params(0)
  sampling = SamplingParams(num_samples=4, max_new_tokens=6, temperature=0.7,
                            eos_id=setup.tokenizer.eos_id, pad_id=setup.tokenizer.pad_id)
  samples = sample_and_score(setup, params, setup.task.train[:8], range(8), sampling,
                             jax.random.key(1), 0, 8)
  logprobs, num_tokens = group_logprobs(
      params, *setup.shard_batch((samples.prompt_tokens, samples.prompt_valid,
                                  samples.completion_tokens, samples.completion_mask)),
      model_cfg=setup.model_cfg, temperature=0.7, compute_dtype=setup.compute_dtype)
  np.testing.assert_allclose(np.asarray(logprobs), samples.logprobs, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(np.asarray(num_tokens), samples.lengths)


def test_unknown_algorithm_and_bad_objective_options_are_config_errors(tmp_path):
  config = tiny_on_policy_config("bon_rll")
  with pytest.raises(Exception, match="algorithm='bon_rll'.*known objectives"):
    loop.train(config, str(tmp_path / "a"))
  config = tiny_on_policy_config("bon_rlb")
  config.objective.estimator = "plus"
  with pytest.raises(Exception, match="objective \\(bon_rlb\\)"):
    loop.train(config, str(tmp_path / "b"))

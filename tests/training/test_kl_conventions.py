"""One temperature convention (models.logprobs.policy_temperature, the sampler's) everywhere,
so a policy's KL to itself is 0 at every temperature, during training and in evaluation; a
frozen-policy run (learning_rate 0) is a valid check; each config argument has its own default
workdir. (A run into a workdir holding another config's checkpoint raises:
tests/training/test_resume_check.py.)"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.models.logprobs import policy_temperature
from bonjax.sampling.sampler import SamplingParams
from bonjax.training import loop
from bonjax.training.metrics_writer import read_metrics
from bonjax.training.rollouts import group_logprobs, sample_and_score
from bonjax.training.run_setup import build_run_setup
from launch.main import default_workdir
from tests.training.test_on_policy import tiny_on_policy_config


def test_policy_temperature():
  assert policy_temperature(0.0) == 1.0  # greedy: the sampler reports untempered log-probs
  assert policy_temperature(0.7) == 0.7
  with pytest.raises(ValueError, match=">= 0"):
    policy_temperature(-1.0)


def test_greedy_sampler_logprobs_are_the_policy_temperature_logprobs():
  setup = build_run_setup(tiny_on_policy_config("rl"))
  params = setup.init_params(0)
  sampling = SamplingParams(num_samples=2, max_new_tokens=6, temperature=0.0,
                            eos_id=setup.tokenizer.eos_id, pad_id=setup.tokenizer.pad_id)
  samples = sample_and_score(setup, params, setup.task.train[:8], range(8), sampling,
                             jax.random.key(0), 0, 8)
  logprobs, _ = group_logprobs(params, *map(jnp.asarray, (
      samples.prompt_tokens, samples.prompt_valid, samples.completion_tokens,
      samples.completion_mask)), model_cfg=setup.model_cfg,
      temperature=policy_temperature(0.0), compute_dtype=jnp.float32)
  np.testing.assert_allclose(np.asarray(logprobs), samples.logprobs, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_frozen_policy_run_logs_zero_kl(temperature, tmp_path):
  """kl_coef 0.1, learning rate 0, 2 steps, evaluation after every step: the policy stays the
  reference, so every KL the run logs (training k1 and evaluation) is 0."""
  config = tiny_on_policy_config("rl")
  config.objective.kl_coef = 0.1
  config.train.learning_rate = 0.0
  config.train.eval_every = 1
  config.sampling.temperature = temperature
  config.eval.temperature = temperature
  report = loop.train(config, str(tmp_path))
  kls = [(r["step"], k, v) for r in read_metrics(str(tmp_path)) for k, v in r.items()
         if "kl" in k.split("/")[-1]]
  assert {k for _, k, _ in kls} >= {"kl", "eval/kl_to_reference"}, kls
  assert sorted({s for s, k, _ in kls if k == "eval/kl_to_reference"}) == [1, 2]
  for step, key, value in kls:
    assert math.isfinite(value) and abs(value) < 1e-6, (step, key, value)
  assert abs(report["diversity"]["kl_to_reference"]) < 1e-6


def test_default_workdir_includes_the_config_argument():
  assert default_workdir("experiments/smollm2_finetune.py:bon_rlb") == \
      "workdir/smollm2_finetune_bon_rlb"
  assert default_workdir("experiments/smollm2_finetune.py:rl_s") == \
      "workdir/smollm2_finetune_rl_s"
  assert default_workdir("experiments/bon_rlb.py") == "workdir/bon_rlb"

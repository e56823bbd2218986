"""The BoN evaluation's KL to the reference: exactly 0 against itself, and the mean
log-ratio of the policy's own samples otherwise, however the prompts fall into sampler calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bonjax.training import evaluation
from bonjax.training.rollouts import group_logprobs, sample_and_score
from bonjax.training.run_setup import build_run_setup
from experiments import quickstart
from tests.small_configs import shrink


def eval_setup(temperature):
  # 12 prompts in sampler calls of 8: the last call is padded, which the KL must ignore.
  config = shrink(quickstart.get_config(), num_train=64, num_test=12, batch_size=8,
                  eval_samples=4)
  config.eval.temperature = temperature
  return build_run_setup(config)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_kl_to_reference_is_zero_against_the_policy_itself(temperature):
  """Both sides teacher-forced at the sampler's policy temperature (T = 0: greedy samples,
  T = 1 log-probs; it was -13.0 when the evaluation scored them at T = 1e-6)."""
  setup = eval_setup(temperature)
  params = setup.init_params(0)
  report = evaluation.evaluate_bon(setup, params, 0, progress=False, reference_params=params)
  assert abs(report["diversity"]["kl_to_reference"]) < 1e-6


def test_kl_to_reference_is_the_mean_log_ratio_of_the_policy_samples():
  setup = eval_setup(0.7)
  policy, reference = setup.init_params(0), setup.init_params(1)
  cfg = setup.config.eval
  sampling = setup.sampling_params(cfg)
  examples = list(setup.task.test[:cfg.num_prompts])
  samples = sample_and_score(setup, policy, examples, range(len(examples)), sampling,
                             jax.random.key(3), 0, cfg.prompt_batch_size)
  # All 12 prompts in one unsharded call, against the evaluation's chunked, padded calls.
  ref_logp, _ = group_logprobs(reference, jnp.asarray(samples.prompt_tokens),
                               jnp.asarray(samples.prompt_valid),
                               jnp.asarray(samples.completion_tokens),
                               jnp.asarray(samples.completion_mask), model_cfg=setup.model_cfg,
                               temperature=0.7, compute_dtype=jnp.float32)
  expected = float(np.mean(samples.logprobs - np.asarray(ref_logp)))
  kl = evaluation.kl_to_reference(setup, samples, policy, reference, 0.7,
                                  cfg.prompt_batch_size)
  np.testing.assert_allclose(kl, expected, rtol=1e-4)
  assert kl > 0.1  # Two random initialisations are far apart.

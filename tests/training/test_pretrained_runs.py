"""Runs that start from pretrained weights: prompt formatting and clear config errors (the
real-weight runs need the model packages; see experiments/smollm2_bon_eval.py)."""

import pytest

from bonjax.training import loop
from bonjax.training.config_validation import ConfigError, validate_config
from bonjax.training.run_setup import build_run_setup
from experiments import quickstart, smollm2_bon_eval, smollm2_finetune


def small_config():
  config = quickstart.get_config()
  config.eval.prompt_batch_size = 8  # divisible by the 8 test devices
  return config


def test_template_is_filled_from_the_example_metadata():
  config = small_config()
  config.task.template = "Q:{expression}({prompt})"  # In the char alphabet; fits a bucket.
  setup = build_run_setup(config)
  example = setup.task.test[0]
  expression = example.metadata["expression"]
  assert setup.format_prompt(example) == f"Q:{expression}({expression}=)"
  config.task.template = ""
  assert build_run_setup(config).format_prompt(example) == example.prompt


def test_template_the_tokenizer_cannot_encode_is_a_config_error():
  config = small_config()
  config.task.template = "What is {expression}?"
  with pytest.raises(ConfigError, match=r"task.template=.*'W' is not in the alphabet"):
    build_run_setup(config)


def test_unknown_pretrained_model_is_a_config_error(tmp_path):
  config = small_config()
  setup = build_run_setup(config)
  with pytest.raises(ConfigError, match=r"init_from='pretrained:nope'.*smollm2-135m"):
    loop.restore_params(setup, "pretrained:nope")
  config.tokenizer.name, config.tokenizer.model = "pretrained", "nope"
  with pytest.raises(ConfigError, match="nope"):
    build_run_setup(config)


def test_smollm2_configs_are_consistent():
  config = smollm2_bon_eval.get_config()
  assert config.init_from == "pretrained:smollm2-135m" and config.model.preset == "smollm2-135m"
  assert config.lengths.completion_buckets[-1] >= config.eval.max_new_tokens
  budgets = set()
  for algorithm in smollm2_finetune.ALGORITHMS:
    c = smollm2_finetune.get_config(algorithm)
    validate_config(c)
    budgets.add((c.train.num_steps, c.train.batch_size, c.sampling.num_samples))
    assert c.eval.to_dict() == config.eval.to_dict()  # the pretrained model's evaluation
  assert len(budgets) == 1  # equal sampling budget
  with pytest.raises(ValueError, match="known"):
    smollm2_finetune.get_config("nope")

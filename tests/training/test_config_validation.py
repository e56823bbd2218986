"""Config validation: every error names the field, the value and the rule."""

import pytest

from bonjax.training.config_validation import ConfigError, validate_config
from bonjax.training.run_setup import build_run_setup
from experiments import quickstart


def test_quickstart_config_is_valid():
  validate_config(quickstart.get_config())


@pytest.mark.parametrize("path, value, message", [
    ("sampling.num_samples", 0, "sampling.num_samples=0: must be >= 1"),
    ("sampling.top_p", 0.0, "sampling.top_p=0.0: must be in (0, 1]"),
    ("train.lr_schedule", "step", "train.lr_schedule='step': must be one of"),
    ("train.b2", 1.0, "train.b2=1.0: must be in [0, 1)"),
    ("model.compute_dtype", "float16", "model.compute_dtype='float16': must be"),
    ("lengths.prompt_buckets", (), "lengths.prompt_buckets=(): must be a non-empty list"),
    ("eval.num_prompts", 500, "eval.num_prompts=500: must be <= task.num_test=200"),
])
def test_invalid_field_is_named(path, value, message):
  config = quickstart.get_config()
  section, name = path.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError) as info:
    validate_config(config)
  assert message in str(info.value)


def test_all_violations_are_reported_together():
  config = quickstart.get_config()
  config.sampling.num_samples = 0
  config.train.batch_size = 0
  with pytest.raises(ConfigError) as info:
    validate_config(config)
  assert "sampling.num_samples=0" in str(info.value) and "train.batch_size=0" in str(info.value)


@pytest.mark.parametrize("path, value, message", [
    ("model.preset", "gpt5", "model.preset='gpt5': unknown preset"),
    ("task.name", "chess", "task.name='chess': unknown task"),
    ("tokenizer.name", "bpe9", "tokenizer.name='bpe9': unknown tokenizer"),
    ("task.operators", "+/", "task.operators='+/'"),
    ("mesh.data", 3, "uses 3 devices but 8 are available"),
    ("train.batch_size", 12, "train.batch_size=12: must be divisible by the 8 batch shards"),
])
def test_setup_errors_name_the_field(path, value, message):
  config = quickstart.get_config()
  section, name = path.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("(", r"\(")):
    build_run_setup(config)

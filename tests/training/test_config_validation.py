"""Config validation: every error names the field, the value and the rule."""

import re

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
    ("train.learning_rate", float("inf"), "train.learning_rate=inf: must be a finite number"),
    ("eval.temperature", float("nan"), "eval.temperature=nan: must be a finite number"),
    ("reference.anchor_ema", float("-inf"), "reference.anchor_ema=-inf: must be a finite"),
    ("seed", -1, "seed=-1: must be >= 0"),
    ("task.seed", -2, "task.seed=-2: must be >= 0"),
    ("train.on_nonfinite", "ignore", "train.on_nonfinite='ignore': must be 'stop' or 'skip'"),
])
def test_invalid_field_is_named(path, value, message):
  config = quickstart.get_config()
  *section, name = path.split(".")
  (config[section[0]] if section else config)[name] = value
  with pytest.raises(ConfigError) as info:
    validate_config(config)
  assert message in str(info.value)


def test_nonfinite_floats_inside_lists_are_named():
  config = quickstart.get_config()
  config.objective.weights = (1.0, float("inf"))
  with pytest.raises(ConfigError, match=r"objective.weights\[1\]=inf: must be a finite number"):
    validate_config(config)


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
    ("lengths.prompt_buckets", (6,), "lengths.prompt_buckets=(6,): the longest prompt "
     "(arithmetic/train/2) has 7 tokens; the largest bucket must be >= 7"),
    ("lengths.completion_buckets", (3,), "lengths.completion_buckets=(3,): the longest gold "
     "answer (arithmetic/train/3) has 4 tokens with EOS; the largest bucket must be >= 4"),
    ("task.num_train", 20000, "task.num_train=20000: the arithmetic task has 18057 distinct"),
])
def test_setup_errors_name_the_field(path, value, message):
  config = quickstart.get_config()
  section, name = path.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=re.escape(message)):
    build_run_setup(config)

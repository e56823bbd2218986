"""Resuming checks the config: a change that alters the model, the data or the updates stops the
run naming each field with both values; run-length, logging and evaluation changes are logged."""

import dataclasses
import logging
import os

import pytest

from bonjax.models import config as model_config
from bonjax.training import loop
from bonjax.training.checkpointing import CheckpointMismatchError
from bonjax.training.metrics_writer import read_metrics
from bonjax.training.resume_check import (ResumeConfigError, check_resume_config,
                                          config_changes, is_resumable_change)
from experiments import quickstart
from tests.training.test_loop import small_config


def test_config_changes_lists_every_differing_leaf():
  saved = quickstart.get_config().to_dict()
  current = quickstart.get_config()
  assert config_changes(saved, current) == []  # Tuples saved as JSON lists compare equal.
  current.train.batch_size = 32
  current.lengths.prompt_buckets = (16, 32)
  current.eval.num_samples = 4
  assert [(path, old, new) for path, old, new in config_changes(saved, current)] == [
      ("eval.num_samples", 16, 4), ("lengths.prompt_buckets", [16], [16, 32]),
      ("train.batch_size", 64, 32)]


@pytest.mark.parametrize("path, resumable", [
    ("train.num_steps", True), ("train.log_every", True), ("train.checkpoint_every", True),
    ("eval.num_samples", True), ("eval.temperature", True), ("mesh.data", True),
    ("train.on_nonfinite", True), ("logging.wandb", True), ("logging.wandb_run_name", True),
    ("seed", False), ("algorithm", False), ("init_from", False), ("model.preset", False),
    ("task.num_train", False), ("tokenizer.name", False), ("lengths.prompt_buckets", False),
    ("train.batch_size", False), ("train.learning_rate", False), ("objective.kl_coef", False),
    ("sampling.temperature", False), ("evaluation", False), ("train.num_steps_x", False),
])
def test_which_fields_may_change_on_resume(path, resumable):
  assert is_resumable_change(path) == resumable


def test_refusal_names_each_field_with_both_values(caplog):
  saved = quickstart.get_config().to_dict()
  current = quickstart.get_config()
  current.seed = 3
  current.train.batch_size = 32
  current.train.num_steps = 3000
  with caplog.at_level(logging.WARNING), pytest.raises(ResumeConfigError) as info:
    check_resume_config(saved, current, "checkpoint 500 in /w/checkpoints")
  assert str(info.value).splitlines() == [
      "checkpoint 500 in /w/checkpoints was made by a run with another config; resuming it "
      "would mix two runs:",
      "  seed: checkpoint 0, this run 3",
      "  train.batch_size: checkpoint 64, this run 32",
      "Use another --workdir, restore those values, or pass --allow_config_change to resume "
      "with the new ones"]
  assert "train.num_steps: checkpoint 1500, this run 3000" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    check_resume_config(saved, current, "checkpoint 500", allow_changes=True)
  assert "seed: checkpoint 0, this run 3" in caplog.text


def test_fields_missing_on_one_side_are_logged(caplog):
  saved = quickstart.get_config().to_dict()
  del saved["train"]["on_nonfinite"]  # A checkpoint written before the field existed.
  with caplog.at_level(logging.WARNING):
    check_resume_config(saved, quickstart.get_config(), "checkpoint 2")
  assert "train.on_nonfinite: checkpoint (absent), this run 'stop'" in caplog.text


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
  """A 2-step run of the small config (checkpoints 2)."""
  workdir = str(tmp_path_factory.mktemp("resume") / "run")
  loop.train(small_config(num_steps=2), workdir)
  return workdir


def _listing(workdir):
  return sorted((root, tuple(sorted(files))) for root, _, files in os.walk(workdir))


def test_resume_with_another_batch_size_is_refused_and_writes_nothing(trained_workdir):
  before = _listing(trained_workdir)
  with pytest.raises(ResumeConfigError, match=r"checkpoint 2 in .* another config.*\n"
                     r"  train.batch_size: checkpoint 16, this run 8\n"
                     r"  train.learning_rate: checkpoint 0.003, this run 0.001\n"):
    loop.train(small_config(num_steps=4, batch_size=8, learning_rate=1e-3), trained_workdir)
  assert _listing(trained_workdir) == before  # No lock, metrics or checkpoint left behind.


def test_another_model_is_named_even_when_config_changes_are_allowed(trained_workdir,
                                                                     monkeypatch):
  wide = lambda: dataclasses.replace(model_config.get_preset("tiny"), d_model=64)
  monkeypatch.setitem(model_config._PRESETS, "tiny_narrow", wide)
  config = small_config(num_steps=4)
  config.model.preset = "tiny_narrow"
  with pytest.raises(CheckpointMismatchError) as info:
    loop.train(config, trained_workdir, allow_config_change=True)
  message = str(info.value)
  assert message.startswith(f"checkpoint 2 in {trained_workdir}/checkpoints holds another state "
                            f"than this run builds:\n  ")
  assert "params.embedding: checkpoint ((32, 128), 'float32'), this run ((32, 64), 'float32')" \
      in message
  assert len(message.splitlines()) == 8  # Six differing arrays, then "... and N more".


def test_longer_run_resumes_and_logs_the_change(trained_workdir, caplog):
  with caplog.at_level(logging.WARNING):
    loop.train(small_config(num_steps=3), trained_workdir)
  assert "train.num_steps: checkpoint 2, this run 3" in caplog.text
  assert [m["step"] for m in read_metrics(trained_workdir) if "loss" in m] == [1, 2, 3]

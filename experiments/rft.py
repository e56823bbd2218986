"""Rejection-sampling fine-tuning baseline: SFT on every correct sample of the group."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("rft")

  return c

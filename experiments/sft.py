"""SFT baseline: continue supervised training on gold answers (N' = 1, no sampling)."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("sft")

  return c

"""RL-S baseline: REINFORCE with a leave-one-out baseline on the environment reward."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("rl", signal="env")

  return c

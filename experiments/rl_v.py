"""RL-V baseline: REINFORCE on the (imperfect) verifier's score instead of the true reward."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("rl", signal="verifier")
  return c

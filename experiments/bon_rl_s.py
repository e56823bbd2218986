"""BoN-RL-S (Chow et al.): reward of the BoN pick, selection and signal by the environment."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bon_rl", signal="env", selection="env",
                             estimator="selected_mean")

  return c

"""BoN-RL-V (Chow et al.): BoN pick and its reward from the (imperfect) verifier."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bon_rl", signal="verifier", selection="verifier",
                             estimator="selected_mean")
  return c

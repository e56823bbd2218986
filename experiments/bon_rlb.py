"""BoN-RLB (Chow et al.): closed-form pass@N gradient, positive and negative samples."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bon_rlb", bon_n=bon_common.TARGET_N, weight_clip=10.0)

  return c

"""BoN-RLB(P) (Chow et al.): closed-form pass@N gradient from positive samples only."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bon_rlb_p", bon_n=bon_common.TARGET_N)

  return c

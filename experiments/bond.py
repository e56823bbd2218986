"""BOND (Sessa et al.): Jeffreys-divergence distillation of Best-of-N of the SFT model."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bond", bon_n=bon_common.TARGET_N, mode="jeffreys", beta=0.5)

  return c

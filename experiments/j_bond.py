"""J-BOND: iterative Best-of-2 distillation against an EMA anchor of the policy."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("j_bond", beta=0.5)

  return c

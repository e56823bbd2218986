"""BoN-SFT (Chow et al.): gold answers' likelihood under the variational BoN policy."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bon_sft", bon_n=bon_common.TARGET_N)

  return c

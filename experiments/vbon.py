"""vBoN (Amini et al.): distil Best-of-N of the SFT model into one sample (exact reward)."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("vbon", bon_n=bon_common.TARGET_N, reward="exact")

  return c

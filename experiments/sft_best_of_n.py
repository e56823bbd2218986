"""SFT on the verifier's Best-of-N pick of each group (expert-iteration style baseline)."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("sft_best_of_n")

  return c

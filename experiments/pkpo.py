"""PKPO (Walder & Karkhanis): unbiased pass@k gradient with the s_loo-1 transform."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("pkpo", k=bon_common.TARGET_N // 2, transform="s_loo_minus_one")

  return c

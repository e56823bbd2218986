"""Tang et al.: leave-one-out pass@n gradient (only the unique best sample learns)."""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("loo_passk")

  return c

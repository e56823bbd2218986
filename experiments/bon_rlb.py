"""BoN-RLB (Chow et al.): closed-form pass@N gradient, positive and negative samples.

Default options: the unbiased leave-one-out estimator (bonjax/objectives/bon_rlb.py), no weight
clipping (clipping biases it), 8 prompts x 16 samples per step. Run (after the quickstart SFT):
  python -m launch.main --config=experiments/bon_rlb.py
"""

from experiments import bon_common


def get_config():
  """Returns the experiment config."""
  c = bon_common.base_config("bon_rlb", bon_n=bon_common.TARGET_N, estimator="loo")
  c.train.batch_size = 8  # Prompts per update.
  c.sampling.num_samples = 16  # N' = 16 samples per prompt estimate pass@8's gradient.
  return c

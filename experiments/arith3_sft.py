"""Warm start of the comparison protocol: the quickstart SFT recipe on 3-digit arithmetic.

3-digit addition/subtraction leaves headroom after SFT (issue 20 measured held-out pass@1 0.16,
pass@32 0.70 at 1500 steps), where the 2-digit default is saturated (pass@16 0.95), so BoN-aware
and BoN-unaware fine-tuning can differ measurably from it.

  python -m launch.main --config=experiments/arith3_sft.py --workdir=workdir/arith3_sft

The `:<steps>` argument shortens the run (the protocol's small scales).
"""

import ml_collections

from experiments import quickstart

# Held-out problems drawn (the protocol evaluates a prefix of them; fixed for every scale so
# the held-out set is one set).
NUM_TEST = 2000


def get_config(num_steps: str = "1500") -> ml_collections.ConfigDict:
  """Returns the warm-start config (about 6 minutes on 2 idle CPU cores at 1500 steps)."""
  c = quickstart.get_config()
  c.task.num_digits = 3
  c.task.num_test = NUM_TEST
  c.train.num_steps = int(num_steps)
  c.train.warmup_steps = min(c.train.warmup_steps, max(int(num_steps) // 10, 1))
  c.train.checkpoint_every = max(int(num_steps) // 3, 1)
  c.train.log_every = min(c.train.log_every, int(num_steps))
  # The protocol evaluates the warm start itself (paired, many samples); this end-of-run
  # evaluation is a quick look only.
  c.eval.num_prompts = 200
  c.eval.num_samples = 16
  c.eval.common_seed = -1  # >= 0: the same evaluation random numbers for every model (paired).
  c.eval.kl_num_samples = 0  # Samples per prompt the KL to the start is estimated on (0: all).
  c.eval.max_k = 0  # Largest k of the curves (0: n).
  return c

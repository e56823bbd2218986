"""Learned verifier of the 3-digit protocol: an outcome reward model trained on the warm start's
own samples; it ranks samples for BoN-accuracy@k in every evaluation and is the training
signal of BoN-RL-V.

  python -m launch.train_verifier --config=experiments/arith3_verifier.py \
      --workdir=workdir/arith3_verifier     # after the warm start in workdir/arith3_sft

The `:<prompts>,<steps>` argument shrinks the harvest and the fit (the protocol's small scales).
"""

import ml_collections

from experiments import arith3_sft, learned_verifier


def get_config(size: str = "4000,150") -> ml_collections.ConfigDict:
  """Returns the verifier config (harvest `prompts` x 16 samples, fit `steps` steps)."""
  num_prompts, num_steps = (int(v) for v in size.split(","))
  c = learned_verifier.get_config()
  warm = arith3_sft.get_config()
  c.task = warm.task  # 3-digit problems, the protocol's held-out split.
  c.init_from = "workdir/arith3_sft"
  c.reward_model.num_prompts = num_prompts
  c.reward_model.num_eval_prompts = min(200, num_prompts)
  c.reward_model.train.num_steps = num_steps
  c.reward_model.train.warmup_steps = min(10, max(num_steps // 5, 1))
  c.reward_model.train.log_every = min(50, num_steps)
  return c

"""Shared base of the BoN-aware fine-tuning experiments on the arithmetic task.

Every algorithm config starts from the same SFT checkpoint (the quickstart's, in
workdir/quickstart: run `python -m launch.main` first) and trains on-policy for the same
number of steps with the same sampling budget (train.batch_size prompts x sampling.num_samples
completions per step), so the algorithms differ only in how they weight the samples.
"""

import ml_collections

from experiments import quickstart

# Best-of-N size the BoN-aware objectives target at deployment (= the training group N').
TARGET_N = 8

def base_config(algorithm: str, **objective) -> ml_collections.ConfigDict:
  """The on-policy config for `algorithm` with objective options `objective`."""
  c = quickstart.get_config()
  c.algorithm = algorithm  # Objective registry name.
  c.init_from = "workdir/quickstart"  # The shared SFT starting point.
  c.objective = ml_collections.ConfigDict(objective)  # The objective's options.

  c.train.num_steps = 150  # On-policy updates.
  c.train.batch_size = 16  # Prompts per update.
  c.train.learning_rate = 1e-4  # Peak rate (constant after warm-up).
  c.train.lr_schedule = "constant"
  c.train.warmup_steps = 10
  c.train.weight_decay = 0.0
  c.train.checkpoint_every = 50
  c.train.log_every = 10

  c.sampling.num_samples = TARGET_N  # N' completions per prompt per update.
  c.sampling.temperature = 1.0  # Training samples (and the policy's log-probs) at T = 1.

  # Deployment has a verifier: an imperfect one (a stand-in for a learned verifier) ranks the
  # samples for BoN-accuracy@k in every run; "-S" objectives train on the environment reward,
  # "-V" objectives on this verifier's score.
  c.verifier.kind = "imperfect"
  c.verifier.flip_rate = 0.1

  c.reference.num_samples = 32  # M reference samples per prompt (vBoN / BOND reward CDF).

  c.eval.num_samples = 16  # Curves for k = 1 .. 16 on the held-out split.
  c.eval.num_prompts = 200
  return c

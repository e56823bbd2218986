"""Arms of the 3-digit comparison protocol: every objective of experiments/protocol_common.py
from one shared warm start (experiments/arith3_sft.py) with the same sampling budget per step
(train.batch_size prompts x N samples), so the arms differ only in how they weight the samples.

  python -m launch.main --config=experiments/arith3_arms.py:pkpo --workdir=workdir/arith3_pkpo

(after the warm start in workdir/arith3_sft; BoN-RL-V also needs the verifier of
experiments/arith3_verifier.py in workdir/arith3_verifier). The protocol
(experiments/arith3_protocol.py) runs them all, with its scale's step counts.
"""

import ml_collections

from experiments import arith3_sft, protocol_common

# The Best-of-N size the BoN-aware arms target (= the training group size N' of every arm).
TARGET_N = 8
ARMS = protocol_common.arm_objectives(TARGET_N)


def get_config(arm: str = "rl_s") -> ml_collections.ConfigDict:
  """Returns arm `arm`'s config at the protocol's full scale."""
  c = protocol_common.apply_arm(arith3_sft.get_config(), arm, TARGET_N,
                              verifier_checkpoint="workdir/arith3_verifier")
  c.init_from = "workdir/arith3_sft"  # The shared warm start (the protocol sets its own).

  c.train.num_steps = 100  # On-policy updates (issue 20: RL-S at lr 1e-4 sharpens by 100).
  c.train.batch_size = 64  # Prompts per update: 64 x N = 512 samples per step for every arm.
  c.train.learning_rate = 1e-4  # lr 1e-3 collapses RL-S (issue 20: pass@1 0.046, KL 5.8).
  c.train.lr_schedule = "constant"
  c.train.warmup_steps = 10
  c.train.weight_decay = 0.0
  c.train.checkpoint_every = 50
  c.train.log_every = 10
  c.train.eval_every = 20  # Training curves on the dev set (the eval section below).

  c.sampling.temperature = 1.0

  # The dev set: training curves every eval_every steps, the same random numbers every time.
  c.eval.num_prompts = 100
  c.eval.num_samples = 32
  c.eval.common_seed = 1
  c.eval.kl_num_samples = 8
  c.eval.max_k = 0
  return c

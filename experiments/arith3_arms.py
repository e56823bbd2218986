"""Arms of the 3-digit comparison protocol: every objective from one shared warm start
(experiments/arith3_sft.py) with the same sampling budget per step (train.batch_size prompts x
N samples), so the arms differ only in how they weight the samples.

  python -m launch.main --config=experiments/arith3_arms.py:pkpo --workdir=workdir/arith3_pkpo

(after the warm start in workdir/arith3_sft; BoN-RL-V also needs the verifier of
experiments/arith3_verifier.py in workdir/arith3_verifier). The protocol
(experiments/arith3_protocol.py) runs them all, with its scale's step counts.
"""

import ml_collections

from experiments import arith3_sft

# The Best-of-N size the BoN-aware arms target (= the training group size N' of every arm).
TARGET_N = 8
# KL weight of the KL-regularised RL arm that vBoN is compared with.
RL_KL_COEF = 0.05

# Arm -> (objective registry name, objective options, what it stands for).
ARMS: dict[str, tuple[str, dict, str]] = {
    "rl_s": ("rl", dict(signal="env"), "RL-S: REINFORCE, leave-one-out baseline, N' = N"),
    "bon_rl_s": ("bon_rl", dict(signal="env", selection="env", estimator="selected_mean"),
                 "BoN-RL-S: reward of the BoN pick by the environment reward"),
    "bon_rl_v": ("bon_rl", dict(signal="verifier", selection="verifier",
                                estimator="selected_mean"),
                 "BoN-RL-V: reward of the BoN pick by the learned verifier"),
    "bon_rlb": ("bon_rlb", dict(bon_n=TARGET_N), "BoN-RLB: closed-form pass@N gradient (default "
                                                 "estimator)"),
    "bon_rlb_p": ("bon_rlb_p", dict(bon_n=TARGET_N), "BoN-RLB(P): positive samples only "
                                                     "(default, unbiased form)"),
    "bon_rlb_p_gm": ("bon_rlb_p", dict(bon_n=TARGET_N, form="group_mean"),
                     "BoN-RLB(P), the paper's plug-in p_hat^(N-1) form (biased)"),
    "pkpo": ("pkpo", dict(k=TARGET_N, transform="s_loo_minus_one"), "PKPO, k = N"),
    "loo_passk": ("loo_passk", dict(signal="env"), "leave-one-out pass@N gradient"),
    "sft": ("sft", {}, "SFT on gold answers (the BoN-SFT baseline)"),
    "bon_sft": ("bon_sft", dict(bon_n=TARGET_N), "BoN-SFT: expert likelihood under the BoN "
                                                "policy"),
    "vbon": ("vbon", dict(bon_n=TARGET_N, reward="exact"), "vBoN: distil BoN-N of the start"),
    "rl_kl": ("rl", dict(signal="env", kl_coef=RL_KL_COEF), "KL-regularised RL-S (vs vBoN)"),
}


def get_config(arm: str = "rl_s") -> ml_collections.ConfigDict:
  """Returns arm `arm`'s config at the protocol's full scale."""
  if arm not in ARMS:
    raise ValueError(f"arm {arm!r}: must be one of {sorted(ARMS)}")
  algorithm, objective, _ = ARMS[arm]
  c = arith3_sft.get_config()
  c.algorithm = algorithm
  c.init_from = "workdir/arith3_sft"  # The shared warm start (the protocol sets its own).
  c.objective = ml_collections.ConfigDict(objective)

  c.train.num_steps = 100  # On-policy updates (issue 20: RL-S at lr 1e-4 sharpens by 100).
  c.train.batch_size = 64  # Prompts per update: 64 x N = 512 samples per step for every arm.
  c.train.learning_rate = 1e-4  # lr 1e-3 collapses RL-S (issue 20: pass@1 0.046, KL 5.8).
  c.train.lr_schedule = "constant"
  c.train.warmup_steps = 10
  c.train.weight_decay = 0.0
  c.train.checkpoint_every = 50
  c.train.log_every = 10
  c.train.eval_every = 20  # Training curves on the dev set (the eval section below).

  c.sampling.num_samples = TARGET_N
  c.sampling.temperature = 1.0

  # Selection verifier during training: exact for "-S" arms (they never read scores);
  # BoN-RL-V trains on the learned one (the protocol points verifier.checkpoint at it).
  if arm == "bon_rl_v":
    c.verifier.kind = "learned"
    c.verifier.checkpoint = "workdir/arith3_verifier"
  c.reference.num_samples = 2 * TARGET_N  # vBoN's reference CDF samples per prompt.

  # The dev set: training curves every eval_every steps, the same random numbers every time.
  c.eval.num_prompts = 100
  c.eval.num_samples = 32
  c.eval.common_seed = 1
  c.eval.kl_num_samples = 8
  c.eval.max_k = 0
  return c

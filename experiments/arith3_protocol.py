"""The BoN-aware vs BoN-unaware comparison protocol on 3-digit arithmetic (issue 20).

  python -m launch.sweep --protocol=experiments/arith3_protocol.py:one_hour \
      --root=workdir/protocol --report_dir=docs

runs the warm start (experiments/arith3_sft.py), the learned verifier
(experiments/arith3_verifier.py), every arm of experiments/arith3_arms.py x seeds, the paired
held-out evaluations (same prompts, same evaluation random numbers for every model) at T = 1
and the deployment temperature, the paired bootstrap differences against RL-S, the
temperature x N co-scaling grid, and the report (results.md + PNGs). Finished stages are
skipped, so an interrupted protocol continues where it stopped.

Scales (the argument after ":"):
  tiny       the end-to-end test (seconds): 2 arms, 1 seed, 16 prompts.
  quick      every arm, 2 seeds, 30 steps of 16 x 8, 300 prompts x 32 samples (what fits in
             ~1.5 hours on 2 CPU cores shared with 5 other jobs).
  one_hour   every arm, 2 seeds, 500 prompts x 64 samples (sized for <= 50 minutes on 2 idle
             CPU cores).
  two_hours  the issue's scale: every arm, 3 seeds, 1000 prompts x 128 samples, k <= 32.
"""

import ml_collections

from experiments import arith3_arms

# Every arm in report order: the baseline first, then BoN-aware arms, then the paired
# comparisons' members.
ALL_ARMS = ("rl_s", "bon_rl_s", "bon_rl_v", "bon_rlb", "bon_rlb_p", "bon_rlb_p_gm", "pkpo",
            "loo_passk", "sft", "bon_sft", "rl_kl", "vbon")

_SCALES = {
    "tiny": dict(
        warm_steps=10, verifier="", arms=("rl_s", "pkpo"), seeds=(0,),
        arm_steps=2, batch_size=8, learning_rate=1e-4, eval_every=0, dev_prompts=8,
        dev_samples=4, eval_prompts=16, eval_samples=8, max_k=4, kl_num_samples=2,
        temperatures=(1.0, 0.7), coscaling_temperatures=(0.5, 1.0), coscaling_prompts=8,
        coscaling_samples=8, bootstrap=200),
    "quick": dict(
        warm_steps=1500, verifier="1000,100", arms=ALL_ARMS, seeds=(0, 1),
        arm_steps=30, batch_size=16, learning_rate=3e-4, eval_every=10, dev_prompts=64,
        dev_samples=16, eval_prompts=300, eval_samples=32, max_k=32, kl_num_samples=4,
        temperatures=(1.0, 0.7), coscaling_temperatures=(0.1, 0.4, 0.7, 1.0, 1.3),
        coscaling_prompts=200, coscaling_samples=32, bootstrap=1000),
    "one_hour": dict(
        warm_steps=1500, verifier="2000,150", arms=ALL_ARMS, seeds=(0, 1),
        arm_steps=60, batch_size=32, learning_rate=2e-4, eval_every=20, dev_prompts=100,
        dev_samples=32, eval_prompts=500, eval_samples=64, max_k=32, kl_num_samples=8,
        temperatures=(1.0, 0.7), coscaling_temperatures=(0.1, 0.4, 0.7, 1.0, 1.3, 1.5),
        coscaling_prompts=300, coscaling_samples=64, bootstrap=2000),
    "two_hours": dict(
        warm_steps=1500, verifier="4000,150", arms=ALL_ARMS, seeds=(0, 1, 2),
        arm_steps=100, batch_size=64, learning_rate=1e-4, eval_every=20, dev_prompts=100,
        dev_samples=32, eval_prompts=1000, eval_samples=128, max_k=32, kl_num_samples=8,
        temperatures=(1.0, 0.7),
        coscaling_temperatures=(0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5), coscaling_prompts=500,
        coscaling_samples=64, bootstrap=2000),
}


def get_config(scale: str = "two_hours") -> ml_collections.ConfigDict:
  """Returns the protocol at `scale` (see the module docstring)."""
  if scale not in _SCALES:
    raise ValueError(f"scale {scale!r}: must be one of {sorted(_SCALES)}")
  s = _SCALES[scale]
  p = ml_collections.ConfigDict()
  p.scale = scale
  p.baseline = "rl_s"  # Differences are reported against this arm.
  p.target_n = arith3_arms.TARGET_N
  # Paired comparisons beside the baseline: (arm, its own reference arm).
  p.pairs = (("bon_sft", "sft"), ("vbon", "rl_kl"))
  p.warm_start = ml_collections.ConfigDict(dict(config="arith3_sft", argument=str(s["warm_steps"])))
  # "" trains no verifier: evaluations rank by the imperfect stand-in and BoN-RL-V is dropped.
  p.verifier = ml_collections.ConfigDict(dict(config="arith3_verifier", argument=s["verifier"]))
  p.arms = tuple(a for a in s["arms"] if s["verifier"] or a != "bon_rl_v")
  p.seeds = tuple(s["seeds"])
  p.train = ml_collections.ConfigDict(dict(
      num_steps=s["arm_steps"], batch_size=s["batch_size"], learning_rate=s["learning_rate"],
      eval_every=s["eval_every"], warmup_steps=min(10, s["arm_steps"]),
      checkpoint_every=s["arm_steps"], log_every=min(10, s["arm_steps"])))
  p.dev = ml_collections.ConfigDict(dict(num_prompts=s["dev_prompts"],
                                         num_samples=s["dev_samples"]))
  p.eval = ml_collections.ConfigDict(dict(
      num_prompts=s["eval_prompts"], num_samples=s["eval_samples"], max_k=s["max_k"],
      kl_num_samples=s["kl_num_samples"], temperatures=tuple(s["temperatures"]), common_seed=0,
      prompt_batch_size=50 if s["eval_prompts"] >= 50 else s["eval_prompts"],
      bootstrap_resamples=s["bootstrap"]))
  p.coscaling = ml_collections.ConfigDict(dict(
      temperatures=tuple(s["coscaling_temperatures"]), num_prompts=s["coscaling_prompts"],
      num_samples=s["coscaling_samples"]))
  return p

"""The BoN-aware vs BoN-unaware comparison protocol on 3-digit arithmetic (issue 20).

  python -m launch.sweep --protocol=experiments/arith3_protocol.py:two_hours \
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
  two_hours  the issue's scale: every arm but bon_rlb_p_gm (the paper's biased BoN-RLB(P)
             form, left out to fit the time), 3 seeds, 100 steps of 64 x 8, 1000 held-out
             prompts x 128 samples at T = 1 and 0.7, k <= 32: measured 130 minutes on 2 CPU
             cores (docs/results.md), part of it shared with a test-suite run.
"""

import ml_collections

from experiments import arith3_arms, protocol_common

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
        warm_steps=1500, verifier="4000,150",
        arms=tuple(a for a in ALL_ARMS if a != "bon_rlb_p_gm"), seeds=(0, 1, 2),
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
  return protocol_common.build_protocol(
      scale, s, title="BoN-aware vs BoN-unaware fine-tuning on 3-digit arithmetic",
      start_description=f"quickstart SFT recipe with task.num_digits=3 ({s['warm_steps']} steps)",
      warm_start=("arith3_sft", str(s["warm_steps"])), verifier=("arith3_verifier", s["verifier"]),
      arms_config=("arith3_arms", ""), target_n=arith3_arms.TARGET_N)

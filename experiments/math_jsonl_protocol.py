r"""The BoN-aware vs BoN-unaware comparison protocol on a MATH-format JSON-lines file, from a
pretrained model (SmolLM2-135M-Instruct by default; any `hf:<dir>` checkpoint with
experiments/math_jsonl_bon.py's model settings): the same stages, statistics and report as
experiments/arith3_protocol.py, one config away.

  python -m launch.sweep --protocol=experiments/math_jsonl_protocol.py:accelerator \
      --root=workdir/math_protocol --report_dir=workdir/math_protocol/report

needs data/math.jsonl (made by the command in experiments/math_jsonl_bon.py) and is sized for
one accelerator (hours on a GPU or TPU; days on a CPU). The warm start is
math_jsonl_bon.py:sft, the verifier math_jsonl_bon.py:verifier, the arms
experiments/math_jsonl_arms.py.

Scales (the argument after ":"):
  smoke        the whole path in minutes on a CPU: the tiny byte-level model (random start) on
               the test fixture tests/training/task_data/math_small.jsonl, 3 arms, 1 seed.
  accelerator  every arm, 3 seeds, 200 steps of 32 prompts x 8 samples, 500 held-out prompts x
               64 samples, k <= 32.
"""

import ml_collections

from experiments import protocol_common

_SCALES = {
    "smoke": dict(
        arms=("rl_s", "bon_rl_v", "pkpo"), seeds=(0,), arm_steps=2, batch_size=8,
        learning_rate=1e-3, eval_every=0, dev_prompts=8, dev_samples=2, eval_prompts=8,
        eval_samples=4, max_k=4, kl_num_samples=2, temperatures=(1.0, 0.8),
        coscaling_temperatures=(0.5, 1.0), coscaling_prompts=8, coscaling_samples=4,
        bootstrap=200),
    "accelerator": dict(
        arms=protocol_common.ARM_NAMES, seeds=(0, 1, 2), arm_steps=200, batch_size=32,
        learning_rate=1e-5, eval_every=50, dev_prompts=100, dev_samples=16, eval_prompts=500,
        eval_samples=64, max_k=32, kl_num_samples=8, temperatures=(1.0, 0.8),
        coscaling_temperatures=(0.2, 0.4, 0.6, 0.8, 1.0, 1.2), coscaling_prompts=200,
        coscaling_samples=64, bootstrap=2000),
}


def get_config(scale: str = "accelerator") -> ml_collections.ConfigDict:
  """Returns the protocol at `scale` (see the module docstring)."""
  if scale not in _SCALES:
    raise ValueError(f"scale {scale!r}: must be one of {sorted(_SCALES)}")
  suffix = ",smoke" if scale == "smoke" else ""
  return protocol_common.build_protocol(
      scale, _SCALES[scale], title="BoN-aware vs BoN-unaware fine-tuning on MATH-format data",
      start_description="SFT of experiments/math_jsonl_bon.py:sft" + suffix,
      warm_start=("math_jsonl_bon", "sft" + suffix),
      verifier=("math_jsonl_bon", "verifier" + suffix),
      arms_config=("math_jsonl_arms", suffix.lstrip(",")),
      target_n=2 if scale == "smoke" else 8)

"""Arms of the MATH-format JSON-lines protocol (experiments/math_jsonl_protocol.py): every
objective of experiments/protocol_common.py from the SFT warm start of
experiments/math_jsonl_bon.py, graded by math-verify, with N' = sampling.num_samples.

  python -m launch.main --config=experiments/math_jsonl_arms.py:bon_rlb --workdir=workdir/math_arm_bon_rlb

(after `--config=experiments/math_jsonl_bon.py:sft` in workdir/math_sft; BoN-RL-V also needs
its verifier in workdir/math_orm). The argument is `<arm>[,smoke]`; `smoke` is the tiny
byte-level model on the test fixture, as in math_jsonl_bon.py.
"""

import ml_collections

from experiments import math_jsonl_bon, protocol_common


def get_config(arg: str = "rl_s") -> ml_collections.ConfigDict:
  """Returns the config of arm `<arm>[,smoke]`."""
  arm, *options = arg.split(",")
  if any(o != "smoke" for o in options):
    raise ValueError(f"--config=...:{arg}: expected <arm>[,smoke]")
  c = math_jsonl_bon.get_config(",".join(["sft"] + options))
  protocol_common.apply_arm(c, arm, c.sampling.num_samples,
                            verifier_checkpoint=math_jsonl_bon.ORM_WORKDIR)
  c.init_from = math_jsonl_bon.SFT_WORKDIR  # The shared warm start (the protocol sets its own).
  c.train.eval_every = 50  # Training curves on the dev set (the eval section).
  c.eval.common_seed = 1  # The dev set draws the same random numbers at every evaluation.
  c.eval.kl_num_samples = 8  # Samples per prompt the KL to the start is estimated on.
  c.eval.max_k = 0
  return c

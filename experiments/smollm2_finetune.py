"""Short on-policy fine-tuning of SmolLM2-135M-Instruct on arithmetic: BoN-aware vs RL at the
same sampling budget (train.batch_size prompts x sampling.num_samples completions per step).

  python -m launch.main --config=experiments/smollm2_finetune.py:bon_rl_s --workdir=workdir/smollm2_bon_rl_s
  python -m launch.main --config=experiments/smollm2_finetune.py:rl_s --workdir=workdir/smollm2_rl_s

or all of them, with a comparison table and plots against the pretrained start:

  python -m launch.sweep --root=workdir/smollm2_sweep --seeds=0,1 \
      --algorithms=smollm2_finetune:rl_s,smollm2_finetune:bon_rl_s,smollm2_finetune:bon_rlb

The argument after ":" picks the algorithm (`ALGORITHMS`); all start from the pretrained
weights and end with the BoN evaluation of experiments/smollm2_bon_eval.py. About 15 minutes
per run on 2 CPU cores (12 steps of ~40 s, then the evaluation), 14.5 GB peak memory.
"""

import ml_collections

from experiments import smollm2_bon_eval

# Algorithm name -> (objective registry name, objective options), as in experiments/.
ALGORITHMS = {
    "bon_rl_s": ("bon_rl", {"signal": "env", "selection": "env", "estimator": "selected_mean"}),
    "bon_rlb": ("bon_rlb", {"bon_n": 8, "weight_clip": 10.0}),
    "rl_s": ("rl", {"signal": "env"}),
    "pkpo": ("pkpo", {"k": 4, "transform": "s_loo_minus_one"}),
}


def get_config(algorithm: str = "bon_rl_s") -> ml_collections.ConfigDict:
  """Returns the fine-tuning config of `algorithm` (a key of ALGORITHMS)."""
  if algorithm not in ALGORITHMS:
    raise ValueError(f"--config=...:{algorithm}: unknown; known: {sorted(ALGORITHMS)}")
  name, options = ALGORITHMS[algorithm]
  c = smollm2_bon_eval.get_config()
  c.algorithm = name
  c.objective = ml_collections.ConfigDict(options)
  c.train.num_steps = 12  # A short run: about 40 s per step on 2 CPU cores.
  c.train.batch_size = 4  # Prompts per update ...
  c.sampling.num_samples = 8  # ... x N' = 8 completions: 32 samples per step.
  # Train at the evaluation temperature: at T = 1 the 135M model rarely answers correctly, so
  # most groups carry no signal.
  c.sampling.temperature = 0.7
  c.train.learning_rate = 2e-5
  c.train.lr_schedule = "constant"
  c.train.warmup_steps = 0
  c.train.weight_decay = 0.0
  c.train.log_every = 1  # Every step: with few steps, each one's signal matters.
  c.train.checkpoint_every = 4
  c.train.keep_checkpoints = 1
  # The evaluation of experiments/smollm2_bon_eval.py (100 prompts x 16 samples, T = 0.7), so
  # the fine-tuned curves compare with the pretrained model's sample for sample.
  return c

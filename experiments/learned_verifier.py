"""Learned verifier (outcome reward model) for the arithmetic task, trained on the quickstart
policy's own samples:

  python -m launch.main                 # the policy, in workdir/quickstart
  python -m launch.train_verifier       # the ORM, in workdir/learned_verifier

Then use it as the selection score of any run with
  --config.verifier.kind=learned --config.verifier.checkpoint=workdir/learned_verifier
"""

import ml_collections

from experiments import quickstart


def get_config() -> ml_collections.ConfigDict:
  """Returns the learned-verifier configuration (about 5 minutes on 2 CPU cores)."""
  c = quickstart.get_config()
  c.init_from = "workdir/quickstart"  # Policy whose samples are labelled (and the ORM's init).

  c.reward_model = ml_collections.ConfigDict()
  c.reward_model.num_prompts = 4000  # Training prompts harvested (from the train split).
  c.reward_model.num_samples = 16  # Samples per prompt (labelled by the exact verifier).
  c.reward_model.temperature = 1.0  # Harvest sampling temperature.
  c.reward_model.train_backbone = False  # Head only (a probe on the policy's features and
  # likelihood): fine-tuning the backbone too learned prompt difficulty, not which sample is right.
  c.reward_model.num_eval_prompts = 200  # Held-out prompts for AUC and BoN selection.
  c.reward_model.prompt_buckets = (16,)  # Padded prompt lengths of the ORM input.
  c.reward_model.completion_buckets = (16,)  # Padded completion lengths (EOS included).

  c.reward_model.train = ml_collections.ConfigDict()
  t = c.reward_model.train
  t.num_steps = 150  # Optimizer steps (19k of the 64k pairs: the probe has d_model + 2 weights).
  t.batch_size = 128  # Pairs per step.
  t.learning_rate = 1e-2  # Peak rate.
  t.lr_schedule = "cosine"
  t.warmup_steps = 10
  t.end_lr_fraction = 0.1
  t.weight_decay = 0.01
  t.b1 = 0.9
  t.b2 = 0.98
  t.grad_clip_norm = 1.0
  t.log_every = 50  # Steps between metric writes.
  return c

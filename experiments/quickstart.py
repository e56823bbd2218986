"""Quickstart: SFT of the tiny transformer on arithmetic from scratch, then BoN evaluation.

Run with no flags:  python -m launch.main
Every field can be overridden on the command line, e.g. --config.eval.num_samples=32.
"""

import ml_collections

def get_config() -> ml_collections.ConfigDict:
  """Returns the quickstart configuration (5 to 7 minutes on 2 CPU cores)."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds parameter init, data order and sampling.
  c.algorithm = "sft"  # "sft" trains on gold answers; any other objective registry name
  # (bonjax.objectives.registry) trains on-policy on N samples per prompt.
  c.init_from = ""  # Workdir whose latest checkpoint initialises the parameters ("": random).
  c.objective = ml_collections.ConfigDict()  # Options of the objective's config dataclass.

  c.model = ml_collections.ConfigDict()
  c.model.preset = "tiny"  # Architecture preset name (bonjax.models.config.preset_names()).
  c.model.compute_dtype = "float32"  # Activation/matmul dtype: "float32" or "bfloat16".
  # Memory and LoRA knobs (README "Precision, memory and LoRA"; bonjax/training/memory_budget.py).
  c.model.remat = "auto"  # Layer rematerialisation: "auto" (planned), "none", "dots", "full".
  c.model.logits_chunk = 1024  # Output layer / log-probs in chunks of this many tokens (0: off).
  c.model.attention_impl = "xla"  # "xla", or "cudnn" (GPU, bfloat16, no attention soft-cap).
  c.model.lora_rank = 0  # LoRA adapter rank (0: full fine-tuning); only adapters are trained.
  c.model.lora_alpha = 16.0  # Adapters are scaled by lora_alpha / lora_rank.
  c.model.lora_targets = ("q", "k", "v", "o", "gate", "up", "down")  # Weights with adapters.

  c.task = ml_collections.ConfigDict()
  c.task.name = "arithmetic"  # Task registry name.
  c.task.num_digits = 2  # Operands have up to this many digits.
  c.task.operators = "+-"  # Operators drawn from "+-*".
  c.task.num_operands = 2  # Operands per problem (>= 3 gives multi-step expressions).
  c.task.multiply_digits = 1  # Digit cap of "*" operands.
  c.task.num_train = 8000  # Distinct training problems.
  c.task.num_test = 200  # Distinct held-out problems (disjoint from training by hash).
  c.task.seed = 0  # Problem generator seed (the test split is fixed per difficulty).
  c.task.template = ""  # Prompt template: "{prompt}" and any example field; "": the prompt.
  c.task.chat_template = False  # Wrap prompts in the tokenizer's chat template (instruct models).
  # task.name="jsonl" (see bonjax/training/tasks/jsonl.py; "humaneval" uses num_train/num_test):
  c.task.path = ""  # .jsonl / .json / .parquet file or directory, or tfds:<format>.
  c.task.prompt_field = "prompt"  # Field holding the prompt.
  c.task.answer_field = "answer"  # Field holding the gold answer.
  c.task.tests_field = ""  # Field holding unit tests (reward "code").
  c.task.split_field = ""  # Field naming each row's split ("": seeded split with task.seed).
  c.task.reward = "math"  # "math", "exact", "code" or "python:<module>:<function>".
  c.task.skip_bad_rows = False  # False: a malformed row stops the run (file, line, field).

  c.verifier = ml_collections.ConfigDict()
  c.verifier.kind = "exact"  # Selection verifier: "exact", "imperfect" (a noisy stand-in) or
  # "learned" (a reward model trained by `python -m launch.train_verifier`).
  c.verifier.flip_rate = 0.1  # "imperfect": probability a verdict in the score is wrong.
  c.verifier.jitter = 0.5  # "imperfect": uniform tie-breaking noise added to the score.
  c.verifier.seed = 0  # "imperfect": which completions get misjudged.
  c.verifier.checkpoint = ""  # "learned": the reward model's directory (its --workdir).

  c.reference = ml_collections.ConfigDict()
  c.reference.num_samples = 16  # M reference samples per prompt (vBoN / BOND reward CDF).
  c.reference.anchor_ema = 0.05  # J-BOND: anchor <- (1 - eta) anchor + eta policy per step.

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.name = "char"  # Tokenizer registry name.

  c.lengths = ml_collections.ConfigDict()
  c.lengths.prompt_buckets = (16,)  # Allowed padded prompt lengths (one compile per bucket).
  c.lengths.completion_buckets = (8,)  # Allowed padded completion lengths for training.

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1500  # Optimizer steps.
  c.train.batch_size = 64  # Prompts per step (global, across data-parallel devices).
  c.train.learning_rate = 3e-3  # Peak learning rate.
  c.train.lr_schedule = "cosine"  # "cosine", "linear" or "constant" after warm-up.
  c.train.warmup_steps = 100  # Linear warm-up from 0 to the peak rate.
  c.train.end_lr_fraction = 0.1  # Final rate as a fraction of the peak (cosine / linear).
  c.train.weight_decay = 0.01  # AdamW decoupled weight decay.
  c.train.b1 = 0.9  # Adam beta1.
  c.train.b2 = 0.98  # Adam beta2.
  c.train.grad_clip_norm = 1.0  # Global gradient-norm clip (0 disables).
  c.train.grad_accum_steps = 1  # Micro-batches per step (activations of one at a time).
  c.train.log_every = 50  # Steps between metric writes.
  c.train.checkpoint_every = 500  # Steps between checkpoints (the last step is always saved).
  c.train.keep_checkpoints = 2  # Checkpoints kept on disk (oldest deleted first).
  c.train.async_checkpoints = True  # Save in a background thread while training continues.
  c.train.eval_every = 0  # Steps between BoN evaluations during training (0: only at the end).
  c.train.on_nonfinite = "stop"  # A step with a NaN/inf loss or gradient is never applied;
  # "stop" then ends the run (exit status 5, no checkpoint of it), "skip" counts it and goes on.

  c.sampling = ml_collections.ConfigDict()
  c.sampling.num_samples = 16  # N samples per prompt in sample mode / on-policy training.
  c.sampling.max_new_tokens = 8  # Completion length cap L.
  c.sampling.temperature = 1.0  # Sampling temperature (0: greedy).
  c.sampling.top_k = 0  # Keep the k most likely tokens (0: off).
  c.sampling.top_p = 1.0  # Nucleus mass (1.0: off).

  c.eval = ml_collections.ConfigDict()
  c.eval.num_prompts = 200  # Held-out prompts evaluated (<= task.num_test).
  c.eval.num_samples = 16  # n samples per prompt; curves cover k = 1, 2, 4, ..., n.
  c.eval.temperature = 1.0  # Evaluation sampling temperature.
  c.eval.top_k = 0  # As sampling.top_k, for evaluation.
  c.eval.top_p = 1.0  # As sampling.top_p, for evaluation.
  c.eval.max_new_tokens = 8  # Completion length cap for evaluation.
  c.eval.prompt_batch_size = 50  # Prompts per sampler call (bounds memory: x n rows).

  c.logging = ml_collections.ConfigDict()  # metrics.jsonl and TensorBoard always; W&B if asked.
  c.logging.wandb = False  # Also log to Weights & Biases (pip install "bonjax[wandb]").
  c.logging.wandb_project = "bonjax"  # W&B project.
  c.logging.wandb_run_name = ""  # W&B run name ("": the workdir's name).

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # Data-parallel devices (-1: all remaining).
  c.mesh.fsdp = 1  # Devices sharding parameters and optimizer state.
  c.mesh.tensor = 1  # Tensor-parallel devices (heads / MLP / vocabulary).
  return c

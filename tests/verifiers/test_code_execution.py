"""Code execution: test splitting, grading, rewards, and HumanEval problems in the sandbox."""

import pytest

from bonjax.verifiers import code_execution as ce
from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status
from bonjax.verifiers.humaneval import HumanEvalVerifier, humaneval_columns, load_humaneval

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


def test_extract_program():
  prompt = "from typing import List\n\ndef f(x: List[int]) -> int:\n    \"\"\"Doc.\"\"\"\n"
  assert ce.extract_program(prompt, "    return 1\n", "f") == prompt + "    return 1\n"
  fenced = "Here:\n```python\ndef f(x):\n    return 2\n```\nDone."
  assert ce.extract_program(prompt, fenced, "f") == ("from typing import List\n"
                                                     "def f(x):\n    return 2\n")
  body_only = "```\n    return 3\n```"
  assert ce.extract_program(prompt, body_only, "f") == prompt + "    return 3\n"
  assert ce.extract_program(prompt, "x = 1", "f", include_prompt=False) == "x = 1"


def _run(report, exit_code=0, timed_out=False, stderr="", notes=(), cpu=0.0):
  return sandbox.SandboxResult(exit_code=exit_code, timed_out=timed_out, stdout="",
                               stderr=stderr, report=report, seconds=0.5, cpu_seconds=cpu,
                               notes=notes)


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
  # Forged or repeated records count once; records past the plan are ignored.
  forged = ce.grade(_run("\n".join(lines[:3] + ["step 1 fail x", "step 9 pass"])), plan, True)
  assert (forged.score, forged.correct) == (0.25, False)  # Step 0 is setup: 1 of 4 cases.
  setup_failed = ce.grade(_run("loaded\nstep 0 fail ImportError\nstep 1 pass\nstep 2 pass\n"
                               "step 3 pass\nstep 4 pass\ndone"), plan, True)
  assert (setup_failed.score, setup_failed.correct) == (1.0, False)
  timeout = ce.grade(_run("loaded\nstep 0 pass\nstep 1 pass", exit_code=None, timed_out=True),
                     plan, fraction_reward=True)
  assert (timeout.score, timeout.correct, timeout.status) == (0.25, False, Status.TIMEOUT)
  assert timeout.detail == "wall-clock limit after 1/4 cases"
  cpu = ce.grade(_run("loaded", exit_code=-24, cpu=5.0), plan, True, task_cpu_limit=5)
  assert (cpu.status, cpu.score) == (Status.TIMEOUT, 0.0)
  killed = ce.grade(_run("loaded", exit_code=-9, cpu=0.01), plan, True, task_cpu_limit=5)
  assert (killed.status, killed.score) == (Status.OK, 0.0)
  syntax = ce.grade(_run("syntax_error SyntaxError: invalid syntax"), plan, True)
  assert (syntax.status, syntax.score) == (Status.UNPARSEABLE, 0.0)
  load = ce.grade(_run("load_error NameError: name 'y' is not defined"), plan, True)
  assert (load.status, load.detail) == (Status.OK, "load: NameError: name 'y' is not defined")
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
  results = fraction_verifier.verify([prompt] * 6, completions, [CHECK] * 6, ["double"] * 6)
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


def test_mbpp_style_assert_list(fraction_verifier):
  results = fraction_verifier.verify(
      [""], ["def add(a, b):\n    return a + b if a else 0\n"],
      [["assert add(1, 2) == 3", "assert add(0, 5) == 5", "assert add(2, 2) == 4"]], [None])
  assert (results[0].score, results[0].correct) == (pytest.approx(2 / 3), False)


def test_column_lengths_are_checked(fraction_verifier):
  with pytest.raises(ValueError, match="got 1 prompts and 2 tests for 1 completions"):
    fraction_verifier.verify(["p"], ["c"], ["t1", "t2"], ["f"])


HUMANEVAL_SUBSET = [0, 2, 10, 32, 38, 53, 90, 120, 145, 163]


def test_humaneval_subset_canonical_passes_and_wrong_solutions_fail():
  problems = load_humaneval()
  assert len(problems) == 164
  subset = [problems[i] for i in HUMANEVAL_SUBSET]
  columns = humaneval_columns(subset)
  prompts = [p.prompt for p in subset]
  # Wrong on purpose: each prompt gets the next problem's solution, plus one `return None`.
  wrong = [subset[(i + 1) % len(subset)].canonical_solution for i in range(len(subset) - 1)]
  wrong.append("    return None\n")
  with HumanEvalVerifier(limits=LIMITS, num_workers=2) as verifier:
    good = verifier.verify(prompts, [p.canonical_solution for p in subset], **columns)
    bad = verifier.verify(prompts, wrong, **columns)
  assert [r.correct for r in good] == [True] * 10, [r.detail for r in good]
  assert all(r.status == Status.OK and r.score == 1.0 for r in good)
  assert [r.correct for r in bad] == [False] * 10
  assert all(r.score == 0.0 for r in bad)

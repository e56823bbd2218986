"""Code-execution verifier: run a completion against unit tests in the sandbox.

Each test case runs separately, so a completion gets both rewards:

* binary (`correct`): the program loads and every test case passes (HumanEval's pass/fail);
* continuous (`score` when `reward="fraction"`): the fraction of test cases that pass.

Test cases come from a HumanEval-style `check(candidate)` function (each top-level statement
of its body that contains an `assert` is one case; the other statements are setup that runs in
order) or from a list of assert statements (MBPP style). The harness runs inside the sandbox;
the host only reads the per-case records it writes to file descriptor 3.

The sandbox keeps the host safe; it cannot make the grade forgery-proof: the tests run in the
completion's own interpreter, so a deliberately adversarial program could write fake records.
Records are only trusted for cases that exist, and a program that exits early or kills the
harness gets no credit for the cases it did not reach.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any, Sequence

from bonjax.verifiers import pool as pool_lib
from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status, VerifierResult

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)```", re.DOTALL)
_DETAIL_CHARS = 300

# Runs inside the sandbox, after a header that assigns the task's literals.
_HARNESS = r'''
import os as _os, sys as _sys, _signal


# Raised by the alarm; a BaseException so that `except Exception` in user code misses it.
class _CaseTimeout(BaseException):
  pass


def _alarm(signum, frame):
  raise _CaseTimeout()


def _report(*fields):
  try:
    _os.write(3, (" ".join(fields) + "\n").encode("utf-8", "replace"))
  except OSError:
    pass


def _describe(error):
  try:
    text = type(error).__name__ + ": " + str(error)
  except BaseException:
    text = type(error).__name__
  return " ".join(text.split())[:300]


def _harness(program, prelude, steps, entry_point, parameter, case_seconds):
  namespace = {"__name__": "__solution__"}
  try:
    code = compile(program, "solution.py", "exec")
  except BaseException as error:
    _report("syntax_error", _describe(error))
    return
  _signal.signal(_signal.SIGALRM, _alarm)
  try:
    _signal.setitimer(_signal.ITIMER_REAL, case_seconds)
    exec(code, namespace)
    exec(compile(prelude, "tests.py", "exec"), namespace)
    _signal.setitimer(_signal.ITIMER_REAL, 0)
    if entry_point is not None:
      namespace[parameter] = namespace[entry_point]
  except BaseException as error:
    _signal.setitimer(_signal.ITIMER_REAL, 0)
    _report("load_error", _describe(error))
    return
  _report("loaded")
  for index, (kind, source) in enumerate(steps):
    try:
      _signal.setitimer(_signal.ITIMER_REAL, case_seconds)
      exec(compile(source, "tests.py", "exec"), namespace)
      _signal.setitimer(_signal.ITIMER_REAL, 0)
      _report("step", str(index), "pass")
    except BaseException as caught:
      _signal.setitimer(_signal.ITIMER_REAL, 0)
      why = "case timed out" if isinstance(caught, _CaseTimeout) else _describe(caught)
      _report("step", str(index), "fail", why)
  _report("done")


_harness(PROGRAM, PRELUDE, STEPS, ENTRY_POINT, PARAMETER, CASE_SECONDS)
'''


@dataclasses.dataclass(frozen=True)
class SuitePlan:
  """A test suite split for the harness.

  Attributes:
    prelude: module-level test code (imports, helpers, METADATA) run once after the program.
    steps: ("case" | "setup", source) in order; cases are graded, setup steps must not fail.
    parameter: the name the entry point is bound to (`candidate` in HumanEval).
  """

  prelude: str
  steps: tuple[tuple[str, str], ...]
  parameter: str = "candidate"

  @property
  def num_cases(self) -> int:
    return sum(kind == "case" for kind, _ in self.steps)


def _contains_assert(node: ast.AST) -> bool:
  return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def _compiles_at_module_level(source: str) -> bool:
  try:
    compile(source, "tests.py", "exec")
    return True
  except SyntaxError:
    return False


def plan_tests(tests: str | Sequence[str]) -> SuitePlan:
  """Splits a test suite into separately graded cases.

  Args:
    tests: HumanEval-style source defining `check(candidate)`, plain source whose top-level
      asserts are the cases, or a list of assert statements (MBPP style).

  Returns:
    the SuitePlan. A `check` body that cannot run statement by statement (it returns early,
    say) becomes a single case calling `check`.

  Raises:
    SyntaxError: the (trusted) test source does not parse.
  """
  if not isinstance(tests, str):
    return SuitePlan(prelude="", steps=tuple(("case", str(t)) for t in tests), parameter="_")
  module = ast.parse(tests)
  check = next((node for node in module.body
                if isinstance(node, ast.FunctionDef) and node.name == "check"), None)
  if check is None:
    steps = tuple(("case" if _contains_assert(node) else "setup", ast.unparse(node))
                  for node in module.body)
    return SuitePlan(prelude="", steps=steps, parameter="_")
  prelude = "\n".join(ast.unparse(node) for node in module.body if node is not check)
  parameter = check.args.args[0].arg if check.args.args else "candidate"
  steps = tuple(("case" if _contains_assert(node) else "setup", ast.unparse(node))
                for node in check.body)
  if not all(_compiles_at_module_level(source) for _, source in steps):
    prelude = "\n".join(ast.unparse(node) for node in module.body)
    steps = (("case", f"check({parameter})"),)
  return SuitePlan(prelude=prelude, steps=steps, parameter=parameter)


def harness_source(program: str, plan: SuitePlan, entry_point: str | None,
                   case_seconds: float) -> str:
  """The sandboxed program: load the completion, then run and report each test step."""
  literals = {
      "PROGRAM": program, "PRELUDE": plan.prelude, "STEPS": [list(s) for s in plan.steps],
      "ENTRY_POINT": entry_point, "PARAMETER": plan.parameter, "CASE_SECONDS": case_seconds,
  }
  # repr of str/list/float/None is a Python literal that round-trips exactly.
  header = "".join(f"{name} = {value!r}\n" for name, value in literals.items())
  return header + _HARNESS


def extract_program(prompt: str, completion: str, entry_point: str | None = None,
                    include_prompt: bool = True) -> str:
  """The program to test: the prompt continued by the completion, or a fenced code block.

  Args:
    prompt: the problem text (for HumanEval: signature and docstring).
    completion: generated text; a ```python fenced block, when present, is the code.
    entry_point: function the tests call; a fenced block that defines it stands alone (with
      the prompt's import lines), otherwise it continues the prompt.
    include_prompt: prepend the prompt (HumanEval completions continue it).

  Returns:
    Python source.
  """
  blocks = _FENCE.findall(completion)
  if not blocks:
    return prompt + completion if include_prompt else completion
  code = blocks[-1]
  if entry_point and re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.M):
    imports = [line for line in prompt.splitlines()
               if re.match(r"\s*(import|from)\s+\w", line)]
    return "\n".join(imports + [code])
  return prompt + code if include_prompt else code


@dataclasses.dataclass(frozen=True)
class CodeTask:
  """One completion to grade (the pool's picklable item)."""

  program: str
  tests: Any
  entry_point: str | None
  limits: sandbox.SandboxLimits
  case_seconds: float
  fraction_reward: bool


def _parse_records(report: str, num_steps: int) -> tuple[dict[str, str], dict[int, tuple]]:
  """(events: name -> message, outcomes: step -> (passed, error)) from the harness lines.

  Only the first record of each step counts, and only for steps that exist.
  """
  events, outcomes = {}, {}
  for line in report.splitlines():
    fields = line.split(" ", 3)
    if fields[0] == "step" and len(fields) >= 3 and fields[1].isdigit():
      step = int(fields[1])
      if step < num_steps and step not in outcomes:
        outcomes[step] = (fields[2] == "pass", fields[3] if len(fields) > 3 else "")
    elif fields[0] in ("syntax_error", "load_error", "loaded", "done"):
      events.setdefault(fields[0], line[len(fields[0]) + 1:])
  return events, outcomes


def grade(run: sandbox.SandboxResult, plan: SuitePlan, fraction_reward: bool,
          task_cpu_limit: float = float("inf")) -> VerifierResult:
  """Turns the harness records of one sandboxed run into a verdict.

  Args:
    run: the sandbox's result.
    plan: the test plan the harness ran.
    fraction_reward: score is the fraction of passed cases (else 0/1 like `correct`).
    task_cpu_limit: the run's RLIMIT_CPU, to tell a CPU-limit kill from other kills.

  Returns:
    the VerifierResult; TIMEOUT when the wall clock or the CPU limit ended the run (keeping
    the cases passed before it), UNPARSEABLE for a completion that does not compile, ERROR
    when the sandbox itself failed, otherwise OK.
  """
  events, outcomes = _parse_records(run.report, len(plan.steps))
  case_indices = [i for i, (kind, _) in enumerate(plan.steps) if kind == "case"]
  passed = sum(outcomes.get(i, (False,))[0] for i in case_indices)
  setup_ok = all(outcomes.get(i, (False,))[0] for i, (kind, _) in enumerate(plan.steps)
                 if kind == "setup")
  complete = "done" in events and len(outcomes) == len(plan.steps)
  correct = complete and setup_ok and passed == len(case_indices) and len(case_indices) > 0
  fraction = passed / len(case_indices) if case_indices else 0.0
  score = fraction if fraction_reward else float(correct)
  failing = next((f"step {i}: {outcomes[i][1]}" for i in sorted(outcomes)
                  if not outcomes[i][0]), "")
  stderr_tail = run.stderr.strip().splitlines()[-1:] if run.stderr.strip() else []
  if "syntax_error" in events:
    return VerifierResult(0.0, False, Status.UNPARSEABLE, seconds=run.seconds,
                          detail=events["syntax_error"][:_DETAIL_CHARS])
  # SIGXCPU at the soft CPU limit, SIGKILL at the hard one (if SIGXCPU was ignored).
  cpu_killed = (not complete and run.exit_code in (-9, -24)
                and run.cpu_seconds >= task_cpu_limit - 0.05)
  if run.timed_out or cpu_killed:
    why = "wall-clock limit" if run.timed_out else "cpu limit"
    return VerifierResult(score if fraction_reward else 0.0, False, Status.TIMEOUT,
                          seconds=run.seconds,
                          detail=f"{why} after {passed}/{len(case_indices)} cases")
  if not events and run.exit_code is None:
    note = "; ".join(run.notes) or "; ".join(stderr_tail)
    return VerifierResult(0.0, False, Status.ERROR, seconds=run.seconds,
                          detail=f"sandbox failed: {note}"[:_DETAIL_CHARS])
  if "load_error" in events:
    failing = f"load: {events['load_error']}"
  elif not complete and not failing:
    failing = f"stopped after {len(outcomes)}/{len(plan.steps)} steps (exit {run.exit_code})"
    if stderr_tail:
      failing += f": {stderr_tail[0]}"
  return VerifierResult(score, correct, Status.OK, seconds=run.seconds,
                        detail="" if correct else failing[:_DETAIL_CHARS])


def check_code_task(task: CodeTask) -> VerifierResult:
  """Pool check function: plan the tests, run the harness in the sandbox, grade."""
  plan = plan_tests(task.tests)
  if plan.num_cases == 0:
    return VerifierResult(0.0, False, Status.ERROR, detail="the test suite has no assert")
  source = harness_source(task.program, plan, task.entry_point, task.case_seconds)
  run = sandbox.run_python(source, task.limits)
  return grade(run, plan, task.fraction_reward, task.limits.cpu_seconds)


class CodeVerifier:
  """Runs completions against unit tests in sandboxed subprocesses, through a worker pool.

  Columns: `tests` (HumanEval `check` source, plain assert source, or a list of asserts) and
  `entry_point` (function name the tests call, or None).

  Args:
    reward: "binary" (score = all tests pass) or "fraction" (score = fraction passed).
    limits: sandbox limits of one run.
    case_seconds: per-test-case alarm inside the harness (best effort; the sandbox's wall
      clock is the hard limit).
    include_prompt: the program is prompt + completion (HumanEval); False: completion only.
    num_workers: pool workers (each runs one sandbox at a time).
    pool: an existing VerifierPool running `check_code_task` (then `num_workers` is unused).
    batch_timeout_s: optional deadline for one `verify` call.
  """

  def __init__(self, *, reward: str = "binary",
               limits: sandbox.SandboxLimits = sandbox.SandboxLimits(),
               case_seconds: float = 3.0, include_prompt: bool = True, num_workers: int = 2,
               pool: pool_lib.VerifierPool | None = None, batch_timeout_s: float | None = None):
    if reward not in ("binary", "fraction"):
      raise ValueError(f"reward={reward!r}: must be 'binary' or 'fraction'")
    if case_seconds <= 0:
      raise ValueError(f"case_seconds={case_seconds}: must be > 0")
    limits.validate()
    self.reward = reward
    self.limits = limits
    self.case_seconds = case_seconds
    self.include_prompt = include_prompt
    self._owns_pool = pool is None
    # The sandbox enforces its wall clock; the pool's deadline only catches a stuck worker.
    self.pool = pool or pool_lib.VerifierPool(
        check_code_task, num_workers=num_workers, task_timeout_s=limits.wall_seconds + 15.0,
        batch_timeout_s=batch_timeout_s)

  def tasks(self, prompts: Sequence[str], completions: Sequence[str], tests: Sequence[Any],
            entry_point: Sequence[str | None]) -> list[CodeTask]:
    """The pool items of one batch."""
    return [CodeTask(program=extract_program(p, c, e, self.include_prompt), tests=t,
                     entry_point=e, limits=self.limits, case_seconds=self.case_seconds,
                     fraction_reward=self.reward == "fraction")
            for p, c, t, e in zip(prompts, completions, tests, entry_point)]

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             tests: Sequence[Any] = (), entry_point: Sequence[str | None] | None = None,
             **columns: Sequence[Any]) -> list[VerifierResult]:
    """Scores each completion; see the class docstring for the columns."""
    del columns
    if len(tests) != len(completions) or len(prompts) != len(completions):
      raise ValueError(f"got {len(prompts)} prompts and {len(tests)} tests for "
                       f"{len(completions)} completions")
    if entry_point is None:
      entry_point = [None] * len(completions)
    if len(entry_point) != len(completions):
      raise ValueError(f"entry_point has {len(entry_point)} entries for {len(completions)} "
                       "completions")
    return self.pool.map(self.tasks(prompts, completions, tests, entry_point))

  @property
  def last_metrics(self) -> dict[str, float]:
    return self.pool.last_metrics

  def close(self) -> None:
    if self._owns_pool:
      self.pool.close()

  def __enter__(self) -> CodeVerifier:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

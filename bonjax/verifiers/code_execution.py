"""Code-execution verifier: run a completion against unit tests in the sandbox.

Each test case runs separately, so a completion gets both rewards:

* binary (`correct`): the program loads and every test case passes (HumanEval's pass/fail);
* continuous (`score` when `reward="fraction"`): the fraction of test cases that pass.

Test cases come from a HumanEval-style `check(candidate)` function (each top-level statement
of its body that contains an `assert` is one case; the other statements are setup that runs in
order) or from a list of assert statements (MBPP style).

Why the completion cannot forge its grade (the design; `sandbox_judge` implements it):

* Two processes. The candidate process loads the completion and only answers calls; the judge
  process runs the tests and writes the per-case records, on a report channel that only it
  holds. The candidate never sees the tests: they reach the judge on a descriptor the
  launcher never reads (so no candidate, forked from the launcher, has them in memory), and
  the candidate's filesystem is a new root without the repository, datasets, site-packages
  or the sandbox's files. The judge runs under another uid (or, without root, is
  non-dumpable while the candidate holds no capability): the candidate cannot trace it,
  open its descriptors through /proc or write its memory; it can only kill it, which fails
  the grade.
* Only values cross. A test's call `candidate(x)` is a proxy in the judge: it sends the
  arguments, and the candidate sends back the result in a canonical encoding of exact
  builtin types (`sandbox_values`); the judge decodes it into fresh `int`, `str`, `list`...
  objects. The tests then compare those with Python's own `==`, `abs`, `math.isclose` in the
  judge's interpreter, which the completion cannot patch. An object with an `__eq__` that is
  always true, a subclass of `int`, a patched `builtins` or `math`: none of it leaves the
  candidate's interpreter. Helpers the tests use that the prompt defines (HumanEval's
  `poly`, `encode_cyclic`) come from the trusted prompt, not from the completion.
* The candidate's own channels carry nothing the grade trusts: its stdout and stderr are
  only shown as detail, a record it fakes has nowhere to go, replies it writes ahead of time
  are just return values, exiting (`sys.exit(0)`, `os._exit(0)`) or crashing ends its answers
  (the cases fail), a child it forks cannot report later (everything dies with the run).
* Time is the judge's: each case has its own deadline in the judge; a candidate that stops
  answering (a loop, an ignored signal, exhausted memory or recursion) fails that case and
  is replaced by a fresh one for the next case, so one hang costs one case.

The tests themselves are trusted (they come from the dataset, like the prompt); they run in
the judge, inside the same namespaces, as an unprivileged uid.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import marshal
import re
from typing import Any, Sequence

from bonjax.verifiers import pool as pool_lib
from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status, VerifierResult

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)```", re.DOTALL)
_DETAIL_CHARS = 300


@dataclasses.dataclass(frozen=True)
class SuitePlan:
  """A test suite split for the harness.

  Attributes:
    prelude: module-level test code (imports, helpers, METADATA) run once after the program.
    steps: ("case" | "setup", source) in order; cases are graded, setup steps must not fail.
    parameter: the name the entry point is bound to (`candidate` in HumanEval).
    entry_point: the function a top-level `check(<name>)` call of the source names, if any
      (the planner runs the check itself, so that call is dropped from the prelude).
  """

  prelude: str
  steps: tuple[tuple[str, str], ...]
  parameter: str = "candidate"
  entry_point: str | None = None

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


def _check_call_target(node: ast.AST) -> str | None:
  """`name` for a top-level statement `check(name)`, else None."""
  if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
      and isinstance(node.value.func, ast.Name) and node.value.func.id == "check"
      and len(node.value.args) == 1 and isinstance(node.value.args[0], ast.Name)):
    return node.value.args[0].id
  return None


def plan_tests(tests: str | Sequence[str]) -> SuitePlan:
  """Splits a test suite into separately graded cases.

  Args:
    tests: HumanEval-style source defining `check(candidate)` (possibly followed by a
      `check(<entry point>)` call, as the data loaders write it), plain source whose
      top-level asserts are the cases, or a list of assert statements (MBPP style).

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
  targets = [_check_call_target(node) for node in module.body]
  kept = [node for node, target in zip(module.body, targets) if target is None]
  entry_point = next((target for target in targets if target is not None), None)
  prelude = "\n".join(ast.unparse(node) for node in kept if node is not check)
  parameter = check.args.args[0].arg if check.args.args else "candidate"
  steps = tuple(("case" if _contains_assert(node) else "setup", ast.unparse(node))
                for node in check.body)
  if not all(_compiles_at_module_level(source) for _, source in steps):
    prelude = "\n".join(ast.unparse(node) for node in kept)
    steps = (("case", f"check({parameter})"),)
  return SuitePlan(prelude=prelude, steps=steps, parameter=parameter, entry_point=entry_point)


def _defined_names(module: ast.Module) -> set[str]:
  """Names a module binds at top level (functions, classes, assignments, imports)."""
  names = set()
  for node in module.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      names.add(node.name)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      names.update((a.asname or a.name).split(".")[0] for a in node.names)
    elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
  return names


def trusted_helpers(prompt: str, plan: SuitePlan, entry_point: str | None) -> str:
  """The prompt as trusted test code, when the tests use something it defines, else "".

  HumanEval's tests call helpers the prompt defines (`poly`, `encode_cyclic`); they must come
  from the prompt, not from the completion, which could redefine them. Most tests use none,
  and then the judge does not run the prompt (its imports cost time).

  Args:
    prompt: the prompt, when it is the start of the program ("" otherwise).
    plan: the tests.
    entry_point: the function under test (the prompt's stub of it is no helper).
  """
  try:
    defined = _defined_names(ast.parse(prompt)) - {entry_point, plan.entry_point}
  except (SyntaxError, ValueError, RecursionError, MemoryError):
    return ""
  used = set()
  for source in [plan.prelude, *(source for _, source in plan.steps)]:
    try:
      used.update(n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
      continue  # The judge reports a test that does not compile.
  return prompt if defined & used else ""


def judge_input(plan: SuitePlan, entry_point: str | None, trusted: str,
                case_seconds: float) -> bytes:
  """The judge's input (see `sandbox_judge.Judge`): the tests, never shown to the program."""
  return marshal.dumps({
      "trusted": trusted, "prelude": plan.prelude, "steps": [list(s) for s in plan.steps],
      "parameter": plan.parameter, "entry_point": entry_point or plan.entry_point,
      "case_seconds": float(case_seconds)})


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
  """One completion to grade (the pool's picklable item).

  Attributes:
    program: the candidate program.
    tests: the test suite (see `plan_tests`).
    entry_point: the function the tests call, or None.
    prompt: the prompt when it is the start of the program (its helpers are trusted), or "".
    limits: sandbox limits of the run.
    case_seconds: time of one test case (and of loading the program), in the judge.
    fraction_reward: score is the fraction of passed cases.
  """

  program: str
  tests: Any
  entry_point: str | None
  limits: sandbox.SandboxLimits
  case_seconds: float
  fraction_reward: bool
  prompt: str = ""


_EVENTS = ("syntax_error", "load_error", "load_timeout", "loaded", "suite_error", "judge_error",
           "done")


def _parse_records(report: str, num_steps: int) -> tuple[dict[str, str], dict[int, tuple]]:
  """(events: name -> message, outcomes: step -> (passed, error)) from the judge's lines."""
  events, outcomes = {}, {}
  for line in report.splitlines():
    fields = line.split(" ", 3)
    if fields[0] == "step" and len(fields) >= 3 and fields[1].isdigit():
      step = int(fields[1])
      if step < num_steps and step not in outcomes:
        outcomes[step] = (fields[2] == "pass", fields[3] if len(fields) > 3 else "")
    elif fields[0] in _EVENTS:
      events.setdefault(fields[0], line[len(fields[0]) + 1:])
  return events, outcomes


def grade(run: sandbox.SandboxResult, plan: SuitePlan, fraction_reward: bool) -> VerifierResult:
  """Turns the judge's records of one sandboxed run into a verdict.

  Args:
    run: the sandbox's result.
    plan: the test plan the judge ran.
    fraction_reward: score is the fraction of passed cases (else 0/1 like `correct`).

  Returns:
    the VerifierResult: UNPARSEABLE for a completion that does not compile; TIMEOUT when
    loading the program or the run's wall clock ran out (keeping the cases passed before);
    ERROR when the sandbox or the judge failed, or the tests cannot run (`suite_error`);
    otherwise OK, with failing cases (a case timeout among them) named in `detail`.
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
  failure = lambda status, detail, kept=0.0: VerifierResult(
      kept, False, status, seconds=run.seconds, detail=detail[:_DETAIL_CHARS])
  if "syntax_error" in events:
    return failure(Status.UNPARSEABLE, events["syntax_error"])
  if "load_timeout" in events:
    return failure(Status.TIMEOUT, "loading the program timed out")
  if run.timed_out:
    return failure(Status.TIMEOUT, f"wall-clock limit after {passed}/{len(case_indices)} cases",
                   score if fraction_reward else 0.0)
  for event in ("suite_error", "judge_error"):
    if event in events:
      return failure(Status.ERROR, f"{event.replace('_', ' ')}: {events[event]}")
  if not events:
    note = "; ".join(run.notes) or f"judge exit {run.exit_code}"
    return failure(Status.ERROR, f"sandbox failed: {note}")
  if "load_error" in events:
    failing = f"load: {events['load_error']}"
  elif not complete and not failing:
    failing = (f"judge stopped after {len(outcomes)}/{len(plan.steps)} steps "
               f"(exit {run.exit_code})")
  return VerifierResult(score, correct, Status.OK, seconds=run.seconds,
                        detail="" if correct else failing[:_DETAIL_CHARS])


def check_code_task(task: CodeTask) -> VerifierResult:
  """Pool check function: plan the tests, run program and judge in the sandbox, grade."""
  try:
    plan = plan_tests(task.tests)
  except (SyntaxError, ValueError) as e:
    return VerifierResult(0.0, False, Status.ERROR, detail=f"test suite does not parse: {e}")
  if plan.num_cases == 0:
    return VerifierResult(0.0, False, Status.ERROR, detail="the test suite has no assert")
  trusted = trusted_helpers(task.prompt, plan, task.entry_point)
  run = sandbox.run_python(
      task.program, task.limits,
      judge_input=judge_input(plan, task.entry_point, trusted, task.case_seconds))
  return grade(run, plan, task.fraction_reward)


class CodeVerifier:
  """Runs completions against unit tests in sandboxed subprocesses, through a worker pool.

  Columns: `tests` (HumanEval `check` source, plain assert source, or a list of asserts) and
  `entry_points` (the function each test suite calls, or None: then the names the tests call
  are looked up in the program).

  Args:
    reward: "binary" (score = all tests pass) or "fraction" (score = fraction passed).
    limits: sandbox limits of one run.
    case_seconds: time of one test case, and of loading the program, measured by the judge;
      the sandbox's wall clock bounds the whole run.
    include_prompt: the program is prompt + completion (HumanEval), and the prompt's
      definitions are trusted helpers of the tests; False: the completion only.
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
    isolation = sandbox.probe_isolation()
    if not isolation.trustworthy:
      logging.warning("code grades are not trustworthy here (%s): the program runs as this "
                      "process's uid without namespaces", isolation.summary())
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
            entry_points: Sequence[str | None]) -> list[CodeTask]:
    """The pool items of one batch."""
    return [CodeTask(program=extract_program(p, c, e, self.include_prompt), tests=t,
                     entry_point=e, limits=self.limits, case_seconds=self.case_seconds,
                     fraction_reward=self.reward == "fraction",
                     prompt=p if self.include_prompt else "")
            for p, c, t, e in zip(prompts, completions, tests, entry_points)]

  def verify(self, prompts: Sequence[str], completions: Sequence[str], *,
             tests: Sequence[Any], entry_points: Sequence[str | None] | None = None,
             **other_columns: Sequence[Any]) -> list[VerifierResult]:
    """Scores each completion; see the class docstring for the columns.

    Raises:
      ValueError: columns of the wrong length, or a column named `entry_point` (the column
        is `entry_points`; a misspelt column must not be dropped silently).
    """
    if "entry_point" in other_columns:
      raise ValueError("column 'entry_point': the code verifier's column is 'entry_points'")
    if len(tests) != len(completions) or len(prompts) != len(completions):
      raise ValueError(f"got {len(prompts)} prompts and {len(tests)} tests for "
                       f"{len(completions)} completions")
    if entry_points is None:
      entry_points = [None] * len(completions)
    if len(entry_points) != len(completions):
      raise ValueError(f"entry_points has {len(entry_points)} entries for "
                       f"{len(completions)} completions")
    return self.pool.map(self.tasks(prompts, completions, tests, entry_points))

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

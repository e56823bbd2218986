"""All 164 HumanEval problems in the sandbox (slow: about 15 s on 2 cores)."""

import time

import pytest

from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status
from bonjax.verifiers.humaneval import HumanEvalVerifier, humaneval_columns, load_humaneval


@pytest.mark.slow
def test_all_canonical_solutions_pass_and_shifted_ones_fail():
  problems = load_humaneval()
  columns = humaneval_columns(problems)
  prompts = [p.prompt for p in problems]
  wrong = [problems[(i + 1) % len(problems)].canonical_solution for i in range(len(problems))]
  with HumanEvalVerifier(reward="fraction", limits=sandbox.SandboxLimits(wall_seconds=10.0),
                         num_workers=2) as verifier:
    verifier.verify(["def f():\n"], ["    return 1\n"], ["assert f() == 1"], [None])  # Warm.
    start = time.monotonic()
    good = verifier.verify(prompts, [p.canonical_solution for p in problems], **columns)
    seconds = time.monotonic() - start
    bad = verifier.verify(prompts, wrong, **columns)
  failed = [(p.task_id, r.detail) for p, r in zip(problems, good) if not r.correct]
  assert failed == []
  assert all(r.status == Status.OK and r.score == 1.0 for r in good)
  assert sum(r.correct for r in bad) == 0
  print(f"\nHumanEval canonical: 164 checks in {seconds:.2f} s = {164 / seconds:.1f} checks/s "
        f"on 2 workers ({sandbox.probe_isolation().summary()})")

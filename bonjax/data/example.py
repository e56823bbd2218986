"""The task-independent example record every dataset loader and generator produces."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class TaskExample:
  """One prompt with what its verifier needs.

  Attributes:
    id: stable identifier ("<dataset>/<split>/<index>" or the dataset's own id).
    prompt: prompt text, before any chat template or few-shot prefix.
    answer: gold final answer (math / arithmetic), or None.
    tests: unit-test source (code tasks), or None.
    entry_point: function under test (code tasks), or None.
    metadata: anything else from the source row (level, type, reference solution...).
  """

  id: str
  prompt: str
  answer: str | None = None
  tests: str | None = None
  entry_point: str | None = None
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

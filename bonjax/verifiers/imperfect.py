"""A deliberately imperfect verifier derived from an exact one: the stand-in for a learned
verifier (reward model) in `-V` experiments on synthetic tasks.

Its score is the exact verdict flipped with probability `flip_rate`, plus a small uniform
jitter that breaks ties among samples, so Best-of-N selection with it makes real mistakes
(Type-I and Type-II) at a controlled rate. All randomness is a hash of (seed, prompt,
completion): the same completion always gets the same score, as with a trained model.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from bonjax.verifiers.base import Verifier, VerifierResult


def _uniform(*parts: str) -> float:
  digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
  return int.from_bytes(digest, "little") / 2.0**64


class ImperfectVerifier:
  """Wraps `base`: `correct` stays the environment reward, `score` becomes a noisy verdict.

  Args:
    base: exact verifier supplying correctness and extracted answers.
    flip_rate: probability that the verdict in the score is wrong (0 gives a perfect ranker).
    jitter: width of the uniform tie-breaking noise added to the score (< 1 keeps every
      "judged correct" sample above every "judged wrong" one).
    seed: changes which completions are misjudged.
  """

  def __init__(self, base: Verifier, flip_rate: float = 0.1, jitter: float = 0.5, seed: int = 0):
    if not 0.0 <= flip_rate <= 1.0:
      raise ValueError(f"verifier.flip_rate={flip_rate}: must be in [0, 1]")
    if not 0.0 <= jitter < 1.0:
      raise ValueError(f"verifier.jitter={jitter}: must be in [0, 1)")
    self.base, self.flip_rate, self.jitter, self.seed = base, flip_rate, jitter, seed

  def verify(self, prompts: Sequence[str], completions: Sequence[str],
             **columns: Sequence[Any]) -> list[VerifierResult]:
    results = self.base.verify(prompts, completions, **columns)
    out = []
    for prompt, completion, result in zip(prompts, completions, results):
      flip = _uniform(str(self.seed), "flip", prompt, completion) < self.flip_rate
      judged = result.correct != flip
      score = float(judged) + self.jitter * _uniform(str(self.seed), "jitter", prompt, completion)
      out.append(VerifierResult(score=score, correct=result.correct, status=result.status,
                                answer=result.answer, seconds=result.seconds,
                                detail=result.detail, reward=result.reward))
    return out

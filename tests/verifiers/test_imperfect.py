"""The imperfect verifier stand-in: deterministic, misjudges at the configured rate."""

import numpy as np
import pytest

from bonjax.verifiers.arithmetic import ArithmeticVerifier
from bonjax.verifiers.imperfect import ImperfectVerifier


def _batch(n=4000):
  rng = np.random.default_rng(0)
  gold = [str(int(v)) for v in rng.integers(0, 100, n)]
  completions = [g if rng.random() < 0.5 else str(int(g) + 1) for g in gold]
  prompts = [f"p{i}" for i in range(n)]
  return prompts, completions, gold


def test_flip_rate_and_determinism():
  prompts, completions, gold = _batch()
  verifier = ImperfectVerifier(ArithmeticVerifier(), flip_rate=0.2, jitter=0.5, seed=3)
  results = verifier.verify(prompts, completions, answers=gold)
  judged = np.array([r.score >= 1.0 for r in results])
  correct = np.array([r.correct for r in results])
  # 4000 Bernoulli(0.2) flips: std 0.0063, so +-0.03 is a 4.7-sigma band.
  assert abs(np.mean(judged != correct) - 0.2) < 0.03
  assert correct.mean() == pytest.approx(0.5, abs=0.05)
  again = verifier.verify(prompts, completions, answers=gold)
  assert [r.score for r in again] == [r.score for r in results]
  scores = np.array([r.score for r in results])
  assert ((scores >= 0) & (scores < 1.5)).all() and len(set(scores.tolist())) == len(scores)


def test_zero_flip_rate_ranks_like_the_exact_verifier():
  prompts, completions, gold = _batch(500)
  results = ImperfectVerifier(ArithmeticVerifier(), flip_rate=0.0).verify(
      prompts, completions, answers=gold)
  assert all((r.score >= 1.0) == r.correct for r in results)


def test_invalid_rates():
  with pytest.raises(ValueError, match="verifier.flip_rate=1.5"):
    ImperfectVerifier(ArithmeticVerifier(), flip_rate=1.5)

"""The exponential-tilting approximation of Best-of-N and its KL-matched temperature lambda_N.

Chow et al.'s variational BoN policy is `pi(y) exp(lambda_N Q(y)) / Z` with Q the win rate of y
against the policy. For a continuous Q (Uniform(0, 1) under pi) the tilt has closed-form KL and
win rate; choosing lambda_N so that the tilt spends the BoN KL budget `log N - (N - 1) / N` gives
lambda_N ~ N + 1 (algorithms.md section 3.2, T14). All functions are host-side float64 maths:
lambda_N is a static hyper-parameter, fixed before tracing.
"""

from __future__ import annotations

import functools
import math


def tilt_kl(lam: float) -> float:
  """KL(tilt || pi) = lam / (1 - e^-lam) - 1 - log((e^lam - 1) / lam) for Q ~ Uniform(0, 1)."""
  if lam < 0:
    raise ValueError(f"lam={lam}: must be >= 0")
  if lam < 1e-6:
    return lam * lam / 24.0  # Taylor expansion; the closed form cancels catastrophically here.
  one_minus = -math.expm1(-lam)  # 1 - e^-lam, accurate for small and large lam
  return lam / one_minus - 1.0 - (lam + math.log(one_minus) - math.log(lam))


def tilt_win_rate(lam: float) -> float:
  """E_tilt[Q] = 1 / (1 - e^-lam) - 1 / lam (0.5 at lam = 0)."""
  if lam < 1e-6:
    return 0.5 + lam / 12.0
  return 1.0 / -math.expm1(-lam) - 1.0 / lam


def bon_kl_budget(n: int) -> float:
  """The classical BoN KL `log N - (N - 1) / N` (an upper bound for discrete policies)."""
  if n < 1:
    raise ValueError(f"n={n}: must be >= 1")
  return math.log(n) - (n - 1) / n


@functools.lru_cache(maxsize=None)
def kl_matched_lambda(n: int, tol: float = 1e-12) -> float:
  """The root lambda of `tilt_kl(lambda) = log N - (N - 1) / N`, by bisection.

  tilt_kl is increasing in lambda, so bisection on a bracket [0, hi] converges; reference values
  (T14): N = 2, 4, 8, 16, 32 -> 2.2886, 4.9169, 9.0545, 17.0319, 33.0158.

  Args:
    n: the BoN size N (>= 1; N = 1 gives 0).
    tol: absolute tolerance on lambda.

  Returns:
    lambda_N as a Python float.
  """
  target = bon_kl_budget(n)
  if target == 0.0:
    return 0.0
  lo, hi = 0.0, 1.0
  while tilt_kl(hi) < target:
    lo, hi = hi, 2.0 * hi
  while hi - lo > tol * max(1.0, hi):
    mid = 0.5 * (lo + hi)
    if tilt_kl(mid) < target:
      lo = mid
    else:
      hi = mid
  return 0.5 * (lo + hi)


LAMBDA_RULES = ("kl_matched", "n_plus_one")


def lambda_for(n: int, rule: str) -> float:
  """lambda_N by rule: "kl_matched" (root above) or "n_plus_one" (N + 1)."""
  if rule == "kl_matched":
    return kl_matched_lambda(n)
  if rule == "n_plus_one":
    return float(n + 1)
  raise ValueError(f"lambda_rule={rule!r}: must be one of {LAMBDA_RULES}")

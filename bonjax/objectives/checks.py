"""Config validation helpers: every failure names the field, the value and the rule."""

from __future__ import annotations

from typing import Any, Iterable

SIGNALS = ("env", "verifier")
KL_ESTIMATORS = ("k1", "k3")
BASELINES = ("loo", "none")
CDF_KINDS = ("add_one", "plain")


def _fail(config: Any, field: str, value: Any, rule: str) -> None:
  raise ValueError(f"{type(config).__name__}.{field}={value!r}: {rule}")


def check_choice(config: Any, field: str, choices: Iterable[Any]) -> None:
  """Raises ValueError unless `config.field` is one of `choices`."""
  choices = tuple(choices)
  value = getattr(config, field)
  if value not in choices:
    _fail(config, field, value, f"must be one of {choices}")


def check_number(config: Any, field: str, *, minimum: float | None = None,
                 maximum: float | None = None, strict_minimum: bool = False,
                 allow_none: bool = False, integer: bool = False) -> None:
  """Raises ValueError unless `config.field` is a number in the given range.

  Args:
    config: the config object.
    field: attribute name.
    minimum: lower bound (inclusive unless `strict_minimum`).
    maximum: inclusive upper bound.
    strict_minimum: the lower bound is exclusive.
    allow_none: None is accepted.
    integer: the value must be an int.
  """
  value = getattr(config, field)
  if value is None:
    if not allow_none:
      _fail(config, field, value, "must be set")
    return
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    _fail(config, field, value, "must be a number")
  if integer and not isinstance(value, int):
    _fail(config, field, value, "must be an integer")
  if minimum is not None:
    if strict_minimum and not value > minimum:
      _fail(config, field, value, f"must be > {minimum}")
    if not strict_minimum and not value >= minimum:
      _fail(config, field, value, f"must be >= {minimum}")
  if maximum is not None and not value <= maximum:
    _fail(config, field, value, f"must be <= {maximum}")


def check_policy_gradient_options(config: Any) -> None:
  """Validates the shared fields ppo_clip, kl_coef, kl_estimator (when present)."""
  if hasattr(config, "ppo_clip"):
    check_number(config, "ppo_clip", minimum=0.0, strict_minimum=True, allow_none=True)
  if hasattr(config, "kl_coef"):
    check_number(config, "kl_coef", minimum=0.0, allow_none=True)
  if hasattr(config, "kl_estimator"):
    check_choice(config, "kl_estimator", KL_ESTIMATORS)

"""Start-up validation of run configs: every error names the field, the value and the rule."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterator, Sequence

import ml_collections


class ConfigError(ValueError):
  """A run config breaks one or more rules; the message lists every violation."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """One constraint on one config field.

  Attributes:
    path: dotted field path, e.g. "sampling.num_samples".
    check: predicate on the value (True = valid).
    rule: what a valid value is, as shown to the user ("must be >= 1").
  """

  path: str
  check: Callable[[Any], bool]
  rule: str


def _at_least(low):
  return lambda v: v >= low


def _in_unit_interval(open_low: bool = False):
  return lambda v: (0.0 < v if open_low else 0.0 <= v) and v <= 1.0


def _one_of(choices: Sequence[str]):
  return lambda v: v in choices


def _positive_buckets(v) -> bool:
  return len(v) > 0 and all(int(b) >= 1 for b in v)


COMMON_RULES: tuple[Rule, ...] = (
    Rule("seed", _at_least(0), "must be >= 0"),
    Rule("task.seed", _at_least(0), "must be >= 0"),
    Rule("model.compute_dtype", _one_of(("float32", "bfloat16")), "must be 'float32' or 'bfloat16'"),
    Rule("lengths.prompt_buckets", _positive_buckets, "must be a non-empty list of lengths >= 1"),
    Rule("lengths.completion_buckets", _positive_buckets, "must be a non-empty list of lengths >= 1"),
    Rule("train.num_steps", _at_least(0), "must be >= 0"),
    Rule("train.batch_size", _at_least(1), "must be >= 1"),
    # 0 is a legitimate frozen-policy check run (e.g. KL to the reference must stay 0).
    Rule("train.learning_rate", lambda v: v >= 0, "must be >= 0"),
    Rule("train.lr_schedule", _one_of(("cosine", "linear", "constant")),
         "must be one of 'cosine', 'linear', 'constant'"),
    Rule("train.warmup_steps", _at_least(0), "must be >= 0"),
    Rule("train.end_lr_fraction", _in_unit_interval(), "must be in [0, 1]"),
    Rule("train.weight_decay", _at_least(0), "must be >= 0"),
    Rule("train.b1", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    Rule("train.b2", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    Rule("train.grad_clip_norm", _at_least(0), "must be >= 0 (0 disables clipping)"),
    Rule("train.log_every", _at_least(1), "must be >= 1"),
    Rule("train.checkpoint_every", _at_least(1), "must be >= 1"),
    Rule("train.keep_checkpoints", _at_least(1), "must be >= 1"),
    Rule("train.eval_every", _at_least(0), "must be >= 0 (0: evaluate only at the end)"),
    Rule("train.on_nonfinite", _one_of(("stop", "skip")), "must be 'stop' or 'skip'"),
    Rule("sampling.num_samples", _at_least(1), "must be >= 1"),
    Rule("sampling.max_new_tokens", _at_least(1), "must be >= 1"),
    Rule("sampling.temperature", _at_least(0), "must be >= 0 (0: greedy)"),
    Rule("sampling.top_k", _at_least(0), "must be >= 0 (0: off)"),
    Rule("sampling.top_p", _in_unit_interval(open_low=True), "must be in (0, 1]"),
    Rule("eval.num_prompts", _at_least(1), "must be >= 1"),
    Rule("eval.num_samples", _at_least(1), "must be >= 1"),
    Rule("eval.temperature", _at_least(0), "must be >= 0 (0: greedy)"),
    Rule("eval.top_k", _at_least(0), "must be >= 0 (0: off)"),
    Rule("eval.top_p", _in_unit_interval(open_low=True), "must be in (0, 1]"),
    Rule("eval.max_new_tokens", _at_least(1), "must be >= 1"),
    Rule("eval.prompt_batch_size", _at_least(1), "must be >= 1"),
    Rule("task.num_train", _at_least(1), "must be >= 1"),
    Rule("task.num_test", _at_least(1), "must be >= 1"),
)


def get_field(config: ml_collections.ConfigDict, path: str) -> Any:
  """Value at dotted `path`; raises ConfigError naming the missing field."""
  node = config
  for part in path.split("."):
    if part not in node:
      raise ConfigError(f"{path}: missing field (the config has no {part!r} under "
                        f"{path.rsplit('.', 1)[0] if '.' in path else 'the root'})")
    node = node[part]
  return node


def violations(config: ml_collections.ConfigDict, rules: Sequence[Rule]) -> list[str]:
  """Returns one "field=value: rule" message per broken rule (empty when valid)."""
  messages = []
  for rule in rules:
    try:
      value = get_field(config, rule.path)
    except ConfigError as e:
      messages.append(str(e))
      continue
    try:
      ok = bool(rule.check(value))
    except (TypeError, ValueError):
      ok = False
    if not ok:
      messages.append(f"{rule.path}={value!r}: {rule.rule}")
  return messages


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any]]:
  """(dotted path, value) of every non-section value under `node`; list items as path[i]."""
  if isinstance(node, ml_collections.ConfigDict):
    for key in node.keys():
      yield from _leaves(node[key], f"{path}.{key}" if path else key)
  elif isinstance(node, (list, tuple)):
    for i, item in enumerate(node):
      yield from _leaves(item, f"{path}[{i}]")
  else:
    yield path, node


def nonfinite_violations(config: ml_collections.ConfigDict) -> list[str]:
  """One message per float field (anywhere in the config) that is inf or nan: no field of any
  section has a meaning for them, and an infinite learning rate trains on NaN."""
  return [f"{path}={value!r}: must be a finite number" for path, value in _leaves(config, "")
          if isinstance(value, float) and not math.isfinite(value)]


def cross_field_violations(config: ml_collections.ConfigDict) -> list[str]:
  """Rules that relate several fields."""
  messages = []
  if config.eval.num_prompts > config.task.num_test:
    messages.append(f"eval.num_prompts={config.eval.num_prompts}: must be <= task.num_test="
                    f"{config.task.num_test} (there are only that many held-out prompts)")
  return messages


def validate_config(config: ml_collections.ConfigDict,
                    extra_rules: Sequence[Rule] = ()) -> None:
  """Checks `config` against the common rules, `extra_rules` and the cross-field rules.

  Raises:
    ConfigError: listing every violation, one per line, each naming field, value and rule.
  """
  messages = (nonfinite_violations(config)
              + violations(config, tuple(COMMON_RULES) + tuple(extra_rules)))
  if not messages:
    messages = cross_field_violations(config)
  if messages:
    raise ConfigError("invalid config:\n  " + "\n  ".join(messages))

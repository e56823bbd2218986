"""Resuming checks the config: a checkpoint resumes only the run that made it.

Every checkpoint stores its run's config (`meta["config"]`). On resume the stored and the
current config are compared field by field:
  * fields that only say how long to run, how often to log / save / evaluate, how to evaluate
    or how to lay the run out on devices (`RESUMABLE_CHANGES`) may change: each change is
    logged;
  * any other change (model, task, tokenizer, lengths, seed, algorithm, objective, optimizer,
    sampling, `init_from`, ...) would silently mix two runs in one workdir, so it stops the run
    with `ResumeConfigError` naming every such field with both values, unless the caller
    allows it (`python -m launch.main --allow_config_change`);
  * fields absent on one side (a checkpoint written before a field existed) are logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import ml_collections

from bonjax.training.config_validation import ConfigError

# Dotted fields or sections ("eval" covers eval.*) a resumed run may change.
RESUMABLE_CHANGES: tuple[str, ...] = (
    "train.num_steps", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.async_checkpoints", "train.eval_every", "train.on_nonfinite", "eval", "mesh",
    "logging",
    # Memory knobs: how a step is computed, not what it computes (e.g. resuming on a smaller
    # device with more rematerialisation or micro-batches).
    "model.remat", "model.logits_chunk", "model.attention_impl", "train.grad_accum_steps",
)

_MISSING = object()


class ResumeConfigError(ConfigError):
  """The workdir's checkpoint was made with a config that differs in a field that changes
  the model, the data stream or the updates."""


def _flatten(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
  if isinstance(node, dict):
    for key, value in node.items():
      yield from _flatten(value, f"{path}.{key}" if path else str(key))
  else:
    yield path, node


def _as_json(config: ml_collections.ConfigDict | dict[str, Any]) -> dict[str, Any]:
  """The config as the checkpoint stores it (tuples become lists)."""
  as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return json.loads(json.dumps(as_dict))


def is_resumable_change(path: str) -> bool:
  return any(path == p or path.startswith(p + ".") for p in RESUMABLE_CHANGES)


def config_changes(saved: dict[str, Any], current: ml_collections.ConfigDict | dict[str, Any]
                   ) -> list[tuple[str, Any, Any]]:
  """(field, saved value, current value) of every leaf that differs; a side without the
  field has the `_MISSING` marker."""
  old, new = dict(_flatten(_as_json(saved))), dict(_flatten(_as_json(current)))
  return [(path, old.get(path, _MISSING), new.get(path, _MISSING))
          for path in sorted(old.keys() | new.keys())
          if old.get(path, _MISSING) != new.get(path, _MISSING)]


def _show(value: Any) -> str:
  return "(absent)" if value is _MISSING else repr(value)


def check_resume_config(saved: dict[str, Any] | None, current: ml_collections.ConfigDict,
                        checkpoint: str, allow_changes: bool = False) -> None:
  """Refuses to resume a checkpoint made with a different config (see the module docstring).

  Args:
    saved: the checkpoint's `meta["config"]` (None for a checkpoint that stored none).
    current: this run's config.
    checkpoint: the checkpoint's description for messages (directory and step).
    allow_changes: log every change instead of refusing.

  Raises:
    ResumeConfigError: naming each refused field with the checkpoint's and this run's value.
  """
  if saved is None:
    logging.warning("%s stores no config: resuming without checking it", checkpoint)
    return
  refused = []
  for path, old, new in config_changes(saved, current):
    line = f"{path}: checkpoint {_show(old)}, this run {_show(new)}"
    if old is _MISSING or new is _MISSING or is_resumable_change(path) or allow_changes:
      logging.warning("Resuming %s with a changed config field: %s", checkpoint, line)
    else:
      refused.append(line)
  if refused:
    raise ResumeConfigError(
        f"{checkpoint} was made by a run with another config; resuming it would mix two "
        f"runs:\n  " + "\n  ".join(refused) + "\nUse another --workdir, restore those "
        f"values, or pass --allow_config_change to resume with the new ones")

"""Where a run's model comes from: `init_from` resolved into architecture, tokenizer and weights.

  init_from = ""                  random weights of `model.preset`, tokenizer `tokenizer.name`
  init_from = "<workdir>"         the latest checkpoint of another run of the same preset
  init_from = "pretrained:<name>" a model package of `bonjax.checkpoints.pretrained`
                                  (`model.preset` and `tokenizer` must name the same model)
  init_from = "hf:<directory>"    a local transformers checkpoint (Llama incl. Llama 3 and
                                  SmolLM2, Qwen2/2.5, Qwen3, Gemma 2/3): its config.json sets the
                                  architecture and its tokenizer files the tokenizer and chat
                                  template (`model.preset` and `tokenizer.*` are not used); every
                                  EOS id of generation_config.json / config.json stops sampling.

A run initialised from the workdir of an `hf:` run (e.g. RL from an SFT checkpoint, the sweep,
a learned verifier of that policy) inherits that checkpoint's architecture and tokenizer: the
`init_from` chain is followed through the saved run configs.

`model_and_tokenizer` runs when the run is set up (cheap: config and tokenizer files only);
`load_params` reads the weights when training or evaluation starts from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections

from bonjax.checkpoints import hf_import
from bonjax.checkpoints import pretrained
from bonjax.models.config import ModelConfig, get_preset
from bonjax.tokenizers.base import Tokenizer
from bonjax.tokenizers.hf import HFTokenizer
from bonjax.checkpoints.tokenizer_registry import build_tokenizer

HF_PREFIX = "hf:"
PRETRAINED_PREFIX = "pretrained:"


def is_weights_source(init_from: str) -> bool:
  """Whether `init_from` names weights outside any run's workdir (a package or HF directory)."""
  return init_from.startswith((HF_PREFIX, PRETRAINED_PREFIX))


def hf_directory(init_from: str) -> str | None:
  """The directory of an `hf:<directory>` source, or None for any other `init_from`."""
  return init_from[len(HF_PREFIX):] if init_from.startswith(HF_PREFIX) else None


def _eos_ids(directory: str) -> list[int]:
  """Every `eos_token_id` of generation_config.json and config.json (an int or a list)."""
  ids: list[int] = []
  for name in ("generation_config.json", "config.json"):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      with open(path) as f:
        value = json.load(f).get("eos_token_id")
      ids += [value] if isinstance(value, int) else list(value or [])
  return ids


def hf_tokenizer(directory: str) -> HFTokenizer:
  """The checkpoint's tokenizer with its chat template, stopping at every EOS id it declares.

  Raises:
    FileNotFoundError: no tokenizer.json (an HF checkpoint must ship its tokenizer).
  """
  tokenizer = HFTokenizer.from_directory(directory)
  return HFTokenizer(tokenizer.tokenizer, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                     bos_id=tokenizer.bos_id, chat_template=tokenizer.chat_template,
                     bos_token_id=tokenizer.bos_token_id, stop_ids=_eos_ids(directory))


def _saved_init_from(workdir: str) -> str:
  """`init_from` of the run whose checkpoints are in `workdir` ("" without any)."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return ""
  from bonjax.training.checkpointing import Checkpointer  # pylint: disable=g-import-not-at-top

  checkpointer = Checkpointer(workdir, read_only=True)
  try:
    meta = checkpointer.newest_meta() or {}
  finally:
    checkpointer.close()
  return (meta.get("config") or {}).get("init_from") or ""


def architecture_source(init_from: str, max_depth: int = 8) -> str:
  """`init_from`, or the `hf:` source its chain of run workdirs started from."""
  source = init_from
  for _ in range(max_depth):
    if not source or is_weights_source(source):
      break
    source = _saved_init_from(source)
  return source if source.startswith(HF_PREFIX) else init_from


def model_and_tokenizer(config: ml_collections.ConfigDict) -> tuple[ModelConfig, Tokenizer]:
  """The run's architecture and tokenizer: the HF checkpoint's for `init_from="hf:<dir>"` (or a
  run that started from one), else `model.preset` and `tokenizer.name`.

  Raises:
    ValueError: naming `init_from` and what is missing or unsupported in the directory;
      KeyError: an unknown preset or tokenizer.
  """
  init_from = architecture_source(config.get("init_from", "") or "")
  directory = hf_directory(init_from)
  if directory is None:
    return architecture(config), build_tokenizer(config)
  try:
    return architecture(config), hf_tokenizer(directory)
  except FileNotFoundError as e:
    raise ValueError(f"init_from={init_from!r}: {e}") from None


def architecture(config: ml_collections.ConfigDict) -> ModelConfig:
  """The run's architecture (no execution options): the HF checkpoint's config.json for
  `init_from="hf:<dir>"` (or a run that started from one), else `model.preset`.

  Raises:
    ValueError: naming `init_from` and what is missing or unsupported in the directory;
      KeyError: an unknown preset.
  """
  init_from = architecture_source(config.get("init_from", "") or "")
  directory = hf_directory(init_from)
  if directory is None:
    return get_preset(config.model.preset)
  try:
    return hf_import.read_hf_config(directory)[0]
  except (FileNotFoundError, ValueError) as e:
    raise ValueError(f"init_from={init_from!r}: {e}") from None


def _load_weights(setup: Any, init_from: str) -> tuple[ModelConfig, dict]:
  directory = hf_directory(init_from)
  if directory is not None:
    return hf_import.load_hf_checkpoint(directory)
  name = init_from[len(PRETRAINED_PREFIX):]
  try:
    cfg, params = pretrained.load_pretrained_once(name)
  except KeyError as e:
    raise ValueError(f"init_from={init_from!r}: {e.args[0]}") from None
  if cfg != setup.model_cfg.architecture():
    raise ValueError(f"init_from={init_from!r} is not model.preset="
                     f"{setup.config.model.preset!r}; set the preset of that model")
  return cfg, params


def load_params(setup: Any, init_from: str) -> Any:
  """The weights named by `init_from` (see `is_weights_source`) in the run's sharded layout.

  Args:
    setup: the run's RunSetup (model config, mesh, param shardings).
    init_from: "pretrained:<name>" or "hf:<directory>".

  Raises:
    ValueError: unknown name, or weights of another architecture than the run's.
  """
  cfg, params = _load_weights(setup, init_from)
  if cfg != setup.model_cfg.architecture():
    raise ValueError(f"init_from={init_from!r}: the checkpoint's architecture {cfg} differs "
                     f"from the run's {setup.model_cfg}")
  # A copy: on one device device_put would alias the process-wide cached arrays, and the train
  # step donates its parameters, which would delete them for every later user in this process.
  # In the base layout: LoRA adapters are added by the caller.
  base = dataclasses.replace(setup, model_cfg=setup.model_cfg.replace(lora_rank=0))
  return jax.device_put(params, base.param_shardings(), may_alias=False)

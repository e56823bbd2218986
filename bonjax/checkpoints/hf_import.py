"""Hugging Face checkpoint directory (config.json + safetensors) -> ModelConfig and params.

Reads a directory as `transformers` writes it: `config.json`, and either `model.safetensors` or
shards listed in `model.safetensors.index.json`. Tensors of any float dtype (bfloat16
included) are read as float32.
"""

from __future__ import annotations

import json
import os

import numpy as np

from bonjax.checkpoints import hf_layout
from bonjax.models.config import ModelConfig

_SINGLE_FILE = "model.safetensors"
_INDEX_FILE = "model.safetensors.index.json"


def read_hf_config(directory: str) -> tuple[ModelConfig, hf_layout.HFArchitecture]:
  """ModelConfig and HF architecture of the checkpoint in `directory` (its config.json).

  Raises:
    FileNotFoundError: no config.json; ValueError: unsupported model_type or switches.
  """
  path = os.path.join(directory, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: not found; expected an HF checkpoint directory")
  with open(path) as f:
    hf = json.load(f)
  if "text_config" in hf and hf.get("model_type") == "gemma3":
    # Multimodal Gemma 3 checkpoints nest the language model's config.
    hf = {"model_type": "gemma3_text", **hf["text_config"]}
  arch = hf_layout.architecture_for_model_type(hf.get("model_type", ""))
  return arch.config_from_hf(hf), arch


def safetensors_files(directory: str) -> list[str]:
  """The safetensors files of a checkpoint: the single file, or every shard of the index."""
  single = os.path.join(directory, _SINGLE_FILE)
  if os.path.exists(single):
    return [single]
  index = os.path.join(directory, _INDEX_FILE)
  if os.path.exists(index):
    with open(index) as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    return [os.path.join(directory, s) for s in shards]
  raise FileNotFoundError(f"{directory}: neither {_SINGLE_FILE} nor {_INDEX_FILE} found")


def read_safetensors(paths: list[str]) -> dict[str, np.ndarray]:
  """Every tensor of `paths` as float32 numpy (bfloat16 is read through JAX, numpy lacks it)."""
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top

  state = {}
  for path in paths:
    with safe_open(path, framework="flax") as f:
      for name in f.keys():
        state[name] = np.asarray(f.get_tensor(name), dtype=np.float32)
  return state


def _strip_multimodal_prefix(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  # Multimodal Gemma 3 stores the text model under "language_model.model." (or
  # "model.language_model."); only those tensors belong to the decoder.
  prefixes = ("language_model.model.", "model.language_model.")
  if not any(k.startswith(prefixes) for k in state):
    return state
  out = {}
  for name, value in state.items():
    for prefix in prefixes:
      if name.startswith(prefix):
        out["model." + name[len(prefix):]] = value
  return out


def load_hf_checkpoint(directory: str) -> tuple[ModelConfig, dict]:
  """Reads an HF checkpoint directory into our config and float32 numpy params.

  Args:
    directory: holds config.json and model.safetensors (or a sharded index).

  Returns:
    (ModelConfig, params pytree of float32 numpy arrays).
  """
  cfg, arch = read_hf_config(directory)
  state = _strip_multimodal_prefix(read_safetensors(safetensors_files(directory)))
  return cfg, hf_layout.params_from_hf_state(cfg, state, arch)

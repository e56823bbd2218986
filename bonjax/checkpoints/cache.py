"""On-disk cache of converted models: config, float32 params (safetensors) and tokenizer.

Converting a GGUF file takes tens of seconds (parsing, dequantizing, building the vocabulary);
reading the converted result back takes about a second. An entry is a directory

  <cache root>/<name>-<source key>/
    model_config.json      our ModelConfig fields
    params.safetensors     params, flattened with "/" (e.g. "layers/q")
    tokenizer.json, tokenizer_config.json    (HFTokenizer.save)

written to a temporary directory first and renamed into place, so a crashed conversion never
leaves a half-written entry. The source key changes with the source file's identity and the
converter version, so a new package version or a converter fix converts again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from bonjax.models.config import ModelConfig
from bonjax.tokenizers.hf import HFTokenizer

# Bump when a conversion changes, so old entries are not reused.
CONVERTER_VERSION = 1
CACHE_ENV = "BONJAX_CACHE"
_CONFIG_FILE = "model_config.json"
_PARAMS_FILE = "params.safetensors"


def cache_root() -> str:
  """$BONJAX_CACHE, else ~/.cache/bonjax."""
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "bonjax")


def source_key(paths: list[str]) -> str:
  """Short hash of the source files' identity (path, size, mtime) and the converter version."""
  digest = hashlib.sha256(f"v{CONVERTER_VERSION}".encode())
  for path in paths:
    stat = os.stat(path)
    digest.update(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
  return digest.hexdigest()[:16]


def entry_dir(name: str, key: str, root: str | None = None) -> str:
  return os.path.join(root or cache_root(), f"{name}-{key}")


def flatten_params(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
  """{"layers": {"q": x}} -> {"layers/q": x} as contiguous float32 numpy."""
  flat = {}
  for key, value in params.items():
    path = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten_params(value, path + "/"))
    else:
      flat[path] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
  return flat


def unflatten_params(flat: dict[str, Any]) -> dict:
  """Inverse of `flatten_params`."""
  params: dict = {}
  for path, value in flat.items():
    node = params
    *parents, leaf = path.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return params


def save_entry(directory: str, cfg: ModelConfig, params: dict,
               tokenizer: HFTokenizer | None) -> None:
  """Atomically writes a cache entry to `directory` (replacing nothing that exists)."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
  os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide a shared cache from other users
  try:
    with open(os.path.join(staging, _CONFIG_FILE), "w") as f:
      json.dump(dataclasses.asdict(cfg), f, indent=2)
    save_file(flatten_params(params), os.path.join(staging, _PARAMS_FILE))
    if tokenizer is not None:
      tokenizer.save(staging)
    try:
      os.rename(staging, directory)
    except OSError:
      if not os.path.isdir(directory):  # not a concurrent writer that finished first
        raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def has_entry(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, _PARAMS_FILE))


def load_entry(directory: str) -> tuple[ModelConfig, dict, HFTokenizer | None]:
  """Reads a cache entry: (ModelConfig, params of float32 numpy arrays, tokenizer or None)."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  with open(os.path.join(directory, _CONFIG_FILE)) as f:
    cfg = ModelConfig(**json.load(f))
  params = unflatten_params(load_file(os.path.join(directory, _PARAMS_FILE)))
  tokenizer = None
  if os.path.exists(os.path.join(directory, "tokenizer.json")):
    tokenizer = HFTokenizer.from_directory(directory)
  return cfg, params, tokenizer

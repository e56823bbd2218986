"""GGUF import on small files written in llama.cpp's conventions (see gguf_fixtures.py).

The conversion must give back exactly the params the files were written from.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenizers"))
import gguf_fixtures as gf  # pylint: disable=g-import-not-at-top,wrong-import-position
import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.checkpoints import gguf_import  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.models import layers  # pylint: disable=g-import-not-at-top,wrong-import-position

def _assert_params_equal(expected: dict, actual: dict) -> None:
  assert jax.tree.structure(expected) == jax.tree.structure(actual)
  jax.tree.map(np.testing.assert_array_equal, expected, actual)


def test_llama_gguf_converts_back_to_the_params(tmp_path):
  params = gf.random_params(gf.LLAMA, seed=0)
  path = str(tmp_path / "llama.gguf")
  gf.write_gguf(path, "llama", gf.LLAMA, params, fx.byte_level_metadata())
  cfg, converted, tokenizer, meta = gguf_import.convert_gguf(path)
  assert cfg == gf.LLAMA
  _assert_params_equal(params, converted)
  assert meta["general.architecture"] == "llama"
  assert tokenizer.encode("the then") == [len(fx.BYTE_LEVEL_SPECIALS) + 256 + i for i in (1, 2)] + [
      fx.byte_level_metadata()["tokenizer.ggml.tokens"].index("n")]
  assert tokenizer.chat_template == fx.CHAT_TEMPLATE and tokenizer.bos_id is None


def test_gemma3_gguf_converts_back_to_the_params(tmp_path):
  params = gf.random_params(gf.GEMMA3, seed=1)
  path = str(tmp_path / "gemma3.gguf")
  gf.write_gguf(path, "gemma3", gf.GEMMA3, params, fx.sentencepiece_metadata())
  cfg, converted, tokenizer, _ = gguf_import.convert_gguf(path)
  assert cfg == gf.GEMMA3
  _assert_params_equal(params, converted)
  assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (2, 1, 0)


def test_gemma3_window_pattern_is_read_when_present(tmp_path):
  cfg = gf.GEMMA3.replace(global_every=3)
  path = str(tmp_path / "gemma3.gguf")
  gf.write_gguf(path, "gemma3", cfg, gf.random_params(cfg, seed=2), fx.sentencepiece_metadata(),
             extra={"gemma3.attention.sliding_window_pattern": 3})
  assert gguf_import.convert_gguf(path)[0] == cfg


def test_unpermuted_rows_turn_interleaved_rotary_into_split_half_rotary():
  """llama.cpp rotates row pairs (2i, 2i+1) of its permuted Q; after undoing the permutation,
  our split-half rotary of the same projection gives the same vectors (in HF row order)."""
  heads, head_dim, d_in, length = 3, 8, 5, 7
  rng = np.random.default_rng(0)
  w_hf = rng.normal(size=(heads * head_dim, d_in)).astype(np.float32)
  w_gguf = gf.llama_cpp_permute(w_hf, heads)
  np.testing.assert_array_equal(gguf_import.unpermute_rotary_rows(w_gguf, heads), w_hf)
  np.testing.assert_array_equal(gguf_import.permute_rotary_rows(w_hf, heads), w_gguf)

  x = rng.normal(size=(length, d_in)).astype(np.float32)
  positions = np.arange(length)
  inv_freq = layers.rope_inverse_frequencies([100.0], head_dim)[0]
  # llama.cpp's rotary on the GGUF layout: adjacent rows (2i, 2i+1) form pair i.
  q = (x @ w_gguf.T).reshape(length, heads, head_dim // 2, 2)
  angle = positions[:, None, None] * inv_freq[None, None, :]
  re, im = q[..., 0], q[..., 1]
  rotated = np.stack([re * np.cos(angle) - im * np.sin(angle),
                      re * np.sin(angle) + im * np.cos(angle)], axis=-1)
  rotated_hf_order = rotated.swapaxes(-1, -2).reshape(length, heads, head_dim)

  w_ours = gguf_import.unpermute_rotary_rows(w_gguf, heads)
  q_ours = (x @ w_ours.T).reshape(1, length, heads, head_dim)
  ours = layers.apply_rope(jnp.asarray(q_ours), jnp.asarray(positions)[None], jnp.asarray(inv_freq))
  np.testing.assert_allclose(np.asarray(ours)[0], rotated_hf_order, atol=1e-5)


def test_unsupported_architecture_is_named(tmp_path):
  path = str(tmp_path / "other.gguf")
  writer = gguf.GGUFWriter(path, "mamba")
  writer.add_tensor("token_embd.weight", np.zeros((4, 2), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(ValueError, match="'mamba'.*gemma3"):
    gguf_import.convert_gguf(path)

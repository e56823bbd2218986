"""HF checkpoint directories as people have them: bfloat16 tensors, sharded files, Gemma 3
multimodal nesting, tokenizer files."""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenizers"))
import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top,wrong-import-position
import hf_fixtures as parity  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.checkpoints import hf_export  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import hf_import  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import hf_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import pretrained  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.tokenizers import gguf_vocab  # pylint: disable=g-import-not-at-top,wrong-import-position


def _hf_state(name: str, seed: int = 0):
  cfg = parity.CONFIGS[name]
  params = parity.random_params(cfg, seed)
  arch = hf_layout.architecture_for_config(cfg)
  return cfg, params, arch, hf_layout.hf_state_from_params(cfg, params, arch)


def _write_config(directory, cfg, arch, **extra):
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump({**hf_layout.hf_config_dict(cfg, arch), **extra}, f)


def test_bfloat16_shards_are_read_as_float32(tmp_path):
  cfg, _, arch, state = _hf_state("gemma3")
  names = sorted(state)
  shards = {"model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2]}
  for shard, shard_names in shards.items():
    save_file({n: torch.from_numpy(state[n]).to(torch.bfloat16) for n in shard_names},
              str(tmp_path / shard))
  weight_map = {n: shard for shard, shard_names in shards.items() for n in shard_names}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  _write_config(tmp_path, cfg, arch)

  cfg_back, params = hf_import.load_hf_checkpoint(str(tmp_path))
  assert cfg_back.num_layers == cfg.num_layers and cfg_back.sliding_window == 3
  expected = hf_layout.params_from_hf_state(cfg, {
      n: torch.from_numpy(v).to(torch.bfloat16).float().numpy() for n, v in state.items()}, arch)
  jax.tree.map(np.testing.assert_array_equal, expected, params)
  assert params["layers"]["q"].dtype == np.float32


def test_multimodal_gemma3_checkpoint_reads_the_language_model(tmp_path):
  cfg, params, arch, state = _hf_state("gemma3", seed=4)
  nested = {"language_model." + k: v for k, v in state.items()}
  nested["vision_tower.patch.weight"] = np.zeros((2, 2), np.float32)
  save_file({k: torch.from_numpy(v) for k, v in nested.items()}, str(tmp_path / "model.safetensors"))
  text_config = {k: v for k, v in hf_layout.hf_config_dict(cfg, arch).items()
                 if k not in ("architectures", "model_type")}
  (tmp_path / "config.json").write_text(json.dumps(
      {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
       "text_config": text_config}))
  _, params_back = hf_import.load_hf_checkpoint(str(tmp_path))
  jax.tree.map(np.testing.assert_array_equal, params, params_back)


def test_load_hf_returns_tokenizer_and_jax_params(tmp_path):
  cfg = parity.CONFIGS["llama"].replace(vocab_size=len(fx.byte_level_metadata()[
      "tokenizer.ggml.tokens"]))
  params = parity.random_params(cfg)
  tokenizer = gguf_vocab.tokenizer_from_gguf_metadata(fx.byte_level_metadata())
  hf_export.save_hf_checkpoint(str(tmp_path), cfg, params, tokenizer)
  config = json.loads((tmp_path / "config.json").read_text())
  assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 2)
  cfg_back, params_back, tokenizer_back = pretrained.load_hf(str(tmp_path))
  assert cfg_back.vocab_size == cfg.vocab_size
  assert isinstance(params_back["embedding"], jax.Array)
  jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, params_back))
  assert tokenizer_back.encode("the then") == tokenizer.encode("the then")
  assert tokenizer_back.chat_template == tokenizer.chat_template


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf_import.load_hf_checkpoint(str(tmp_path))
  cfg, _, arch, _ = _hf_state("llama")
  _write_config(tmp_path, cfg, arch)
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    hf_import.load_hf_checkpoint(str(tmp_path))


def test_legacy_gemma3_config_keys():
  """Older Gemma 3 config.json files: rope_theta / rope_local_base_freq, a window pattern."""
  cfg = hf_layout.HF_ARCHITECTURES["gemma3_text"].config_from_hf({
      "model_type": "gemma3_text", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
      "num_hidden_layers": 6, "num_attention_heads": 2, "num_key_value_heads": 1,
      "head_dim": 4, "rope_theta": 1e6, "rope_local_base_freq": 1e4, "sliding_window": 512,
      "sliding_window_pattern": 3, "query_pre_attn_scalar": 4})
  assert (cfg.rope_base, cfg.local_rope_base, cfg.global_every, cfg.query_scale) == (
      1e6, 1e4, 3, 0.5)
  assert [cfg.is_local_layer(i) for i in range(6)] == [True, True, False] * 2


def test_unimplemented_rotary_scaling_is_rejected():
  """Legacy `rope_scaling` with the old "type" key: linear is read, dynamic NTK is not."""
  hf = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "rope_theta": 1e4,
        "rope_scaling": {"type": "linear", "factor": 8.0}}
  cfg = hf_layout.HF_ARCHITECTURES["llama"].config_from_hf(hf)
  assert (cfg.rope_scaling.rope_type, cfg.rope_scaling.factor) == ("linear", 8.0)
  hf["rope_scaling"] = {"type": "dynamic", "factor": 8.0}
  with pytest.raises(ValueError, match=r"rope_scaling.rope_type='dynamic': unsupported"):
    hf_layout.HF_ARCHITECTURES["llama"].config_from_hf(hf)

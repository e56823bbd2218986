"""Our forward pass equals HF transformers' PyTorch models filled through the export path.

Each tiny random config is exported with `save_hf_checkpoint`, loaded by `transformers`
(`AutoModelForCausalLM.from_pretrained`, so config.json and the tensor layout are both checked),
and run on the same tokens. Norm weights are randomised so that a swapped or misnamed norm shows.
Re-importing the exported directory must give back the same config and bit-identical params.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

sys.path.insert(0, os.path.dirname(__file__))
from hf_fixtures import CONFIGS, SEQ_LEN, random_params  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.checkpoints import hf_export  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import hf_import  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import hf_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.models import transformer  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.models.config import ModelConfig  # pylint: disable=g-import-not-at-top,wrong-import-position

def our_logits(cfg: ModelConfig, params: dict, tokens: np.ndarray) -> np.ndarray:
  valid = jnp.ones(tokens.shape, bool)
  positions = transformer.positions_from_valid(valid)
  h = transformer.hidden_states(params, cfg, jnp.asarray(tokens), positions, valid)
  return np.asarray(transformer.logits_from_hidden(params, cfg, h))


def hf_logits(directory: str, tokens: np.ndarray) -> np.ndarray:
  model = transformers.AutoModelForCausalLM.from_pretrained(
      directory, dtype=torch.float32, attn_implementation="eager")
  model.eval()
  with torch.no_grad():
    out = model(input_ids=torch.as_tensor(tokens, dtype=torch.long))
  return out.logits.float().numpy()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_exported_checkpoint_matches_transformers(name, tmp_path):
  cfg = CONFIGS[name]
  params = random_params(cfg)
  tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(2, SEQ_LEN))
  model_type = hf_export.save_hf_checkpoint(str(tmp_path), cfg, params)

  ours = our_logits(cfg, params, tokens)
  theirs = hf_logits(str(tmp_path), tokens)

  expected_type = {"llama": "llama", "tiny": "llama", "gemma2": "gemma2"}.get(name, "gemma3_text")
  assert model_type == expected_type
  assert theirs.shape == ours.shape == (2, SEQ_LEN, cfg.vocab_size)
  assert np.max(np.abs(ours - theirs)) < 1e-4
  np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
  # The logits must vary enough that a layout error could not hide under the tolerance.
  assert np.std(ours) > 0.05


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hf_round_trip_is_exact(name, tmp_path):
  cfg = CONFIGS[name]
  params = random_params(cfg, seed=3)
  hf_export.save_hf_checkpoint(str(tmp_path), cfg, params)
  cfg_back, params_back = hf_import.load_hf_checkpoint(str(tmp_path))
  effective_scale = lambda c: c.query_scale or c.head_dim**-0.5
  assert effective_scale(cfg_back) == pytest.approx(effective_scale(cfg), rel=1e-12)
  assert cfg_back == cfg.replace(family=cfg_back.family, query_scale=cfg_back.query_scale)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), params_back)


def test_sliding_window_matters_in_the_parity_config():
  """The gemma3 config's window is short enough to change the logits (so parity tests it)."""
  cfg = CONFIGS["gemma3"]
  params = random_params(cfg)
  tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(1, SEQ_LEN))
  windowed = our_logits(cfg, params, tokens)
  unwindowed = our_logits(cfg.replace(sliding_window=SEQ_LEN), params, tokens)
  np.testing.assert_allclose(windowed[:, :3], unwindowed[:, :3], atol=1e-5)
  assert np.max(np.abs(windowed[:, 4:] - unwindowed[:, 4:])) > 1e-2


def test_soft_caps_matter_in_the_parity_config():
  cfg = CONFIGS["gemma2"]
  params = random_params(cfg)
  tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(1, SEQ_LEN))
  capped = our_logits(cfg, params, tokens)
  final_only = our_logits(cfg.replace(attn_softcap=None), params, tokens)
  uncapped = our_logits(cfg.replace(attn_softcap=None, final_softcap=None), params, tokens)
  assert np.max(np.abs(capped - final_only)) > 1e-2
  assert np.max(np.abs(final_only - uncapped)) > 0.5


def test_gemma3_export_rejects_attention_soft_cap(tmp_path):
  cfg = CONFIGS["gemma3"]
  with pytest.raises(ValueError, match="attn_softcap"):
    hf_export.save_hf_checkpoint(str(tmp_path), cfg.replace(attn_softcap=50.0),
                                 random_params(cfg))


@pytest.mark.parametrize("change, message", [
    (dict(attn_softcap=5.0), "attn_softcap"),
    (dict(sliding_window=4, global_every=2), "sliding_window"),
    (dict(norm_plus_one=True), "norm_plus_one"),
])
def test_llama_export_rejects_switches_it_cannot_express(change, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    hf_export.save_hf_checkpoint(str(tmp_path), CONFIGS["llama"].replace(**change),
                                 random_params(CONFIGS["llama"]))


def test_gemma2_export_rejects_separate_local_rope_base(tmp_path):
  cfg = CONFIGS["gemma2"].replace(local_rope_base=100.0)
  with pytest.raises(ValueError, match="local_rope_base"):
    hf_export.save_hf_checkpoint(str(tmp_path), cfg, random_params(CONFIGS["gemma2"]))


def test_unknown_model_type_lists_supported():
  with pytest.raises(ValueError, match="gemma3_text"):
    hf_layout.architecture_for_model_type("mamba")


def test_missing_tensor_is_named():
  cfg = CONFIGS["llama"]
  arch = hf_layout.HF_ARCHITECTURES["llama"]
  state = hf_layout.hf_state_from_params(cfg, random_params(cfg), arch)
  del state["model.layers.1.mlp.up_proj.weight"]
  with pytest.raises(KeyError, match="model.layers.1.mlp.up_proj.weight"):
    hf_layout.params_from_hf_state(cfg, state, arch)


@pytest.mark.parametrize("preset, billions", [("gemma2-2b", 2.614), ("gemma2-9b", 9.242)])
def test_gemma2_presets_export_as_transformers_gemma2(preset, billions):
  from bonjax.models.config import get_preset, preset_names  # pylint: disable=g-import-not-at-top

  if preset not in preset_names():
    pytest.skip(f"preset {preset!r} not registered")
  cfg = get_preset(preset)
  assert cfg.num_params() / 1e9 == pytest.approx(billions, abs=5e-4)
  hf = hf_layout.hf_config_dict(cfg, hf_layout.architecture_for_config(cfg))
  assert hf["model_type"] == "gemma2"
  assert (hf["attn_logit_softcapping"], hf["final_logit_softcapping"], hf["sliding_window"],
          hf["query_pre_attn_scalar"]) == (50.0, 30.0, 4096, 256)
  assert hf["layer_types"][:4] == ["sliding_attention", "full_attention"] * 2
  if preset == "gemma2-2b":
    # transformers' Gemma2Config defaults are the 2B model.
    defaults = transformers.Gemma2Config().to_dict()
    assert {k: v for k, v in hf.items() if k in defaults and k != "architectures"} == {
        k: defaults[k] for k in hf if k in defaults and k != "architectures"}

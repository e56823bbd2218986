"""Checkpoints that transformers itself writes, one tiny random model per supported family
(Llama 3, SmolLM2, Qwen2, Qwen3, Gemma 2, Gemma 3), load into our model with its logits.

The models are built on the fly (`hf_fixtures.build_hf_checkpoint`, no network), randomised so
that every tensor matters, saved with `save_pretrained`, read back by `hf_import` and run on the
same tokens as the torch model. Each family's distinguishing switch is checked to change the
logits, so the parity cannot hold by accident.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

sys.path.insert(0, os.path.dirname(__file__))
from hf_fixtures import HF_FAMILIES, build_hf_checkpoint  # pylint: disable=g-import-not-at-top,wrong-import-position
from test_hf_parity import our_logits  # pylint: disable=g-import-not-at-top,wrong-import-position

from bonjax.checkpoints import hf_import  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.checkpoints import hf_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from bonjax.models.config import RopeScaling  # pylint: disable=g-import-not-at-top,wrong-import-position

SEQ_LEN = 12

# family -> (model_type, the ModelConfig change that undoes the family's distinguishing switch).
SWITCHES = {
    "llama3": ("llama", dict(rope_scaling=None)),
    "smollm2": ("llama", dict(rope_base=10_000.0, local_rope_base=10_000.0)),
    "qwen2": ("qwen2", None),  # Biases: zeroed below instead.
    "qwen3": ("qwen3", dict(qk_norm=False)),
    "gemma2": ("gemma2", dict(attn_softcap=None)),
    "gemma3": ("gemma3_text", dict(rope_scaling=None)),
}


def _torch_logits(model, tokens: np.ndarray) -> np.ndarray:
  with torch.no_grad():
    return model(input_ids=torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()


@pytest.mark.parametrize("family", sorted(HF_FAMILIES))
def test_transformers_checkpoint_matches_our_logits(family, tmp_path):
  model = build_hf_checkpoint(str(tmp_path), family)
  tokens = np.random.default_rng(2).integers(0, 263, size=(2, SEQ_LEN))
  cfg, params = hf_import.load_hf_checkpoint(str(tmp_path))
  model_type, undo = SWITCHES[family]
  assert json.loads((tmp_path / "config.json").read_text())["model_type"] == model_type

  ours = our_logits(cfg, params, tokens)
  theirs = _torch_logits(model, tokens)
  assert ours.shape == theirs.shape == (2, SEQ_LEN, 263)
  assert np.max(np.abs(ours - theirs)) < 1e-4, np.max(np.abs(ours - theirs))
  np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))
  assert np.std(ours) > 0.05

  if undo is None:  # Qwen2: the q/k/v biases change the logits.
    assert cfg.qkv_bias
    params = {**params, "layers": {**params["layers"], **{
        n: np.zeros_like(params["layers"][n]) for n in ("q_bias", "k_bias", "v_bias")}}}
    changed = our_logits(cfg, params, tokens)
  else:
    changed = our_logits(cfg.replace(**undo), params, tokens)
  assert np.max(np.abs(changed - ours)) > 1e-2


def test_llama3_scaling_is_read_as_transformers_writes_it(tmp_path):
  build_hf_checkpoint(str(tmp_path), "llama3")
  cfg, _ = hf_import.read_hf_config(str(tmp_path))
  assert cfg.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, 16)
  assert cfg.rope_base == 500_000.0 and not cfg.tie_embeddings


@pytest.mark.parametrize("family, change, message", [
    ("llama3", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}},
     r"rope_parameters.rope_type='yarn': unsupported"),
    ("llama3", {"attention_bias": True}, r"attention_bias=True: unsupported"),
    ("llama3", {"hidden_act": "gelu"}, r"hidden_act='gelu': unsupported"),
    ("qwen2", {"use_sliding_window": True}, r"use_sliding_window=True: unsupported"),
    ("qwen3", {"attention_bias": True}, r"attention_bias=True: unsupported"),
    ("smollm2", {"partial_rotary_factor": 0.5}, r"partial_rotary_factor=0.5: unsupported"),
    ("smollm2", {"model_type": "mistral"}, r"model_type='mistral': unsupported"),
])
def test_unsupported_fields_are_named(family, change, message, tmp_path):
  build_hf_checkpoint(str(tmp_path), family)
  path = tmp_path / "config.json"
  path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
  with pytest.raises(ValueError, match=message):
    hf_import.read_hf_config(str(tmp_path))


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama3", "gemma3"])
def test_reexport_is_the_same_checkpoint(family, tmp_path):
  """Import -> export writes the same family, config values and tensors transformers wrote."""
  from bonjax.checkpoints import hf_export  # pylint: disable=g-import-not-at-top

  build_hf_checkpoint(str(tmp_path / "in"), family)
  cfg, params = hf_import.load_hf_checkpoint(str(tmp_path / "in"))
  hf_export.save_hf_checkpoint(str(tmp_path / "out"), cfg, params)
  cfg_back, params_back = hf_import.load_hf_checkpoint(str(tmp_path / "out"))
  assert cfg_back == cfg
  assert hf_layout.architecture_for_config(cfg).model_type == SWITCHES[family][0]
  jax.tree.map(np.testing.assert_array_equal, params, params_back)
  tokens = np.random.default_rng(0).integers(0, 263, size=(1, SEQ_LEN))
  model = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path / "out"), dtype=torch.float32, attn_implementation="eager")
  np.testing.assert_allclose(_torch_logits(model.eval(), tokens),
                             our_logits(cfg, params, tokens), atol=1e-4)

"""Tiny configurations of every exportable family and seeded random params for them."""

from __future__ import annotations

import jax
import numpy as np

from bonjax.models import transformer
from bonjax.models.config import ModelConfig

SEQ_LEN = 12

CONFIGS = {
    # Llama layout, grouped-query attention, untied output head.
    "llama": ModelConfig(family="llama", vocab_size=67, num_layers=2, d_model=32, num_heads=4,
                         num_kv_heads=2, head_dim=8, mlp_dim=48, activation="silu",
                         norm_eps=1e-5, tie_embeddings=False, rope_base=500.0,
                         local_rope_base=500.0, bos_id=1),
    # The model family's "tiny" preset shape exports as llama, tied head.
    "tiny": ModelConfig(family="tiny", vocab_size=40, num_layers=2, d_model=32, num_heads=4,
                        num_kv_heads=1, head_dim=16, mlp_dim=40, activation="silu"),
    # Gemma 3: q/k norm, post norms, (1 + w) norms, embedding scale, a 3-token window shorter
    # than the sequence with every 2nd layer global, separate rotary bases, explicit query scale.
    "gemma3": ModelConfig(family="gemma3", vocab_size=71, num_layers=4, d_model=32, num_heads=4,
                          num_kv_heads=1, head_dim=16, mlp_dim=48, activation="gelu_tanh",
                          norm_eps=1e-6, norm_plus_one=True, embed_scale=True,
                          rope_base=1_000_000.0, local_rope_base=100.0, sliding_window=3,
                          global_every=2, qk_norm=True, post_norms=True, query_scale=0.1,
                          bos_id=2),
    # Gemma 2: attention and final soft-capping (caps small enough that tanh bends the
    # logits of a random model), alternating local/global layers, untied head.
    "gemma2": ModelConfig(family="gemma2", vocab_size=53, num_layers=3, d_model=24, num_heads=2,
                          num_kv_heads=1, head_dim=12, mlp_dim=40, activation="gelu_tanh",
                          norm_plus_one=True, embed_scale=True, tie_embeddings=False,
                          rope_base=10_000.0, local_rope_base=10_000.0, sliding_window=4,
                          global_every=2, post_norms=True, query_scale=144**-0.5,
                          attn_softcap=0.3, final_softcap=5.0, bos_id=2),
    # Gemma 3 with the final soft-cap (HF's Gemma 3 has no attention soft-cap).
    "gemma3_softcap": ModelConfig(family="gemma3", vocab_size=50, num_layers=2, d_model=16,
                                  num_heads=2, num_kv_heads=2, head_dim=8, mlp_dim=24,
                                  activation="gelu_tanh", norm_plus_one=True, embed_scale=True,
                                  local_rope_base=10.0, sliding_window=5, global_every=2,
                                  qk_norm=True, post_norms=True, final_softcap=6.0),
}


def random_params(cfg: ModelConfig, seed: int = 0) -> dict:
  """Seeded random params of `cfg`'s shapes: matrices N(0, 0.3 / sqrt(fan_in)), norm weights
  N(1, 0.3) or N(0, 0.3) under (1 + w), so that a swapped or misnamed tensor changes logits."""
  shapes = jax.eval_shape(lambda: transformer.init_params(cfg, jax.random.key(0)))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name.endswith("norm"):
      centre = 0.0 if cfg.norm_plus_one else 1.0
      return (centre + rng.normal(0.0, 0.3, leaf.shape)).astype(np.float32)
    fan_in = cfg.d_model if name in ("q", "k", "v", "gate", "up", "embedding", "unembedding") else (
        leaf.shape[-2] if name == "down" else cfg.num_heads * cfg.head_dim)
    scale = 1.0 if name in ("embedding", "unembedding") else 0.5 / np.sqrt(fan_in)
    return rng.normal(0.0, scale, leaf.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


# ----------------------------------------------------------------------------------------------
# Tiny transformers checkpoints of every importable family, built on the fly (no network).
# ----------------------------------------------------------------------------------------------

_SHAPE = dict(vocab_size=263, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              max_position_embeddings=256)

# family -> (transformers config class name, its arguments). Each exercises what sets that
# family apart: Llama 3's llama3 rotary scaling (an original context short enough that the
# scaling changes the frequencies used within a dozen tokens), SmolLM2's tied head, Qwen2's
# q/k/v biases, Qwen3's q/k norm and a head_dim other than hidden/heads, Gemma 2's soft caps,
# Gemma 3's linear rotary scaling of global layers and its window.
HF_FAMILIES = {
    "llama3": ("LlamaConfig", dict(_SHAPE, tie_word_embeddings=False, rope_scaling={
        "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "smollm2": ("LlamaConfig", dict(_SHAPE, tie_word_embeddings=True, rope_theta=100_000.0,
                                    rms_norm_eps=1e-5)),
    "qwen2": ("Qwen2Config", dict(_SHAPE, tie_word_embeddings=False, rope_theta=1_000_000.0,
                                  use_sliding_window=False)),
    "qwen3": ("Qwen3Config", dict(_SHAPE, head_dim=16, tie_word_embeddings=True,
                                  rope_theta=1_000_000.0)),
    "gemma2": ("Gemma2Config", dict(_SHAPE, num_hidden_layers=3, sliding_window=4,
                                    query_pre_attn_scalar=8, attn_logit_softcapping=0.5,
                                    final_logit_softcapping=5.0)),
    "gemma3": ("Gemma3TextConfig", dict(_SHAPE, num_hidden_layers=3, sliding_window=4,
                                        layer_types=["sliding_attention", "full_attention",
                                                     "sliding_attention"],
                                        query_pre_attn_scalar=8, rope_scaling={
                                            "rope_type": "linear", "factor": 8.0})),
}


def randomize_torch_model(model, plus_one_norms: bool, seed: int = 0) -> None:
  """Seeded random weights of a transformers model: norms around their neutral value, biases
  and matrices ~ N(0, 0.5 / sqrt(fan_in)), embeddings N(0, 1)."""
  import torch  # pylint: disable=g-import-not-at-top

  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in sorted(model.named_parameters()):
      noise = torch.randn(p.shape, generator=gen)
      if "norm" in name:
        p.copy_((0.0 if plus_one_norms else 1.0) + 0.3 * noise)
      elif "embed" in name or "lm_head" in name:
        p.copy_(noise)
      else:
        fan_in = p.shape[-1] if p.ndim == 2 else 4
        p.copy_(0.5 * noise / fan_in**0.5)


def hf_tokenizer_files(directory: str, chat_template: str | None = None):
  """Writes the byte-level fixture tokenizer through transformers (tokenizer.json and
  tokenizer_config.json, with a chat template); returns the transformers tokenizer."""
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  import transformers  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tokenizers"))
  import gguf_vocab_fixtures as fx  # pylint: disable=g-import-not-at-top

  from bonjax.tokenizers import gguf_vocab  # pylint: disable=g-import-not-at-top

  ours = gguf_vocab.tokenizer_from_gguf_metadata(fx.byte_level_metadata())
  theirs = transformers.PreTrainedTokenizerFast(
      tokenizer_object=ours.tokenizer, bos_token="<|im_start|>", eos_token="<|im_end|>",
      pad_token="<|endoftext|>", chat_template=chat_template or fx.CHAT_TEMPLATE)
  theirs.save_pretrained(directory)
  return theirs


def build_hf_checkpoint(directory: str, family: str, seed: int = 0,
                        eos_token_id: list[int] | int | None = None):
  """Saves a tiny random transformers model of `family` (HF_FAMILIES), the fixture tokenizer and
  a generation_config.json into `directory`; returns the (eval-mode, float32) torch model."""
  import transformers  # pylint: disable=g-import-not-at-top

  class_name, kwargs = HF_FAMILIES[family]
  config = getattr(transformers, class_name)(**kwargs, bos_token_id=1, eos_token_id=2,
                                             pad_token_id=0)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  randomize_torch_model(model, plus_one_norms=family.startswith("gemma"), seed=seed)
  model.eval()
  if eos_token_id is not None:
    model.generation_config.eos_token_id = eos_token_id
  model.save_pretrained(directory)
  hf_tokenizer_files(directory)
  return model

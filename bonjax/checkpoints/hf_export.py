"""Params (e.g. fine-tuned) -> Hugging Face checkpoint directory that `transformers` loads.

  save_hf_checkpoint("/tmp/out", cfg, params, tokenizer)
  # transformers.AutoModelForCausalLM.from_pretrained("/tmp/out") -> same logits

Writes `config.json` (the HF architecture is chosen by `cfg.family`, see
`hf_layout.EXPORT_ARCHITECTURE`), `model.safetensors` (float32 by default), a
`generation_config.json` with the token ids, and the tokenizer files when a tokenizer is given.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from bonjax.checkpoints import hf_layout
from bonjax.models.config import ModelConfig

_DTYPES = {"float32": np.float32, "float16": np.float16}


def save_hf_checkpoint(directory: str, cfg: ModelConfig, params: dict, tokenizer: Any = None, *,
                       dtype: str = "float32") -> str:
  """Writes an HF checkpoint directory.

  Args:
    directory: created if missing; existing files of the same names are replaced.
    cfg: model configuration.
    params: params pytree (jax or numpy arrays).
    tokenizer: an object with `save(directory)` (e.g. HFTokenizer), or None.
    dtype: "float32" or "float16" for the saved tensors.

  Returns:
    The HF `model_type` written.

  Raises:
    ValueError: `cfg` uses a switch the target HF architecture cannot express, or an unknown
      dtype.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  if dtype not in _DTYPES:
    raise ValueError(f"dtype={dtype!r}: expected one of {sorted(_DTYPES)}")
  arch = hf_layout.architecture_for_config(cfg)
  config = hf_layout.hf_config_dict(cfg, arch)
  config["torch_dtype"] = dtype
  state = hf_layout.hf_state_from_params(cfg, params, arch)
  if tokenizer is not None:
    config.update(_token_ids(tokenizer))
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                if config.get(k) is not None}
  with open(os.path.join(directory, "generation_config.json"), "w") as f:
    json.dump(generation, f, indent=2)
  save_file({k: v.astype(_DTYPES[dtype]) for k, v in state.items()},
            os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
  if tokenizer is not None:
    tokenizer.save(directory)
  return arch.model_type


def _token_ids(tokenizer: Any) -> dict[str, int | None]:
  bos = getattr(tokenizer, "bos_token_id", tokenizer.bos_id)
  return {"bos_token_id": bos, "eos_token_id": tokenizer.eos_id,
          "pad_token_id": tokenizer.pad_id}
